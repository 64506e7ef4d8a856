// Switchyard browser SDK 0.1.0 (switchyard.v1). Generated from client/js/src by `npm run build`: do not edit.

// src/backoff.ts
var Backoff = class {
  constructor(min, max, random = Math.random) {
    this.min = min;
    this.max = max;
    this.random = random;
  }
  min;
  max;
  random;
  /** The number of waits since the last reset. */
  attempt = 0;
  /** The cap of the n-th wait (n counts from 1). */
  ceiling(n) {
    return Math.min(this.max, this.min * 2 ** (n - 1));
  }
  /** Counts one more attempt and returns it with its delay in ms. */
  next() {
    this.attempt++;
    return { attempt: this.attempt, delay: Math.floor(this.random() * this.ceiling(this.attempt)) };
  }
  /** Starts over: the next wait is at most `min` again. */
  reset() {
    this.attempt = 0;
  }
};

// src/clock.ts
var realClock = {
  now: () => globalThis.performance ? globalThis.performance.now() : Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (h) => globalThis.clearTimeout(h)
};

// src/codec.ts
var CODE_BAD_FRAME = 3500;
var CODE_FRAME_TOO_LARGE = 3501;
var ProtocolError = class extends Error {
  /** The close code that reports it: 3500 bad frame or 3501 frame too large. */
  code;
  constructor(message, code = CODE_BAD_FRAME) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
};
var schemas = {
  connect: [[1, "token", "string"], [2, "client", "string"], [3, "protocol", "string"]],
  connected: [
    [1, "sessionId", "string"],
    [2, "pingIntervalMs", "uint32"],
    [3, "pongTimeoutMs", "uint32"],
    [4, "maxFrameSize", "uint32"],
    [5, "node", "string"],
    [6, "region", "string"],
    [7, "protocol", "string"]
  ],
  subscribe: [[1, "channel", "string"]],
  subscribed: [[1, "channel", "string"], [2, "epoch", "string"], [3, "offset", "uint64"]],
  unsubscribe: [[1, "channel", "string"]],
  unsubscribed: [[1, "channel", "string"]],
  publish: [[1, "channel", "string"], [2, "data", "bytes"]],
  publishAck: [[1, "epoch", "string"], [2, "offset", "uint64"]],
  message: [[1, "channel", "string"], [2, "epoch", "string"], [3, "offset", "uint64"], [4, "data", "bytes"]],
  error: [[1, "code", "uint32"], [2, "message", "string"]],
  ping: [],
  pong: [],
  disconnect: [
    [1, "code", "uint32"],
    [2, "reason", "string"],
    [3, "reconnect", "bool"],
    [4, "reconnectAfterMs", "uint32"],
    [5, "reconnectUrl", "string"]
  ]
};
var kindFields = {
  connect: 2,
  connected: 3,
  subscribe: 4,
  subscribed: 5,
  unsubscribe: 6,
  unsubscribed: 7,
  publish: 8,
  publishAck: 9,
  message: 10,
  error: 11,
  ping: 12,
  pong: 13,
  disconnect: 14
};
var kindByField = new Map(
  Object.keys(kindFields).map((k) => [kindFields[k], k])
);
var VARINT = 0;
var FIXED64 = 1;
var BYTES = 2;
var START_GROUP = 3;
var END_GROUP = 4;
var FIXED32 = 5;
var MAX_UINT32 = 4294967295;
var MAX_FIELD_NUMBER = 536870911;
var MAX_GROUP_DEPTH = 64;
var utf8 = new TextEncoder();
var utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
function defaultOf(type) {
  switch (type) {
    case "string":
      return "";
    case "bytes":
      return new Uint8Array(0);
    case "bool":
      return false;
    default:
      return 0;
  }
}
function varintSize(v) {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}
function putVarint(b, pos, v) {
  while (v >= 128) {
    b[pos++] = v % 128 | 128;
    v = Math.floor(v / 128);
  }
  b[pos++] = v;
  return pos;
}
function checkInt(name, v, max) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${name} must be an integer in [0, ${max}], got ${String(v)}`);
  }
  return v;
}
function fieldsOf(kind, body) {
  const out = [];
  for (const [num, name, type] of schemas[kind]) {
    const v = body[name];
    if (v === void 0 || v === null) continue;
    switch (type) {
      case "string": {
        if (typeof v !== "string") throw new TypeError(`${kind}.${name} must be a string`);
        if (v !== "") out.push({ tag: num << 3 | BYTES, b: utf8.encode(v) });
        break;
      }
      case "bytes": {
        if (!(v instanceof Uint8Array)) throw new TypeError(`${kind}.${name} must be a Uint8Array`);
        if (v.length > 0) out.push({ tag: num << 3 | BYTES, b: v });
        break;
      }
      case "uint32": {
        const n = checkInt(`${kind}.${name}`, v, MAX_UINT32);
        if (n !== 0) out.push({ tag: num << 3 | VARINT, v: n });
        break;
      }
      case "uint64": {
        const n = checkInt(`${kind}.${name}`, v, Number.MAX_SAFE_INTEGER);
        if (n !== 0) out.push({ tag: num << 3 | VARINT, v: n });
        break;
      }
      case "bool":
        if (v) out.push({ tag: num << 3 | VARINT, v: 1 });
        break;
    }
  }
  return out;
}
function sizeOf(fields) {
  let n = 0;
  for (const f of fields) {
    n += varintSize(f.tag);
    n += f.b !== void 0 ? varintSize(f.b.length) + f.b.length : varintSize(f.v);
  }
  return n;
}
function writeFields(b, pos, fields) {
  for (const f of fields) {
    pos = putVarint(b, pos, f.tag);
    if (f.b !== void 0) {
      pos = putVarint(b, pos, f.b.length);
      b.set(f.b, pos);
      pos += f.b.length;
    } else {
      pos = putVarint(b, pos, f.v);
    }
  }
  return pos;
}
function encodeFrame(id, kind, body = {}) {
  checkInt("frame id", id, MAX_UINT32);
  const inner = fieldsOf(kind, body);
  const innerSize = sizeOf(inner);
  const outer = [];
  if (id !== 0) outer.push({ tag: 1 << 3 | VARINT, v: id });
  const kindTag = kindFields[kind] << 3 | BYTES;
  const size = sizeOf(outer) + varintSize(kindTag) + varintSize(innerSize) + innerSize;
  const b = new Uint8Array(varintSize(size) + size);
  let pos = putVarint(b, 0, size);
  pos = writeFields(b, pos, outer);
  pos = putVarint(b, pos, kindTag);
  pos = putVarint(b, pos, innerSize);
  writeFields(b, pos, inner);
  return b;
}
var Reader = class {
  constructor(b, start, end) {
    this.b = b;
    this.end = end;
    this.pos = start;
  }
  b;
  end;
  pos;
  // The last varint read: its low 32 bits, its value as a double, and
  // whether that double is exact (below 2^53).
  lo = 0;
  value = 0;
  safe = true;
  done() {
    return this.pos >= this.end;
  }
  varint() {
    let lo = 0;
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new ProtocolError("truncated varint");
      const c = this.b[this.pos++];
      if (i === 9 && c > 1) throw new ProtocolError("varint overflows 64 bits");
      const bits = c & 127;
      if (i < 5) lo |= bits << 7 * i;
      value += bits * scale;
      scale *= 128;
      if (c < 128) break;
    }
    this.lo = lo >>> 0;
    this.value = value;
    this.safe = value <= Number.MAX_SAFE_INTEGER;
  }
  /** Reads a length and returns the [start, end) of the bytes it covers. */
  lengthDelimited() {
    this.varint();
    const n = this.value;
    if (!this.safe || n > this.end - this.pos) throw new ProtocolError("length-delimited field runs past the end");
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }
  skip(n) {
    if (n > this.end - this.pos) throw new ProtocolError("fixed-size field runs past the end");
    this.pos += n;
  }
  /** Reads a tag; returns [field number, wire type]. */
  tag() {
    this.varint();
    const num = Math.floor(this.value / 8);
    if (num < 1 || num > MAX_FIELD_NUMBER) throw new ProtocolError(`invalid field number ${num}`);
    return [num, this.lo & 7];
  }
  /** Skips the value of a field of wire type wt, whose tag has been read. */
  skipValue(num, wt, depth = 0) {
    switch (wt) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.skip(8);
        return;
      case BYTES:
        this.lengthDelimited();
        return;
      case FIXED32:
        this.skip(4);
        return;
      case START_GROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw new ProtocolError("groups nested too deep");
        for (; ; ) {
          if (this.done()) throw new ProtocolError("unterminated group");
          const [n, w] = this.tag();
          if (w === END_GROUP) {
            if (n !== num) throw new ProtocolError("mismatched end group");
            return;
          }
          this.skipValue(n, w, depth + 1);
        }
      }
      case END_GROUP:
        throw new ProtocolError("end group without start group");
      default:
        throw new ProtocolError(`invalid wire type ${wt}`);
    }
  }
};
function decodeInto(kind, r, target) {
  const fields = schemas[kind];
  while (!r.done()) {
    const [num, wt] = r.tag();
    const f = fields.find((x) => x[0] === num);
    if (f === void 0) {
      r.skipValue(num, wt);
      continue;
    }
    const [, name, type] = f;
    if (type === "string" || type === "bytes") {
      if (wt !== BYTES) {
        r.skipValue(num, wt);
        continue;
      }
      const [s, e] = r.lengthDelimited();
      if (type === "bytes") {
        target[name] = r.b.slice(s, e);
      } else {
        try {
          target[name] = utf8Strict.decode(r.b.subarray(s, e));
        } catch {
          throw new ProtocolError(`${kind}.${name} is not valid UTF-8`);
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
      case "uint32":
        target[name] = r.lo;
        break;
      case "bool":
        target[name] = r.value !== 0;
        break;
      case "uint64":
        if (!r.safe) throw new ProtocolError(`${kind}.${name} is beyond 2^53`);
        target[name] = r.value;
        break;
    }
  }
}
function emptyBody(kind) {
  const body = {};
  for (const [, name, type] of schemas[kind]) body[name] = defaultOf(type);
  return body;
}
function decodeFrame(body) {
  const r = new Reader(body, 0, body.length);
  let id = 0;
  let kind;
  let fields = {};
  let unknown = false;
  while (!r.done()) {
    const [num, wt] = r.tag();
    if (num === 1 && wt === VARINT) {
      r.varint();
      id = r.lo;
      continue;
    }
    const k = kindByField.get(num);
    if (k === void 0 || wt !== BYTES) {
      r.skipValue(num, wt);
      unknown = true;
      continue;
    }
    const [s, e] = r.lengthDelimited();
    if (k !== kind) {
      kind = k;
      fields = emptyBody(k);
    }
    decodeInto(k, new Reader(body, s, e), fields);
  }
  if (kind === void 0) {
    if (unknown) return { id, type: "unknown" };
    throw new ProtocolError("frame has no kind");
  }
  return { ...fields, id, type: kind };
}
function frameBodyLength(frame) {
  let n = 0;
  for (let i = 0; i < frame.length && i < 5; i++) {
    n += (frame[i] & 127) * 2 ** (7 * i);
    if (frame[i] < 128) return n;
  }
  throw new ProtocolError("bad length prefix");
}

// src/codes.ts
var CLOSE_NORMAL = 1e3;
var CLOSE_ABNORMAL = 1006;
var CODE_HEARTBEAT_TIMEOUT = 3002;
var CODE_INTERNAL = 3003;
var CODE_BAD_PROTOCOL = 3504;
var ERR_NOT_SUBSCRIBED = 105;
var ERR_ALREADY_SUBSCRIBED = 104;
var ERR_PAYLOAD_TOO_LARGE = 106;
function reconnectAllowed(code) {
  if (code >= 3500 && code < 4e3) return false;
  if (code >= 4500 && code <= 4999) return false;
  return true;
}
function trimReason(reason, max = 120) {
  const b = new TextEncoder().encode(reason);
  if (b.length <= max) return reason;
  let i = max;
  while (i > 0 && (b[i] & 192) === 128) i--;
  return new TextDecoder().decode(b.subarray(0, i));
}

// src/connection.ts
var PROTOCOL = "switchyard.v1";
var CLIENT_NAME = "switchyard-js/0.1";
var Connection = class {
  // Connect is 1
  constructor(name, factory, token, clock) {
    this.name = name;
    this.token = token;
    this.clock = clock;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
    });
    this.transport = factory(name, {
      open: () => this.opened(),
      frame: (b) => this.receive(b),
      close: (code, reason) => this.end({ code, reason, transport: name }, false)
    });
  }
  name;
  token;
  clock;
  /** Resolves with Connected; rejects with a CloseInfo. */
  ready;
  connected;
  /** When Connected arrived, by the clock. */
  connectedAt = 0;
  transport;
  state = "opening";
  resolveReady;
  rejectReady;
  owner;
  early = [];
  // frames before attach
  endInfo;
  // an end before attach
  lastSeen = 0;
  heartbeatMs = 0;
  heartbeatTimer;
  lastId = 1;
  get isOpen() {
    return this.state === "open";
  }
  /** Takes over the session after the handshake; frames and an end that came first are delivered now. */
  attach(owner) {
    this.owner = owner;
    const early = this.early;
    this.early = [];
    for (const f of early) {
      if (this.owner !== owner) return;
      owner.frame(f);
    }
    if (this.endInfo) owner.closed(this.endInfo);
  }
  /** A request id not used on this session, never 0 or 1. */
  nextId(busy) {
    for (; ; ) {
      this.lastId = this.lastId >= 4294967295 ? 2 : this.lastId + 1;
      if (!busy?.(this.lastId)) return this.lastId;
    }
  }
  /** Encodes and sends a frame. */
  send(id, kind, body = {}) {
    this.sendRaw(encodeFrame(id, kind, body));
  }
  sendRaw(frame) {
    if (this.state === "closed") return;
    this.transport.send(frame);
  }
  /** Ends the session from this side: no callback follows. */
  close(code = CLOSE_NORMAL, reason = "") {
    if (this.state === "closed") return;
    this.stop();
    this.transport.close(code, reason);
    this.rejectReady({ code, reason, transport: this.name });
  }
  stop() {
    this.state = "closed";
    if (this.heartbeatTimer !== void 0) this.clock.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = void 0;
  }
  opened() {
    if (this.state !== "opening") return;
    this.state = "handshake";
    this.transport.send(encodeFrame(1, "connect", { token: this.token, client: CLIENT_NAME, protocol: PROTOCOL }));
  }
  receive(body) {
    if (this.state === "closed") return;
    this.lastSeen = this.clock.now();
    let f;
    try {
      f = decodeFrame(body);
    } catch (e) {
      const pe = e;
      this.end({ code: pe.code, reason: trimReason(`bad frame from the server: ${pe.message}`) }, true);
      return;
    }
    switch (f.type) {
      case "unknown":
      // a newer server's frame kind
      case "pong":
        return;
      case "ping":
        this.transport.send(encodeFrame(f.id, "pong"));
        return;
      case "disconnect":
        this.end({
          code: f.code,
          reason: f.reason,
          reconnectAfterMs: f.reconnectAfterMs || void 0
        }, true);
        return;
    }
    if (this.state === "handshake") {
      if (f.type === "connected" && f.id === 1) {
        this.handshakeDone(f);
      } else if (f.type === "error" && f.id === 1) {
        this.end({ code: CODE_INTERNAL, reason: trimReason(`connect refused: error ${f.code}: ${f.message}`) }, true);
      }
      return;
    }
    if (this.owner) this.owner.frame(f);
    else this.early.push(f);
  }
  handshakeDone(c) {
    if (c.protocol !== "" && c.protocol !== PROTOCOL) {
      this.end({ code: CODE_BAD_PROTOCOL, reason: trimReason(`server speaks ${c.protocol}, client ${PROTOCOL}`) }, true);
      return;
    }
    this.state = "open";
    this.connected = c;
    this.connectedAt = this.clock.now();
    if (c.pingIntervalMs > 0) {
      this.heartbeatMs = c.pingIntervalMs + c.pongTimeoutMs;
      this.armHeartbeat(this.heartbeatMs);
    }
    this.resolveReady(c);
  }
  /** Dead-connection detection: nothing at all from the server for ping + pong timeout. */
  armHeartbeat(ms) {
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeatTimer = void 0;
      if (this.state !== "open") return;
      const idle = this.clock.now() - this.lastSeen;
      if (idle < this.heartbeatMs) {
        this.armHeartbeat(this.heartbeatMs - idle);
        return;
      }
      this.end({
        code: CODE_HEARTBEAT_TIMEOUT,
        reason: `heartbeat timeout: nothing from the server for ${Math.round(idle)} ms`
      }, true);
    }, ms);
  }
  /** The session ended; closeTransport: this side ends it, with info.code. */
  end(info, closeTransport) {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open";
    this.stop();
    info.transport = this.name;
    if (closeTransport) this.transport.close(info.code, info.reason);
    if (!wasOpen) {
      this.rejectReady(info);
      return;
    }
    if (this.owner) this.owner.closed(info);
    else this.endInfo = info;
  }
};

// src/dialer.ts
function race(o) {
  return new Promise((resolve, reject) => {
    const started = [];
    const failures = [];
    let next = 0;
    let settled = false;
    let fallbackTimer;
    const finish = (winner, err) => {
      if (settled) return;
      settled = true;
      o.clock.clearTimeout(fallbackTimer);
      o.clock.clearTimeout(deadline);
      o.signal?.removeEventListener("abort", onAbort);
      for (const c of started) if (c !== winner) c.close(CLOSE_NORMAL, "another transport connected first");
      if (winner) resolve(winner);
      else reject(err);
    };
    const summary = () => {
      const last = failures[failures.length - 1];
      const reason = failures.map((f) => `${f.transport}: ${f.code} ${f.reason}`.trim()).join("; ");
      return { ...last, reason };
    };
    const startNext = () => {
      o.clock.clearTimeout(fallbackTimer);
      fallbackTimer = void 0;
      if (settled || next >= o.names.length) return;
      const c = o.start(o.names[next++]);
      started.push(c);
      if (next < o.names.length) fallbackTimer = o.clock.setTimeout(startNext, o.fallbackDelay);
      c.ready.then(
        () => finish(c),
        (info) => {
          if (settled) return;
          failures.push(info);
          if (!reconnectAllowed(info.code)) {
            finish(void 0, info);
          } else if (next < o.names.length) {
            startNext();
          } else if (failures.length === started.length) {
            finish(void 0, summary());
          }
        }
      );
    };
    const deadline = o.clock.setTimeout(() => {
      const why = failures.length > 0 ? `; ${summary().reason}` : "";
      finish(void 0, { code: 0, reason: `no transport connected within ${o.timeout} ms${why}` });
    }, o.timeout);
    const onAbort = () => finish(void 0, { code: CLOSE_NORMAL, reason: "aborted" });
    if (o.signal?.aborted) {
      onAbort();
      return;
    }
    o.signal?.addEventListener("abort", onAbort);
    startNext();
  });
}

// src/endpoints.ts
function base() {
  const loc = globalThis.location;
  return typeof loc?.href === "string" ? loc.href : void 0;
}
function parse(raw, what) {
  try {
    return new URL(raw, base());
  } catch {
    throw new TypeError(`switchyard: ${what} ${JSON.stringify(raw)} is not a valid URL`);
  }
}
function resolveEndpoints(url, o = {}) {
  const u = parse(url, "URL");
  const ep = {};
  switch (u.protocol) {
    case "https:": {
      const wt = new URL(u.href);
      if (wt.pathname === "" || wt.pathname === "/") wt.pathname = "/wt";
      ep.webTransport = wt.href;
      ep.webSocket = `wss://${u.host}/ws`;
      break;
    }
    case "http:":
      ep.webSocket = `ws://${u.host}/ws`;
      break;
    case "ws:":
    case "wss:":
      ep.webSocket = u.href;
      break;
    default:
      throw new TypeError(`switchyard: URL ${JSON.stringify(url)}: scheme must be https, http, wss or ws`);
  }
  if (o.webTransportUrl !== void 0) {
    const wt = parse(o.webTransportUrl, "webTransportUrl");
    if (wt.protocol !== "https:") {
      throw new TypeError(`switchyard: webTransportUrl ${JSON.stringify(o.webTransportUrl)} must be https://`);
    }
    ep.webTransport = wt.href;
  }
  if (o.webSocketUrl !== void 0) {
    const ws = parse(o.webSocketUrl, "webSocketUrl");
    if (ws.protocol === "http:") ws.protocol = "ws:";
    else if (ws.protocol === "https:") ws.protocol = "wss:";
    if (ws.protocol !== "ws:" && ws.protocol !== "wss:") {
      throw new TypeError(`switchyard: webSocketUrl ${JSON.stringify(o.webSocketUrl)} must be ws:// or wss://`);
    }
    ep.webSocket = ws.href;
  }
  if (o.certHashUrl !== void 0) {
    ep.certHash = parse(o.certHashUrl, "certHashUrl").href;
  } else if (ep.webSocket !== void 0) {
    const ws = new URL(ep.webSocket);
    ep.certHash = `${ws.protocol === "wss:" ? "https:" : "http:"}//${ws.host}/certhash`;
  }
  return ep;
}
function decodeCertHash(s) {
  let t = s.trim().replace(/-/g, "+").replace(/_/g, "/");
  while (t.length % 4 !== 0) t += "=";
  let bin;
  try {
    bin = atob(t);
  } catch {
    throw new TypeError("switchyard: certHash is not base64");
  }
  if (bin.length !== 32) {
    throw new TypeError(`switchyard: certHash has ${bin.length} bytes, want a 32-byte SHA-256`);
  }
  const b = new Uint8Array(32);
  for (let i = 0; i < 32; i++) b[i] = bin.charCodeAt(i);
  return b;
}
async function fetchCertHash(url, signal) {
  const rsp = await fetch(url, { cache: "no-store", credentials: "omit", signal });
  if (!rsp.ok) throw new Error(`GET ${url}: HTTP ${rsp.status}`);
  const body = await rsp.json();
  if (body.algorithm !== "sha-256" || typeof body.value !== "string") {
    throw new Error(`GET ${url}: not a sha-256 certificate hash`);
  }
  return decodeCertHash(body.value);
}

