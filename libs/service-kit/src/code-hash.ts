import { createHash } from 'node:crypto';

/** A file by path and the hex SHA-256 of its content. */
export interface HashedFile {
  readonly path: string;
  readonly sha256: string;
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Returns the code_sha256 of a file set: the SHA-256 of the lines that
 * `sha256sum` prints for the files ("<hex>  <path>\n"), sorted by the UTF-8
 * bytes of the path, so anyone can recompute it in a folder with
 * `find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum`.
 * Paths must hold no newline or backslash, which sha256sum would escape.
 */
export function codeSha256FromHashes(files: readonly HashedFile[]): string {
  const sorted = [...files].sort((a, b) =>
    Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)),
  );
  return sha256Hex(sorted.map((file) => `${file.sha256}  ${file.path}\n`).join(''));
}

/** Returns the code_sha256 of files given with their content. */
export function codeSha256(files: readonly { path: string; content: Buffer }[]): string {
  return codeSha256FromHashes(
    files.map((file) => ({ path: file.path, sha256: sha256Hex(file.content) })),
  );
}
