// Starts the four Cordon services as separate processes on loopback, mints
// a development token the CLI and the client find by themselves, waits until
// each service passes its health check and prints how to reach it. With
// --examples it then runs every example of examples/ through the CLI. The
// mesh runs until Ctrl-C or SIGTERM, which stops all services.
//
// Usage: node scripts/start-mesh.mjs [--examples]   (npm start [-- --examples])
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { executorV1 } from '@cordon/proto';
import {
  createToken,
  createTokenKeyFile,
  defaultStatePath,
  TOKEN_KEY_FILE_VARIABLE,
} from '@cordon/service-kit';

const root = fileURLToPath(new URL('..', import.meta.url));
const CORDON_BIN = join(root, 'cli', 'bin', 'cordon.js');
const SERVICES = [
  { name: 'audit', variable: 'CORDON_AUDIT_ADDRESS', address: '127.0.0.1:7104' },
  { name: 'scanner', variable: 'CORDON_SCANNER_ADDRESS', address: '127.0.0.1:7102' },
  { name: 'memory', variable: 'CORDON_MEMORY_ADDRESS', address: '127.0.0.1:7103' },
  { name: 'executor', variable: 'CORDON_EXECUTOR_ADDRESS', address: '127.0.0.1:7101' },
];
const DEV_AGENT = 'dev';

/** The examples as README walks through them, with the exit code each must give. */
const EXAMPLES = JSON.parse(readFileSync(join(root, 'examples', 'runs.json'), 'utf8'));

const { values: flags } = parseArgs({ options: { examples: { type: 'boolean', default: false } } });

function tokenFile() {
  const configHome = process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config');
  return join(configHome, 'cordon', 'token');
}

/**
 * Makes sure the mesh's signing key exists and writes a development agent
 * token, readable only by its owner, where the CLI and the client look.
 */
async function prepareTokens() {
  const keyFile = process.env[TOKEN_KEY_FILE_VARIABLE] ?? defaultStatePath('token.key');
  createTokenKeyFile(keyFile);
  const token = await createToken({ agentId: DEV_AGENT, role: 'agent', ttl: '720h', keyFile });
  const path = tokenFile();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { keyFile, token, path };
}

/**
 * Starts one service with its JSON log going to a file, so the terminal shows
 * only the mesh's summary and the examples. A service's stderr, where a
 * configuration error goes, still reaches the terminal.
 */
function startService({ name, variable, address }, keyFile, logFolder) {
  const main = `${root}services/${name}/dist/main.js`;
  const logPath = join(logFolder, `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(process.execPath, ['--import', '@cordon/service-kit/register', main], {
    cwd: root,
    env: {
      ...process.env,
      [TOKEN_KEY_FILE_VARIABLE]: keyFile,
      // Every service learns where the others are: all append to audit, the executor scans.
      CORDON_AUDIT_ADDRESS: process.env.CORDON_AUDIT_ADDRESS ?? '127.0.0.1:7104',
      CORDON_SCANNER_ADDRESS: process.env.CORDON_SCANNER_ADDRESS ?? '127.0.0.1:7102',
      [variable]: process.env[variable] ?? address,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      log.write(`${line}\n`);
      if (line.includes('"msg":"service started"')) resolve(JSON.parse(line));
    });
    child.once('exit', (code) =>
      reject(
        new Error(`cordon-${name} exited with code ${code} before it was ready; see ${logPath}`),
      ),
    );
  });
  return { name, child, ready, logPath };
}

function checkHealth(address) {
  const Client = makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve) => {
    client.check(
      { service: '' },
      new Metadata(),
      { deadline: Date.now() + 3000 },
      (error, response) => {
        client.close();
        resolve(error === null ? response.status : `unreachable (${error.details})`);
      },
    );
  });
}

function printRuntimes(address, token) {
  const client = new executorV1.ExecutorServiceClient(address, credentials.createInsecure());
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.listRuntimes({}, metadata, { deadline: Date.now() + 3000 }, (error, response) => {
      client.close();
      if (error !== null) {
        process.stdout.write(`  runtimes: unavailable (${error.details})\n`);
      } else {
        for (const runtime of response.runtimes) {
          const state = runtime.available
            ? runtime.image.tag
            : 'image missing; run sandbox-images/build';
          process.stdout.write(
            `  runtime  ${runtime.id.padEnd(11)} ${runtime.displayName.padEnd(26)} ${state}\n`,
          );
        }
      }
      resolve();
    });
  });
}

/** Runs each example through the CLI as a user would; returns how many gave another exit code. */
function runExamples(addresses) {
  let failed = 0;
  for (const example of EXAMPLES) {
    process.stdout.write(`\n--- ${example.title}\n$ npx cordon ${example.args.join(' ')}\n`);
    const result = spawnSync(process.execPath, [CORDON_BIN, ...example.args], {
      cwd: root,
      env: { ...process.env, ...addresses },
      stdio: 'inherit',
    });
    const ok = result.status === example.exitCode;
    if (!ok) failed += 1;
    process.stdout.write(
      `--- exit code ${result.status}${ok ? '' : `, expected ${example.exitCode}`}\n`,
    );
  }
  return failed;
}

const missing = SERVICES.filter(({ name }) => !existsSync(`${root}services/${name}/dist/main.js`));
if (missing.length > 0) {
  process.stderr.write(
    `not built: ${missing.map(({ name }) => name).join(', ')}; run \`npm run build\` (scripts/setup-host does)\n`,
  );
  process.exit(1);
}

