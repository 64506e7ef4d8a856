// Test doubles: a fake clock whose timers run only when the test advances
// time, and fake transports driven by a small in-memory Switchyard node
// (with volatile channels: datagrams on WebTransport, messages on
// WebSocket; per-subscription streams on WebTransport when asked;
// presence: members, join and leave events, the presence request; and
// token refreshes).

import { decodeFrame, encodeFrame } from "../src/codec.js";
import { encodeDatagram, parseDatagram } from "../src/datagram.js";
import type { ClientInfoBody, Frame, Kind, Kinds } from "../src/codec.js";
import type { Clock } from "../src/clock.js";
import type { Target } from "../src/endpoints.js";
import { splitMessage } from "../src/framing.js";
import { INTERNALS } from "../src/transport.js";
import type { Internals, Transport, TransportHandlers } from "../src/transport.js";
import type { ConnectOptions, TransportName } from "../src/switchyard.js";

/** Lets every pending promise callback run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Timer { id: number; due: number; fn: () => void }

export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: Timer[] = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.push({ id, due: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }

  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by ms, running due timers in order and settling promises between them. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await flush();
    for (;;) {
      let next: Timer | undefined;
      for (const x of this.timers) if (x.due <= target && (!next || x.due < next.due || (x.due === next.due && x.id < next.id))) next = x;
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.due;
      next.fn();
      await flush();
    }
    this.t = target;
    await flush();
  }

  /** Advances in steps of ms until cond holds; fails after limit ms. */
  async until(cond: () => boolean, limit = 60_000, step = 10): Promise<void> {
    const end = this.t + limit;
    while (!cond()) {
      if (this.t >= end) throw new Error(`condition not met within ${limit} ms of fake time`);
      await this.advance(step);
    }
  }
}

/** What a fake transport does when created. */
export type Behavior =
  | { kind: "serve"; openAfter?: number } // opens (after ms) and serves like a node
  | { kind: "hang" } // never opens
  | { kind: "fail"; after?: number; code?: number; reason?: string } // closes before opening
  | { kind: "refuse"; code: number; reason: string }; // opens, then Disconnect + close with code

export class FakeTransport implements Transport {
  /** Client frames the server received. */
  readonly received: Frame[] = [];
  /** Client datagrams (alias, seq, payload) the server received. */
  readonly datagrams: Uint8Array[] = [];
  /** The server delivers on per-subscription streams (granted in Connected). */
  streams = false;
  /** The session's subscriptions: alias → channel. */
  readonly aliases = new Map<number, string>();
  closedBy: { code: number; reason: string } | undefined; // the client closed it
  ended = false; // the server side ended it
  readonly createdAt: number;
  /** The client's send buffer is full (writable() false). */
  full = false;
  /** The session in presence: its id and Connect's user and info (set by connect). */
  member: ClientInfoBody | undefined;
  private open = false;

  constructor(
    readonly name: TransportName,
    private readonly h: TransportHandlers,
    readonly net: FakeNet,
    readonly behavior: Behavior,
    /** The node it was made for. */
    readonly target: Target,
  ) {
    this.createdAt = net.clock.now();
    const c = net.clock;
    switch (behavior.kind) {
      case "serve":
        c.setTimeout(() => this.accept(), behavior.openAfter ?? 1);
        break;
      case "fail":
        c.setTimeout(() => this.drop(behavior.code ?? (name === "websocket" ? 1006 : 0), behavior.reason ?? "unreachable"), behavior.after ?? 1);
        break;
      case "refuse":
        c.setTimeout(() => this.accept(), 1);
        break;
      case "hang":
        break;
    }
  }

  get live(): boolean {
    return this.open && !this.closedBy && !this.ended;
  }

  /** The server accepts the transport: the client may send. */
  accept(): void {
    if (this.closedBy || this.ended) return;
    this.open = true;
    this.h.open();
  }

  /** The server pushes a frame. */
  push<K extends Kind>(id: number, kind: K, body: Partial<Kinds[K]> = {}): void {
    this.pushRaw(encodeFrame(id, kind, body));
  }

  /** The server pushes a frame on the stream of the subscription with alias. */
  pushStream<K extends Kind>(alias: number, kind: K, body: Partial<Kinds[K]> = {}): void {
    if (!this.live) return;
    for (const b of splitMessage(encodeFrame(0, kind, body))) this.h.streamFrame(alias, b);
  }

  /** The server sends a datagram. */
  pushDatagram(alias: number, seq: number, payload: Uint8Array): void {
    this.pushDatagramBytes(encodeDatagram(alias, seq, payload));
  }

  /** The server sends a datagram of these bytes. */
  pushDatagramBytes(b: Uint8Array): void {
    if (this.live) this.h.datagram(b);
  }

