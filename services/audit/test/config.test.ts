import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServiceProcess } from '../../../test/support/service-process.js';
import { AUDIT_MAIN, cleanUp, makeTempDir } from './support/audit-harness.js';

afterEach(async () => {
  expect(await cleanUp()).toBe(0);
});

describe('configuration', () => {
  it.each([
    [
      { CORDON_AUDIT_OUTPUT_BYTES: 'lots' },
      'cordon-audit: invalid configuration: CORDON_AUDIT_OUTPUT_BYTES="lots" is invalid: expected a size from 0 to 4MiB, in bytes or with a unit such as 64k, 16m or 1g',
    ],
    [
      { CORDON_AUDIT_DB_PATH: 'audit.db' },
      'cordon-audit: invalid configuration: CORDON_AUDIT_DB_PATH="audit.db" is invalid: expected an absolute file path without spaces, such as /var/lib/cordon/audit.db',
    ],
    [
      { CORDON_AUDIT_OUTPUT_BYTES: '2m', CORDON_AUDIT_MAX_EXCERPT_BYTES: '1m' },
      'cordon-audit: invalid configuration: CORDON_AUDIT_MAX_EXCERPT_BYTES (1MiB) is below CORDON_AUDIT_OUTPUT_BYTES (2MiB); raise the maximum or lower the kept bytes',
    ],
    [
      { CORDON_AUDIT_MAX_FILES_BYTES: '16m' },
      'cordon-audit: invalid configuration: a GetRun response may need 17536KiB (CORDON_AUDIT_MAX_FILES_BYTES + 2 × CORDON_AUDIT_OUTPUT_BYTES + 1MiB), above CORDON_GRPC_MAX_SEND_MESSAGE_BYTES (16MiB); lower the audit sizes or raise the message limit',
    ],
  ])('stops start-up with exit 2 for %o', async (env, message) => {
    const dir = makeTempDir();
    const service = startServiceProcess(AUDIT_MAIN, [], {
      CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
      CORDON_AUDIT_DB_PATH: join(dir, 'audit.db'),
      ...env,
    });

    expect(await service.exited).toEqual({ code: 2, signal: null });
    expect(service.stderr()).toBe(`${message}\n`);
  });

  it('exits 2 when the folder cannot be made', async () => {
    const notAFolder = join(makeTempDir(), 'plain-file');
    writeFileSync(notAFolder, '');
    const dbPath = join(notAFolder, 'sub', 'audit.db');

    const service = startServiceProcess(AUDIT_MAIN, [], {
      CORDON_AUDIT_ADDRESS: '127.0.0.1:0',
      CORDON_AUDIT_DB_PATH: dbPath,
    });

    expect(await service.exited).toEqual({ code: 2, signal: null });
    expect(service.stderr()).toBe(
      `cordon-audit: cannot open the audit database ${dbPath}: ENOTDIR: not a directory, mkdir '${join(notAFolder, 'sub')}'; set CORDON_AUDIT_DB_PATH to a file this user can create and write\n`,
    );
  });
});
