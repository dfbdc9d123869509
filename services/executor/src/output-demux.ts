/** Docker's stream ids in a multiplexed attach stream. */
export const STDOUT = 1;
export const STDERR = 2;

export interface Frame {
  readonly stream: typeof STDOUT | typeof STDERR;
  readonly data: Buffer;
}

const HEADER_BYTES = 8;

/**
 * Splits Docker's multiplexed attach stream (8-byte header: stream id, three
 * zero bytes, big-endian payload size) into frames. Payload bytes are passed
 * on as they arrive, so a large frame is not held back until it is complete.
 */
export class DockerStreamDemuxer {
  private header = Buffer.alloc(0);
  private stream: typeof STDOUT | typeof STDERR = STDOUT;
  private remaining = 0;

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining === 0) {
        const needed = HEADER_BYTES - this.header.length;
        this.header = Buffer.concat([this.header, chunk.subarray(offset, offset + needed)]);
        offset += Math.min(needed, chunk.length - offset);
        if (this.header.length < HEADER_BYTES) {
          break;
        }
        this.stream = this.header[0] === STDERR ? STDERR : STDOUT;
        this.remaining = this.header.readUInt32BE(4);
        this.header = Buffer.alloc(0);
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - offset);
      frames.push({ stream: this.stream, data: chunk.subarray(offset, offset + take) });
      this.remaining -= take;
      offset += take;
    }
    return frames;
  }
}

export type MarkerKind = 'compiled' | 'exited' | 'setup-failed';

export type StderrItem =
  | { readonly kind: 'data'; readonly data: Buffer }
  | { readonly kind: 'marker'; readonly marker: MarkerKind; readonly status: number };

const MARKER_LINE = /^ (compiled|exited|setup-failed) (\d{1,3})$/;

/**
 * Takes the launcher's phase markers ("<nonce> exited 0\n") out of stderr.
 * Only a tail that could be the start of the nonce is held back, so output
 * that is not a marker reaches the client without delay.
 */
export class MarkerFilter {
  private readonly nonce: Buffer;
  private pending = Buffer.alloc(0);

  constructor(nonce: string) {
    this.nonce = Buffer.from(nonce);
  }

  push(chunk: Buffer): StderrItem[] {
    const items: StderrItem[] = [];
    let buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = Buffer.alloc(0);

    for (;;) {
      const start = buffer.indexOf(this.nonce);
      if (start === -1) {
        const held = this.heldTail(buffer);
        if (buffer.length - held > 0) {
          items.push({ kind: 'data', data: buffer.subarray(0, buffer.length - held) });
        }
        this.pending = Buffer.from(buffer.subarray(buffer.length - held));
        return items;
      }
      const end = buffer.indexOf(0x0a, start);
      if (end === -1) {
        if (start > 0) {
          items.push({ kind: 'data', data: buffer.subarray(0, start) });
        }
        this.pending = Buffer.from(buffer.subarray(start));
        return items;
      }
      const match = MARKER_LINE.exec(buffer.toString('latin1', start + this.nonce.length, end));
      if (match === null) {
        // The nonce without a marker shape is program output; pass it on.
        items.push({ kind: 'data', data: buffer.subarray(0, end + 1) });
      } else {
        if (start > 0) {
          items.push({ kind: 'data', data: buffer.subarray(0, start) });
        }
        items.push({ kind: 'marker', marker: match[1] as MarkerKind, status: Number(match[2]) });
      }
      buffer = buffer.subarray(end + 1);
    }
  }

  /** Returns whatever was held back; call when the stream ends. */
  flush(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    return rest;
  }

  private heldTail(buffer: Buffer): number {
    const longest = Math.min(this.nonce.length - 1, buffer.length);
    for (let length = longest; length > 0; length -= 1) {
      if (buffer.subarray(buffer.length - length).equals(this.nonce.subarray(0, length))) {
        return length;
      }
    }
    return 0;
  }
}
