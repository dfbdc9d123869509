// Starts every built Cordon service as its own process on loopback, waits
// until each passes its health check, prints how to reach it, and stops
// them all on Ctrl-C or SIGTERM.
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor, Metadata } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { executorV1 } from '@cordon/proto';

const root = fileURLToPath(new URL('..', import.meta.url));
const SERVICES = [
  { name: 'audit', variable: 'CORDON_AUDIT_ADDRESS', address: '127.0.0.1:7104' },
  { name: 'memory', variable: 'CORDON_MEMORY_ADDRESS', address: '127.0.0.1:7103' },
  { name: 'executor', variable: 'CORDON_EXECUTOR_ADDRESS', address: '127.0.0.1:7101' },
];

function startService({ name, variable, address }) {
  const main = `${root}services/${name}/dist/main.js`;
  const child = spawn(process.execPath, ['--import', '@cordon/service-kit/register', main], {
    cwd: root,
    env: {
      ...process.env,
      // Every service learns where the audit service is, so each appends to it.
      CORDON_AUDIT_ADDRESS: process.env.CORDON_AUDIT_ADDRESS ?? '127.0.0.1:7104',
      [variable]: process.env[variable] ?? address,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      process.stdout.write(`${line}\n`);
      if (line.includes('"msg":"service started"')) resolve(JSON.parse(line));
    });
    child.once('exit', (code) =>
      reject(new Error(`cordon-${name} exited with code ${code} before it was ready`)),
    );
  });
  return { name, child, ready };
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

function printRuntimes(address) {
  const client = new executorV1.ExecutorServiceClient(address, credentials.createInsecure());
  return new Promise((resolve) => {
    client.listRuntimes({}, new Metadata(), { deadline: Date.now() + 3000 }, (error, response) => {
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

const available = SERVICES.filter(({ name }) => existsSync(`${root}services/${name}/dist/main.js`));
if (available.length === 0) {
  process.stderr.write('no service is built; run `npm run build` (scripts/setup-host does)\n');
  process.exit(1);
}

const running = available.map(startService);
const stopAll = (signal) =>
  running.forEach(({ child }) => child.exitCode === null && child.kill(signal));
process.on('SIGINT', () => stopAll('SIGTERM'));
process.on('SIGTERM', () => stopAll('SIGTERM'));

try {
  const started = await Promise.all(running.map(({ ready }) => ready));
  process.stdout.write('\nCordon mesh is up:\n');
  for (const [index, { name }] of running.entries()) {
    const address = `127.0.0.1:${started[index].port}`;
    process.stdout.write(`  ${name.padEnd(9)} ${address}  health ${await checkHealth(address)}\n`);
  }
  const executorIndex = running.findIndex(({ name }) => name === 'executor');
  if (executorIndex !== -1) {
    await printRuntimes(`127.0.0.1:${started[executorIndex].port}`);
  }
  process.stdout.write('Press Ctrl-C to stop.\n');
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
