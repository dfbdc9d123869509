import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { executorV1 } from '@cordon/proto';
import { python, startExecutor, type ExecutorUnderTest } from './executor-harness.js';

const CATALOG = fileURLToPath(new URL('../../../sandbox-images/catalog.json', import.meta.url));

let folder: string;
let executor: ExecutorUnderTest;

beforeAll(async () => {
  // The same catalog, but it claims another Python version than the image's label.
  const catalog = JSON.parse(readFileSync(CATALOG, 'utf8')) as {
    id: string;
    languageVersion: string;
  }[];
  for (const runtime of catalog) {
    if (runtime.id === 'python') runtime.languageVersion = '3.99.0';
  }
  folder = mkdtempSync(join(tmpdir(), 'cordon-catalog-'));
  writeFileSync(join(folder, 'catalog.json'), JSON.stringify(catalog));
  executor = await startExecutor({ CORDON_RUNTIME_CATALOG: join(folder, 'catalog.json') });
});

afterAll(async () => {
  await executor.stop();
  rmSync(folder, { recursive: true, force: true });
});

describe('runtime images', () => {
  it('lists a runtime whose image labels disagree with the catalog as unavailable', async () => {
    const response = await new Promise<executorV1.ListRuntimesResponse>((resolve, reject) => {
      executor.client.listRuntimes({}, (error, value) =>
        error === null ? resolve(value) : reject(error),
      );
    });

    const byId = new Map(response.runtimes.map((runtime) => [runtime.id, runtime]));
    expect(byId.get('python')?.available).toBe(false);
    expect(byId.get('python')?.image).toBeUndefined();
    expect(byId.get('javascript')?.available).toBe(true);
    expect(byId.get('javascript')?.languageVersion).toBe('18.20.4');
    expect(byId.get('java')?.compiled).toBe(true);
    expect(byId.get('java')?.entrypointRule).toBe('public-class');
  });

  it('refuses to run in an image whose labels it does not know', async () => {
    const result = await executor.run(python('print(1)'));

    expect(result.error?.code).toBe(status.FAILED_PRECONDITION);
    expect(result.error?.details).toBe(
      'runtime python is unavailable on this executor: image cordon-sandbox-python:latest has python 3.11.2, but the catalog says 3.99.0; rebuild it with sandbox-images/build python',
    );
  });
});
