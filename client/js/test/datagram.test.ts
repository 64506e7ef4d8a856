import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeFrame } from "../src/codec.js";
import { encodeDatagram, MAX_ALIAS, parseDatagram, readVarint, StreamHeader } from "../src/datagram.js";
import { FrameSplitter } from "../src/framing.js";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("datagrams", () => {
  it("encodes and parses the vector of docs/protocol.md §11", () => {
    assert.equal(toHex(encodeDatagram(3, 300, new TextEncoder().encode("hi"))), "03ac026869");
    const d = parseDatagram(hex("03 ac 02 68 69"))!;
    assert.deepEqual([d.alias, d.seq, new TextDecoder().decode(d.payload)], [3, 300, "hi"]);
    const big = parseDatagram(encodeDatagram(MAX_ALIAS, Number.MAX_SAFE_INTEGER, new Uint8Array(0)))!;
    assert.deepEqual([big.alias, big.seq, big.payload.length], [MAX_ALIAS, Number.MAX_SAFE_INTEGER, 0]);
  });

  it("refuses malformed datagrams like protocols.ParseDatagram", () => {
    for (const bad of ["", "80", "03", "03 80", "ff ff 01 00"]) assert.equal(parseDatagram(hex(bad)), undefined, bad);
    // a sequence number the client cannot hold exactly
    assert.equal(parseDatagram(hex("01 ff ff ff ff ff ff ff ff ff 01")), undefined);
  });

  it("never throws on random input", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 20000; i++) {
      const b = new Uint8Array(Math.floor(rand() * 16));
      for (let j = 0; j < b.length; j++) b[j] = rand() < 0.5 ? 0xff : Math.floor(rand() * 256);
      const d = parseDatagram(b);
      if (d) assert.ok(d.alias <= MAX_ALIAS && Number.isSafeInteger(d.seq) && d.payload.length <= b.length);
      try {
        new StreamHeader().push(b);
      } catch (e) {
        assert.ok(e instanceof RangeError, String(e));
      }
    }
  });

  it("reads varints, incomplete ones as undefined", () => {
    assert.deepEqual(readVarint(hex("ac 02"), 0), [300, 2]);
    assert.equal(readVarint(hex("ac"), 0), undefined);
    assert.throws(() => readVarint(hex("ff ff ff ff ff ff ff ff ff ff 01"), 0), RangeError);
  });
});

describe("subscription stream header", () => {
  // docs/protocol.md §11: the stream of alias 7 with one message on "news".
  const stream = hex("07 18 52 16 0a 04 6e 65 77 73 12 08 41 62 43 64 45 66 47 68 18 2a 22 02 68 69");

  it("reads the alias, then frames, however the stream is cut", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const header = new StreamHeader();
      const splitter = new FrameSplitter();
      let alias = -1;
      const bodies: Uint8Array[] = [];
      for (const chunk of [stream.subarray(0, cut), stream.subarray(cut)]) {
        let rest: Uint8Array = chunk;
        if (alias < 0) {
          const h = header.push(chunk);
          if (h === undefined) continue;
          alias = h.alias;
          rest = h.rest;
        }
        bodies.push(...splitter.push(rest));
      }
      assert.equal(alias, 7, `cut at ${cut}`);
      assert.equal(bodies.length, 1);
      assert.deepEqual(decodeFrame(bodies[0]!), {
        id: 0, type: "message", channel: "news", epoch: "AbCdEfGh", offset: 42, data: new TextEncoder().encode("hi"),
      });
    }
  });

  it("takes a two-byte alias split over chunks and refuses what is not an alias", () => {
    const h = new StreamHeader();
    assert.equal(h.push(hex("ff")), undefined);
    const r = h.push(hex("7f 01"))!;
    assert.deepEqual([r.alias, toHex(r.rest)], [MAX_ALIAS, "01"]);
    assert.throws(() => new StreamHeader().push(hex("80 80 01")), RangeError); // 2^14: over MAX_ALIAS
    assert.throws(() => new StreamHeader().push(hex("80 80 80")), RangeError);
  });
});
