import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@cordon/service-kit';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join('')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, lines };
}

describe('createLogger', () => {
  it('writes JSON with the service name and level label', () => {
    const { stream, lines } = capture();
    createLogger({ service: 'memory', level: 'info', destination: stream }).info(
      { run_id: 'r1' },
      'run finished',
    );

    expect(lines()).toEqual([
      expect.objectContaining({
        service: 'memory',
        level: 'info',
        msg: 'run finished',
        run_id: 'r1',
      }),
    ]);
  });

  it('censors secrets, code, stdin, environment and memory values', () => {
    const { stream, lines } = capture();
    const logger = createLogger({ service: 'executor', level: 'info', destination: stream });

    logger.info(
      {
        authorization: 'Bearer abc',
        request: {
          files: [{ path: 'a.py' }],
          stdin: 'input',
          env: { KEY: 'v' },
          runtime: 'python',
        },
        value: 'agent memory',
        agent: { token: 't0ken' },
      },
      'rpc received',
    );

    const [line] = lines();
    expect(line).toMatchObject({
      authorization: '[redacted]',
      request: { files: '[redacted]', stdin: '[redacted]', env: '[redacted]', runtime: 'python' },
      value: '[redacted]',
      agent: { token: '[redacted]' },
    });
    expect(JSON.stringify(line)).not.toMatch(/abc|input|agent memory|t0ken/);
  });
});
