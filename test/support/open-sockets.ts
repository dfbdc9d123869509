import { afterAll } from 'vitest';
import { removeTestKeyFile } from './test-tokens.js';

// Registered first, so it runs after every other after-all hook of the file.
afterAll(() => {
  removeTestKeyFile();
});

/** TCP handles, open only while a connection or a listener is open. */
const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TCPWRAP']);

function openSockets(): number {
  return process.getActiveResourcesInfo().filter((resource) => SOCKET_RESOURCES.has(resource))
    .length;
}

/**
 * Fails a test file that leaves a gRPC channel or another TCP socket open
 * after its own teardown. Runs last, because vitest runs the after-all hooks
 * of a file in the reverse order they were registered.
 */
afterAll(async () => {
  const deadline = Date.now() + 3000;
  while (openSockets() > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const open = openSockets();
  if (open > 0) {
    throw new Error(
      `${open} TCP socket(s) are still open after the file's teardown; close every gRPC client and server the tests opened`,
    );
  }
});
