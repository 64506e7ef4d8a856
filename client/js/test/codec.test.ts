import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeFrame, encodeFrame, frameBodyLength, ProtocolError } from "../src/codec.js";
import type { Frame, Kind, Kinds } from "../src/codec.js";

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const body = (frame: Uint8Array) => frame.subarray(frame.length - frameBodyLength(frame));
const bytes = (...xs: number[]) => Uint8Array.from(xs);

function malformed(b: Uint8Array, re?: RegExp) {
  assert.throws(() => decodeFrame(b), (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `want ProtocolError, got ${String(e)}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

// Vectors from docs/protocol.md §2 and from protocols.MustEncode (Go, protobuf-go).
const golden: [string, number, Kind, Record<string, unknown>][] = [
  ["0a 08 02 22 06 0a 04 6e 65 77 73", 2, "subscribe", { channel: "news" }],
  ["13 08 01 12 0f 1a 0d 73 77 69 74 63 68 79 61 72 64 2e 76 31", 1, "connect", { protocol: "switchyard.v1" }],
  ["16 08 02 2a 12 0a 04 6e 65 77 73 12 08 41 62 43 64 45 66 47 68 18 29", 2, "subscribed", { channel: "news", epoch: "AbCdEfGh", offset: 41 }],
  ["18 52 16 0a 04 6e 65 77 73 12 08 41 62 43 64 45 66 47 68 18 2a 22 02 68 69", 0, "message", { channel: "news", epoch: "AbCdEfGh", offset: 42, data: bytes(0x68, 0x69) }],
  ["02 62 00", 0, "ping", {}],
  ["02 6a 00", 0, "pong", {}],
  ["0408096200", 9, "ping", {}],
  ["2c080112280a0474c3b66b1211737769746368796172642d6a732f302e311a0d737769746368796172642e7631", 1, "connect", { token: "tök", client: "switchyard-js/0.1", protocol: "switchyard.v1" }],
  ["3b08011a370a106162636465666768696a6b6c6d6e6f7010a8c30118904e208080042a026e3132056c6f63616c3a0d737769746368796172642e7631", 1, "connected", { sessionId: "abcdefghijklmnop", pingIntervalMs: 25000, pongTimeoutMs: 10000, maxFrameSize: 65536, node: "n1", region: "local", protocol: "switchyard.v1" }],
  ["27722508af1b12126f726967696e206e6f7420616c6c6f77656420dc0b2a0968747470733a2f2f78", 0, "disconnect", { code: 3503, reason: "origin not allowed", reconnect: false, reconnectAfterMs: 1500, reconnectUrl: "https://x" }],
  ["13721108b817120a676f696e6720617761791801", 0, "disconnect", { code: 3000, reason: "going away", reconnect: true }],
  ["2208075a1e0868121a616c7265616479207375627363726962656420746f20726f6f6d", 7, "error", { code: 104, message: "already subscribed to room" }],
  ["1108ac02420c0a04726f6f6d1204000102ff", 300, "publish", { channel: "room", data: bytes(0, 1, 2, 255) }],
  ["1408ffffffff0f4a0c0a016510ffffffffffffff0f", 4294967295, "publishAck", { epoch: "e", offset: Number.MAX_SAFE_INTEGER }],
  ["09080532050a03612f62", 5, "unsubscribe", { channel: "a/b" }],
  ["0908053a050a03612f62", 5, "unsubscribed", { channel: "a/b" }],
  // docs/protocol.md §11 and protocols/datagram_test.go (TestDatagramVectors)
  ["15 08 01 12 11 1a 0d 73 77 69 74 63 68 79 61 72 64 2e 76 31 20 01", 1, "connect", { protocol: "switchyard.v1", streams: true }],
  ["0e 08 02 22 0a 0a 06 67 61 6d 65 3a 31 10 03", 2, "subscribe", { channel: "game:1", alias: 3 }],
  ["13 08 02 2a 0f 0a 06 67 61 6d 65 3a 31 18 ab 02 20 03 28 01", 2, "subscribed", { channel: "game:1", epoch: "", offset: 299, alias: 3, volatile: true }],
  ["0a 7a 08 08 03 10 01 1a 02 68 69", 0, "datagram", { alias: 3, seq: 1, data: bytes(0x68, 0x69) }],
  ["11 52 0f 0a 06 67 61 6d 65 3a 31 18 ac 02 22 02 68 69", 0, "message", { channel: "game:1", epoch: "", offset: 300, data: bytes(0x68, 0x69) }],
  // connected with the datagram limit and streams, checked against protocols.MustEncode
  ["1b 08 01 1a 17 0a 01 73 10 a8 c3 01 20 80 80 04 3a 05 76 31 2e 78 78 40 cc 08 48 01", 1, "connected", { sessionId: "s", pingIntervalMs: 25000, maxFrameSize: 65536, protocol: "v1.xx", maxDatagramSize: 1100, streams: true }],
  // history recovery (subscribe.recover/since_*, subscribed.recovered, unsubscribed.code/reason pushed with id 0),
  // from protocols.MustEncode
  ["1a 08 02 22 16 0a 04 6e 65 77 73 10 03 18 01 22 08 41 62 43 64 45 66 47 68 28 29", 2, "subscribe", { channel: "news", alias: 3, recover: true, sinceEpoch: "AbCdEfGh", sinceOffset: 41 }],
  ["0c 08 07 22 08 0a 01 61 18 01 28 ac 02", 7, "subscribe", { channel: "a", recover: true, sinceEpoch: "", sinceOffset: 300 }],
  ["1a 08 02 2a 16 0a 04 6e 65 77 73 12 08 41 62 43 64 45 66 47 68 18 29 20 03 30 01", 2, "subscribed", { channel: "news", epoch: "AbCdEfGh", offset: 41, alias: 3, recovered: true }],
  ["1c 3a 1a 0a 04 6e 65 77 73 10 bd 17 1a 0f 6d 69 73 73 65 64 20 6d 65 73 73 61 67 65 73", 0, "unsubscribed", { channel: "news", code: 3005, reason: "missed messages" }],
  // idempotent publish (publish.idempotency_key, publish_ack.duplicate), from protocols.MustEncode
  ["20 08 03 42 1c 0a 04 72 6f 6f 6d 12 02 68 69 1a 10 41 62 43 64 45 66 47 68 5f 2d 30 31 32 33 34 35", 3, "publish", { channel: "room", data: bytes(0x68, 0x69), idempotencyKey: "AbCdEfGh_-012345" }],
  ["12 08 ac 02 42 0d 0a 01 61 1a 08 d0 ba d0 bb d1 8e d1 87", 300, "publish", { channel: "a", data: new Uint8Array(0), idempotencyKey: "ключ" }],
  ["4c 08 02 42 48 0a 01 63 12 01 00 1a 40" + "6b".repeat(64), 2, "publish", { channel: "c", data: bytes(0), idempotencyKey: "k".repeat(64) }],
  ["12 08 03 4a 0e 0a 08 41 62 43 64 45 66 47 68 10 2a 18 01", 3, "publishAck", { epoch: "AbCdEfGh", offset: 42, duplicate: true }],
  ["06 08 09 4a 02 18 01", 9, "publishAck", { epoch: "", offset: 0, duplicate: true }],
  ["10 08 03 4a 0c 0a 08 41 62 43 64 45 66 47 68 10 2a", 3, "publishAck", { epoch: "AbCdEfGh", offset: 42, duplicate: false }],
  // presence (connect.user/info, subscribe.presence, presence, presence_reply with repeated ClientInfo, join, leave),
  // from protocols.MustEncode
  ["21 08 01 12 1d 1a 0d 73 77 69 74 63 68 79 61 72 64 2e 76 31 2a 03 61 64 61 32 07 7b 22 6e 22 3a 31 7d", 1, "connect", { protocol: "switchyard.v1", user: "ada", info: new TextEncoder().encode('{"n":1}') }],
  ["0e 08 02 22 0a 0a 04 63 68 61 74 10 01 30 01", 2, "subscribe", { channel: "chat", alias: 1, presence: true }],
  ["0b 08 03 82 01 06 0a 04 63 68 61 74", 3, "presence", { channel: "chat", countsOnly: false }],
  ["0d 08 04 82 01 08 0a 04 63 68 61 74 10 01", 4, "presence", { channel: "chat", countsOnly: true }],
  ["24 08 03 8a 01 1f 0a 04 63 68 61 74 12 0d 0a 02 73 31 12 03 61 64 61 1a 02 01 02 12 04 0a 02 73 32 18 02 20 02", 3, "presenceReply",
    { channel: "chat", members: [{ client: "s1", user: "ada", info: bytes(1, 2) }, { client: "s2", user: "", info: bytes() }], clients: 2, users: 2, truncated: false }],
  ["13 08 04 8a 01 0e 0a 04 63 68 61 74 18 dc 0b 20 b0 09 28 01", 4, "presenceReply", { channel: "chat", members: [], clients: 1500, users: 1200, truncated: true }],
  ["0c 08 05 8a 01 07 12 00 12 03 12 01 75", 5, "presenceReply", { members: [{ client: "", user: "", info: bytes() }, { client: "", user: "u", info: bytes() }] }],
  ["18 92 01 15 0a 04 63 68 61 74 12 0d 0a 02 73 32 12 03 62 6f 62 1a 02 68 69", 0, "join", { channel: "chat", member: { client: "s2", user: "bob", info: bytes(0x68, 0x69) } }],
  ["0f 9a 01 0c 0a 04 63 68 61 74 12 04 0a 02 73 32", 0, "leave", { channel: "chat", member: { client: "s2", user: "", info: bytes() } }],
  ["08 92 01 05 0a 01 63 12 00", 0, "join", { channel: "c", member: { client: "", user: "", info: bytes() } }], // an empty member is written
  ["06 9a 01 03 0a 01 63", 0, "leave", { channel: "c", member: undefined }], // an absent one is not
];

describe("codec", () => {
  it("encodes exactly like protobuf-go", () => {
    for (const [want, id, kind, fields] of golden) {
      assert.equal(toHex(encodeFrame(id, kind, fields as Partial<Kinds[typeof kind]>)), toHex(hex(want)), `${kind} id ${id}`);
    }
  });

  it("decodes the golden frames", () => {
    for (const [want, id, kind, fields] of golden) {
      const f = decodeFrame(body(hex(want)));
      assert.equal(f.type, kind);
      assert.equal(f.id, id);
      for (const [k, v] of Object.entries(fields)) assert.deepEqual((f as unknown as Record<string, unknown>)[k], v, `${kind}.${k}`);
    }
  });

  it("round-trips every kind, defaults included", () => {
    const samples: { [K in Kind]: Partial<Kinds[K]> } = {
      connect: { token: "", client: "c", protocol: "switchyard.v1" },
      connected: { sessionId: "s", pingIntervalMs: 0, pongTimeoutMs: 1, maxFrameSize: 16 << 20, node: "ñ", region: "r", protocol: "", expiresInS: 60 },
      subscribe: { channel: "x".repeat(128), alias: 1, recover: true, sinceEpoch: "e", sinceOffset: 2 ** 40 },
      subscribed: { channel: "c", epoch: "", offset: 0, recovered: true },
      unsubscribe: { channel: "c" },
      unsubscribed: { channel: "", code: 3005, reason: "r" },
      publish: { channel: "c", data: new Uint8Array(70000).fill(7), idempotencyKey: "k€y" },
      publishAck: { epoch: "e", offset: 2 ** 40 + 3, duplicate: true },
      message: { channel: "c", epoch: "e", offset: 1, data: new Uint8Array(0) },
      error: { code: 0xffffffff, message: "m" },
      ping: {},
      pong: {},
      disconnect: { code: 4999, reason: "🙂", reconnect: true, reconnectAfterMs: 1, reconnectUrl: "" },
      datagram: { alias: 16383, seq: Number.MAX_SAFE_INTEGER, data: new Uint8Array(1100).fill(9) },
      presence: { channel: "chat:1", countsOnly: true },
      presenceReply: {
        channel: "c", clients: 3, users: 0xffffffff, truncated: true,
        members: [{ client: "a", user: "ü", info: new Uint8Array(1024).fill(1) }, { client: "", user: "", info: new Uint8Array(0) }],
      },
      join: { channel: "c", member: { client: "s", user: "", info: bytes(0) } },
      leave: { channel: "", member: undefined },
      refresh: { token: "eyJ.x.y" },
      refreshed: { expiresInS: 3600 },
    };
    for (const kind of Object.keys(samples) as Kind[]) {
      for (const id of [0, 1, 127, 128, 0xffffffff]) {
        const frame = encodeFrame(id, kind, samples[kind] as never);
        const f = decodeFrame(body(frame)) as Frame;
        assert.equal(f.type, kind);
        assert.equal(f.id, id);
        for (const [k, v] of Object.entries(samples[kind])) assert.deepEqual((f as unknown as Record<string, unknown>)[k], v, `${kind}.${k}`);
        // and back again, byte for byte
        const { id: _id, type: _type, ...rest } = f;
        assert.equal(toHex(encodeFrame(f.id, kind, rest as never)), toHex(frame));
      }
    }
  });

  it("fills absent fields with defaults", () => {
    const f = decodeFrame(body(encodeFrame(0, "message", {})));
    assert.deepEqual(f, { id: 0, type: "message", channel: "", epoch: "", offset: 0, data: new Uint8Array(0) });
  });

  it("decodes a uint64 beyond 2^53 as the nearest double, and encodes it back", () => {
    // offset 2^53 and 2^64 − 1: not exact as numbers, but no error
    const f = decodeFrame(bytes(0x52, 0x09, 0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10));
    assert.equal(f.type === "message" && f.offset, 2 ** 53);
    const g = decodeFrame(bytes(0x4a, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01));
    assert.equal(g.type === "publishAck" && g.offset, 2 ** 64);
    const back = decodeFrame(encodeFrame(0, "message", { offset: 2 ** 60 + 2 ** 20 }).subarray(1));
    assert.equal(back.type === "message" && back.offset, 2 ** 60 + 2 ** 20);
  });

  it("rejects values the schema cannot carry", () => {
    assert.throws(() => encodeFrame(-1, "ping"), RangeError);
    assert.throws(() => encodeFrame(2 ** 32, "ping"), RangeError);
    assert.throws(() => encodeFrame(1, "error", { code: 1.5 }), RangeError);
    assert.throws(() => encodeFrame(1, "publishAck", { offset: 2 ** 64 }), RangeError);
    assert.throws(() => encodeFrame(1, "publish", { channel: 5 as never }), TypeError);
    assert.throws(() => encodeFrame(1, "publish", { data: "x" as never }), TypeError);
    assert.throws(() => encodeFrame(0, "join", { member: { user: 5 } as never }), /join\.member\.user must be a string/);
    assert.throws(() => encodeFrame(0, "presenceReply", { members: [{ info: "x" }] as never }), /presenceReply\.members\.info must be a Uint8Array/);
  });

  it("skips unknown fields of every wire type, in frames and in messages", () => {
    // subscribed{channel:"c", offset:5} with unknown fields 25 (varint), 26 (fixed64),
    // 27 (bytes), 28 (group holding a varint and a nested group), 29 (fixed32)
    const unknown = [
      0xc8, 0x01, 0x96, 0x01, // 25: varint 150
      0xd1, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, // 26: fixed64
      0xda, 0x01, 0x02, 0xaa, 0xbb, // 27: bytes
      0xe3, 0x01, 0x08, 0x01, 0x13, 0x10, 0x02, 0x14, 0xe4, 0x01, // 28: group { 1: 1, group 2 { 2: 2 } }
      0xed, 0x01, 1, 2, 3, 4, // 29: fixed32
    ];
    const inner = [0x0a, 0x01, 0x63, ...unknown, 0x18, 0x05];
    const frame = bytes(...unknown, 0x08, 0x03, 0x2a, inner.length, ...inner, ...unknown);
    assert.deepEqual(decodeFrame(frame), { id: 3, type: "subscribed", channel: "c", epoch: "", offset: 5, alias: 0, volatile: false, recovered: false });
  });

  it("treats a known field with another wire type as unknown", () => {
    // subscribed.channel sent as a varint, offset as bytes: both skipped
    const inner = [0x08, 0x07, 0x1a, 0x01, 0x00, 0x12, 0x01, 0x65];
    assert.deepEqual(decodeFrame(bytes(0x2a, inner.length, ...inner)), { id: 0, type: "subscribed", channel: "", epoch: "e", offset: 0, alias: 0, volatile: false, recovered: false });
    // Frame.id as fixed32: skipped; the kind still decodes
    assert.deepEqual(decodeFrame(bytes(0x0d, 1, 0, 0, 0, 0x62, 0x00)), { id: 0, type: "ping" });
  });

  it("reports frames of unknown kinds as unknown", () => {
    assert.deepEqual(decodeFrame(bytes(0x08, 0x04, 0xf2, 0x01, 0x00)), { id: 4, type: "unknown" }); // field 30
    assert.deepEqual(decodeFrame(bytes(0x60, 0x01)), { id: 0, type: "unknown" }); // ping as a varint
  });

  it("merges a repeated kind and lets a later kind win", () => {
    const a = [0x2a, 0x03, 0x0a, 0x01, 0x61]; // subscribed{channel:"a"}
    const b = [0x2a, 0x02, 0x18, 0x09]; // subscribed{offset:9}
    assert.deepEqual(decodeFrame(bytes(...a, ...b)), { id: 0, type: "subscribed", channel: "a", epoch: "", offset: 9, alias: 0, volatile: false, recovered: false });
    assert.deepEqual(decodeFrame(bytes(...a, 0x62, 0x00)), { id: 0, type: "ping" });
  });

  it("merges a singular message field seen twice, appends to a repeated one", () => {
    // join{member{client:"a"}, member{user:"u"}}: one member with both
    const join = [0x0a, 0x01, 0x63, 0x12, 0x03, 0x0a, 0x01, 0x61, 0x12, 0x03, 0x12, 0x01, 0x75];
    assert.deepEqual(decodeFrame(bytes(0x92, 0x01, join.length, ...join)),
      { id: 0, type: "join", channel: "c", member: { client: "a", user: "u", info: bytes() } });
    // presence_reply{members{client:"a"}, clients:1, members{client:"b"}}: two members, in order
    const reply = [0x12, 0x03, 0x0a, 0x01, 0x61, 0x18, 0x01, 0x12, 0x03, 0x0a, 0x01, 0x62];
    const f = decodeFrame(bytes(0x8a, 0x01, reply.length, ...reply));
    assert.deepEqual(f.type === "presenceReply" && f.members.map((m) => m.client), ["a", "b"]);
    // a member sent as a varint is an unknown field: skipped
    assert.deepEqual(decodeFrame(bytes(0x92, 0x01, 0x02, 0x10, 0x05)), { id: 0, type: "join", channel: "", member: undefined });
  });

  it("rejects malformed nested messages", () => {
    malformed(bytes(0x92, 0x01, 0x05, 0x12, 0x03, 0x12, 0x01, 0xff), /join\.member\.user is not valid UTF-8/);
    malformed(bytes(0x92, 0x01, 0x04, 0x12, 0x02, 0x0a, 0x05), /past the end/);
    malformed(bytes(0x8a, 0x01, 0x03, 0x12, 0x01, 0x7f), /wire type 7/);
  });

  it("reads uint32 fields from long varints as protobuf does", () => {
    // error.code = -1 as an int32 would encode it: 10 bytes, low 32 bits all ones
    const inner = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    const f = decodeFrame(bytes(0x5a, inner.length, ...inner));
    assert.equal(f.type === "error" && f.code, 0xffffffff);
  });

  it("rejects malformed input", () => {
    malformed(bytes(), /no kind/);
    malformed(bytes(0x08, 0x01), /no kind/); // only an id
    malformed(bytes(0x08), /truncated varint/);
    malformed(bytes(0x08, 0x80, 0x80), /truncated varint/);
    malformed(bytes(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), /overflows/); // an 11th byte
    malformed(bytes(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), /overflows/);
    malformed(bytes(0x22, 0x05, 0x0a), /past the end/);
    malformed(bytes(0x22, 0xff, 0xff, 0xff, 0xff, 0x0f), /past the end/);
    malformed(bytes(0x00, 0x00), /field number 0/);
    malformed(bytes(0x62, 0x00, 0x7e), /wire type 6/);
    malformed(bytes(0x62, 0x00, 0x7f), /wire type 7/);
    malformed(bytes(0x62, 0x00, 0x7c), /end group without start/);
    malformed(bytes(0x62, 0x00, 0x7b, 0x08, 0x01), /unterminated group/);
    malformed(bytes(0x62, 0x00, 0x7b, 0x84, 0x01), /mismatched end group/);
    malformed(bytes(0x62, 0x00, 0x79, 1, 2, 3), /fixed-size/);
    malformed(bytes(0x62, 0x00, 0x7d, 1, 2, 3), /fixed-size/);
    malformed(bytes(0x62, 0x02, 0x0a, 0x05), /past the end/); // inside the kind's message
    malformed(bytes(0x22, 0x03, 0x0a, 0x01, 0xff), /UTF-8/);
    malformed(bytes(0x22, 0x04, 0x0a, 0x02, 0xc3, 0x28), /UTF-8/);
    // deeply nested groups end with an error, not a stack overflow
    const deep: number[] = [];
    for (let i = 0; i < 10000; i++) deep.push(0x7b);
    malformed(bytes(0x62, 0x00, ...deep), /too deep/);
  });

  it("never hangs or throws anything but ProtocolError on random input", () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const seeds = golden.map(([h]) => body(hex(h)));
    for (let i = 0; i < 20000; i++) {
      let b: Uint8Array;
      if (i % 2 === 0) {
        b = new Uint8Array(Math.floor(rand() * 40));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      } else {
        // mutate a valid frame: flip bytes, cut it short
        const s = seeds[i % seeds.length]!;
        b = s.slice(0, Math.floor(rand() * (s.length + 1)));
        for (let k = 0; k < 3 && b.length > 0; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      }
      try {
        decodeFrame(b);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw new Error(`input ${toHex(b)}: ${String(e)}`);
      }
    }
  });

  it("every truncation of a valid frame is an error or a valid prefix", () => {
    for (const [h] of golden) {
      const b = body(hex(h));
      for (let n = 0; n < b.length; n++) {
        try {
          decodeFrame(b.subarray(0, n));
        } catch (e) {
          assert.ok(e instanceof ProtocolError);
        }
      }
    }
  });

  it("copies bytes fields out of the input", () => {
    const frame = encodeFrame(0, "message", { channel: "c", data: bytes(1, 2, 3) });
    const b = body(frame);
    const f = decodeFrame(b);
    b.fill(0);
    assert.deepEqual(f.type === "message" && f.data, bytes(1, 2, 3));
  });
});