const { keyFile, token, path: tokenPath } = await prepareTokens();
const logFolder = defaultStatePath('logs');
mkdirSync(logFolder, { recursive: true, mode: 0o700 });
const running = [];
const stopAll = (signal) =>
  running.forEach(({ child }) => child.exitCode === null && child.kill(signal));
process.on('SIGINT', () => stopAll('SIGTERM'));
process.on('SIGTERM', () => stopAll('SIGTERM'));

try {
  // Audit first, so the others' first records find it; the executor last, as it scans and audits.
  for (const service of SERVICES) {
    const started = startService(service, keyFile, logFolder);
    running.push(started);
    started.port = (await started.ready).port;
  }
  const addresses = Object.fromEntries(
    SERVICES.map(({ variable }, index) => [variable, `127.0.0.1:${running[index].port}`]),
  );
  process.stdout.write('\nCordon mesh is up:\n');
  for (const [index, { name, logPath }] of running.entries()) {
    const address = `127.0.0.1:${running[index].port}`;
    const health = await checkHealth(address);
    process.stdout.write(
      `  ${name.padEnd(9)} ${address}  health ${health.padEnd(11)} log ${logPath}\n`,
    );
  }
  await printRuntimes(addresses.CORDON_EXECUTOR_ADDRESS, token);
  process.stdout.write(
    [
      '',
      `A token for agent "${DEV_AGENT}" is in ${tokenPath} (only you can read it); the CLI and the`,
      'client find it and these addresses by themselves. Try:',
      '  npx cordon run examples/node-report/report.js --stdin examples/node-report/orders.json',
      '  npx cordon health',
      `An auditor's token, to read every agent's records: npx cordon token create --agent you --role auditor`,
      `(it signs with ${keyFile}, which only its owner can read).`,
      '',
    ].join('\n'),
  );
  if (flags.examples) {
    const failed = runExamples(addresses);
    process.stdout.write(
      failed === 0
        ? '\nEvery example ended with the exit code README names.\n'
        : `\n${failed} example(s) ended with another exit code than README names.\n`,
    );
    if (failed > 0) process.exitCode = 1;
  }
  process.stdout.write('Press Ctrl-C to stop the mesh.\n');
} catch (error) {
  process.stderr.write(`${error.message}\n`);
  stopAll('SIGTERM');
  process.exitCode = 1;
}

await Promise.all(
  running.map(
    ({ child }) =>
      new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve))),
  ),
);
