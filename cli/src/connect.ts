import { createCordonClient, type CordonClient } from '@cordon/client';
import type { Terminal } from './terminal.js';

/** Opens the client for a command; --address beats CORDON_ADDRESS and the per-service variables. */
export function connect(address: string | undefined, terminal: Terminal): CordonClient {
  return createCordonClient({
    env: terminal.env,
    ...(address === undefined ? {} : { address }),
  });
}
