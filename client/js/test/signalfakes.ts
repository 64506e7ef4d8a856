// Test doubles for rooms (src/signaling.ts): a fake /signal server
// (docs/signaling.md: rooms, peer ids, resume with kept messages, relays
// with to → from, fatal errors and close codes) behind fake WebSockets, and
// fake RTCPeerConnections that model what perfect negotiation relies on:
// signalingState (stable / have-local-offer / have-remote-offer) with an
// operations chain, setLocalDescription() without arguments making an offer
// or an answer, implicit and explicit rollback, negotiationneeded when
// stable with something unnegotiated, ICE candidates per ICE generation.

import { INTERNALS } from "../src/transport.js";
import type { JoinOptions } from "../src/switchyard.js";
import { FakeClock } from "./fakes.js";

/** A JSON message as it travels. */
export type Msg = { type: string; [k: string]: any };

/** Lets every pending callback run: promise jobs and immediates, many rounds deep. */
export async function settle(rounds = 200): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

const later = (fn: () => void) => setImmediate(fn);

// ------------------------------------------------------------- WebSocket

export class FakeWebSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readyState = 0;
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  /** What the client sent, parsed. */
  readonly sent: Msg[] = [];
  /** What the server pushed, parsed when JSON. */
  readonly received: unknown[] = [];
  /** The close code and reason the client gave, if it closed. */
  closedBy: { code: number | undefined; reason: string | undefined } | undefined;
  /** Server side: who joined on this socket. */
  peer: string | undefined;
  room: string | undefined;

  constructor(readonly url: string, readonly srv: FakeSignalServer) {
    srv.sockets.push(this);
    if (srv.accept) later(() => this.open());
  }

  /** The server accepts the upgrade. */
  open(): void {
    if (this.readyState !== 0) return;
    this.readyState = 1;
    this.onopen?.({});
  }

  send(s: string): void {
    if (this.readyState !== 1) throw new Error(`send on a WebSocket in state ${this.readyState}`);
    if (typeof s !== "string") throw new Error("the client sends text only");
    const m = JSON.parse(s) as Msg;
    this.sent.push(m);
    later(() => {
      if (this.readyState === 1) this.srv.receive(this, m);
    });
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.closedBy = { code, reason };
    this.srv.gone(this, code ?? 1005);
    later(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }));
  }

  /** The server sends a message (an object as JSON, a string as it is). */
  push(m: Msg | string): void {
    if (this.readyState !== 1) return;
    const data = typeof m === "string" ? m : JSON.stringify(m);
    this.received.push(typeof m === "string" ? m : JSON.parse(data));
    this.onmessage?.({ data });
  }

  /** The connection ends from the server's side (or the network's). */
  drop(code: number, reason = ""): void {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.srv.gone(this, code);
    this.onclose?.({ code, reason });
  }

  /** Client messages of one type. */
  of(type: string): Msg[] {
    return this.sent.filter((m) => m.type === type);
  }
}

// ---------------------------------------------------------------- server

interface Member {
  id: string;
  resume: string;
  ws: FakeWebSocket | undefined; // undefined while away (within grace)
  kept: Msg[];
}

export class FakeSignalServer {
  readonly sockets: FakeWebSocket[] = [];
  readonly rooms = new Map<string, Map<string, Member>>();
  /** Open new WebSockets at once. */
  accept = true;
  /** Serve what clients send; when false the test plays the server. */
  answer = true;
  /** Peer ids to give out, in order; then p01, p02, … */
  ids: string[] = [];
  iceServers: RTCIceServer[] = [{ urls: ["stun:stun.example.com:3478"] }];
  maxRoomSize = 50;
  private n = 0;
  /** The WebSocket constructor for JoinOptions. */
  readonly WebSocket: new (url: string) => WebSocket;

  constructor() {
    const srv = this;
    this.WebSocket = class extends FakeWebSocket {
      constructor(url: string) {
        super(url, srv);
      }
    } as unknown as new (url: string) => WebSocket;
  }

  get last(): FakeWebSocket {
    const ws = this.sockets[this.sockets.length - 1];
    if (!ws) throw new Error("no WebSocket yet");
    return ws;
  }

