export { type StoredFile } from './append-attachments.js';
export { prepareAppend, type CallTrace, type PreparedAppend } from './append-request.js';
export { createAuditService } from './audit-main.js';
export {
  auditConfigSpec,
  compileAuditOptions,
  defaultDatabasePath,
  type AuditConfig,
  type AuditOptions,
} from './audit-options.js';
export { auditServiceRegistration, type AuditServiceParts } from './audit-service.js';
export {
  AuditStore,
  type AppendOutcome,
  type RecordFilter,
  type StoredRecord,
} from './audit-store.js';
export {
  ALLOWED_ROLES,
  authorize,
  type AuditOperation,
  type CallerRole,
  type ReadScope,
} from './caller-identity.js';
export {
  canonicalEventJson,
  canonicalJson,
  canonicalRecordJson,
  GENESIS_HASH,
  recordHash,
} from './canonical.js';
export { verifyChain } from './chain-verify.js';
export { GroupCommit } from './group-commit.js';
export { StoreWriter, WriteFailedError, type BatchWriter } from './store-writer.js';
