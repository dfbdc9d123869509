import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { auditV1 } from '@cordon/proto';

const SUFFIX = '.append';

/**
 * A folder of audit records that could not be appended yet, one file each,
 * written durably (file and folder fsynced) and named so that sorting them
 * by name gives the order they were written in.
 */
export class AuditSpool {
  private sequence = 0;

  constructor(private readonly folder: string) {
    mkdirSync(folder, { recursive: true, mode: 0o700 });
  }

  /** Stores a request durably; returns once it would survive a crash. */
  write(request: auditV1.AppendRequest): void {
    this.sequence += 1;
    const name = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${this.sequence.toString().padStart(9, '0')}`;
    const temporary = join(this.folder, `${name}.tmp`);
    const bytes = auditV1.AppendRequest.encode(request).finish();

    const file = openSync(temporary, 'w', 0o600);
    try {
      writeSync(file, bytes);
      fsyncSync(file);
    } finally {
      closeSync(file);
    }
    renameSync(temporary, join(this.folder, `${name}${SUFFIX}`));
    const folder = openSync(this.folder, 'r');
    try {
      fsyncSync(folder);
    } finally {
      closeSync(folder);
    }
  }

  /** Spooled requests, oldest first, with the file each came from. */
  pending(): { file: string; request: auditV1.AppendRequest }[] {
    return readdirSync(this.folder)
      .filter((name) => name.endsWith(SUFFIX))
      .sort()
      .map((name) => {
        const file = join(this.folder, name);
        return { file, request: auditV1.AppendRequest.decode(readFileSync(file)) };
      });
  }

  remove(file: string): void {
    unlinkSync(file);
  }
}