  /** The live socket of peer id. */
  socket(id: string): FakeWebSocket {
    for (const room of this.rooms.values()) {
      const ws = room.get(id)?.ws;
      if (ws) return ws;
    }
    throw new Error(`no live socket for ${id}`);
  }

  members(room: string): string[] {
    return [...(this.rooms.get(room)?.keys() ?? [])];
  }

  receive(ws: FakeWebSocket, m: Msg): void {
    if (!this.answer) return;
    if (m.type === "ping") return ws.push({ type: "pong" });
    if (m.type === "join") return this.join(ws, m);
    const room = ws.room === undefined ? undefined : this.rooms.get(ws.room);
    if (!room || ws.peer === undefined) return ws.push({ type: "error", code: "not_joined", message: "join first" });
    switch (m.type) {
      case "leave":
        this.remove(ws.room!, ws.peer);
        ws.push({ type: "left" });
        ws.drop(1000, "left");
        return;
      case "offer":
      case "answer":
      case "candidate":
      case "message": {
        const target = room.get(m.to);
        if (!target) return ws.push({ type: "error", code: "unknown_peer", message: `no peer ${m.to}`, to: m.to });
        const { to: _to, id: _id, ...rest } = m;
        const out = { ...rest, from: ws.peer };
        if (target.ws) target.ws.push(out);
        else if (target.kept.length < 64) target.kept.push(out);
        return;
      }
      default:
        ws.push({ type: "error", code: "bad_message", message: `unknown type ${m.type}` });
    }
  }

  private join(ws: FakeWebSocket, m: Msg): void {
    if (ws.peer !== undefined) return ws.push({ type: "error", code: "already_joined", message: "joined already" });
    const name = m.room;
    if (typeof name !== "string" || name === "" || /\s/.test(name)) {
      ws.push({ type: "error", code: "bad_room", message: `bad room name ${JSON.stringify(name)}` });
      return ws.drop(3500, "bad room");
    }
    let room = this.rooms.get(name);
    if (!room) this.rooms.set(name, (room = new Map()));
    let mem = typeof m.peer === "string" ? room.get(m.peer) : undefined;
    if (mem && mem.resume !== m.resume) mem = undefined;
    const resumed = mem !== undefined;
    if (mem) {
      const old = mem.ws;
      mem.ws = undefined;
      old?.drop(4000, "replaced");
    } else {
      if (room.size >= this.maxRoomSize) {
        ws.push({ type: "error", code: "room_full", message: `room ${name} is full` });
        return ws.drop(3505, "room full");
      }
      const id = this.ids.shift() ?? `p${String(++this.n).padStart(2, "0")}`;
      mem = { id, resume: `resume-${id}`, ws: undefined, kept: [] };
      for (const other of room.values()) other.ws?.push({ type: "peer-joined", peer: id });
      room.set(id, mem);
    }
    mem.ws = ws;
    ws.peer = mem.id;
    ws.room = name;
    ws.push({
      type: "joined", room: name, peer: mem.id, resume: mem.resume, resumed,
      peers: [...room.keys()].filter((x) => x !== mem.id), iceServers: this.iceServers, grace: 10, limits: {},
    });
    for (const k of mem.kept.splice(0)) ws.push(k);
  }

  /** A socket closed: a normal close leaves the room, any other keeps the peer (grace). */
  gone(ws: FakeWebSocket, code: number): void {
    const mem = ws.room === undefined || ws.peer === undefined ? undefined : this.rooms.get(ws.room)?.get(ws.peer);
    if (!mem || mem.ws !== ws) return;
    if (code === 1000 || code === 1001) this.remove(ws.room!, mem.id);
    else mem.ws = undefined;
  }

  /** The grace period of an away peer ran out (or it left): the others get peer-left. */
  remove(room: string, id: string): void {
    const r = this.rooms.get(room);
    if (!r?.delete(id)) return;
    for (const other of r.values()) other.ws?.push({ type: "peer-left", peer: id });
  }
}

// ------------------------------------------------------ RTCPeerConnection

