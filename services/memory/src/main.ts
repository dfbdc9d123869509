import { runService } from '@cordon/service-kit';
import { AUDITING_OFF, GrpcAuditSink } from './audit-sink.js';
import { watchStoreHealth } from './health-watch.js';
import { compileMemoryOptions, memoryConfigSpec } from './memory-options.js';
import { createMemoryService } from './memory-service.js';
import { openStores } from './store-router.js';

await runService({
  name: 'memory',
  config: memoryConfigSpec,
  create: async ({ config, kit, logger }) => {
    const options = compileMemoryOptions(config, kit);
    const router = await openStores(options, logger);
    const audit =
      options.auditAddress === undefined
        ? AUDITING_OFF
        : new GrpcAuditSink('memory', options.auditAddress, logger);
    if (options.auditAddress === undefined) {
      logger.warn('auditing is off: set CORDON_AUDIT_ADDRESS to record memory writes and denials');
    }

    logger.info(
      {
        stores: router.stores.map((store) => store.description),
        audit_address: options.auditAddress ?? null,
        max_value_bytes: options.limits.maxValueBytes,
        max_keys_per_agent: options.limits.maxKeysPerAgent,
        max_bytes_per_agent: options.limits.maxBytesPerAgent,
      },
      'memory ready',
    );

    let stopHealth: (() => void) | undefined;
    return {
      services: [createMemoryService({ router, audit, limits: options.limits })],
      onStarted: (server) => {
        stopHealth = watchStoreHealth(
          server,
          router.stores,
          options.redis.healthIntervalMs,
          logger,
        );
      },
      close: async () => {
        stopHealth?.();
        await audit.close();
        await router.close();
      },
    };
  },
});
