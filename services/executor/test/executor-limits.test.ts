import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  python,
  RunStatus,
  startExecutor,
  TEST_DRIVER,
  TEST_RUNTIME,
  type ExecutorUnderTest,
} from './executor-harness.js';

/**
 * gVisor (runsc 20221219, Debian's package) loses stdout beyond 64 KiB that
 * a program writes just before it exits, with plain `docker run` as well, so
 * tests of large output at exit cannot pass under it.
 */
const GVISOR = TEST_RUNTIME === 'runsc';

/** Time the executor may take beyond a wall-clock limit to notice and kill: timer, cgroup read, kill. */
const WALL_GRACE_MS = 1000;

/**
 * The same for a sandbox full of forking processes. gVisor stops each of
 * them itself, and on a machine busy with other suites that has taken up to
 * 2.3 s past the limit.
 */
const FORK_BOMB_GRACE_MS = GVISOR ? 3000 : WALL_GRACE_MS;

let executor: ExecutorUnderTest;

/** Peak resident set of a process, from /proc (VmHWM). */
function peakRssBytes(pid: number | undefined): number {
  const line = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('VmHWM:'));
  return Number(line?.split(/\s+/)[1] ?? 0) * 1024;
}

beforeAll(async () => {
  executor = await startExecutor({
    CORDON_MAX_CONCURRENT_RUNS: '4',
    CORDON_MAX_OUTPUT_BYTES: '256m',
  });
});

afterAll(async () => {
  const leftovers = await executor.leftoverRunContainers();
  await executor.stop();
  expect(leftovers, 'containers left behind by the executor').toEqual([]);
});

describe('wall-clock limit', () => {
  it('kills the whole process tree, detached children included', async () => {
    const result = await executor.run(
      python(
        [
          'import os, signal, sys, time',
          'if os.fork() == 0:',
          '    os.setsid()',
          '    if os.fork() == 0:',
          '        time.sleep(600)',
          '    os._exit(0)',
          'if os.fork() == 0:',
          '    os.setpgid(0, 0)',
          '    os.kill(0, signal.SIGSTOP)',
          'print("before the limit", flush=True)',
          'time.sleep(600)',
        ].join('\n'),
        { limits: { wallTimeMs: 1500 } },
      ),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_WALL_TIMEOUT);
    expect(result.exited?.message).toBe('killed at the run wall-clock limit of 1500 ms');
    expect(result.stdout.toString()).toBe('before the limit\n');
    expect(result.exited?.wallTimeMs).toBeGreaterThanOrEqual(1500);
    expect(result.exited?.wallTimeMs).toBeLessThan(1500 + WALL_GRACE_MS);
    expect(await executor.leftoverRunContainers()).toEqual([]);
  });
});

describe('CPU-time limit', () => {
  it('ends a busy loop with CPU_TIMEOUT', async () => {
    const result = await executor.run(
      python('while True:\n    pass', { limits: { cpuTimeMs: 800, wallTimeMs: 10_000 } }),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_CPU_TIMEOUT);
    expect(result.exited?.cpuTimeMs).toBeGreaterThanOrEqual(800);
    expect(result.exited?.cpuTimeMs).toBeLessThan(1500);
    expect(result.exited?.wallTimeMs).toBeLessThan(3000);
  });

  it('leaves a sleeping program to the wall-clock limit', async () => {
    const result = await executor.run(
      python('import time\ntime.sleep(60)', { limits: { cpuTimeMs: 300, wallTimeMs: 1200 } }),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_WALL_TIMEOUT);
    expect(result.exited?.cpuTimeMs).toBeLessThan(300);
  });
});