  /** The server pushes raw bytes as one message (frames are cut out of it). */
  pushRaw(bytes: Uint8Array): void {
    if (!this.live) return;
    for (const b of splitMessage(bytes)) {
      if (!this.live) return;
      this.h.frame(b);
    }
  }

  /** The transport ends from the server's side (or the network's). */
  drop(code: number, reason: string): void {
    if (this.closedBy || this.ended) return;
    this.ended = true;
    this.net.onLeave(this);
    this.h.close(code, reason);
  }

  /** The server ends the session: Disconnect then the transport close. */
  disconnect(code: number, reason: string): void {
    this.push(0, "disconnect", { code, reason, reconnect: !(code >= 3500 && code < 4000) && !(code >= 4500) });
    this.drop(code, reason);
  }

  send(frame: Uint8Array): void {
    if (this.closedBy || this.ended) throw new Error("send on a closed transport");
    if (!this.open) throw new Error("send before open");
    for (const b of splitMessage(frame)) {
      const f = decodeFrame(b);
      if (f.type === "unknown") throw new Error("client sent an unknown frame");
      this.received.push(f);
      // The node answers asynchronously, as a real one would.
      queueMicrotask(() => {
        if (!this.closedBy && !this.ended) this.net.serve(this, f);
      });
    }
  }

  writable(): boolean {
    return !this.full;
  }

  /** WebTransport only, like the real transports. */
  sendDatagram(datagram: Uint8Array): boolean {
    if (this.name !== "webtransport" || !this.live || datagram.length > this.net.datagramPathMax) return false;
    this.datagrams.push(datagram);
    const d = parseDatagram(datagram);
    if (!d) throw new Error("client sent a malformed datagram");
    queueMicrotask(() => {
      if (this.live) this.net.datagram(this, d.alias, d.payload);
    });
    return true;
  }

  close(code: number, reason: string): void {
    if (this.closedBy || this.ended) return;
    this.closedBy = { code, reason };
    this.net.onLeave(this);
  }

  /** Client frames of one kind. */
  sent<K extends Kind>(kind: K): Extract<Frame, { type: K }>[] {
    return this.received.filter((f) => f.type === kind) as Extract<Frame, { type: K }>[];
  }
}

/**
 * FakeNet creates fake transports and plays a single Switchyard node
 * behind them: channels with epochs and offsets, subscriptions per
 * transport, publish acks and fan-out.
 */
export class FakeNet {
  readonly clock = new FakeClock();
  readonly transports: FakeTransport[] = [];
  /** Decides what each new transport does; default: serve at once. */
  behave: (name: TransportName, n: number, url: string) => Behavior = () => ({ kind: "serve" });
  /** Connected fields the node announces. */
  connected: Partial<Kinds["connected"]> = { pingIntervalMs: 0, pongTimeoutMs: 0, maxFrameSize: 65536, node: "n1", region: "local", protocol: "switchyard.v1", maxDatagramSize: 1100 };
  /** Whether the node grants per-subscription streams to WebTransport sessions that ask. */
  grantStreams = true;
  /** The largest datagram the (fake) QUIC path takes. */
  datagramPathMax = 1200;
  /** Which channels are volatile. */
  volatile = (channel: string): boolean => channel.startsWith("game:");
  /** Which channels keep presence (as on a dev node). */
  presence = (channel: string): boolean => channel === "chat" || channel.startsWith("chat:");
  /** When false the node does not answer requests (replies are left to the test). */
  answer = true;
  /**
   * How many publications of a channel the node keeps for recovery
   * (Subscribe.recover): 0 recovers only a client that missed nothing.
   */
  history = 0;
  /**
   * Idempotent publishes: how long, in ms, the node remembers a publish's
   * key (per channel); a repeat within it is acked with the original
   * position and duplicate: true, and not published again.
   */
  dedupeWindow = 120_000;
  /** When true the node applies publishes but their acks get lost (as if the connection broke first). */
  loseAcks = false;
  /**
   * Answers a Refresh: the new token's expires_in_s (Refreshed), or
   * undefined to refuse it (Error 110). Default: the Connected's.
   */
  refresh = (_token: string): number | undefined => this.connected.expiresInS ?? 0;
  /** Keys seen: channel + "\n" + key → the publication's position and when. */
  private keys = new Map<string, { epoch: string; offset: number; at: number }>();
  /** Channels; subs maps each subscribed transport to its alias; log holds the epoch's publications. */
  private channels = new Map<string, {
    epoch: string;
    offset: number;
    subs: Map<FakeTransport, number>;
    log: { offset: number; data: Uint8Array }[];
    events: Set<FakeTransport>; // subscribers that asked for presence events
  }>();
  private sessions = 0;
  private epochs = 0;

