// Rooms over the node's signaling endpoint (docs/signaling.md,
// switchyard-signal.v1): JSON messages over a WebSocket at /signal. A
// RoomImpl keeps the membership, one RTCPeerConnection per peer on demand
// (wired by negotiation.ts), and rejoins after a lost WebSocket with the
// peer id and resume secret of the last joined, so that its peer
// connections survive. What it sends while rejoining waits for the next
// joined (and is dropped if the peer id changed).

import { Backoff } from "./backoff.js";
import { realClock } from "./clock.js";
import type { Clock } from "./clock.js";
import { CLOSE_NORMAL, CODE_HEARTBEAT_TIMEOUT, reconnectAllowed } from "./codes.js";
import { negotiate } from "./negotiation.js";
import type { Signal } from "./negotiation.js";
import { rethrowLater } from "./report.js";
import { ClosedError, SignalError, TimeoutError } from "./switchyard.js";
import type { JoinOptions, Room, RoomEventName, RoomEvents, RoomState } from "./switchyard.js";
import { INTERNALS } from "./transport.js";
import type { Internals } from "./transport.js";

/** Close code: the peer id was resumed on another connection. Not retried. */
const CODE_REPLACED = 4500; // terminal anyway (4500–4999); named for the reader
/** At most this many messages wait for a rejoin; later ones are dropped. */
const MAX_QUEUED = 128; // within the server's burst (200) of a new connection

const EVENTS: readonly RoomEventName[] = ["join", "leave", "connection", "message", "error", "disconnected", "reconnecting", "reconnected"];

/** A server message: the members of all types (docs/signaling.md §3); others are ignored. */
interface Incoming {
  type?: unknown;
  peer?: string;
  peers?: string[];
  resume?: string;
  resumed?: boolean;
  iceServers?: RTCIceServer[];
  from?: string;
  data?: unknown;
  code?: string;
  message?: string;
  to?: string;
}

interface Peer {
  pc: RTCPeerConnection;
  signal(s: Signal): void;
}

/**
 * The WebSocket URL of /signal: ws(s):// as given, http(s):// mapped to
 * ws(s)://, path /signal when there is none. Relative URLs resolve against
 * the page.
 */
export function signalUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw, (globalThis as { location?: { href?: string } }).location?.href);
  } catch {
    throw new TypeError(`switchyard: signal URL ${JSON.stringify(raw)} is not a valid URL`);
  }
  if (u.protocol === "http:" || u.protocol === "https:") u.protocol = u.protocol === "http:" ? "ws:" : "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`switchyard: signal URL ${JSON.stringify(raw)}: scheme must be wss, ws, https or http`);
  }
  if (u.pathname === "/") u.pathname = "/signal";
  return u.href;
}

/** joinRoom(). */
export function join(url: string, name: string, o: JoinOptions): Promise<Room> {
  return new Promise((resolve, reject) => {
    if (typeof name !== "string" || name === "") throw new TypeError("switchyard: the room name must be a non-empty string");
    new RoomImpl(signalUrl(url), name, o, { resolve, reject });
  });
}

class RoomImpl implements Room {
  peerId = "";
  iceServers: RTCIceServer[] = [];
  private ids: string[] = []; // the other peers, in join order
  private readonly pcs = new Map<string, Peer>();
  private resume = "";
  private ws: WebSocket | undefined; // the current attempt, or the joined socket
  private live = false; // ws has joined
  private queue: string[] = []; // for the next joined
  private ended: Error | undefined;
  private timer: unknown;
  private readonly listeners = new Map<RoomEventName, Set<(...a: never[]) => void>>();
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly WS: new (url: string) => WebSocket;
  private readonly PC: new (c: RTCConfiguration) => RTCPeerConnection;

  constructor(
    private readonly url: string,
    readonly name: string,
    private readonly o: JoinOptions,
    private first: { resolve(r: Room): void; reject(e: Error): void } | undefined,
  ) {
    const hooks = (o as { [INTERNALS]?: Internals })[INTERNALS] ?? {};
    this.clock = hooks.clock ?? realClock;
    this.backoff = new Backoff(o.backoff?.min ?? 500, o.backoff?.max ?? 20000, hooks.random, true); // never sooner than min
    this.WS = o.WebSocket ?? globalThis.WebSocket;
    this.PC = o.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.dial();
  }

