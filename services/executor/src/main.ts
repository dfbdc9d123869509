import { runService } from '@cordon/service-kit';
import { compileExecutorOptions, executorConfigSpec } from './executor-options.js';
import { createExecutor } from './executor-service.js';

await runService({
  name: 'executor',
  config: executorConfigSpec,
  create: async ({ config, logger }) => {
    const options = compileExecutorOptions(config);
    const executor = await createExecutor(options, logger);
    logger.info(
      {
        isolation: executor.driver.isolation,
        missing_protections: executor.driver.missingProtections,
        executor_id: options.instanceId,
        max_concurrent_runs: options.maxConcurrentRuns,
      },
      'executor ready',
    );
    return {
      services: [executor.registration],
      // Health checks report which isolation runs get and what it lacks, in plain words.
      healthDetails: {
        'cordon-isolation': executor.driver.isolation,
        'cordon-missing-protections':
          executor.driver.missingProtections.length === 0
            ? 'none'
            : executor.driver.missingProtections.join('; '),
        'cordon-warm-pool': () => executor.warmPoolDepth(),
      },
      onStarted: (server) => executor.watchEngine(server),
      close: () => executor.close(),
    };
  },
});
