import { runService } from '@cordon/service-kit';
import { createAuditService } from './audit-main.js';
import { auditConfigSpec } from './audit-options.js';

await runService({ name: 'audit', config: auditConfigSpec, create: createAuditService });
