// Connection is one session over one transport: it sends Connect, waits for
// Connected, answers pings, watches the server's heartbeat, and turns a
// Disconnect frame or the transport's end into one CloseInfo. Replies and
// messages (from the control stream, subscription streams and datagrams) go
// to the owner attached after the handshake.

import type { Clock } from "./clock.js";
import {
  CLOSE_NORMAL,
  CODE_BAD_PROTOCOL,
  CODE_HEARTBEAT_TIMEOUT,
  CODE_INTERNAL,
  trimReason,
} from "./codes.js";
import { decodeFrame, encodeFrame, ProtocolError } from "./codec.js";
import type { ConnectBody, ConnectedBody, Frame, FrameOf, Kind, Kinds } from "./codec.js";
import { encodeDatagram, parseDatagram } from "./datagram.js";
import type { Datagram } from "./datagram.js";
import type { Target } from "./endpoints.js";
import type { Transport, TransportFactory } from "./transport.js";
import type { TransportName } from "./switchyard.js";

export const PROTOCOL = "switchyard.v1";
export const CLIENT_NAME = "switchyard-js/0.1";

/** How a session ended (or why it never started). */
export interface CloseInfo {
  code: number;
  reason: string;
  /** The server's minimum wait before reconnecting, from Disconnect. */
  reconnectAfterMs?: number;
  /** The node the server prefers the client to reconnect to, from Disconnect. */
  reconnectUrl?: string;
  /** Which transport it was. */
  transport?: TransportName;
}

export interface ConnectionOwner {
  /** A frame of the control stream that is neither a ping, a pong nor a disconnect. */
  frame(f: Frame): void;
  /** A message from the stream of the subscription with this alias. */
  streamMessage(alias: number, f: FrameOf<"message">): void;
  /** A well-formed datagram from the server. */
  datagram(d: Datagram): void;
  /** The session ended by itself; not called after close(). */
  closed(info: CloseInfo): void;
}

type State = "opening" | "handshake" | "open" | "closed";

export class Connection {
  /** Resolves with Connected; rejects with a CloseInfo. */
  readonly ready: Promise<ConnectedBody>;
  connected: ConnectedBody | undefined;
  /** When Connected arrived, by the clock. */
  connectedAt = 0;

  private readonly transport: Transport;
  private state: State = "opening";
  private resolveReady!: (c: ConnectedBody) => void;
  private rejectReady!: (info: CloseInfo) => void;
  private owner: ConnectionOwner | undefined;
  private early: ((o: ConnectionOwner) => void)[] = []; // deliveries before attach
  private endInfo: CloseInfo | undefined; // an end before attach
  private lastSeen = 0;
  private heartbeatMs = 0;
  private heartbeatTimer: unknown;
  private lastId = 1; // Connect is 1

  constructor(
    readonly name: TransportName,
    factory: TransportFactory,
    /** What Connect says about the client: token, user and info (presence). */
    private readonly hello: Partial<ConnectBody>,
    private readonly clock: Clock,
    /** The node it connects to. */
    readonly target: Target,
  ) {
    this.ready = new Promise<ConnectedBody>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // the racer reads it; never an unhandled rejection
    this.transport = factory(name, {
      open: () => this.opened(),
      frame: (b) => this.receive(b),
      streamFrame: (alias, b) => this.receiveStream(alias, b),
      datagram: (b) => this.receiveDatagram(b),
      close: (code, reason) => this.end({ code, reason, transport: name }, false),
    }, target);
  }

  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Whether the transport's send buffer takes more (backpressure). */
  writable(): boolean {
    return this.transport.writable?.() ?? true;
  }

  /** Takes over the session after the handshake; frames and an end that came first are delivered now. */
  attach(owner: ConnectionOwner): void {
    this.owner = owner;
    const early = this.early;
    this.early = [];
    for (const deliver of early) {
      if (this.owner !== owner) return;
      deliver(owner);
    }
    if (this.endInfo) owner.closed(this.endInfo);
  }

  /** A request id not used on this session, never 0 or 1. */
  nextId(busy?: (id: number) => boolean): number {
    for (;;) {
      this.lastId = this.lastId >= 0xffffffff ? 2 : this.lastId + 1;
      if (!busy?.(this.lastId)) return this.lastId;
    }
  }

  /** Encodes and sends a frame. */
  send<K extends Kind>(id: number, kind: K, body: Partial<Kinds[K]> = {}): void {
    this.sendRaw(encodeFrame(id, kind, body));
  }

  sendRaw(frame: Uint8Array): void {
    if (this.state === "closed") return;
    this.transport.send(frame);
  }