// src/transport.ts
var INTERNALS = /* @__PURE__ */ Symbol.for("switchyard.internals");

// src/framing.ts
var MAX_PREFIX_LEN = 4;
var MAX_INCOMING_FRAME = 32 << 20;
function readPrefix(b, pos, end, max) {
  let n = 0;
  for (let i = 0; i < MAX_PREFIX_LEN; i++) {
    if (pos + i >= end) return void 0;
    const c = b[pos + i];
    n += (c & 127) * 2 ** (7 * i);
    if (c < 128) {
      if (n > max) throw new ProtocolError(`frame of ${n} bytes, limit ${max}`, CODE_FRAME_TOO_LARGE);
      return [n, i + 1];
    }
  }
  throw new ProtocolError("bad length prefix");
}
function splitMessage(msg, max = MAX_INCOMING_FRAME) {
  if (msg.length === 0) throw new ProtocolError("empty message");
  const out = [];
  let pos = 0;
  while (pos < msg.length) {
    const p = readPrefix(msg, pos, msg.length, max);
    if (p === void 0) throw new ProtocolError("frame cut short: incomplete length prefix");
    const [n, k] = p;
    if (msg.length - pos - k < n) {
      throw new ProtocolError(`frame cut short: ${msg.length - pos - k} of ${n} bytes`);
    }
    out.push(msg.subarray(pos + k, pos + k + n));
    pos += k + n;
  }
  return out;
}
var FrameSplitter = class {
  constructor(max = MAX_INCOMING_FRAME) {
    this.max = max;
  }
  max;
  buf = new Uint8Array(0);
  start = 0;
  end = 0;
  /** Bytes received but not yet returned as a frame. */
  get buffered() {
    return this.end - this.start;
  }
  /**
   * Adds a chunk and returns the bodies of the frames it completes. The
   * bodies are copies. Throws ProtocolError on a bad prefix or a frame over
   * the limit; the splitter is then unusable.
   */
  push(chunk) {
    const out = [];
    let rest = chunk;
    if (this.buffered === 0) {
      let pos = 0;
      for (; ; ) {
        const p = readPrefix(chunk, pos, chunk.length, this.max);
        if (p === void 0 || chunk.length - pos - p[1] < p[0]) break;
        out.push(chunk.slice(pos + p[1], pos + p[1] + p[0]));
        pos += p[1] + p[0];
      }
      rest = chunk.subarray(pos);
      if (rest.length === 0) return out;
    }
    this.append(rest);
    for (; ; ) {
      const p = readPrefix(this.buf, this.start, this.end, this.max);
      if (p === void 0) break;
      const [n, k] = p;
      if (this.end - this.start - k < n) {
        this.reserve(k + n);
        break;
      }
      out.push(this.buf.slice(this.start + k, this.start + k + n));
      this.start += k + n;
    }
    if (this.start === this.end) this.start = this.end = 0;
    return out;
  }
  append(b) {
    this.reserve(this.buffered + b.length);
    this.buf.set(b, this.end);
    this.end += b.length;
  }
  /** Makes room for n bytes from start, moving or growing the buffer. */
  reserve(n) {
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
};

// src/websocket.ts
function closeCode(code) {
  return code === CLOSE_NORMAL || code >= 3e3 && code <= 4999 ? code : CLOSE_NORMAL;
}
var WebSocketTransport = class {
  constructor(url, h) {
    this.h = h;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      queueMicrotask(() => this.end(CLOSE_ABNORMAL, `websocket: ${String(e)}`));
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (!this.done) this.h.open();
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => {
      const reason = ev.reason || (ev.code === CLOSE_ABNORMAL ? "websocket connection lost or refused" : "");
      this.end(ev.code, reason);
    };
    ws.onerror = () => {
    };
  }
  h;
  name = "websocket";
  ws;
  done = false;
  receive(data) {
    if (this.done) return;
    if (!(data instanceof ArrayBuffer)) {
      this.fail(new ProtocolError("text message from the server"));
      return;
    }
    let bodies;
    try {
      bodies = splitMessage(new Uint8Array(data));
    } catch (e) {
      this.fail(e);
      return;
    }
    for (const b of bodies) {
      if (this.done) return;
      this.h.frame(b);
    }
  }
  send(frame) {
    if (this.done || this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(frame);
  }
  close(code, reason) {
    if (this.done) return;
    this.done = true;
    this.shut(code, reason);
  }
  shut(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(closeCode(code), trimReason(reason));
    } catch {
    }
  }
  /** Bad data from the server: close with its code and report it. */
  fail(e) {
    const reason = trimReason(`bad data from the server: ${e.message}`);
    this.shut(e.code, reason);
    this.end(e.code, reason);
  }
  end(code, reason) {
    if (this.done) return;
    this.done = true;
    this.h.close(code, reason);
  }
};

// src/webtransport.ts
var FIN_GRACE_MS = 2e3;
function describe(e) {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
var WebTransportTransport = class {
  constructor(url, hash, h) {
    this.url = url;
    this.hash = hash;
    this.h = h;
    void this.start();
  }
  url;
  hash;
  h;
  name = "webtransport";
  wt;
  writer;
  done = false;
  finTimer;
  abort = new AbortController();
  async start() {
    let stage = "certificate hash";
    try {
      let hashes;
      if (this.hash && "url" in this.hash) {
        hashes = [{ algorithm: "sha-256", value: await fetchCertHash(this.hash.url, this.abort.signal) }];
      } else if (this.hash) {
        hashes = [{ algorithm: "sha-256", value: this.hash.bytes }];
      }
      if (this.done) return;
      stage = "connect";
      const wt = new WebTransport(this.url, hashes ? { serverCertificateHashes: hashes } : {});
      this.wt = wt;
      wt.closed.then(
        (info) => this.end(info.closeCode ?? 0, info.reason ?? ""),
        (e) => this.end(0, `webtransport: ${describe(e)}`)
      );
      await wt.ready;
      if (this.done) return;
      stage = "open control stream";
      const stream = await wt.createBidirectionalStream();
      if (this.done) return;
      this.writer = stream.writable.getWriter();
      this.writer.closed.catch(() => {
      });
      void this.read(stream.readable.getReader());
      this.h.open();
    } catch (e) {
      this.fail(0, `webtransport ${stage}: ${describe(e)}`);
    }
  }
  async read(reader) {
    const splitter = new FrameSplitter();
    try {
      for (; ; ) {
        const { value, done } = await reader.read();
        if (this.done) return;
        if (done) {
          this.finTimer = setTimeout(() => this.fail(CLOSE_ABNORMAL, "control stream ended"), FIN_GRACE_MS);
          return;
        }
        let bodies;
        try {
          bodies = splitter.push(value);
        } catch (e) {
          const pe = e;
          this.fail(pe.code, `bad data from the server: ${pe.message}`);
          return;
        }
        for (const b of bodies) {
          if (this.done) return;
          this.h.frame(b);
        }
      }
    } catch (e) {
      if (this.done) return;
      const wt = this.wt;
      if (wt) await wt.closed.then(() => {
      }, () => {
      });
      this.fail(0, `webtransport: ${describe(e)}`);
    }
  }
  send(frame) {
    if (this.done || !this.writer) return;
    this.writer.write(frame).catch((e) => this.fail(0, `webtransport write: ${describe(e)}`));
  }
  close(code, reason) {
    if (this.done) return;
    this.done = true;
    this.shut(code, reason);
  }
  shut(code, reason) {
    if (this.finTimer !== void 0) clearTimeout(this.finTimer);
    this.abort.abort();
    const code32 = Number.isInteger(code) && code >= 0 && code <= 4294967295 ? code : 0;
    try {
      this.wt?.close({ closeCode: code32, reason: trimReason(reason) });
    } catch {
    }
  }
  /** Gives up on the session: close it with code and report. */
  fail(code, reason) {
    if (this.done) return;
    this.shut(code, reason);
    this.end(code, reason);
  }
  end(code, reason) {
    if (this.done) return;
    this.done = true;
    if (this.finTimer !== void 0) clearTimeout(this.finTimer);
    this.abort.abort();
    this.h.close(code, reason);
  }
};

// src/switchyard.ts
var RequestError = class extends Error {
  code;
  constructor(code, message) {
    super(message);
    this.name = "RequestError";
    this.code = code;
  }
};
var ClosedError = class extends Error {
  code;
  reason;
  constructor(code, reason) {
    super(reason ? `closed: ${code} ${reason}` : `closed: ${code}`);
    this.name = "ClosedError";
    this.code = code;
    this.reason = reason;
  }
};
var TimeoutError = class extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "TimeoutError";
  }
};
var textDecoder = new TextDecoder();
var textEncoder = new TextEncoder();
function decodeText(m) {
  return textDecoder.decode(m instanceof Uint8Array ? m : m.data);
}
function connect(url, options = {}) {
  let client;
  try {
    client = new ClientImpl(url, options);
  } catch (e) {
    return Promise.reject(e);
  }
  return client.start().then(() => client);
}
var EVENTS = ["connected", "disconnected", "reconnecting", "subscribed", "error"];
function rethrowLater(e) {
  const report = globalThis.reportError;
  if (typeof report === "function") report(e);
  else globalThis.setTimeout(() => {
    throw e;
  }, 0);
}
function positiveNumber(name, v, def, min = 0, max = Infinity) {
  if (v === void 0) return def;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw new RangeError(`switchyard: ${name} must be a number in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}
function settings(url, o, hooks) {
  const transports = o.transports ?? ["webtransport", "websocket"];
  if (!Array.isArray(transports) || transports.length === 0 || transports.some((t) => t !== "webtransport" && t !== "websocket") || new Set(transports).size !== transports.length) {
    throw new TypeError(`switchyard: transports must list "webtransport" and/or "websocket" once each, got ${JSON.stringify(transports)}`);
  }
  if (o.token !== void 0 && typeof o.token !== "string" && typeof o.token !== "function") {
    throw new TypeError("switchyard: token must be a string or a function returning one");
  }
  const ep = resolveEndpoints(url, o);
  let hash;
  if (o.certHash === "auto") {
    if (ep.certHash === void 0) throw new TypeError('switchyard: certHash "auto" needs a webSocketUrl or certHashUrl');
    hash = { url: ep.certHash };
  } else if (o.certHash !== void 0) {
    hash = { bytes: decodeCertHash(o.certHash) };
  }
  const wtAvailable = hooks.webTransport ?? typeof globalThis.WebTransport === "function";
  const names = transports.filter((t) => t === "websocket" ? ep.webSocket !== void 0 : ep.webTransport !== void 0 && wtAvailable);
  if (names.length === 0) {
    throw new TypeError(`switchyard: none of the transports ${JSON.stringify(transports)} can be used here` + (wtAvailable ? " (WebTransport needs an https:// URL)" : " (this browser has no WebTransport)"));
  }
  const min = positiveNumber("backoff.min", o.backoff?.min, 500, 1);
  const max = positiveNumber("backoff.max", o.backoff?.max, Math.max(2e4, min), min);
  const factory = hooks.factory ?? ((name, h) => name === "webtransport" ? new WebTransportTransport(ep.webTransport, hash, h) : new WebSocketTransport(ep.webSocket, h));
  return {
    s: {
      names,
      token: o.token,
      fallbackDelay: positiveNumber("fallbackDelay", o.fallbackDelay, 500, 0, 1e3),
      stableAfter: positiveNumber("stableAfter", o.stableAfter, 1e4),
      requestTimeout: positiveNumber("requestTimeout", o.requestTimeout, 1e4, 1),
      connectTimeout: positiveNumber("connectTimeout", o.connectTimeout, 1e4, 1)
    },
    factory,
    backoff: new Backoff(min, max, hooks.random)
  };
}
var SubscriptionImpl = class {
  constructor(client, channel, handler) {
    this.client = client;
    this.channel = channel;
    this.handler = handler;
  }
  client;
  channel;
  handler;
  /** pending: waiting for Subscribed (first time or after a reconnect). */
  state = "pending";
  /** The server confirmed it at least once. */
  confirmed = false;
  epoch = "";
  offset = 0;
  waiter;
  /** The connection its Unsubscribe went out on. */
  unsubscribedOn;
  get position() {
    return { epoch: this.epoch, offset: this.offset };
  }
  get active() {
    return this.state === "active";
  }
  unsubscribe() {
    return this.client.unsubscribe(this);
  }
};
var ClientImpl = class {
  // immutable after the constructor
  s;
  factory;
  backoff;
  clock;
  listeners = /* @__PURE__ */ new Map();
  transport;
  state = "connecting";
  sessionId = "";
  closed = false;
  endError;
  // what requests fail with once closed
  subs = /* @__PURE__ */ new Map();
  // by channel: pending or active
  waiting = [];
  // requests for the next connection
  conn;
  // the live session
  inflight = /* @__PURE__ */ new Map();
  // of conn
  cancel;
  // the race or backoff wait under way
  serveDone;
  lastFailure;
  first;
  constructor(url, options) {
    const hooks = options[INTERNALS] ?? {};
    const { s, factory, backoff } = settings(url, options, hooks);
    this.s = s;
    this.factory = factory;
    this.backoff = backoff;
    this.clock = hooks.clock ?? realClock;
    this.transport = s.names[0];
    if (options.on !== void 0) {
      if (typeof options.on !== "object" || options.on === null) throw new TypeError("switchyard: on must map event names to handlers");
      for (const [event, handler] of Object.entries(options.on)) {
        if (handler !== void 0) this.on(event, handler);
      }
    }
  }
  /** Runs the client; resolves on the first session, rejects when connect() fails. */
  start() {
    const p = new Promise((resolve, reject) => {
      this.first = { resolve, reject };
    });
    const timer = this.clock.setTimeout(() => {
      if (!this.first) return;
      const last = this.lastFailure;
      const cause = last ? new ClosedError(last.code, last.reason) : void 0;
      this.shutdown(new TimeoutError(
        `switchyard: not connected within ${this.s.requestTimeout} ms` + (last ? ` (last failure: ${last.code} ${last.reason})` : ""),
        { cause }
      ));
    }, this.s.requestTimeout);
    void this.run();
    return p.finally(() => this.clock.clearTimeout(timer));
  }
  // ------------------------------------------------------ reconnect loop
  async run() {
    while (!this.closed) {
      let conn;
      try {
        conn = await this.attempt();
      } catch (e) {
        if (this.closed) return;
        const info2 = e;
        this.lastFailure = info2;
        if (!reconnectAllowed(info2.code)) {
          this.terminate(info2);
          return;
        }
        if (!await this.pause(info2.reconnectAfterMs)) return;
        continue;
      }
      if (this.closed) {
        conn.close(CLOSE_NORMAL, "client closed");
        return;
      }
      const info = await this.serve(conn);
      if (this.closed) return;
      this.lastFailure = info;
      if (!reconnectAllowed(info.code)) {
        this.terminate(info);
        return;
      }
      this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: true });
      if (this.closed) return;
      if (this.clock.now() - conn.connectedAt >= this.s.stableAfter) this.backoff.reset();
      if (!await this.pause(info.reconnectAfterMs)) return;
    }
  }
  /** One connection attempt: get the token, race the transports. Rejects with a CloseInfo. */
  async attempt() {
    const ac = new AbortController();
    this.cancel = ac;
    try {
      let token = "";
      if (typeof this.s.token === "function") {
        try {
          token = await this.within(Promise.resolve(this.s.token()), this.s.connectTimeout, ac.signal);
        } catch (e) {
          throw { code: 0, reason: `token: ${e instanceof Error ? e.message : String(e)}` };
        }
        if (typeof token !== "string") throw { code: 0, reason: "token: the function did not return a string" };
      } else if (typeof this.s.token === "string") {
        token = this.s.token;
      }
      return await race({
        names: this.s.names,
        fallbackDelay: this.s.fallbackDelay,
        timeout: this.s.connectTimeout,
        clock: this.clock,
        start: (name) => new Connection(name, this.factory, token, this.clock),
        signal: ac.signal
      });
    } finally {
      if (this.cancel === ac) this.cancel = void 0;
    }
  }
  /** Resolves like p, or rejects after ms or on abort. */
  within(p, ms, signal) {
    return new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      const onAbort = () => reject(new Error("aborted"));
      signal.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => {
        this.clock.clearTimeout(t);
        signal.removeEventListener("abort", onAbort);
      });
    });
  }
  /** Waits out the next backoff delay; false if the client closed meanwhile. */
  async pause(hintMs) {
    this.state = "reconnecting";
    const { attempt, delay: jittered } = this.backoff.next();
    const delay = Math.max(jittered, hintMs ?? 0);
    this.emit("reconnecting", { attempt, delay });
    if (this.closed) return false;
    const ac = new AbortController();
    this.cancel = ac;
    await new Promise((resolve) => {
      const t = this.clock.setTimeout(resolve, delay);
      ac.signal.addEventListener("abort", () => {
        this.clock.clearTimeout(t);
        resolve();
      }, { once: true });
    });
    if (this.cancel === ac) this.cancel = void 0;
    return !this.closed;
  }
  /** Runs a session until it ends; resolves with how it ended. */
  serve(conn) {
    return new Promise((resolve) => {
      const c = conn.connected;
      this.conn = conn;
      this.inflight = /* @__PURE__ */ new Map();
      this.state = "connected";
      this.transport = conn.name;
      this.sessionId = c.sessionId;
      this.serveDone = resolve;
      conn.attach({
        frame: (f) => this.onFrame(conn, f),
        closed: (info) => {
          if (this.conn === conn) this.lost(info);
          resolve(info);
        }
      });
      if (this.conn !== conn) return;
      for (const sub of this.subs.values()) this.sendSubscribe(conn, sub);
      const waiting = this.waiting;
      this.waiting = [];
      for (const req of waiting) this.sendRequest(conn, req);
      this.emit("connected", { transport: conn.name, sessionId: c.sessionId, node: c.node, region: c.region });
      const first = this.first;
      this.first = void 0;
      first?.resolve();
    });
  }
  /** The live session ended: fail what was in flight on it, keep the rest for the next one. */
  lost(info) {
    this.conn = void 0;
    this.serveDone = void 0;
    this.state = "reconnecting";
    const inflight = this.inflight;
    this.inflight = /* @__PURE__ */ new Map();
    for (const x of inflight.values()) {
      if (x.kind !== "request") continue;
      if (x.req.kind === "unsubscribe") this.settle(x.req);
      else this.settle(x.req, new ClosedError(info.code, info.reason));
    }
    for (const sub of this.subs.values()) if (sub.state === "active") sub.state = "pending";
  }
  /** A terminal close code: stop for good. */
  terminate(info) {
    this.shutdown(new ClosedError(info.code, info.reason), { code: info.code, reason: info.reason, reconnect: false });
  }
  /** Stops everything; err is what pending and later requests fail with. */
  shutdown(err, event, code = CLOSE_NORMAL, reason = "client closed") {
    if (this.closed) return;
    this.closed = true;
    this.endError = err;
    this.state = "closed";
    this.cancel?.abort();
    const conn = this.conn;
    this.conn = void 0;
    conn?.close(code, reason);
    const inflight = this.inflight;
    this.inflight = /* @__PURE__ */ new Map();
    for (const x of inflight.values()) {
      if (x.kind !== "request") continue;
      if (x.req.kind === "unsubscribe") this.settle(x.req);
      else this.settle(x.req, err);
    }
    const waiting = this.waiting;
    this.waiting = [];
    for (const req of waiting) this.settle(req, err);
    for (const sub of this.subs.values()) {
      sub.state = "closed";
      const w = sub.waiter;
      sub.waiter = void 0;
      if (w) {
        this.clock.clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.subs.clear();
    const done = this.serveDone;
    this.serveDone = void 0;
    done?.({ code, reason });
    const first = this.first;
    this.first = void 0;
    first?.reject(err);
    if (event) this.emit("disconnected", event);
  }
  // ------------------------------------------------------------ frames
  onFrame(conn, f) {
    if (conn !== this.conn) return;
    if (f.type === "message") {
      const sub = this.subs.get(f.channel);
      if (sub?.state !== "active") return;
      sub.epoch = f.epoch;
      sub.offset = f.offset;
      try {
        sub.handler({ channel: f.channel, data: f.data, epoch: f.epoch, offset: f.offset });
      } catch (e) {
        this.report(e, f.channel);
      }
      return;
    }
    if (f.id === 0) return;
    const x = this.inflight.get(f.id);
    if (!x) return;
    this.inflight.delete(f.id);
    if (x.kind === "subscribe") this.onSubscribeReply(conn, x.sub, f);
    else if (x.kind === "request") this.onRequestReply(x.req, f);
  }
  onSubscribeReply(conn, sub, f) {
    if (sub.state === "closed" || this.subs.get(sub.channel) !== sub) {
      if (f.type === "subscribed" && sub.unsubscribedOn !== conn) this.sendUnsubscribeNoWait(conn, sub.channel);
      return;
    }
    if (f.type === "subscribed") {
      const resubscribed = sub.confirmed;
      const missed = !resubscribed ? 0 : f.epoch === sub.epoch ? Math.max(0, f.offset - sub.offset) : null;
      sub.state = "active";
      sub.confirmed = true;
      sub.epoch = f.epoch;
      sub.offset = f.offset;
      const w2 = sub.waiter;
      sub.waiter = void 0;
      if (w2) {
        this.clock.clearTimeout(w2.timer);
        w2.resolve(sub);
      }
      this.emit("subscribed", { channel: sub.channel, epoch: f.epoch, offset: f.offset, resubscribed, missed });
      return;
    }
    this.subs.delete(sub.channel);
    sub.state = "closed";
    const err = f.type === "error" ? new RequestError(f.code, f.message) : new Error(`switchyard: unexpected reply ${f.type} to subscribe`);
    const w = sub.waiter;
    sub.waiter = void 0;
    if (w) {
      this.clock.clearTimeout(w.timer);
      w.reject(err);
    } else {
      this.emit("error", { error: err, channel: sub.channel });
    }
  }
  onRequestReply(req, f) {
    if (f.type === "error") {
      if (req.kind === "unsubscribe" && f.code === ERR_NOT_SUBSCRIBED) this.settle(req);
      else this.settle(req, new RequestError(f.code, f.message));
    } else if (req.kind === "publish" && f.type === "publishAck") {
      this.settle(req, void 0, { epoch: f.epoch, offset: f.offset });
    } else if (req.kind === "unsubscribe" && f.type === "unsubscribed") {
      this.settle(req);
    } else {
      this.settle(req, new Error(`switchyard: unexpected reply ${f.type} to ${req.kind}`));
    }
  }
  nextId(conn) {
    return conn.nextId((id) => this.inflight.has(id));
  }
  sendSubscribe(conn, sub) {
    const id = this.nextId(conn);
    this.inflight.set(id, { kind: "subscribe", sub });
    conn.send(id, "subscribe", { channel: sub.channel });
  }
  sendUnsubscribeNoWait(conn, channel) {
    const id = this.nextId(conn);
    this.inflight.set(id, { kind: "ignore" });
    conn.send(id, "unsubscribe", { channel });
  }
  sendRequest(conn, req) {
    if (req.settled) return;
    const id = this.nextId(conn);
    let frame;
    try {
      frame = encodeFrame(id, req.kind, { channel: req.channel, data: req.data });
    } catch (e) {
      this.settle(req, e);
      return;
    }
    const max = conn.connected?.maxFrameSize ?? 0;
    const size = frameBodyLength(frame);
    if (max > 0 && size > max) {
      this.settle(req, new RequestError(
        ERR_PAYLOAD_TOO_LARGE,
        `publish frame of ${size} bytes exceeds the server's max_frame_size of ${max}`
      ));
      return;
    }
    this.inflight.set(id, { kind: "request", req });
    conn.sendRaw(frame);
  }
  settle(req, err, value) {
    if (req.settled) return;
    req.settled = true;
    this.clock.clearTimeout(req.timer);
    if (err) req.reject(err);
    else req.resolve(value);
  }
  // -------------------------------------------------------- public API
  subscribe(channel, handler) {
    if (this.closed) return Promise.reject(this.endError);
    if (typeof channel !== "string") return Promise.reject(new TypeError("switchyard: channel must be a string"));
    if (typeof handler !== "function") return Promise.reject(new TypeError("switchyard: subscribe needs a handler function"));
    if (this.subs.has(channel)) {
      return Promise.reject(new RequestError(ERR_ALREADY_SUBSCRIBED, `already subscribed to ${channel}`));
    }
    const sub = new SubscriptionImpl(this, channel, handler);
    this.subs.set(channel, sub);
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        if (sub.waiter === void 0) return;
        sub.waiter = void 0;
        if (this.subs.get(channel) === sub) this.subs.delete(channel);
        sub.state = "closed";
        reject(new TimeoutError(`switchyard: subscribe to ${channel} not confirmed within ${this.s.requestTimeout} ms`));
      }, this.s.requestTimeout);
      sub.waiter = { resolve, reject, timer };
      if (this.conn) this.sendSubscribe(this.conn, sub);
    });
  }
  /** Subscription.unsubscribe. */
  unsubscribe(sub) {
    if (sub.state === "closed") return Promise.resolve();
    sub.state = "closed";
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
    const conn = this.conn;
    if (!conn) return Promise.resolve();
    sub.unsubscribedOn = conn;
    return this.request("unsubscribe", sub.channel).then(() => {
    });
  }
  publish(channel, data) {
    if (this.closed) return Promise.reject(this.endError);
    if (typeof channel !== "string") return Promise.reject(new TypeError("switchyard: channel must be a string"));
    let bytes;
    if (typeof data === "string") bytes = textEncoder.encode(data);
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data.slice(0));
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    else return Promise.reject(new TypeError("switchyard: publish data must be a string, Uint8Array or ArrayBuffer"));
    return this.request("publish", channel, bytes);
  }
  request(kind, channel, data) {
    return new Promise((resolve, reject) => {
      const req = { kind, channel, data, resolve, reject, timer: void 0, settled: false };
      req.timer = this.clock.setTimeout(() => {
        if (req.settled) return;
        this.waiting = this.waiting.filter((r) => r !== req);
        if (kind === "unsubscribe") {
          this.settle(req);
        } else {
          this.settle(req, new TimeoutError(`switchyard: ${kind} to ${channel} not acknowledged within ${this.s.requestTimeout} ms`));
        }
      }, this.s.requestTimeout);
      if (this.conn) this.sendRequest(this.conn, req);
      else this.waiting.push(req);
    });
  }
  on(event, handler) {
    if (!EVENTS.includes(event)) throw new TypeError(`switchyard: unknown event ${JSON.stringify(event)}`);
    if (typeof handler !== "function") throw new TypeError("switchyard: handler must be a function");
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => this.off(event, handler);
  }
  off(event, handler) {
    this.listeners.get(event)?.delete(handler);
  }
  emit(event, payload) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(payload);
      } catch (e) {
        rethrowLater(e);
      }
    }
  }
  /** An exception from a message handler: to "error" listeners, else reported as uncaught. */
  report(e, channel) {
    if (this.listeners.get("error")?.size) {
      this.emit("error", { error: e instanceof Error ? e : new Error(String(e)), channel });
    } else {
      rethrowLater(e);
    }
  }
  close() {
    this.shutdown(
      new ClosedError(CLOSE_NORMAL, "client closed"),
      this.conn ? { code: CLOSE_NORMAL, reason: "client closed", reconnect: false } : void 0
    );
  }
};
export {
  ClosedError,
  RequestError,
  TimeoutError,
  connect,
  decodeText
};