interface Sdp {
  labels: string[];
  ufrag: string;
}

type Desc = { type: "offer" | "answer"; sdp: string };

class FakeCandidate {
  constructor(private readonly init: RTCIceCandidateInit) {}
  get candidate(): string {
    return this.init.candidate!;
  }
  toJSON(): RTCIceCandidateInit {
    return { ...this.init };
  }
}

const invalidState = (what: string) => new DOMException(what, "InvalidStateError");

export class FakePC {
  signalingState: RTCSignalingState = "stable";
  iceConnectionState: RTCIceConnectionState = "new";
  localDescription: Desc | null = null;
  remoteDescription: Desc | null = null;
  onnegotiationneeded: (() => void) | null = null;
  onicecandidate: ((e: { candidate: FakeCandidate | null }) => void) | null = null;
  oniceconnectionstatechange: (() => void) | null = null;
  ondatachannel: ((e: { channel: { label: string } }) => void) | null = null;
  /** Data channels made on this side, by label. */
  readonly channels: string[] = [];
  /** Labels in the last completed offer/answer exchange. */
  negotiated: string[] = [];
  /** ondatachannel labels so far. */
  readonly remoteChannels: string[] = [];
  /** Arguments of every addIceCandidate call that succeeded. */
  readonly candidates: unknown[][] = [];
  /** Operations as they completed: "SLD offer", "SRD answer", "rollback", "restartIce", … */
  readonly log: string[] = [];
  /** How many immediates each operation takes (a slow peer connection: more). */
  delay = 1;
  /** ICE generation: restartIce() makes the next offer use new credentials. */
  ice = 0;
  closed = false;
  private restartPending = false;
  private ops = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private remoteOffer: string[] = [];
  private stableLocal: Desc | null = null;
  private stableRemote: Desc | null = null;
  private checking = false;
  private gathered = 0;

  constructor(readonly configuration: RTCConfiguration, readonly name: string) {}

  get ufrag(): string {
    return `${this.name}${this.ice}`;
  }

  createDataChannel(label: string): { label: string } {
    if (this.closed) throw invalidState("closed");
    this.channels.push(label);
    this.check();
    return { label };
  }

  restartIce(): void {
    this.log.push("restartIce");
    this.restartPending = true;
    this.check();
  }

  /** The network: ICE fails (or any state). */
  setIceState(s: RTCIceConnectionState): void {
    this.iceConnectionState = s;
    this.oniceconnectionstatechange?.();
  }

  close(): void {
    this.closed = true;
    this.signalingState = "closed";
  }

  setLocalDescription(d?: RTCSessionDescriptionInit): Promise<void> {
    return this.op(() => {
      if (d?.type === "rollback") return this.rollback();
      if (d) throw new Error("the fake makes its own descriptions: call setLocalDescription() without arguments");
      if (this.signalingState === "have-remote-offer") {
        const labels = this.remoteOffer;
        this.localDescription = { type: "answer", sdp: JSON.stringify({ labels, ufrag: this.ufrag } satisfies Sdp) };
        this.signalingState = "stable";
        this.done(labels);
        this.log.push("SLD answer");
      } else {
        if (this.restartPending) {
          this.restartPending = false;
          this.ice++;
        }
        const labels = [...new Set([...this.negotiated, ...this.channels])];
        this.localDescription = { type: "offer", sdp: JSON.stringify({ labels, ufrag: this.ufrag } satisfies Sdp) };
        this.signalingState = "have-local-offer";
        this.log.push("SLD offer");
      }
      this.gather();
    });
  }

  setRemoteDescription(d: RTCSessionDescriptionInit): Promise<void> {
    return this.op(() => {
      if (d.type === "rollback") return this.rollback();
      const sdp = JSON.parse(d.sdp!) as Sdp;
      if (d.type === "offer") {
        if (this.signalingState === "have-local-offer") this.rollback(); // implicit rollback
        if (this.signalingState !== "stable") throw invalidState(`offer in state ${this.signalingState}`);
        this.remoteOffer = sdp.labels;
        this.remoteDescription = { type: "offer", sdp: d.sdp! };
        this.signalingState = "have-remote-offer";
      } else if (d.type === "answer") {
        if (this.signalingState !== "have-local-offer") throw invalidState(`answer in state ${this.signalingState}`);
        this.remoteDescription = { type: "answer", sdp: d.sdp! };
        this.signalingState = "stable";
        this.done(sdp.labels);
      } else {
        throw new TypeError(`description type ${String(d.type)}`);
      }
      this.log.push(`SRD ${d.type}`);
    });
  }