  get state(): RoomState {
    return this.ended ? "closed" : this.live ? "connected" : "reconnecting";
  }

  // ------------------------------------------------------------ socket

  private dial(): void {
    const ws = new this.WS(this.url);
    this.ws = ws;
    const ms = this.o.requestTimeout ?? 10000;
    this.timer = this.clock.setTimeout(() => this.end(ws, CODE_HEARTBEAT_TIMEOUT, "not joined in time",
      new TimeoutError(`switchyard: not joined to room ${this.name} within ${ms} ms`)), ms);
    ws.onopen = async () => {
      try {
        const t = this.o.token;
        const token = typeof t === "function" ? await t() : t;
        if (ws === this.ws) {
          ws.send(JSON.stringify({ type: "join", room: this.name, token, peer: this.peerId || undefined, resume: this.resume || undefined }));
        }
      } catch (e) {
        this.end(ws, CODE_HEARTBEAT_TIMEOUT, `token: ${String(e)}`, e as Error);
      }
    };
    ws.onmessage = (e: MessageEvent) => this.receive(ws, e.data);
    ws.onclose = (e: CloseEvent) => this.end(ws, e.code, e.reason);
  }

  /**
   * The attempt or session of ws is over: the first join fails (with err,
   * else a ClosedError); later, a terminal code closes the room and any
   * other code rejoins after a backoff wait.
   */
  private end(ws: WebSocket, code: number, reason: string, err?: Error): void {
    if (ws !== this.ws) return;
    const wasLive = this.live;
    this.ws = undefined;
    this.live = false;
    this.clock.clearTimeout(this.timer);
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not a normal close unless joinRoom() fails: the server keeps the peer for its grace period.
    ws.close(this.first ? CLOSE_NORMAL : CODE_HEARTBEAT_TIMEOUT);
    if (this.first) return this.shut(err ?? new ClosedError(code, reason));
    const again = code !== CODE_REPLACED && reconnectAllowed(code);
    if (wasLive || !again) this.emit("disconnected", { code, reason, reconnect: again });
    if (!again) return this.shut(new ClosedError(code, reason));
    if (this.ended) return; // left in a handler
    const b = this.backoff.next();
    this.emit("reconnecting", b);
    if (!this.ended) this.timer = this.clock.setTimeout(() => this.dial(), b.delay);
  }

