import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  killLeftoverProcesses,
  startServiceProcess,
} from '../../../test/support/service-process.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

afterEach(async () => {
  await killLeftoverProcesses();
});

describe('executor configuration', () => {
  it.each([
    [
      'a default above its maximum',
      { CORDON_MAX_MEMORY_BYTES: '128m' },
      'cordon-executor: invalid configuration: CORDON_DEFAULT_MEMORY_BYTES (268435456) is above CORDON_MAX_MEMORY_BYTES (134217728); lower the default or raise the maximum',
    ],
    [
      'a maximum that is not a size',
      { CORDON_MAX_MEMORY_BYTES: 'lots' },
      'cordon-executor: invalid configuration: CORDON_MAX_MEMORY_BYTES="lots" is invalid: expected a size from 16MiB to 64GiB, in bytes or with a unit such as 64k, 16m or 1g',
    ],
    [
      'an unknown OCI runtime',
      { CORDON_DOCKER_RUNTIME: 'kata' },
      'cordon-executor: invalid configuration: CORDON_DOCKER_RUNTIME="kata" is invalid: expected one of runc, runsc',
    ],
    [
      'a warm pool larger than allowed',
      { CORDON_WARM_POOL_SIZE: 'python=65' },
      'cordon-executor: invalid configuration: CORDON_WARM_POOL_SIZE="python=65" is invalid: expected a count from 0 to 64 for every runtime and/or runtime=count pairs, comma-separated, e.g. "2" or "2,java=0"',
    ],
    [
      'a warm pool for a runtime the catalog lacks',
      { CORDON_WARM_POOL_SIZE: '1,ruby=2' },
      'cordon-executor: invalid configuration: CORDON_WARM_POOL_SIZE names the runtime ruby, which the catalog does not have; known runtimes: python, javascript, java',
    ],
    [
      'an unknown scan policy',
      { CORDON_SCAN_POLICY: 'block:SEVERE' },
      'cordon-executor: invalid configuration: CORDON_SCAN_POLICY="block:SEVERE" is invalid: expected off, report, or block:LOW, block:MEDIUM, block:HIGH or block:CRITICAL',
    ],
  ])('stops with exit 2 on %s', async (_case, env, message) => {
    const executor = startServiceProcess(MAIN, [], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      ...env,
    });

    expect(await executor.exited).toEqual({ code: 2, signal: null });
    expect(executor.stderr()).toBe(`${message}\n`);
  });
});

describe('sandbox availability', () => {
  it('refuses to start when neither Docker nor bubblewrap can run a sandbox', async () => {
    const executor = startServiceProcess(MAIN, [], {
      CORDON_EXECUTOR_ADDRESS: '127.0.0.1:0',
      CORDON_DOCKER_SOCKET: '/nonexistent/docker.sock',
      // Without setpriv and bwrap on the PATH, bubblewrap cannot run either.
      PATH: '/nonexistent',
    });

    expect(await executor.exited).toEqual({ code: 1, signal: null });
    const fatal = executor.logs.find((line) => line.msg === 'service failed to start');
    expect((fatal?.['err'] as { message: string }).message).toMatch(
      /^no sandbox is available: the Docker engine at \/nonexistent\/docker\.sock does not respond and bubblewrap cannot run \(.+\); install and start Docker \(apt-get install docker\.io\) or install bubblewrap \(apt-get install bubblewrap\)$/,
    );
  });
});
