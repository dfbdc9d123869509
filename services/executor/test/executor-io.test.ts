import { createHash, randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { executorV1 } from '@cordon/proto';
import { checkHealthDetails } from '../../../test/support/grpc-probes.js';
import {
  containersCreatedSince,
  python,
  RunStatus,
  startExecutor,
  TEST_DRIVER,
  TEST_ISOLATION,
  TEST_RUNTIME,
  type ExecutorUnderTest,
} from './executor-harness.js';

let executor: ExecutorUnderTest;

beforeAll(async () => {
  executor = await startExecutor({ CANARY_SECRET: 'canary-4711', CORDON_MAX_CONCURRENT_RUNS: '4' });
});

afterAll(async () => {
  const leftovers = await executor.leftoverRunContainers();
  await executor.stop();
  expect(leftovers, 'containers left behind by the executor').toEqual([]);
});

describe('output', () => {
  it('delivers stdout and stderr separately and byte-exact', async () => {
    const result = await executor.run(
      python(
        [
          'import sys, time',
          'out, err = sys.stdout.buffer, sys.stderr.buffer',
          'out.write(b"\\xe2\\x82"); out.flush(); time.sleep(0.2)',
          'out.write(b"\\xac\\n"); out.flush()',
          'err.write("ünïcödé\\n".encode()); err.flush()',
          'out.write(b"no newline at the end")',
        ].join('\n'),
      ),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout).toEqual(Buffer.from('€\nno newline at the end'));
    expect(result.stderr).toEqual(Buffer.from('ünïcödé\n'));
    expect(result.exited?.stdoutBytes).toBe(25);
    expect(result.exited?.stderrBytes).toBe(Buffer.byteLength('ünïcödé\n'));
  });

  // gVisor (runsc 20221219) loses stdout beyond 64 KiB written just before exit.
  it.skipIf(TEST_RUNTIME === 'runsc')('keeps a 1 MiB line without a newline intact', async () => {
    const result = await executor.run(python('import sys\nsys.stdout.write("x" * (1 << 20))'));

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout.length).toBe(1 << 20);
    expect(result.stdout.equals(Buffer.alloc(1 << 20, 'x'))).toBe(true);
    expect(result.exited?.outputTruncated).toBe(false);
  });

  it('loses no tail in 100 programs that exit right after writing', async () => {
    const program = python(
      'import sys\nsys.stdout.write("out-tail")\nsys.stderr.write("err-tail")',
    );
    const results = [];
    for (let batch = 0; batch < 25; batch += 1) {
      results.push(...(await Promise.all([1, 2, 3, 4].map(() => executor.run(program)))));
    }

    expect(results).toHaveLength(100);
    for (const result of results) {
      expect(result.error).toBeUndefined();
      expect(result.stdout.toString()).toBe('out-tail');
      expect(result.stderr.toString()).toBe('err-tail');
      expect(result.exited?.exitCode).toBe(0);
    }
  });

  it('streams output while the program runs', async () => {
    const result = await executor.run(
      python(
        'import time\nfor i in range(5):\n    print(f"line {i}", flush=True)\n    time.sleep(0.2)',
      ),
    );

    expect(result.stdout.toString()).toBe('line 0\nline 1\nline 2\nline 3\nline 4\n');
    expect(result.firstOutputMs).toBeDefined();
    expect(result.exitedMs! - result.firstOutputMs!).toBeGreaterThan(700);
  });
});

describe('stdin', () => {
  it('delivers stdin whole and then closes it', async () => {
    const stdin = randomBytes(3 * 1024 * 1024);
    const result = await executor.run(
      python(
        'import sys, hashlib\ndata = sys.stdin.buffer.read()\nprint(len(data), hashlib.sha256(data).hexdigest())',
        { stdin },
      ),
    );

    expect(result.stdout.toString()).toBe(
      `${stdin.length} ${createHash('sha256').update(stdin).digest('hex')}\n`,
    );
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
  });

  it('reads empty stdin as end of file at once', async () => {
    const result = await executor.run(
      python('import sys\nprint(repr(sys.stdin.read()))', { limits: { wallTimeMs: 5000 } }),
    );

    expect(result.stdout.toString()).toBe("''\n");
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.exited?.wallTimeMs).toBeLessThan(2000);
  });
});