  /** Closes the room for good; err is what joinRoom() (if pending) rejects with, and what peer() and send() throw. */
  private shut(err: Error): void {
    if (this.ended) return;
    this.ended = err;
    this.live = false;
    this.clock.clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(CLOSE_NORMAL);
    }
    for (const p of this.pcs.values()) p.pc.close();
    this.pcs.clear();
    this.ids = [];
    this.queue = [];
    this.first?.reject(err);
    this.first = undefined;
  }

  /** Sends m now, or after the next joined. */
  private out(m: object): void {
    const s = JSON.stringify(m);
    if (this.live) this.ws!.send(s);
    else if (this.queue.length < MAX_QUEUED) this.queue.push(s);
  }

  // ---------------------------------------------------------- messages

  private receive(ws: WebSocket, data: unknown): void {
    if (ws !== this.ws || typeof data !== "string") return;
    let m: Incoming;
    try {
      m = JSON.parse(data) as Incoming;
    } catch {
      return;
    }
    if (typeof m !== "object" || m === null) return;
    if (m.type === "error") {
      const e = new SignalError(String(m.code), String(m.message ?? ""), m.to);
      if (this.first) this.end(ws, CLOSE_NORMAL, e.message, e);
      else this.emit("error", e); // a fatal one is followed by the close
      return;
    }
    if (m.type === "joined") return this.joined(ws, m);
    if (!this.live) return;
    if (m.type === "peer-joined") return this.add(m.peer);
    if (m.type === "peer-left") return this.drop(String(m.peer));
    const from = m.from;
    if (typeof from !== "string") return;
    if (m.type === "message") {
      this.add(from); // the server announces a peer first; just in case
      this.emit("message", from, m.data);
    } else if (m.type === "offer" || m.type === "answer" || m.type === "candidate") {
      this.add(from);
      let p = this.pcs.get(from);
      if (!p) {
        p = this.wire(from);
        this.emit("connection", from, p.pc);
      }
      if (this.pcs.get(from) === p) void p.signal(m as Signal);
    }
  }

  private joined(ws: WebSocket, m: Incoming): void {
    if (this.live) return;
    this.live = true;
    this.clock.clearTimeout(this.timer);
    this.backoff.reset();
    const resumed = m.resumed === true && m.peer === this.peerId;
    const oldId = this.peerId;
    // A refused resume may list our own old id, still within its grace.
    const peers = (Array.isArray(m.peers) ? m.peers : []).filter((id) => resumed || id !== oldId);
    this.peerId = String(m.peer);
    this.resume = String(m.resume ?? "");
    this.iceServers = this.o.iceServers ?? m.iceServers ?? [];
    const first = this.first;
    if (first) {
      this.first = undefined;
      for (const id of peers) this.add(id); // nobody listens yet
      return first.resolve(this);
    }
    const queued = this.queue;
    this.queue = [];
    // What waited goes out, unless the peer id changed: then the others
    // knew the old one, and every connection made under it is useless.
    if (resumed) for (const s of queued) ws.send(s);
    for (const id of [...this.ids]) if (!resumed || !peers.includes(id)) this.drop(id);
    if (!resumed) for (const id of [...this.pcs.keys()]) this.drop(id); // made by peer() before its join
    for (const id of peers) this.add(id);
    if (ws === this.ws) this.emit("reconnected", { peerId: this.peerId, resumed });
  }

  /** A peer joined (if new). */
  private add(id: unknown): void {
    if (this.ended || typeof id !== "string" || id === this.peerId || this.ids.includes(id)) return;
    this.ids.push(id);
    this.emit("join", id);
  }

  /** A peer left: close its connection, forget it. */
  private drop(id: string): void {
    this.pcs.get(id)?.pc.close();
    this.pcs.delete(id);
    const i = this.ids.indexOf(id);
    if (i < 0) return;
    this.ids.splice(i, 1);
    this.emit("leave", id);
  }

  /** A new peer connection to id; the peer whose id sorts first is polite. */
  private wire(id: string): Peer {
    const pc = new this.PC({ ...this.o.rtcConfig, iceServers: this.iceServers });
    const p: Peer = {
      pc,
      signal: negotiate(pc, this.peerId < id,
        (s) => {
          if (this.pcs.get(id) === p) this.out({ ...s, to: id });
        },
        (e) => {
          if (this.pcs.get(id) === p) this.emit("error", e instanceof Error ? e : new Error(String(e)));
        }),
    };
    this.pcs.set(id, p);
    return p;
  }

  // -------------------------------------------------------- public API

  peers(): string[] {
    return [...this.ids];
  }

  peer(id: string): RTCPeerConnection {
    if (this.ended) throw this.ended;
    if (typeof id !== "string" || id === this.peerId) throw new TypeError(`switchyard: no peer connection to ${JSON.stringify(id)}`);
    return (this.pcs.get(id) ?? this.wire(id)).pc;
  }

  send(id: string, data: unknown): void {
    if (this.ended) throw this.ended;
    this.out({ type: "message", to: id, data });
  }

  on<E extends RoomEventName>(event: E, handler: RoomEvents[E]): () => void {
    if (!EVENTS.includes(event)) throw new TypeError(`switchyard: unknown event ${JSON.stringify(event)}`);
    if (typeof handler !== "function") throw new TypeError("switchyard: handler must be a function");
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(handler);
    return () => this.off(event, handler);
  }

  off<E extends RoomEventName>(event: E, handler: RoomEvents[E]): void {
    this.listeners.get(event)?.delete(handler);
  }

  private emit<E extends RoomEventName>(event: E, ...args: Parameters<RoomEvents[E]>): void {
    for (const h of [...(this.listeners.get(event) ?? [])]) {
      try {
        (h as (...a: unknown[]) => void)(...args);
      } catch (e) {
        rethrowLater(e);
      }
    }
  }

  leave(): void {
    if (this.ended) return;
    if (this.live) this.ws!.send(JSON.stringify({ type: "leave" }));
    this.shut(new ClosedError(CLOSE_NORMAL, "left"));
  }
}
