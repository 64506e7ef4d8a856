// Length-prefixed framing: frame = length:varint(1..4 bytes) body.
// WebSocket messages hold whole frames only (splitMessage); the WebTransport
// control stream is a byte stream whose read boundaries have nothing to do
// with frame boundaries (FrameSplitter).

import { CODE_FRAME_TOO_LARGE, ProtocolError } from "./codec.js";

/** The longest length prefix (4 bytes carry lengths up to 2^28 - 1). */
export const MAX_PREFIX_LEN = 4;

/**
 * The largest frame body accepted from a server. The server's
 * max_frame_size binds what the client sends; its own frames may be a
 * little larger (a message carries a publish of that size plus a header),
 * so incoming frames are bounded only by this sanity cap.
 */
export const MAX_INCOMING_FRAME = 32 << 20;

/**
 * Reads a length prefix at b[pos..end). Returns [length, prefix bytes], or
 * undefined when the prefix is incomplete. Throws on a prefix longer than
 * 4 bytes or a length over max.
 */
function readPrefix(b: Uint8Array, pos: number, end: number, max: number): [number, number] | undefined {
  let n = 0;
  for (let i = 0; i < MAX_PREFIX_LEN; i++) {
    if (pos + i >= end) return undefined;
    const c = b[pos + i]!;
    n += (c & 0x7f) * 2 ** (7 * i);
    if (c < 0x80) {
      if (n > max) throw new ProtocolError(`frame of ${n} bytes, limit ${max}`, CODE_FRAME_TOO_LARGE);
      return [n, i + 1];
    }
  }
  throw new ProtocolError("bad length prefix");
}

/**
 * Splits one WebSocket message into frame bodies. The message must hold
 * whole frames only, at least one.
 */
export function splitMessage(msg: Uint8Array, max = MAX_INCOMING_FRAME): Uint8Array[] {
  if (msg.length === 0) throw new ProtocolError("empty message");
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < msg.length) {
    const p = readPrefix(msg, pos, msg.length, max);
    if (p === undefined) throw new ProtocolError("frame cut short: incomplete length prefix");
    const [n, k] = p;
    if (msg.length - pos - k < n) {
      throw new ProtocolError(`frame cut short: ${msg.length - pos - k} of ${n} bytes`);
    }
    out.push(msg.subarray(pos + k, pos + k + n));
    pos += k + n;
  }
  return out;
}

/**
 * FrameSplitter cuts frames out of a byte stream fed in chunks of any size.
 * It buffers at most one incomplete frame.
 */
export class FrameSplitter {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(private readonly max = MAX_INCOMING_FRAME) {}

  /** Bytes received but not yet returned as a frame. */
  get buffered(): number {
    return this.end - this.start;
  }

  /**
   * Adds a chunk and returns the bodies of the frames it completes. The
   * bodies are copies. Throws ProtocolError on a bad prefix or a frame over
   * the limit; the splitter is then unusable.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let rest = chunk;
    if (this.buffered === 0) {
      // Fast path: cut whole frames straight from the chunk, buffer the tail.
      let pos = 0;
      for (;;) {
        const p = readPrefix(chunk, pos, chunk.length, this.max);
        if (p === undefined || chunk.length - pos - p[1] < p[0]) break;
        out.push(chunk.slice(pos + p[1], pos + p[1] + p[0]));
        pos += p[1] + p[0];
      }
      rest = chunk.subarray(pos);
      if (rest.length === 0) return out;
    }
    this.append(rest);
    for (;;) {
      const p = readPrefix(this.buf, this.start, this.end, this.max);
      if (p === undefined) break;
      const [n, k] = p;
      if (this.end - this.start - k < n) {
        this.reserve(k + n); // room for the whole frame, so it is copied once
        break;
      }
      out.push(this.buf.slice(this.start + k, this.start + k + n));
      this.start += k + n;
    }
    if (this.start === this.end) this.start = this.end = 0;
    return out;
  }

  private append(b: Uint8Array): void {
    this.reserve(this.buffered + b.length);
    this.buf.set(b, this.end);
    this.end += b.length;
  }

  /** Makes room for n bytes from start, moving or growing the buffer. */
  private reserve(n: number): void {
    if (this.start + n <= this.buf.length) return;
    const used = this.buffered;
    if (n <= this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const nb = new Uint8Array(Math.max(n, 2 * this.buf.length, 4096));
      nb.set(this.buf.subarray(this.start, this.end));
      this.buf = nb;
    }
    this.start = 0;
    this.end = used;
  }
}