describe('memory limit', () => {
  const allocate = 'chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))';

  it('ends a program that keeps allocating with MEMORY_LIMIT', async () => {
    const result = await executor.run(
      python(allocate, { limits: { memoryBytes: 64 * 1024 ** 2 } }),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_MEMORY_LIMIT);
    expect(result.exited?.message).toBe('out of memory at the limit of 67108864 bytes');
    expect(result.exited?.peakMemoryBytes).toBeGreaterThan(60 * 1024 ** 2);
    expect(result.stderr.toString()).toBe('');
  });

  it('reports the OOM when the program was started through a shell', async () => {
    const result = await executor.run(
      python(
        `import subprocess, sys\ncode = ${JSON.stringify(allocate)}\nsys.exit(subprocess.call(["sh", "-c", 'exec python3 -c "$0"', code]) and 1)`,
        { limits: { memoryBytes: 64 * 1024 ** 2 } },
      ),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_MEMORY_LIMIT);
    // Under gVisor the kernel OOM killer ends the whole sandbox, whose kernel
    // is one host process, so no exit status of the program survives.
    expect(result.exited?.exitCode).toBe(GVISOR ? undefined : 1);
  });

  it('reports a program that kills itself with SIGKILL as a runtime error', async () => {
    const result = await executor.run(
      python('import os, signal\nos.kill(os.getpid(), signal.SIGKILL)'),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_RUNTIME_ERROR);
    expect(result.exited?.signal).toBe(9);
    expect(result.exited?.exitCode).toBeUndefined();
    expect(result.stderr.toString()).toBe('');
  });

  it('runs a small Java program at 256 MiB', async () => {
    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Main.java',
          content: Buffer.from(
            'public class Main { public static void main(String[] a) { System.out.println("java ok"); } }',
          ),
        },
      ],
      limits: { memoryBytes: 256 * 1024 ** 2 },
    });

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout.toString()).toBe('java ok\n');
  });

  it('ends a Java heap bomb with MEMORY_LIMIT, not a start-up failure', async () => {
    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Main.java',
          content: Buffer.from(
            'import java.util.*;\npublic class Main { public static void main(String[] a) { List<long[]> l = new ArrayList<>(); System.out.println("started"); while (true) l.add(new long[1 << 20]); } }',
          ),
        },
      ],
      limits: { memoryBytes: 256 * 1024 ** 2 },
    });

    expect(result.stdout.toString()).toBe('started\n');
    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_MEMORY_LIMIT);
  });
});