  readonly factory = (name: TransportName, h: TransportHandlers, target: Target): Transport => {
    const url = (name === "webtransport" ? target.webTransport : target.webSocket)!;
    const t = new FakeTransport(name, h, this, this.behave(name, this.transports.length, url), target);
    this.transports.push(t);
    return t;
  };

  /** ConnectOptions with these fakes injected. */
  options(o: ConnectOptions = {}, hooks: Partial<Internals> = {}): ConnectOptions {
    return { ...o, [INTERNALS]: { factory: this.factory, clock: this.clock, random: () => 0.5, webTransport: true, ...hooks } } as ConnectOptions;
  }

  /** Transports of one name, oldest first. */
  of(name: TransportName): FakeTransport[] {
    return this.transports.filter((t) => t.name === name);
  }

  get last(): FakeTransport {
    const t = this.transports[this.transports.length - 1];
    if (!t) throw new Error("no transport yet");
    return t;
  }

  /** The transport the client is connected over. */
  get current(): FakeTransport {
    const live = this.transports.filter((t) => t.live && t.sent("connect").length > 0);
    if (live.length !== 1) throw new Error(`${live.length} live sessions`);
    return live[0]!;
  }

  /** Publishes from the server side (like POST /api/publish). */
  publish(channel: string, data: string | Uint8Array, lost = false): { epoch: string; offset: number } {
    const ch = this.channel(channel);
    ch.offset++;
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    ch.log.push({ offset: ch.offset, data: bytes });
    if (!lost) for (const [t, alias] of ch.subs) this.deliver(t, alias, channel, ch.epoch, ch.offset, bytes);
    return { epoch: ch.epoch, offset: ch.offset };
  }

  /** A publication lost on its way to this node: in the history, delivered to nobody. */
  lose(channel: string, data: string | Uint8Array): { epoch: string; offset: number } {
    return this.publish(channel, data, true);
  }

  /** The node ends every subscription to channel on its own: an Unsubscribed push with code. */
  endSubscriptions(channel: string, code = 3005, reason = "missed messages"): void {
    const ch = this.channel(channel);
    for (const [t, alias] of ch.subs) {
      this.unsubscribed(channel, t);
      t.aliases.delete(alias);
      t.push(0, "unsubscribed", { channel, code, reason });
    }
  }

  /** One delivery, the way the node sends it to this transport. */
  private deliver(t: FakeTransport, alias: number, channel: string, epoch: string, offset: number, data: Uint8Array): void {
    if (this.volatile(channel) && t.name === "webtransport") t.pushDatagram(alias, offset, data);
    else if (t.streams) t.pushStream(alias, "message", { channel, epoch, offset, data });
    else t.push(0, "message", { channel, epoch, offset, data });
  }

  /** A datagram from a client (a QUIC datagram or a Datagram frame). */
  datagram(t: FakeTransport, alias: number, payload: Uint8Array): void {
    const channel = t.aliases.get(alias);
    if (channel === undefined || !this.volatile(channel)) {
      t.push(0, "error", { code: 105, message: `datagram for alias ${alias}: no volatile subscription has it` });
      return;
    }
    this.publish(channel, payload);
  }

  /** Drops a channel so that its next use starts a new epoch. */
  reset(channel: string): void {
    this.channels.delete(channel);
  }

  subscribers(channel: string): number {
    return this.channels.get(channel)?.subs.size ?? 0;
  }

  private channel(name: string) {
    let ch = this.channels.get(name);
    if (!ch) {
      ch = { epoch: this.volatile(name) ? "" : `epoch${++this.epochs}`, offset: 0, subs: new Map(), log: [], events: new Set<FakeTransport>() };
      this.channels.set(name, ch);
    }
    return ch;
  }

  onLeave(t: FakeTransport): void {
    for (const name of this.channels.keys()) this.unsubscribed(name, t);
  }

  /** t is no longer subscribed to the channel: its members hear that it left. */
  private unsubscribed(name: string, t: FakeTransport): void {
    const ch = this.channels.get(name);
    if (!ch?.subs.delete(t)) return;
    ch.events.delete(t);
    if (this.presence(name)) this.presenceEvent(name, "leave", t);
  }

  /** A join or leave of t, to the other subscribers that asked for events. */
  presenceEvent(channel: string, kind: "join" | "leave", t: FakeTransport): void {
    for (const o of this.channel(channel).events) if (o !== t) o.push(0, kind, { channel, member: t.member });
  }

  /** The members of a channel, sorted by client id. */
  members(channel: string): ClientInfoBody[] {
    return [...this.channel(channel).subs.keys()].map((t) => t.member!).sort((a, b) => (a.client < b.client ? -1 : 1));
  }

