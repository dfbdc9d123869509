import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// These tests build the real images with sandbox-images/build (as root, with a Docker engine and
// Debian's mirror reachable) and run real containers. A first build takes minutes. Later runs
// find the images by tag and skip building.

interface CatalogRuntime {
  id: string;
  displayName: string;
  language: string;
  languageVersion: string;
  image: string;
  extensions: string[];
  entrypoint: 'file' | 'public-class';
  compile: string[] | null;
  run: string[];
  versionCommand: string[];
}

interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

const imagesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const catalog = JSON.parse(
  readFileSync(path.join(imagesDir, 'catalog.json'), 'utf8'),
) as CatalogRuntime[];

const testLabel = 'cordon.test=sandbox-images';
const sandboxUid = 10001;
const buildTimeoutMs = 45 * 60 * 1000;
const containerTimeoutMs = 60 * 1000;

// The isolation baseline of an executor run, with the limits a small program needs.
const hardenedFlags = [
  '--network',
  'none',
  '--memory',
  '256m',
  '--memory-swap',
  '256m',
  '--pids-limit',
  '64',
  '--read-only',
  '--tmpfs',
  `/work:rw,size=64m,uid=${sandboxUid},gid=${sandboxUid},mode=0700`,
  '--tmpfs',
  '/tmp:rw,size=16m',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
];

const helloPrograms: Record<string, { entry: string; source: string }> = {
  python: {
    entry: 'hello.py',
    source: 'import os\nprint(f"hello from uid {os.getuid()}")\n',
  },
  javascript: {
    entry: 'hello.js',
    source: 'console.log(`hello from uid ${process.getuid()}`);\n',
  },
  java: {
    entry: 'Hello.java',
    source: [
      'public class Hello {',
      '  public static void main(String[] args) {',
      '    long uid = new com.sun.security.auth.module.UnixSystem().getUid();',
      '    System.out.println("hello from uid " + uid);',
      '  }',
      '}',
      '',
    ].join('\n'),
  },
};

// Each runtime's own version flags, the stream they print on, and a pattern whose first group is
// the version.
const versionProbes: Record<
  string,
  { command: string[]; stream: 'stdout' | 'stderr'; pattern: RegExp }[]
> = {
  python: [{ command: ['python3', '--version'], stream: 'stdout', pattern: /^Python (\S+)\n$/ }],
  javascript: [{ command: ['node', '--version'], stream: 'stdout', pattern: /^v(\S+)\n$/ }],
  java: [
    { command: ['java', '-version'], stream: 'stderr', pattern: /^openjdk version "([^"]+)"/ },
    { command: ['javac', '-version'], stream: 'stdout', pattern: /^javac (\S+)\n$/ },
  ],
};