describe('files', () => {
  it('accepts spaces and Unicode letters in paths', async () => {
    const result = await executor.run({
      runtime: 'python',
      entrypoint: 'app/main entry.py',
      files: [
        {
          path: 'app/main entry.py',
          content: Buffer.from(
            'import sys\nsys.path.insert(0, "pkg")\nimport grüße\nprint(grüße.hello())',
          ),
        },
        { path: 'pkg/grüße.py', content: Buffer.from('def hello():\n    return "hallo"') },
      ],
    });

    expect(result.stdout.toString()).toBe('hallo\n');
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
  });

  it.each([
    [
      '/etc/passwd',
      'files[0].path: "/etc/passwd" is absolute; give a path relative to the work folder',
    ],
    [
      '../escape.py',
      'files[0].path: "../escape.py" contains a ".." segment; paths must stay inside the work folder',
    ],
    [
      'a/../../b.py',
      'files[0].path: "a/../../b.py" contains a ".." segment; paths must stay inside the work folder',
    ],
    ['a//b.py', 'files[0].path: "a//b.py" has an empty segment; remove doubled or trailing "/"'],
    ['dir/', 'files[0].path: "dir/" has an empty segment; remove doubled or trailing "/"'],
    ['', 'files[0].path: is empty; give a relative path such as main.py'],
    [
      'bad\u0000name.py',
      'files[0].path: contains a NUL or control character; use printable characters only',
    ],
    [
      'bad\nname.py',
      'files[0].path: contains a NUL or control character; use printable characters only',
    ],
    [`${'n'.repeat(256)}.py`, 'files[0].path: has a name longer than 255 bytes'],
    [`${'d/'.repeat(600)}x.py`, 'files[0].path: is longer than 1024 bytes'],
  ])('rejects the path %# before creating anything', async (path, message) => {
    const since = Date.now();
    const result = await executor.run({
      runtime: 'python',
      files: [{ path, content: Buffer.from('print(1)') }],
    });

    expect(result.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(result.error?.details).toBe(message);
    expect(containersCreatedSince(executor.executorId, since)).toBe(0);
  });

  it('rejects more files than the server allows', async () => {
    const files = Array.from({ length: 101 }, (_, index) => ({
      path: `f${index}.py`,
      content: Buffer.from(''),
    }));
    const result = await executor.run({ runtime: 'python', files });

    expect(result.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(result.error?.details).toBe('files: has 101 files; this server accepts at most 100');
  });

  it('rejects a file given twice and a file that is also a folder', async () => {
    const twice = await executor.run({
      runtime: 'python',
      files: [
        { path: 'a.py', content: Buffer.from('') },
        { path: 'a.py', content: Buffer.from('') },
      ],
    });
    const folder = await executor.run({
      runtime: 'python',
      files: [
        { path: 'a', content: Buffer.from('') },
        { path: 'a/b.py', content: Buffer.from('') },
      ],
    });

    expect(twice.error?.details).toBe('files[1].path: "a.py" is given twice');
    expect(folder.error?.details).toBe('files: "a" is both a file and the folder of "a/b.py"');
  });
});

describe('environment', () => {
  it('gives the program only the documented variables and the request env', async () => {
    const result = await executor.run(
      python(
        'import os\nfor key in sorted(os.environ):\n    print(key)\nprint(os.environ["GREETING"])',
        {
          env: { GREETING: 'hello world' },
        },
      ),
    );

    expect(result.stdout.toString()).toBe(
      [
        'GREETING',
        'HOME',
        'HOSTNAME',
        'LANG',
        'PATH',
        'PWD',
        'PYTHONDONTWRITEBYTECODE',
        'PYTHONUNBUFFERED',
        'TMPDIR',
        'hello world',
        '',
      ].join('\n'),
    );
    expect(result.stdout.toString()).not.toContain('canary-4711');
  });

  it.each([
    [
      '1ABC',
      'env.1ABC: is not a valid variable name; use letters, digits and _ and do not start with a digit',
    ],
    [
      'A-B',
      'env.A-B: is not a valid variable name; use letters, digits and _ and do not start with a digit',
    ],
    ['PATH', 'env.PATH: is set by the sandbox and cannot be overridden'],
    ['HOME', 'env.HOME: is set by the sandbox and cannot be overridden'],
    ['LD_PRELOAD', 'env.LD_PRELOAD: is set by the sandbox and cannot be overridden'],
    ['JAVA_TOOL_OPTIONS', 'env.JAVA_TOOL_OPTIONS: is set by the sandbox and cannot be overridden'],
  ])('rejects the variable name %s', async (name, message) => {
    const result = await executor.run(python('print(1)', { env: { [name]: 'x' } }));

    expect(result.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(result.error?.details).toBe(message);
  });
});

describe('bad requests', () => {
  it.each([
    [
      'an unknown runtime',
      { runtime: 'cobol' },
      'runtime: "cobol" is not a runtime of this executor; use one of python, javascript, java',
    ],
    [
      'a missing entrypoint',
      { entrypoint: 'missing.py' },
      'entrypoint: "missing.py" is not the path of a submitted file',
    ],
    [
      'an over-long runtime name, without repeating it whole',
      { runtime: 'r'.repeat(10_000) },
      `runtime: "${'r'.repeat(64)}…" (10000 characters) is not a runtime of this executor; use one of python, javascript, java`,
    ],
    [
      'an over-long client request id',
      { clientRequestId: 'c'.repeat(129) },
      `client_request_id: must be at most 128 characters without control characters; got "${'c'.repeat(64)}…" (129 characters)`,
    ],
    [
      'memory above the maximum',
      { limits: { memoryBytes: 2 * 1024 ** 3 } },
      "limits.memory_bytes: 2147483648 is above this server's maximum 1073741824; lower it or raise CORDON_MAX_MEMORY_BYTES",
    ],
    [
      'a wall clock above the maximum',
      { limits: { wallTimeMs: 300_001 } },
      "limits.wall_time_ms: 300001 is above this server's maximum 300000; lower it or raise CORDON_MAX_WALL_TIME_MS",
    ],
    [
      'too few processes',
      { limits: { maxProcesses: 1 } },
      'limits.max_processes: 1 is below the minimum 2',
    ],
    [
      'oversized files',
      { files: [{ path: 'main.py', content: Buffer.alloc(8 * 1024 * 1024 + 1) }] },
      "files: total 8388609 bytes is above this server's maximum 8388608; send less code or raise CORDON_MAX_SOURCE_BYTES",
    ],
  ])('rejects %s before any container exists', async (_case, override, message) => {
    const since = Date.now();
    const result = await executor.run({ ...python('print(1)'), ...override });

    expect(result.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(result.error?.details).toBe(message);
    expect(result.started).toBeUndefined();
    expect(containersCreatedSince(executor.executorId, since)).toBe(0);
  });

  it('lists its isolation and the protections it lacks', async () => {
    const response = await new Promise<executorV1.ListRuntimesResponse>((resolve, reject) => {
      executor.client.listRuntimes({}, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });

    expect(response.isolation).toBe(TEST_ISOLATION);
    if (TEST_DRIVER === 'process') {
      expect(response.missingProtections).toContain('no seccomp system-call filter');
    } else {
      expect(response.missingProtections).toEqual([]);
    }
  });

  it('names its isolation in every health check', async () => {
    const health = await checkHealthDetails(`127.0.0.1:${executor.process.port}`);

    expect(health.status).toBe('SERVING');
    expect(health.trailers['cordon-isolation']).toBe(TEST_ISOLATION);
    if (TEST_DRIVER === 'process') {
      expect(health.trailers['cordon-missing-protections']).toContain(
        'no seccomp system-call filter',
      );
    } else {
      expect(health.trailers['cordon-missing-protections']).toBe('none');
    }
  });

  it('reports the effective limits in the started event', async () => {
    const result = await executor.run(
      python('print(1)', { limits: { memoryBytes: 128 * 1024 ** 2 } }),
    );

    expect(result.started?.limits).toEqual({
      wallTimeMs: 10_000,
      cpuTimeMs: 10_000,
      memoryBytes: 128 * 1024 ** 2,
      maxProcesses: 64,
      maxOutputBytes: 1024 ** 2,
      tmpBytes: 64 * 1024 ** 2,
      maxOpenFiles: 256,
      maxFileBytes: 64 * 1024 ** 2,
    });
    expect(result.started?.isolation).toBe(TEST_ISOLATION);
    if (TEST_DRIVER === 'process') {
      // Bubblewrap runs the host's runtimes, so there is no image.
      expect(result.started?.image).toEqual({ tag: 'host', digest: '' });
    } else {
      expect(result.started?.image?.tag).toMatch(/^cordon-sandbox-python:[0-9a-f]{12}$/);
      expect(result.started?.image?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    expect(result.started?.traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});