  serve(t: FakeTransport, f: Frame): void {
    const b = t.behavior;
    if (f.type === "connect") {
      if (b.kind === "refuse") {
        t.disconnect(b.code, b.reason);
        return;
      }
      t.streams = f.streams && t.name === "webtransport" && this.grantStreams;
      const sessionId = `s${++this.sessions}`;
      t.member = { client: sessionId, user: f.user, info: f.info };
      t.push(f.id, "connected", { sessionId, ...this.connected, streams: t.streams });
      return;
    }
    if (f.type === "datagram") {
      this.datagram(t, f.alias, f.data);
      return;
    }
    if (!this.answer) return;
    switch (f.type) {
      case "refresh": {
        const s = this.refresh(f.token);
        if (s === undefined) t.push(f.id, "error", { code: 110, message: "refresh refused: bad token" });
        else t.push(f.id, "refreshed", { expiresInS: s });
        return;
      }
      case "subscribe": {
        const ch = this.channel(f.channel);
        if (ch.subs.has(t)) {
          t.push(f.id, "error", { code: 104, message: "already subscribed to " + f.channel });
          return;
        }
        if (f.alias < 1 || f.alias > 16383 || t.aliases.has(f.alias)) {
          t.push(f.id, "error", { code: 100, message: `alias ${f.alias} is taken or out of range` });
          return;
        }
        ch.subs.set(t, f.alias);
        t.aliases.set(f.alias, f.channel);
        const volatile = this.volatile(f.channel);
        // Recovery: the history covers the client's position (same epoch, nothing after it gone).
        const recovered = f.recover && !volatile && f.sinceEpoch === ch.epoch &&
          f.sinceOffset <= ch.offset && f.sinceOffset >= ch.offset - this.history;
        const at = recovered ? f.sinceOffset : ch.offset;
        t.push(f.id, "subscribed", { channel: f.channel, epoch: ch.epoch, offset: at, alias: f.alias, volatile, recovered });
        if (this.presence(f.channel)) {
          this.presenceEvent(f.channel, "join", t);
          if (f.presence) ch.events.add(t);
        }
        if (recovered) {
          for (const p of ch.log) if (p.offset > at) this.deliver(t, f.alias, f.channel, ch.epoch, p.offset, p.data);
        }
        return;
      }
      case "unsubscribe": {
        const ch = this.channels.get(f.channel);
        if (!ch?.subs.has(t)) {
          t.push(f.id, "error", { code: 105, message: "not subscribed to " + f.channel });
          return;
        }
        t.aliases.delete(ch.subs.get(t)!);
        this.unsubscribed(f.channel, t);
        t.push(f.id, "unsubscribed", { channel: f.channel });
        return;
      }
      case "presence": {
        if (!this.channels.get(f.channel)?.subs.has(t)) {
          t.push(f.id, "error", { code: 105, message: `presence of ${f.channel}: subscribe to it first` });
          return;
        }
        if (!this.presence(f.channel)) {
          t.push(f.id, "error", { code: 100, message: `${f.channel}: this channel keeps no presence` });
          return;
        }
        const members = this.members(f.channel);
        t.push(f.id, "presenceReply", {
          channel: f.channel,
          members: f.countsOnly ? [] : members,
          clients: members.length,
          users: new Set(members.map((m) => m.user)).size,
          truncated: f.countsOnly && members.length > 0,
        });
        return;
      }
      case "publish": {
        if (f.channel === "" || f.channel.includes(" ")) {
          t.push(f.id, "error", { code: 102, message: "invalid channel" });
          return;
        }
        if (this.volatile(f.channel) && f.data.length > (this.connected.maxDatagramSize ?? 0)) {
          t.push(f.id, "error", { code: 106, message: "payload too large" });
          return;
        }
        if (new TextEncoder().encode(f.idempotencyKey).length > 64) {
          t.push(f.id, "error", { code: 100, message: "idempotency key longer than 64 bytes" });
          return;
        }
        const k = `${f.channel}\n${f.idempotencyKey}`;
        const seen = f.idempotencyKey === "" ? undefined : this.keys.get(k);
        if (seen && this.clock.now() - seen.at < this.dedupeWindow) {
          if (!this.loseAcks) t.push(f.id, "publishAck", { epoch: seen.epoch, offset: seen.offset, duplicate: true });
          return;
        }
        const { epoch, offset } = this.publish(f.channel, f.data);
        if (f.idempotencyKey !== "") this.keys.set(k, { epoch, offset, at: this.clock.now() });
        if (!this.loseAcks) t.push(f.id, "publishAck", { epoch, offset });
        return;
      }
    }
  }
}