function runCommand(command: string, args: readonly string[], input?: Buffer): CommandResult {
  const result = spawnSync(command, args, {
    input,
    encoding: 'utf8',
    timeout: containerTimeoutMs,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (result.error !== undefined) {
    throw new Error(`${command} ${args.join(' ')} failed to run`, { cause: result.error });
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function dockerRun(options: readonly string[], image: string, command: readonly string[]) {
  return runCommand('docker', ['run', '--rm', '--label', testLabel, ...options, image, ...command]);
}

function imageTag(runtime: CatalogRuntime): string {
  return execFileSync(path.join(imagesDir, 'recipe-hash'), [runtime.id], {
    encoding: 'utf8',
  }).trim();
}

function shellQuote(argument: string): string {
  return `'${argument.replaceAll("'", `'\\''`)}'`;
}

// Expands a catalog command template by the placeholder rules in README.md: {entry} is the entry
// file's path in the container, {files} one argument per source file, and {entryClass} the
// entry's path relative to /work without its extension and with `/` as `.`.
function expandCommand(template: readonly string[], entry: string, files: readonly string[]) {
  const entryClass = entry.replace(/\.[^./]+$/, '').replaceAll('/', '.');
  return template.flatMap((argument) => {
    if (argument === '{files}') {
      return files.map((file) => `/work/${file}`);
    }
    return [
      argument.replaceAll('{entry}', `/work/${entry}`).replaceAll('{entryClass}', entryClass),
    ];
  });
}

// Copies the files into the container's /work tmpfs as a tar on stdin, then compiles (when the
// runtime has a compile step) and runs the entry file with the catalog's commands.
function runProgram(
  runtime: CatalogRuntime,
  files: Record<string, string>,
  entry: string,
): CommandResult {
  const sourceDir = mkdtempSync(path.join(tmpdir(), 'cordon-images-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(path.join(sourceDir, name), content);
    }
    const names = Object.keys(files);
    const archive = execFileSync('tar', ['-c', '-C', sourceDir, ...names]);

    const steps = ['tar -x -C /work -f -'];
    if (runtime.compile !== null) {
      steps.push(expandCommand(runtime.compile, entry, names).map(shellQuote).join(' '));
    }
    steps.push(`exec ${expandCommand(runtime.run, entry, names).map(shellQuote).join(' ')}`);

    return runCommand(
      'docker',
      [
        'run',
        '--rm',
        '-i',
        '--label',
        testLabel,
        ...hardenedFlags,
        imageTag(runtime),
        'sh',
        '-c',
        steps.join(' && '),
      ],
      archive,
    );
  } finally {
    rmSync(sourceDir, { recursive: true, force: true });
  }
}

function runBuilder(): CommandResult {
  const result = spawnSync(path.join(imagesDir, 'build'), [], {
    encoding: 'utf8',
    timeout: buildTimeoutMs,
  });
  if (result.error !== undefined) {
    throw new Error('sandbox-images/build failed to run', { cause: result.error });
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('sandbox images', () => {
  beforeAll(() => {
    const build = runBuilder();
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
  }, buildTimeoutMs);

  afterAll(() => {
    const leftovers = runCommand('docker', ['ps', '-a', '-q', '--filter', `label=${testLabel}`]);
    expect(leftovers.stdout).toBe('');
  });

  for (const runtime of catalog) {
    it(
      `${runtime.id} runs hello as uid ${sandboxUid}`,
      () => {
        const hello = helloPrograms[runtime.id];
        if (hello === undefined) {
          throw new Error(`no hello program for runtime ${runtime.id}; add one to helloPrograms`);
        }

        const result = runProgram(runtime, { [hello.entry]: hello.source }, hello.entry);

        expect(result.stderr).toBe('');
        expect(result.stdout).toBe(`hello from uid ${sandboxUid}\n`);
        expect(result.status).toBe(0);
      },
      containerTimeoutMs,
    );

    it(
      `${runtime.id} has no setuid or setgid file`,
      () => {
        const result = dockerRun(['--network', 'none', '--user', '0'], imageTag(runtime), [
          'find',
          '/',
          '-xdev',
          '-perm',
          '/6000',
          '-type',
          'f',
        ]);

        expect(result.stdout).toBe('');
        expect(result.status).toBe(0);
      },
      containerTimeoutMs,
    );

    it(
      `${runtime.id} reports the catalog's language version`,
      () => {
        const probes = versionProbes[runtime.id];
        if (probes === undefined) {
          throw new Error(`no version probe for runtime ${runtime.id}; add one to versionProbes`);
        }
        const tag = imageTag(runtime);

        for (const probe of probes) {
          const result = dockerRun(['--network', 'none'], tag, probe.command);
          const version = probe.pattern.exec(result[probe.stream])?.[1];
          expect(version, probe.command.join(' ')).toBe(runtime.languageVersion);
        }

        const label = runCommand('docker', [
          'image',
          'inspect',
          '--format',
          '{{ index .Config.Labels "io.cordon.language-version" }}',
          tag,
        ]);
        expect(label.stdout.trim()).toBe(runtime.languageVersion);
      },
      containerTimeoutMs,
    );

    it(
      `${runtime.id} carries its runtime and recipe labels`,
      () => {
        const tag = imageTag(runtime);

        const labels = runCommand('docker', [
          'image',
          'inspect',
          '--format',
          '{{json .Config.Labels}}',
          tag,
        ]);
        const parsed = JSON.parse(labels.stdout) as Record<string, string>;

        expect(tag.startsWith(`${runtime.image}:`)).toBe(true);
        expect(parsed['io.cordon.runtime']).toBe(runtime.id);
        expect(parsed['io.cordon.recipe-hash']).toBe(tag.slice(runtime.image.length + 1));
      },
      containerTimeoutMs,
    );

    it(
      `${runtime.id} has no compiler, make or apt`,
      () => {
        const script =
          'for name in gcc cc c++ make apt apt-get; do command -v "$name" || true; done';

        const result = dockerRun(['--network', 'none'], imageTag(runtime), ['sh', '-c', script]);

        expect(result.stdout).toBe('');
        expect(result.status).toBe(0);
      },
      containerTimeoutMs,
    );

    it(
      `${runtime.id} reaps orphans with tini as PID 1`,
      () => {
        // The subshell exits at once, so `sleep 0.2` becomes an orphan that only PID 1 can reap.
        const script = '(sleep 0.2 &); sleep 1; cat /proc/1/comm; cat /proc/[0-9]*/stat';

        const result = dockerRun(['--network', 'none'], imageTag(runtime), ['sh', '-c', script]);
        const [initName, ...processes] = result.stdout.trim().split('\n');
        const zombies = processes.filter((line) => / Z /.test(line));

        expect(initName).toBe('tini');
        expect(zombies).toEqual([]);
        expect(result.status).toBe(0);
      },
      containerTimeoutMs,
    );
  }

  it(
    'java compiles and runs a two-class program',
    () => {
      const java = catalog.find((runtime) => runtime.id === 'java');
      if (java === undefined) {
        throw new Error('catalog.json has no java runtime');
      }
      const files = {
        'Main.java': [
          'public class Main {',
          '  public static void main(String[] args) {',
          '    System.out.println(Helper.greet("Grüße"));',
          '  }',
          '}',
          '',
        ].join('\n'),
        'Helper.java': [
          'public class Helper {',
          '  static String greet(String greeting) {',
          '    return greeting + " from Helper";',
          '  }',
          '}',
          '',
        ].join('\n'),
      };

      const result = runProgram(java, files, 'Main.java');

      // An empty stderr also shows that no JVM option banner ("Picked up ...") was printed.
      expect(result.stderr).toBe('');
      expect(result.stdout).toBe('Grüße from Helper\n');
      expect(result.status).toBe(0);
    },
    containerTimeoutMs,
  );

  it(
    'builder skips every image on a second run',
    () => {
      const result = runBuilder();
      const lines = result.stdout.trim().split('\n');

      expect(result.status).toBe(0);
      expect(lines).toHaveLength(catalog.length);
      for (const runtime of catalog) {
        expect(lines).toContain(`${imageTag(runtime)} up to date, skipped`);
      }
      expect(result.stdout).not.toContain('built in');
    },
    buildTimeoutMs,
  );
});
