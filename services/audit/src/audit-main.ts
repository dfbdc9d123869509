import type { ServiceContext, ServiceInstance } from '@cordon/service-kit';
import { compileAuditOptions, type auditConfigSpec } from './audit-options.js';
import { auditServiceRegistration } from './audit-service.js';
import { AuditStore } from './audit-store.js';
import { GroupCommit } from './group-commit.js';
import { StoreWriterThread } from './store-writer-thread.js';

/**
 * Opens the store (creating its schema on first use), starts the writer
 * thread and returns the service. Reads use a connection of their own on
 * the service thread. Closing commits any pending Append, then checkpoints
 * and closes both connections.
 */
export async function createAuditService(
  context: ServiceContext<typeof auditConfigSpec>,
): Promise<ServiceInstance> {
  const options = compileAuditOptions(context.config, context.kit);
  const store = AuditStore.open(options.databasePath);
  let writer: StoreWriterThread;
  try {
    writer = await StoreWriterThread.start(options.databasePath, context.logger);
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
    services: [auditServiceRegistration({ store, commit, options })],
    close: async () => {
      await commit.close();
      store.close();
      const stats = commit.stats;
      context.logger.info({ batches: stats.batches, events: stats.events }, 'audit store closed');
    },
  };
}