describe('process limit', () => {
  it('ends a fork bomb without disturbing a run started beside it', async () => {
    const bomb = executor.run(
      python(
        'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass',
        {
          limits: { maxProcesses: 32, wallTimeMs: 3000 },
        },
      ),
    );
    const neighbour = executor.run(python('import time\ntime.sleep(0.5)\nprint("neighbour ok")'));

    const [bombResult, neighbourResult] = await Promise.all([bomb, neighbour]);

    // Under gVisor each sandboxed process costs host threads, so a fork bomb
    // can end the whole sandbox before RLIMIT_NPROC stops it; whichever comes
    // first varies from run to run.
    if (GVISOR) {
      expect([RunStatus.RUN_STATUS_WALL_TIMEOUT, RunStatus.RUN_STATUS_INTERNAL_ERROR]).toContain(
        bombResult.exited?.status,
      );
    } else {
      expect(bombResult.exited?.status).toBe(RunStatus.RUN_STATUS_WALL_TIMEOUT);
    }
    expect(bombResult.exitedMs).toBeLessThan(3000 + FORK_BOMB_GRACE_MS);
    expect(neighbourResult.stdout.toString()).toBe('neighbour ok\n');
    expect(neighbourResult.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
  });

  it('allows exactly max_processes processes', async () => {
    const result = await executor.run(
      python(
        [
          'import os, time',
          'children = 0',
          'while True:',
          '    try:',
          '        pid = os.fork()',
          '    except OSError as e:',
          '        print(children, e.strerror)',
          '        break',
          '    if pid == 0:',
          '        time.sleep(30)',
          '        os._exit(0)',
          '    children += 1',
        ].join('\n'),
        { limits: { maxProcesses: 8, wallTimeMs: 5000 } },
      ),
    );

    expect(result.stdout.toString()).toBe('7 Resource temporarily unavailable\n');
  });

  it('reaps orphaned children so no zombies pile up', async () => {
    const result = await executor.run(
      python(
        [
          'import os, time',
          'for _ in range(20):',
          '    if os.fork() == 0:',
          '        if os.fork() == 0:',
          '            os._exit(0)',
          '        os._exit(0)',
          'time.sleep(0.5)',
          'while True:',
          '    try:',
          '        os.wait()',
          '    except ChildProcessError:',
          '        break',
          'zombies = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().split(") ")[1][0] == "Z"]',
          'print(len(zombies))',
        ].join('\n'),
      ),
    );

    expect(result.stdout.toString()).toBe('0\n');
  });
});

describe('output limit', () => {
  it('stops output at exactly max_output_bytes, stdout and stderr together', async () => {
    const result = await executor.run(
      python(
        'import sys\nwhile True:\n    sys.stdout.write("o" * 1000)\n    sys.stderr.write("e" * 1000)',
        {
          limits: { maxOutputBytes: 10_000 },
        },
      ),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OUTPUT_LIMIT);
    expect(result.exited?.outputTruncated).toBe(true);
    expect(result.stdout.length + result.stderr.length).toBe(10_000);
    expect(result.exited?.stdoutBytes).toBe(result.stdout.length);
    expect(result.exited?.stderrBytes).toBe(result.stderr.length);
    expect(result.exited?.message).toBe('killed at the output limit of 10000 bytes');
  });

  it('accepts output of exactly max_output_bytes', async () => {
    const result = await executor.run(
      python('print("x" * 999)', { limits: { maxOutputBytes: 1000 } }),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout.length).toBe(1000);
    expect(result.exited?.outputTruncated).toBe(false);
  });

  it.skipIf(GVISOR)('keeps the executor memory far below the output it streams', async () => {
    const peakBefore = peakRssBytes(executor.process.child.pid);
    let received = 0;
    const result = await executor.run(
      python(
        'import sys\nchunk = b"y" * (1 << 20)\nfor _ in range(256):\n    sys.stdout.buffer.write(chunk)',
        {
          limits: { maxOutputBytes: 256 * 1024 ** 2 },
        },
      ),
      { onOutput: (data) => (received += data.length), keepOutput: false },
    );
    const growth = peakRssBytes(executor.process.child.pid) - peakBefore;

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(received).toBe(256 * 1024 ** 2);
    expect(result.exited?.stdoutBytes).toBe(256 * 1024 ** 2);
    expect(growth).toBeLessThan(64 * 1024 ** 2);
  });

  it('does not count a large file in /tmp as output', async () => {
    const result = await executor.run(
      python('open("/tmp/big", "wb").write(b"x" * (8 << 20))\nprint("written")', {
        limits: { maxOutputBytes: 100 },
      }),
    );

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout.toString()).toBe('written\n');
  });
});

describe('tmp and file limits', () => {
  it('fails /tmp writes past tmp_bytes with ENOSPC', async () => {
    const writer = await executor.run(
      python(
        'import errno, os\ntry:\n    with open("/tmp/fill", "wb") as f:\n        f.write(b"x" * (8 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])',
        { limits: { tmpBytes: 4 * 1024 ** 2 } },
      ),
    );
    const reader = await executor.run(python('import os\nprint(os.listdir("/tmp"))'));

    expect(writer.stdout.toString()).toBe('ENOSPC\n');
    expect(reader.stdout.toString()).toBe('[]\n');
  });

  it('allows a file of exactly max_file_bytes and fails one byte more with EFBIG', async () => {
    const result = await executor.run(
      python(
        [
          'import errno',
          'open("/tmp/exact", "wb").write(b"x" * 100000)',
          'print("exact ok")',
          'try:',
          '    with open("/tmp/over", "wb") as f:',
          '        f.write(b"x" * 100001)',
          'except OSError as e:',
          '    print(errno.errorcode[e.errno])',
        ].join('\n'),
        { limits: { maxFileBytes: 100_000 } },
      ),
    );

    expect(result.stdout.toString()).toBe('exact ok\nEFBIG\n');
  });

  it('limits open files to max_open_files', async () => {
    const result = await executor.run(
      python(
        'import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))\nfiles = []\ntry:\n    while True:\n        files.append(open("/dev/null"))\nexcept OSError as e:\n    print(e.strerror)',
        { limits: { maxOpenFiles: 32 } },
      ),
    );

    expect(result.stdout.toString()).toBe('(32, 32)\nToo many open files\n');
  });
});

