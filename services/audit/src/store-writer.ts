/**
 * Entry point of the writer thread: owns the one connection that writes,
 * so that SQLite's fsync blocks this thread and not the gRPC event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PreparedAppend } from './append-request.js';
import { AuditStore } from './audit-store.js';
import type { WriterReply, WriterRequest } from './store-writer-thread.js';

const port = parentPort;
if (port === null) {
  throw new Error('store-writer.js runs only as a worker thread');
}

/** Structured clone turns Buffers into plain Uint8Arrays; SQLite stores either, Buffers are kept for clarity. */
function reviveBuffers(item: PreparedAppend): PreparedAppend {
  const toBuffer = (bytes: Uint8Array): Buffer =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    ...item,
    files: item.files.map((file) => ({ ...file, content: toBuffer(file.content) })),
    excerpt:
      item.excerpt === undefined
        ? undefined
        : { stdout: toBuffer(item.excerpt.stdout), stderr: toBuffer(item.excerpt.stderr) },
  };
}

const { databasePath } = workerData as { databasePath: string };
const store = AuditStore.open(databasePath);
port.postMessage({ kind: 'ready', settings: store.settings } satisfies WriterReply);

port.on('message', (request: WriterRequest) => {
  if (request.kind === 'close') {
    store.close();
    port.close();
    return;
  }
  try {
    const outcomes = store.appendBatch(request.items.map(reviveBuffers));
    port.postMessage({ kind: 'written', id: request.id, outcomes } satisfies WriterReply);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown }).code;
    port.postMessage({
      kind: 'failed',
      id: request.id,
      message,
      code: typeof code === 'string' ? code : undefined,
    } satisfies WriterReply);
  }
});
