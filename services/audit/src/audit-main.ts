import type { ServiceContext, ServiceInstance } from '@cordon/service-kit';
import { compileAuditOptions, type auditConfigSpec } from './audit-options.js';
import { auditServiceRegistration } from './audit-service.js';
import { AuditStore } from './audit-store.js';
import { GroupCommit } from './group-commit.js';
import { StoreWriter } from './store-writer.js';

/**
 * Opens the store (creating its schema on first use) with two connections,
 * one that reads and one that writes, both on the service thread, and
 * returns the service. Closing commits any pending Append, then
 * checkpoints and closes both connections.
 */
export function createAuditService(
  context: ServiceContext<typeof auditConfigSpec>,
): Promise<ServiceInstance> {
  // A throw inside the Promise executor function becomes a rejection.
  return new Promise((resolve) => {
    resolve(openAuditService(context));
  });
}

function openAuditService(context: ServiceContext<typeof auditConfigSpec>): ServiceInstance {
  const options = compileAuditOptions(context.config, context.kit);
  const store = AuditStore.open(options.databasePath);
  let writer: StoreWriter;
  try {
    writer = StoreWriter.open(options.databasePath);
  } catch (error) {
    store.close();
    throw error;
  }
  const commit = new GroupCommit(writer);
  context.logger.info(
    {
      path: options.databasePath,
      last_seq: store.lastSeq(),
      journal_mode: writer.settings.journalMode,
      synchronous: writer.settings.synchronous,
    },
    'audit store opened',
  );

  return {
    services: [auditServiceRegistration({ store, commit, options, logger: context.logger })],
    close: async () => {
      await commit.close();
      store.close();
      const stats = commit.stats;
      context.logger.info({ batches: stats.batches, events: stats.events }, 'audit store closed');
    },
  };
}
