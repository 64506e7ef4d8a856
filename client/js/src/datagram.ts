// The two encodings of volatile channels and per-subscription streams that
// are not Frames (docs/protocol.md §11):
//
//   datagram            = alias:varint  seq:varint  payload
//   subscription stream = alias:varint  frame*
//
// alias names a subscription (Subscribe.alias, chosen by the client); seq is
// the channel's sequence number from the server, the client's own counter
// from a client (the server renumbers).

import { putVarint, varintSize } from "./codec.js";

/** The largest subscription alias: two varint bytes. */
export const MAX_ALIAS = (1 << 14) - 1;

/** A parsed datagram; payload is a view into the datagram's bytes. */
export interface Datagram {
  alias: number;
  seq: number;
  payload: Uint8Array;
}

/**
 * Reads a varint at b[pos..]. Returns [value, position after it], or
 * undefined when b ends first; throws RangeError past 2^53 (or past 10
 * bytes), which no sender of this protocol writes.
 */
export function readVarint(b: Uint8Array, pos: number): [number, number] | undefined {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= b.length) return undefined;
    const c = b[pos++]!;
    v += (c & 0x7f) * scale;
    scale *= 0x80;
    if (c < 0x80) {
      if (v > Number.MAX_SAFE_INTEGER) throw new RangeError("varint beyond 2^53");
      return [v, pos];
    }
  }
  throw new RangeError("varint longer than 10 bytes");
}

/** Encodes a datagram. alias in [1, MAX_ALIAS], seq a safe integer. */
export function encodeDatagram(alias: number, seq: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(varintSize(alias) + varintSize(seq) + payload.length);
  let pos = putVarint(b, 0, alias);
  pos = putVarint(b, pos, seq);
  b.set(payload, pos);
  return b;
}

/** Splits a datagram; undefined when it is malformed (cut short, alias out of range). */
export function parseDatagram(b: Uint8Array): Datagram | undefined {
  try {
    const a = readVarint(b, 0);
    if (a === undefined || a[0] > MAX_ALIAS) return undefined;
    const s = readVarint(b, a[1]);
    if (s === undefined) return undefined;
    return { alias: a[0], seq: s[0], payload: b.subarray(s[1]) };
  } catch {
    return undefined;
  }
}

/**
 * StreamHeader reads the alias at the start of a subscription stream,
 * whose first chunk may hold only part of it.
 */
export class StreamHeader {
  private buf = new Uint8Array(0);

  /**
   * Adds a chunk. Returns the alias and the rest of the chunk once the
   * header is complete, undefined while it is not; throws RangeError for a
   * header that is not an alias.
   */
  push(chunk: Uint8Array): { alias: number; rest: Uint8Array } | undefined {
    const b = this.buf.length === 0 ? chunk : concat(this.buf, chunk);
    const r = readVarint(b, 0);
    if (r === undefined) {
      if (b.length >= 3) throw new RangeError("stream header is not an alias");
      this.buf = b.slice();
      return undefined;
    }
    if (r[0] > MAX_ALIAS) throw new RangeError(`stream alias ${r[0]} is over ${MAX_ALIAS}`);
    this.buf = new Uint8Array(0);
    return { alias: r[0], rest: b.subarray(r[1]) };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