describe('network', () => {
  let listener: Server;
  let accepted = 0;

  beforeAll(async () => {
    listener = createServer((socket) => {
      accepted += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  });

  afterAll(() => {
    listener.close();
  });

  it('has only the loopback interface and cannot reach a host listener', async () => {
    const address = listener.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const result = await executor.run(
      python(
        [
          'import socket',
          'print(sorted(name for _, name in socket.if_nameindex()))',
          'try:',
          `    socket.create_connection(("127.0.0.1", ${port}), timeout=2)`,
          '    print("connected")',
          'except OSError as e:',
          '    print(type(e).__name__)',
        ].join('\n'),
      ),
    );

    expect(result.stdout.toString()).toBe("['lo']\nConnectionRefusedError\n");
    expect(accepted).toBe(0);
  });
});

describe('privilege', () => {
  it('runs as the non-root user with no capabilities and a read-only system', async () => {
    const result = await executor.run(
      python(
        [
          'import os',
          'print(os.getuid(), os.getgid())',
          'status = dict(l.split(":", 1) for l in open("/proc/self/status"))',
          'print(status["CapEff"].strip(), status.get("NoNewPrivs", "absent").strip())',
          'for path in ["/x", "/usr/x", "/etc/x"]:',
          '    try:',
          '        open(path, "w")',
          '        print(path, "writable")',
          '    except OSError as e:',
          '        print(path, e.strerror)',
          'setuid = [os.path.join(d, f) for top in ["/bin", "/sbin", "/usr"] for d, _, fs in os.walk(top) for f in fs',
          '          if os.path.isfile(os.path.join(d, f)) and os.stat(os.path.join(d, f)).st_mode & 0o6000]',
          'print("setuid files:", len(setuid))',
        ].join('\n'),
      ),
    );

    // Bubblewrap shows the host's /usr, setuid files included; no_new_privs keeps them harmless.
    const setuidFiles =
      TEST_DRIVER === 'process' ? /^setuid files: [1-9]\d*$/ : /^setuid files: 0$/;
    const lines = result.stdout.toString().split('\n');
    expect(lines.splice(5, 1)[0]).toMatch(setuidFiles);
    expect(lines.join('\n')).toBe(
      [
        '10001 10001',
        // gVisor's /proc/self/status has no NoNewPrivs line.
        `0000000000000000 ${GVISOR ? 'absent' : '1'}`,
        // gVisor checks permissions before the read-only mount.
        ...['/x', '/usr/x', '/etc/x'].map(
          (path) => `${path} ${GVISOR ? 'Permission denied' : 'Read-only file system'}`,
        ),
        '',
      ].join('\n'),
    );
  });
});

describe('Java', () => {
  it('reports a type error as COMPILE_ERROR and never starts the run phase', async () => {
    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Main.java',
          content: Buffer.from(
            'public class Main { public static void main(String[] a) { int x = "text"; } }',
          ),
        },
      ],
    });

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_COMPILE_ERROR);
    expect(result.compileStderr.toString()).toContain(
      'error: incompatible types: String cannot be converted to int',
    );
    expect(result.stdout.length + result.stderr.length).toBe(0);
    expect(result.exited?.exitCode).toBe(1);
  });

  it('runs a public class that is not Main, with two top-level classes', async () => {
    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Greeter.java',
          content: Buffer.from(
            'class Helper { static String name() { return "helper"; } }\npublic class Greeter { public static void main(String[] a) { System.out.println("hello from " + Helper.name() + " " + a[0]); } }',
          ),
        },
      ],
      args: ['arg'],
    });

    expect(result.exited?.status).toBe(RunStatus.RUN_STATUS_OK);
    expect(result.stdout.toString()).toBe('hello from helper arg\n');
  });

  it('rejects a public class in a file of another name', async () => {
    const result = await executor.run({
      runtime: 'java',
      files: [
        {
          path: 'Main.java',
          content: Buffer.from('public class Other { public static void main(String[] a) {} }'),
        },
      ],
    });

    expect(result.error?.details).toBe(
      'entrypoint: Main.java declares public class Other, so javac requires the file to be named Other.java',
    );
  });
});