  /**
   * Sends a datagram: a QUIC datagram where the transport has them (and the
   * path takes its size), else a Datagram frame on the control stream.
   */
  sendDatagram(alias: number, seq: number, payload: Uint8Array): void {
    if (this.state === "closed") return;
    if (this.transport.sendDatagram?.(encodeDatagram(alias, seq, payload))) return;
    this.transport.send(encodeFrame(0, "datagram", { alias, seq, data: payload }));
  }

  /** Ends the session from this side: no callback follows. */
  close(code = CLOSE_NORMAL, reason = ""): void {
    if (this.state === "closed") return;
    this.stop();
    this.transport.close(code, reason);
    this.rejectReady({ code, reason, transport: this.name });
  }

  /** Ends an open session from this side (e.g. the device went offline): the owner hears closed(info). */
  abandon(reason: string): void {
    if (this.state !== "open") return;
    this.end({ code: CLOSE_NORMAL, reason }, true);
  }

  private stop(): void {
    this.state = "closed";
    if (this.heartbeatTimer !== undefined) this.clock.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private opened(): void {
    if (this.state !== "opening") return;
    this.state = "handshake";
    // Per-subscription streams exist on WebTransport only.
    const streams = this.name === "webtransport";
    this.transport.send(encodeFrame(1, "connect", { ...this.hello, client: CLIENT_NAME, protocol: PROTOCOL, streams }));
  }

  private receive(body: Uint8Array): void {
    if (this.state === "closed") return;
    this.lastSeen = this.clock.now();
    let f: ReturnType<typeof decodeFrame>;
    try {
      f = decodeFrame(body);
    } catch (e) {
      const pe = e as ProtocolError;
      this.end({ code: pe.code, reason: trimReason(`bad frame from the server: ${pe.message}`) }, true);
      return;
    }
    switch (f.type) {
      case "unknown": // a newer server's frame kind
      case "pong":
        return;
      case "ping":
        this.transport.send(encodeFrame(f.id, "pong"));
        return;
      case "disconnect":
        // After Disconnect the client closes the transport with the same
        // code (WebTransport: the server waits for that).
        this.end({
          code: f.code,
          reason: f.reason,
          reconnectAfterMs: f.reconnectAfterMs || undefined,
          reconnectUrl: f.reconnectUrl || undefined,
        }, true);
        return;
    }
    if (this.state === "handshake") {
      if (f.type === "connected" && f.id === 1) {
        this.handshakeDone(f);
      } else if (f.type === "error" && f.id === 1) {
        this.end({ code: CODE_INTERNAL, reason: trimReason(`connect refused: error ${f.code}: ${f.message}`) }, true);
      }
      return; // nothing else is expected before Connected
    }
    const frame = f;
    this.toOwner((o) => o.frame(frame));
  }

  private toOwner(deliver: (o: ConnectionOwner) => void): void {
    if (this.owner) deliver(this.owner);
    else this.early.push(deliver);
  }

  /** A frame from a subscription's stream: only messages come there. */
  private receiveStream(alias: number, body: Uint8Array): void {
    if (this.state !== "open") return;
    this.lastSeen = this.clock.now();
    let f: ReturnType<typeof decodeFrame>;
    try {
      f = decodeFrame(body);
    } catch (e) {
      const pe = e as ProtocolError;
      this.end({ code: pe.code, reason: trimReason(`bad frame from the server: ${pe.message}`) }, true);
      return;
    }
    if (f.type !== "message") return;
    const m = f;
    this.toOwner((o) => o.streamMessage(alias, m));
  }

  private receiveDatagram(b: Uint8Array): void {
    if (this.state !== "open") return;
    this.lastSeen = this.clock.now();
    const d = parseDatagram(b);
    if (d === undefined) return; // malformed: lost, like any datagram may be
    this.toOwner((o) => o.datagram(d));
  }

  private handshakeDone(c: ConnectedBody): void {
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
  private armHeartbeat(ms: number): void {
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      if (this.state !== "open") return;
      const idle = this.clock.now() - this.lastSeen;
      if (idle < this.heartbeatMs) {
        this.armHeartbeat(this.heartbeatMs - idle);
        return;
      }
      this.end({
        code: CODE_HEARTBEAT_TIMEOUT,
        reason: `heartbeat timeout: nothing from the server for ${Math.round(idle)} ms`,
      }, true);
    }, ms);
  }

  /** The session ended; closeTransport: this side ends it, with info.code. */
  private end(info: CloseInfo, closeTransport: boolean): void {
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
}
