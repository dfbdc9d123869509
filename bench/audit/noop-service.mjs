// Serves the audit API through the service kit with handlers that do
// nothing. append.mjs starts it as a second baseline: it shows what the kit,
// gRPC and OpenTelemetry cost per call before the audit service does any work.
import { auditV1 } from '@cordon/proto';
import { defineService, runService } from '@cordon/service-kit';

await runService({
  name: 'audit',
  config: {},
  create: async () => ({
    services: [
      defineService(
        auditV1.AuditServiceService,
        {
          append: async () => ({ seq: 1, hash: '' }),
          appendStream: async function* (requests) {
            for await (const _request of requests) {
              yield { seq: 1, hash: '' };
            }
          },
          query: async function* () {},
          getRun: async () => auditV1.GetRunResponse.fromPartial({}),
          verify: async () => auditV1.VerifyResponse.fromPartial({}),
          export: async function* () {},
        },
        {
          // The same roles as the audit service, so the kit checks tokens as it does there.
          roles: {
            append: ['service'],
            appendStream: ['service'],
            query: ['agent', 'auditor', 'admin'],
            getRun: ['agent', 'auditor', 'admin'],
            verify: ['auditor', 'admin'],
            export: ['auditor', 'admin'],
          },
        },
      ),
    ],
  }),
});