  addIceCandidate(...args: [RTCIceCandidateInit?]): Promise<void> {
    return this.op(() => {
      if (!this.remoteDescription) throw invalidState("addIceCandidate before a remote description");
      const c = args[0];
      const ufrag = (JSON.parse(this.remoteDescription.sdp) as Sdp).ufrag;
      if (c?.candidate && c.usernameFragment !== ufrag) {
        throw new DOMException(`candidate for ufrag ${c.usernameFragment}, the remote description has ${ufrag}`, "OperationError");
      }
      this.candidates.push(args);
    });
  }

  /** One operation on the chain: it runs in a later task, after the ones before it. */
  private op(fn: () => void): Promise<void> {
    if (this.closed) return Promise.reject(invalidState("closed"));
    this.ops++;
    const p = this.chain.then(async () => {
      for (let i = 0; i < this.delay; i++) await new Promise<void>((r) => setImmediate(r));
      if (this.closed) throw invalidState("closed");
      fn();
    });
    this.chain = p.catch(() => {}).finally(() => {
      this.ops--;
      this.check();
    });
    return p;
  }

  private rollback(): void {
    if (this.signalingState === "stable") throw invalidState("rollback in stable");
    this.signalingState = "stable";
    this.localDescription = this.stableLocal;
    this.remoteDescription = this.stableRemote;
    this.log.push("rollback");
  }

  /** An offer/answer exchange completed with these labels. */
  private done(labels: string[]): void {
    this.negotiated = labels;
    this.stableLocal = this.localDescription;
    this.stableRemote = this.remoteDescription;
    for (const l of labels) {
      if (this.channels.includes(l) || this.remoteChannels.includes(l)) continue;
      this.remoteChannels.push(l);
      later(() => this.ondatachannel?.({ channel: { label: l } }));
    }
  }

  /** negotiationneeded, in a later task, when idle and stable with something unnegotiated. */
  private check(): void {
    if (this.checking) return;
    this.checking = true;
    later(() => {
      this.checking = false;
      const needed = this.restartPending || this.channels.some((l) => !this.negotiated.includes(l));
      if (!this.closed && this.ops === 0 && this.signalingState === "stable" && needed) this.onnegotiationneeded?.();
    });
  }

  /** After a description is set locally: one host candidate, then the end (null). */
  private gather(): void {
    const ufrag = this.ufrag;
    const n = ++this.gathered;
    later(() => {
      if (this.closed) return;
      this.onicecandidate?.({
        candidate: new FakeCandidate({
          candidate: `candidate:${n} 1 udp 2122260223 10.0.0.${n} ${50000 + n} typ host`,
          sdpMid: "0", sdpMLineIndex: 0, usernameFragment: ufrag,
        }),
      });
      later(() => {
        if (!this.closed) this.onicecandidate?.({ candidate: null });
      });
    });
  }
}

// --------------------------------------------------------------- options

/** JoinOptions using the fakes; the peer connections it makes land in pcs. */
export function fakeOptions(srv: FakeSignalServer, clock: FakeClock, pcs: FakePC[], name: string, o: JoinOptions = {}): JoinOptions {
  const PC = class extends FakePC {
    constructor(c: RTCConfiguration) {
      super(c, `${name}${pcs.length}.`);
      pcs.push(this);
    }
  };
  return {
    WebSocket: srv.WebSocket,
    RTCPeerConnection: PC as unknown as new (c: RTCConfiguration) => RTCPeerConnection,
    ...o,
    [INTERNALS]: { clock, random: () => 0.5 },
  } as JoinOptions;
}
