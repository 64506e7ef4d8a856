// A hand-written protobuf codec for exactly the messages of switchyard.v1
// (protocols/proto/switchyard.proto). It follows proto3 rules as
// protobuf-go applies them on the server: fields equal to their default are
// not written, unknown fields of any wire type are skipped (a known field
// with an unexpected wire type counts as unknown), strings must be valid
// UTF-8, and a Frame whose kind is not set is malformed unless it carries
// unknown fields (a newer server's frame kind, which the client ignores).
// Message fields (presence's ClientInfo) may be repeated; scalars may not.
//
// Every malformed input throws a ProtocolError; the decoder reads each byte
// at most a bounded number of times, so it never hangs.

/** Code of the error a codec failure closes the session with. */
export const CODE_BAD_FRAME = 3500;
export const CODE_FRAME_TOO_LARGE = 3501;

/** ProtocolError is a malformed or oversized frame. */
export class ProtocolError extends Error {
  /** The close code that reports it: 3500 bad frame or 3501 frame too large. */
  readonly code: number;
  constructor(message: string, code = CODE_BAD_FRAME) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

export interface ConnectBody { token: string; client: string; protocol: string; streams: boolean; user: string; info: Uint8Array }
export interface ConnectedBody {
  sessionId: string;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxFrameSize: number;
  node: string;
  region: string;
  protocol: string;
  maxDatagramSize: number;
  streams: boolean;
  expiresInS: number;
}
export interface RefreshBody { token: string }
export interface RefreshedBody { expiresInS: number }
export interface SubscribeBody {
  channel: string;
  alias: number;
  recover: boolean;
  sinceEpoch: string;
  sinceOffset: number;
  presence: boolean;
}
export interface SubscribedBody {
  channel: string;
  epoch: string;
  offset: number;
  alias: number;
  volatile: boolean;
  recovered: boolean;
}
export interface UnsubscribeBody { channel: string }
export interface UnsubscribedBody { channel: string; code: number; reason: string }
export interface PublishBody { channel: string; data: Uint8Array; idempotencyKey: string }
export interface PublishAckBody { epoch: string; offset: number; duplicate: boolean }
export interface MessageBody { channel: string; epoch: string; offset: number; data: Uint8Array }
export interface ErrorBody { code: number; message: string }
export interface DatagramBody { alias: number; seq: number; data: Uint8Array }
export interface ClientInfoBody { client: string; user: string; info: Uint8Array }
export interface PresenceRequestBody { channel: string; countsOnly: boolean }
export interface PresenceReplyBody {
  channel: string;
  members: ClientInfoBody[];
  clients: number;
  users: number;
  truncated: boolean;
}
/** Join and Leave: member is undefined when the frame left it out (a server never does). */
export interface MemberEventBody { channel: string; member: ClientInfoBody | undefined }
export interface DisconnectBody {
  code: number;
  reason: string;
  reconnect: boolean;
  reconnectAfterMs: number;
  reconnectUrl: string;
}

/** The kinds of Frame.kind, each with its message's fields. */
export interface Kinds {
  connect: ConnectBody;
  connected: ConnectedBody;
  subscribe: SubscribeBody;
  subscribed: SubscribedBody;
  unsubscribe: UnsubscribeBody;
  unsubscribed: UnsubscribedBody;
  publish: PublishBody;
  publishAck: PublishAckBody;
  message: MessageBody;
  error: ErrorBody;
  ping: Record<never, never>;
  pong: Record<never, never>;
  disconnect: DisconnectBody;
  datagram: DatagramBody;
  presence: PresenceRequestBody;
  presenceReply: PresenceReplyBody;
  join: MemberEventBody;
  leave: MemberEventBody;
  refresh: RefreshBody;
  refreshed: RefreshedBody;
}

export type Kind = keyof Kinds;

/** A decoded frame: its id, its kind and the kind's fields, flattened. */
export type Frame = { [K in Kind]: { id: number; type: K } & Kinds[K] }[Kind];

/** A well-formed frame of a kind this client does not know. */
export interface UnknownFrame { id: number; type: "unknown" }

/** FrameOf picks the frame type of one kind. */
export type FrameOf<K extends Kind> = Extract<Frame, { type: K }>;

export type ScalarType = "string" | "bytes" | "uint32" | "uint64" | "bool";
/** The messages that are field types rather than frame kinds, by their .proto names. */
export type MessageName = "ClientInfo";
export type FieldType = ScalarType | MessageName;
/**
 * A field: number, name, type (a scalar, or a message of `messages`) and,
 * for a repeated field, a fourth element 1. Only message fields may be
 * repeated (a repeated scalar would be packed, which the codec does not read).
 */
export type Field = readonly [num: number, name: string, type: FieldType, repeated?: 1];

// Field tables, in field-number order (the encoder writes in this order, as
// protobuf-go does). Names are the .proto names in camelCase. `npm run
// check` compares these tables and kindFields with protoc's descriptor of
// protocols/proto/switchyard.proto (scripts/protocheck.ts) and fails on any
// difference: a field added to the .proto must be added here too.
export const schemas: { readonly [K in Kind]: readonly Field[] } = {
  connect: [
    [1, "token", "string"], [2, "client", "string"], [3, "protocol", "string"], [4, "streams", "bool"], [5, "user", "string"],
    [6, "info", "bytes"],
  ],
  connected: [
    [1, "sessionId", "string"], [2, "pingIntervalMs", "uint32"], [3, "pongTimeoutMs", "uint32"],
    [4, "maxFrameSize", "uint32"], [5, "node", "string"], [6, "region", "string"], [7, "protocol", "string"],
    [8, "maxDatagramSize", "uint32"], [9, "streams", "bool"], [10, "expiresInS", "uint32"],
  ],
  subscribe: [
    [1, "channel", "string"], [2, "alias", "uint32"], [3, "recover", "bool"], [4, "sinceEpoch", "string"], [5, "sinceOffset", "uint64"],
    [6, "presence", "bool"],
  ],
  subscribed: [
    [1, "channel", "string"], [2, "epoch", "string"], [3, "offset", "uint64"], [4, "alias", "uint32"], [5, "volatile", "bool"],
    [6, "recovered", "bool"],
  ],
  unsubscribe: [[1, "channel", "string"]],
  unsubscribed: [[1, "channel", "string"], [2, "code", "uint32"], [3, "reason", "string"]],
  publish: [[1, "channel", "string"], [2, "data", "bytes"], [3, "idempotencyKey", "string"]],
  publishAck: [[1, "epoch", "string"], [2, "offset", "uint64"], [3, "duplicate", "bool"]],
  message: [[1, "channel", "string"], [2, "epoch", "string"], [3, "offset", "uint64"], [4, "data", "bytes"]],
  error: [[1, "code", "uint32"], [2, "message", "string"]],
  ping: [],
  pong: [],
  disconnect: [
    [1, "code", "uint32"], [2, "reason", "string"], [3, "reconnect", "bool"],
    [4, "reconnectAfterMs", "uint32"], [5, "reconnectUrl", "string"],
  ],
  datagram: [[1, "alias", "uint32"], [2, "seq", "uint64"], [3, "data", "bytes"]],
  presence: [[1, "channel", "string"], [2, "countsOnly", "bool"]],
  presenceReply: [
    [1, "channel", "string"], [2, "members", "ClientInfo", 1], [3, "clients", "uint32"], [4, "users", "uint32"], [5, "truncated", "bool"],
  ],
  join: [[1, "channel", "string"], [2, "member", "ClientInfo"]],
  leave: [[1, "channel", "string"], [2, "member", "ClientInfo"]],
  refresh: [[1, "token", "string"]],
  refreshed: [[1, "expiresInS", "uint32"]],
};

/** The messages that are only field types, with their tables (checked the same way). */
export const messages: { readonly [M in MessageName]: readonly Field[] } = {
  ClientInfo: [[1, "client", "string"], [2, "user", "string"], [3, "info", "bytes"]],
};

/** Frame.kind field numbers (Frame.id is field 1). */
export const kindFields: { readonly [K in Kind]: number } = {
  connect: 2, connected: 3, subscribe: 4, subscribed: 5, unsubscribe: 6, unsubscribed: 7,
  publish: 8, publishAck: 9, message: 10, error: 11, ping: 12, pong: 13, disconnect: 14, datagram: 15,
  presence: 16, presenceReply: 17, join: 18, leave: 19, refresh: 20, refreshed: 21,
};
const kindByField = new Map<number, Kind>(
  (Object.keys(kindFields) as Kind[]).map((k) => [kindFields[k], k]),
);

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

const MAX_UINT32 = 0xffffffff;
const MAX_FIELD_NUMBER = 0x1fffffff;
const MAX_GROUP_DEPTH = 64;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The table of a message field's type; undefined for scalars. */
const messageOf = (type: FieldType): readonly Field[] | undefined => (messages as Record<string, readonly Field[]>)[type];

function defaultOf([, , type, repeated]: Field): unknown {
  switch (type) {
    case "string": return "";
    case "bytes": return new Uint8Array(0);
    case "bool": return false;
    case "uint32": case "uint64": return 0;
    default: return repeated ? [] : undefined; // a message: absent
  }
}

// ---------------------------------------------------------------- encoding

/** Number of bytes of v as a varint; v is an integer in [0, 2^53). */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Writes v as a varint at b[pos] and returns the position after it. */
export function putVarint(b: Uint8Array, pos: number, v: number): number {
  while (v >= 0x80) {
    b[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  b[pos++] = v;
  return pos;
}

/** One field to write: a varint value or length-delimited bytes. */
type Out = { tag: number; v: number; b?: undefined } | { tag: number; b: Uint8Array; v?: undefined };

function checkInt(name: string, v: unknown, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${name} must be an integer in [0, ${max}], got ${String(v)}`);
  }
  return v;
}

function fieldsOf(fields: readonly Field[], where: string, body: Record<string, unknown>): Out[] {
  const out: Out[] = [];
  for (const [num, name, type, repeated] of fields) {
    const v = body[name];
    if (v === undefined || v === null) continue;
    const what = `${where}.${name}`;
    const sub = messageOf(type);
    if (sub) {
      // Each element (or the one message, even when empty) as its own bytes.
      for (const x of repeated ? (v as unknown[]) : [v]) {
        const inner = fieldsOf(sub, what, x as Record<string, unknown>);
        const b = new Uint8Array(sizeOf(inner));
        writeFields(b, 0, inner);
        out.push({ tag: (num << 3) | BYTES, b });
      }
      continue;
    }
    switch (type) {
      case "string": {
        if (typeof v !== "string") throw new TypeError(`${what} must be a string`);
        if (v !== "") out.push({ tag: (num << 3) | BYTES, b: utf8.encode(v) });
        break;
      }
      case "bytes": {
        if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
        if (v.length > 0) out.push({ tag: (num << 3) | BYTES, b: v });
        break;
      }
      case "uint32": {
        const n = checkInt(what, v, MAX_UINT32);
        if (n !== 0) out.push({ tag: (num << 3) | VARINT, v: n });
        break;
      }
      case "uint64": {
        // Any integral double below 2^64: beyond 2^53 it is what was decoded (rounded).
        const n = checkInt(what, v, 2 ** 64 - 2048);
        if (n !== 0) out.push({ tag: (num << 3) | VARINT, v: n });
        break;
      }
      case "bool":
        if (v) out.push({ tag: (num << 3) | VARINT, v: 1 });
        break;
    }
  }
  return out;
}

function sizeOf(fields: Out[]): number {
  let n = 0;
  for (const f of fields) {
    n += varintSize(f.tag);
    n += f.b !== undefined ? varintSize(f.b.length) + f.b.length : varintSize(f.v);
  }
  return n;
}

function writeFields(b: Uint8Array, pos: number, fields: Out[]): number {
  for (const f of fields) {
    pos = putVarint(b, pos, f.tag);
    if (f.b !== undefined) {
      pos = putVarint(b, pos, f.b.length);
      b.set(f.b, pos);
      pos += f.b.length;
    } else {
      pos = putVarint(b, pos, f.v);
    }
  }
  return pos;
}

/**
 * Encodes a Frame of the given kind, with the varint length prefix, the way
 * the server's protobuf-go does: fields in number order, defaults omitted
 * (but a message field that is set is written, even when empty).
 * Missing fields take their default. Throws RangeError or TypeError for
 * values the schema cannot carry.
 */
export function encodeFrame<K extends Kind>(id: number, kind: K, body: Partial<Kinds[K]> = {}): Uint8Array {
  checkInt("frame id", id, MAX_UINT32);
  const inner = fieldsOf(schemas[kind], kind, body as Record<string, unknown>);
  const innerSize = sizeOf(inner);
  const outer: Out[] = [];
  if (id !== 0) outer.push({ tag: (1 << 3) | VARINT, v: id });
  const kindTag = (kindFields[kind] << 3) | BYTES;
  const size = sizeOf(outer) + varintSize(kindTag) + varintSize(innerSize) + innerSize;
  const b = new Uint8Array(varintSize(size) + size);
  let pos = putVarint(b, 0, size);
  pos = writeFields(b, pos, outer);
  pos = putVarint(b, pos, kindTag);
  pos = putVarint(b, pos, innerSize);
  writeFields(b, pos, inner);
  return b;
}

// ---------------------------------------------------------------- decoding

/** Reader walks a protobuf message; every read checks its bounds. */
class Reader {
  pos: number;
  // The last varint read: its low 32 bits, its value as a double, and
  // whether that double is exact (below 2^53).
  lo = 0;
  value = 0;
  safe = true;

  constructor(readonly b: Uint8Array, start: number, readonly end: number) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): void {
    let lo = 0;
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new ProtocolError("truncated varint");
      const c = this.b[this.pos++]!;
      // The 10th byte may hold only the 64th bit, and cannot continue.
      if (i === 9 && c > 1) throw new ProtocolError("varint overflows 64 bits");
      const bits = c & 0x7f;
      if (i < 5) lo |= bits << (7 * i);
      value += bits * scale;
      scale *= 0x80;
      if (c < 0x80) break;
    }
    this.lo = lo >>> 0;
    this.value = value;
    this.safe = value <= Number.MAX_SAFE_INTEGER;
  }

  /** Reads a length and returns the [start, end) of the bytes it covers. */
  lengthDelimited(): [number, number] {
    this.varint();
    const n = this.value;
    if (!this.safe || n > this.end - this.pos) throw new ProtocolError("length-delimited field runs past the end");
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }

  skip(n: number): void {
    if (n > this.end - this.pos) throw new ProtocolError("fixed-size field runs past the end");
    this.pos += n;
  }

  /** Reads a tag; returns [field number, wire type]. */
  tag(): [number, number] {
    this.varint();
    const num = Math.floor(this.value / 8);
    if (num < 1 || num > MAX_FIELD_NUMBER) throw new ProtocolError(`invalid field number ${num}`);
    return [num, this.lo & 7];
  }

  /** Skips the value of a field of wire type wt, whose tag has been read. */
  skipValue(num: number, wt: number, depth = 0): void {
    switch (wt) {
      case VARINT: this.varint(); return;
      case FIXED64: this.skip(8); return;
      case BYTES: this.lengthDelimited(); return;
      case FIXED32: this.skip(4); return;
      case START_GROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw new ProtocolError("groups nested too deep");
        for (;;) {
          if (this.done()) throw new ProtocolError("unterminated group");
          const [n, w] = this.tag();
          if (w === END_GROUP) {
            if (n !== num) throw new ProtocolError("mismatched end group");
            return;
          }
          this.skipValue(n, w, depth + 1);
        }
      }
      case END_GROUP: throw new ProtocolError("end group without start group");
      default: throw new ProtocolError(`invalid wire type ${wt}`);
    }
  }
}

/**
 * Decodes the fields of one message (where names it in errors) into
 * target, skipping unknown ones. proto3 rules: a singular message field
 * seen again merges into the first, a repeated one adds an element.
 */
function decodeInto(fields: readonly Field[], where: string, r: Reader, target: Record<string, unknown>): void {
  while (!r.done()) {
    const [num, wt] = r.tag();
    const f = fields.find((x) => x[0] === num);
    if (f === undefined) {
      r.skipValue(num, wt);
      continue;
    }
    const [, name, type, repeated] = f;
    const sub = messageOf(type);
    if (type === "string" || type === "bytes" || sub) {
      if (wt !== BYTES) {
        r.skipValue(num, wt);
        continue;
      }
      const [s, e] = r.lengthDelimited();
      if (sub) {
        const m = (!repeated && target[name] as Record<string, unknown>) || emptyBody(sub);
        decodeInto(sub, `${where}.${name}`, new Reader(r.b, s, e), m);
        if (repeated) (target[name] as unknown[]).push(m);
        else target[name] = m;
      } else if (type === "bytes") {
        target[name] = r.b.slice(s, e);
      } else {
        try {
          target[name] = utf8Strict.decode(r.b.subarray(s, e));
        } catch {
          throw new ProtocolError(`${where}.${name} is not valid UTF-8`);
        }
      }
      continue;
    }
    if (wt !== VARINT) {
      r.skipValue(num, wt);
      continue;
    }
    r.varint();
    switch (type) {
      case "uint32": target[name] = r.lo; break;
      case "bool": target[name] = r.value !== 0; break;
      case "uint64":
        // Beyond 2^53 − 1 the nearest double (not exact): never an error.
        target[name] = r.value;
        break;
    }
  }
}

function emptyBody(fields: readonly Field[]): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const f of fields) body[f[1]] = defaultOf(f);
  return body;
}

/**
 * Decodes one frame body (without its length prefix). Returns an
 * UnknownFrame for a well-formed frame of a kind this client does not know;
 * throws ProtocolError for malformed input, including a frame with no kind.
 * Bytes fields are copies: the caller may reuse body.
 */
export function decodeFrame(body: Uint8Array): Frame | UnknownFrame {
  const r = new Reader(body, 0, body.length);
  let id = 0;
  let kind: Kind | undefined;
  let fields: Record<string, unknown> = {};
  let unknown = false;
  while (!r.done()) {
    const [num, wt] = r.tag();
    if (num === 1 && wt === VARINT) {
      r.varint();
      id = r.lo;
      continue;
    }
    const k = kindByField.get(num);
    if (k === undefined || wt !== BYTES) {
      r.skipValue(num, wt);
      unknown = true;
      continue;
    }
    const [s, e] = r.lengthDelimited();
    // A oneof member seen again merges into the same message; another
    // member replaces it (proto3 rules).
    if (k !== kind) {
      kind = k;
      fields = emptyBody(schemas[k]);
    }
    decodeInto(schemas[k], k, new Reader(body, s, e), fields);
  }
  if (kind === undefined) {
    if (unknown) return { id, type: "unknown" };
    throw new ProtocolError("frame has no kind");
  }
  return { ...fields, id, type: kind } as Frame;
}

/** The body length of an encoded frame, read from its prefix. */
export function frameBodyLength(frame: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < frame.length && i < 5; i++) {
    n += (frame[i]! & 0x7f) * 2 ** (7 * i);
    if (frame[i]! < 0x80) return n;
  }
  throw new ProtocolError("bad length prefix");
}
