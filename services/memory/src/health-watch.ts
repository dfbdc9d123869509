import type { Logger, RunningServer } from '@cordon/service-kit';
import type { MemoryStore } from './memory-store.js';

/**
 * Checks every store at an interval and reports NOT_SERVING through the
 * server's health service while any of them does not respond, SERVING once
 * all respond again. Returns a function that stops the checks.
 */
export function watchStoreHealth(
  server: RunningServer,
  stores: readonly MemoryStore[],
  intervalMs: number,
  logger: Logger,
): () => void {
  let serving: boolean | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const check = async (): Promise<void> => {
    const results = await Promise.all(stores.map((store) => store.isAvailable()));
    if (stopped || server.state !== 'serving') {
      return;
    }
    const available = results.every(Boolean);
    if (available !== serving) {
      const down = stores
        .filter((_, index) => results[index] !== true)
        .map((store) => store.description);
      if (available) {
        logger.info('memory store responds; serving');
      } else {
        logger.error({ stores: down }, 'memory store does not respond; not serving');
      }
      server.setServing(available);
      serving = available;
    }
  };

  const loop = (): void => {
    void check().finally(() => {
      if (!stopped) {
        timer = setTimeout(loop, intervalMs);
      }
    });
  };
  loop();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
