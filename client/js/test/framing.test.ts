import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeFrame, ProtocolError } from "../src/codec.js";
import { FrameSplitter, splitMessage } from "../src/framing.js";

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
};
const strip = (frame: Uint8Array) => {
  // the body: skip the varint prefix
  let i = 0;
  while (frame[i]! >= 0x80) i++;
  return frame.slice(i + 1);
};

// Frames of very different sizes: 1- to 3-byte prefixes.
const frames = [
  encodeFrame(0, "ping"),
  encodeFrame(2, "subscribe", { channel: "news" }),
  encodeFrame(0, "message", { channel: "c", epoch: "e", offset: 7, data: new Uint8Array(300).fill(1) }),
  encodeFrame(3, "publishAck", { epoch: "e", offset: 8 }),
  encodeFrame(0, "message", { channel: "big", data: new Uint8Array(20000).fill(2) }),
  encodeFrame(0, "pong"),
];
const stream = concat(...frames);
const want = frames.map(strip);

function feed(chunks: Uint8Array[]): Uint8Array[] {
  const s = new FrameSplitter();
  const out: Uint8Array[] = [];
  for (const c of chunks) out.push(...s.push(c));
  assert.equal(s.buffered, 0);
  return out;
}

describe("FrameSplitter", () => {
  it("cuts frames at every single split point", () => {
    for (let i = 0; i <= stream.length; i += i < 400 ? 1 : 97) {
      assert.deepEqual(feed([stream.subarray(0, i), stream.subarray(i)]), want, `split at ${i}`);
    }
  });

  it("cuts frames fed one byte at a time", () => {
    const small = concat(...frames.slice(0, 4));
    const chunks = Array.from(small, (b) => Uint8Array.of(b));
    assert.deepEqual(feed(chunks), want.slice(0, 4));
  });

  it("cuts frames fed in random chunks", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let round = 0; round < 200; round++) {
      const chunks: Uint8Array[] = [];
      for (let pos = 0; pos < stream.length;) {
        const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 8 : 5000));
        chunks.push(stream.slice(pos, pos + n));
        pos += n;
      }
      assert.deepEqual(feed(chunks), want);
    }
  });

  it("returns copies that later chunks do not overwrite", () => {
    const s = new FrameSplitter();
    const a = encodeFrame(1, "subscribe", { channel: "aaaa" });
    const b = encodeFrame(2, "subscribe", { channel: "bbbb" });
    const got = [...s.push(a.subarray(0, 3)), ...s.push(concat(a.subarray(3), b.subarray(0, 2))), ...s.push(b.subarray(2))];
    assert.deepEqual(got, [strip(a), strip(b)]);
  });

  it("rejects a prefix longer than 4 bytes", () => {
    const s = new FrameSplitter();
    assert.deepEqual(s.push(Uint8Array.of(0x80, 0x80)), []);
    assert.throws(() => s.push(Uint8Array.of(0x80, 0x80, 0x01)), (e: unknown) => e instanceof ProtocolError && e.code === 3500);
  });

  it("rejects a frame over the limit before buffering it", () => {
    const s = new FrameSplitter(100);
    assert.throws(() => s.push(Uint8Array.of(0x65)), (e: unknown) => e instanceof ProtocolError && e.code === 3501);
    assert.deepEqual(new FrameSplitter(100).push(Uint8Array.of(0x64)), []);
  });
});

describe("splitMessage", () => {
  it("splits a batch of whole frames", () => {
    assert.deepEqual(splitMessage(stream), want);
    assert.deepEqual(splitMessage(frames[0]!), [want[0]]);
  });

  it("rejects empty messages and frames cut short", () => {
    assert.throws(() => splitMessage(new Uint8Array(0)), /empty message/);
    assert.throws(() => splitMessage(stream.subarray(0, stream.length - 1)), /cut short/);
    assert.throws(() => splitMessage(Uint8Array.of(0x02, 0x62, 0x00, 0x80)), /cut short/);
    assert.throws(() => splitMessage(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x01)), /bad length prefix/);
  });

  it("accepts an empty frame body (the decoder rejects it)", () => {
    assert.deepEqual(splitMessage(Uint8Array.of(0x00)), [new Uint8Array(0)]);
  });
});
