// Switchyard browser SDK: pub/sub over WebTransport, falling back to
// WebSocket, with automatic reconnects and resubscription; and rooms of
// WebRTC peers over the node's signaling endpoint.
//
//   import { connect } from "/switchyard.js";
//   const client = await connect("https://127.0.0.1:4433", { certHash: "auto", webSocketUrl: "ws://127.0.0.1:8080/ws" });
//   const sub = await client.subscribe("room", (m) => console.log(decodeText(m)));
//   await client.publish("room", "hello");
//
//   const room = await joinRoom("ws://127.0.0.1:8080/signal", "lobby");
//   room.on("join", (id) => room.peer(id).createDataChannel("chat"));
//
// This file is the public surface (dist/switchyard.d.ts is generated from it
// alone) and the client itself. The other modules are internal:
// codec (protobuf), datagram (datagrams and stream headers), framing
// (length prefixes), connection (one session), subscription (delivery,
// datagram loss counting), dialer (happy eyeballs), backoff, the two
// transports, refresh (when to renew an expiring token), signaling (rooms)
// and negotiation (one peer connection).
//
// Layers: ClientImpl owns subscriptions, requests and the reconnect loop;
// each connection attempt races transports (dialer.race) and yields one
// Connection, which owns one Transport until the session ends.

import { Backoff } from "./backoff.js";
import { realClock } from "./clock.js";
import type { Clock } from "./clock.js";
import { encodeFrame, frameBodyLength } from "./codec.js";
import type { ConnectBody, Frame, FrameOf } from "./codec.js";
import {
  CLOSE_NORMAL,
  CODE_GOING_AWAY,
  ERR_ALREADY_SUBSCRIBED,
  ERR_NOT_SUBSCRIBED,
  ERR_PAYLOAD_TOO_LARGE,
  reconnectAllowed,
} from "./codes.js";
import { Connection } from "./connection.js";
import type { CloseInfo } from "./connection.js";
import { MAX_ALIAS } from "./datagram.js";
import type { Datagram } from "./datagram.js";
import { race } from "./dialer.js";
import { decodeCertHash, httpOrigin, nodeTarget, resolveEndpoints } from "./endpoints.js";
import type { Target } from "./endpoints.js";
import { Refresher } from "./refresh.js";
import { rethrowLater } from "./report.js";
import { join } from "./signaling.js";
import { SubscriptionImpl } from "./subscription.js";
import { INTERNALS } from "./transport.js";
import type { Internals, TransportFactory } from "./transport.js";
import { WebSocketTransport } from "./websocket.js";
import { WebTransportTransport } from "./webtransport.js";
import type { CertHashSource } from "./webtransport.js";

// ------------------------------------------------------------------ types

/** The two transports. */
export type TransportName = "webtransport" | "websocket";

/**
 * Where the client is: connecting (the first time), connected,
 * reconnecting (after losing a connection: waiting or trying), closed
 * (by close(), a terminal close code, or a failed connect()).
 */
export type ClientState = "connecting" | "connected" | "reconnecting" | "closed";

/** Options of connect(). Every field is optional. */
export interface ConnectOptions {
  /** Transports to use, in order of preference. Default ["webtransport", "websocket"]. */
  transports?: TransportName[];
  /**
   * The server certificate's SHA-256 as base64, for a self-signed
   * certificate (passed to WebTransport as serverCertificateHashes); or
   * "auto" to fetch it from /certhash before each WebTransport attempt (see
   * certHashUrl). Default: none (the certificate must be trusted).
   */
  certHash?: string;
  /** Where "auto" fetches the hash. Default: /certhash on the HTTP origin of webSocketUrl (ws → http, wss → https). */
  certHashUrl?: string;
  /** WebSocket URL. Default: derived from the URL (https://h:p → wss://h:p/ws, http://h:p → ws://h:p/ws). */
  webSocketUrl?: string;
  /** WebTransport URL. Default: the URL itself, with path /wt when it has none. */
  webTransportUrl?: string;
  /**
   * Sent in Connect. A function is called before each connection attempt
   * (and background WebTransport attempt) with what it is for; after a 3502
   * (unauthorized) close it is asked once more, with reason "unauthorized",
   * before the client gives up. When the node says the session's token
   * expires (Connected.expires_in_s), a function is also called before
   * then, with reason "refresh", and its token handed to the node on the
   * live session (see client.refresh()); a string token is not renewed:
   * the node closes the session with 3502 when it expires, which is terminal.
   */
  token?: string | ((context: TokenContext) => string | Promise<string>);
  /**
   * Who the client is in the presence of channels that keep it (see
   * client.presence() and the subscribe option presence): any string of
   * at most 256 bytes (UTF-8), sent in Connect. Default "". The node
   * refuses a longer user or info: connect() rejects with ClosedError 3500.
   */
  user?: string;
  /**
   * What else the others see of this client in presence, at most 1024
   * bytes: a string is sent as UTF-8 (e.g. JSON.stringify({avatar})),
   * bytes as they are. Members' info always arrives as a Uint8Array:
   * decodeText(member.info) reads it back as text. Default none.
   */
  info?: string | Uint8Array;
  /**
   * Learn the cluster's other nodes from GET /api/nodes of each node
   * connected to, and add them (same region first, draining ones left out)
   * to the URLs reconnects try. Default: true when connect() got an array
   * of URLs, false for a single URL.
   */
  discover?: boolean;
  /**
   * The most requests (publishes, subscribes, unsubscribes, presence) awaiting their
   * reply on a session; more wait, as do requests while the transport's
   * send buffer is full (1 MiB). Default 1000.
   */
  maxInflight?: number;
  /**
   * Aborting it closes the client, and a pending connect() rejects with the
   * signal's reason: connect() keeps trying until a session begins, so pass
   * e.g. AbortSignal.timeout(10000) to give up after 10 s.
   */
  signal?: AbortSignal;
  /** How long, in ms, a transport gets before the next one is started too. Default 500, at most 1000. */
  fallbackDelay?: number;
  /** Reconnect backoff bounds, in ms: full jitter in [0, min(max, min·2^(attempt−1))). Default {min: 500, max: 20000}. */
  backoff?: { min?: number; max?: number };
  /** How long, in ms, a connection must last for the backoff to start over. Default 10000. */
  stableAfter?: number;
  /**
   * How long, in ms, each request (subscribe, publish,
   * unsubscribe, presence) may take, waiting for a connection and a publish's
   * resends after reconnects included. Default 10000.
   */
  requestTimeout?: number;
  /** How long, in ms, one connection attempt (all transports together) may take. Default 10000. */
  connectTimeout?: number;
  /**
   * Event handlers registered before the first attempt, so that they also
   * see what happens while connect() is pending (client.on() can only come
   * after it resolves).
   */
  on?: { [E in ClientEventName]?: (e: ClientEvents[E]) => void };
}

/** What a token function is called with. */
export interface TokenContext {
  /**
   * The attempt since the last session began, from 1; for "refresh", the
   * try at renewing the current token, from 1.
   */
  attempt: number;
  /** The node's URL (as given to connect(), from /api/nodes or a drain's reconnect_url). */
  url: string;
  /**
   * "connect" (before the first session), "reconnect", "upgrade" (a
   * background WebTransport attempt while on WebSocket), "unauthorized"
   * (the node closed with 3502: a fresh token is wanted) or "refresh" (the
   * live session's token expires soon: a new one for the same user is
   * handed to the node without reconnecting).
   */
  reason: "connect" | "reconnect" | "upgrade" | "unauthorized" | "refresh";
}

/** A position in a channel's stream. */
export interface Position {
  /** The stream's epoch: an opaque string; a new one means the stream restarted. */
  epoch: string;
  /** The offset within the epoch; each publication is the previous one + 1. */
  offset: number;
}

/**
 * One publication delivered to a subscription. On a volatile channel
 * (datagram true) epoch is "" and offset is the channel's sequence number,
 * in which a gap means publications were lost or replaced by newer ones.
 */
export interface Message extends Position {
  channel: string;
  /** The payload; it belongs to the handler, which may keep it. */
  data: Uint8Array;
  /** Whether it is a volatile channel's publication (a datagram, or its stand-in on WebSocket). */
  datagram: boolean;
}

export type MessageHandler = (message: Message) => void;

/** Options of client.publish(). Every field is optional. */
export interface PublishOptions {
  /**
   * The publish's idempotency key: a string of 1 to 64 bytes (UTF-8). The
   * channel's owner node applies a publish of the channel with a key it
   * has seen within its window (2 minutes by default) only once: a repeat,
   * sent to any node, resolves with the original position and duplicate
   * true. Give one to make the app's own retries safe (e.g. a message id,
   * kept across page loads). Default: a random key the client makes for
   * each publish, which covers the client's own resends after a reconnect.
   */
  idempotencyKey?: string;
}

/** What client.publish() resolves with: the publication's position. */
export interface PublishResult extends Position {
  /**
   * True when the server had applied a publish of this channel with the
   * same idempotency key before (this client's resend after a reconnect,
   * or the app's own repeat of a key): epoch and offset are that
   * publication's, and nothing was published again.
   */
  duplicate: boolean;
}

/** Options of client.subscribe(). Every field is optional. */
export interface SubscribeOptions {
  /**
   * Start after this position (the last one the app saw, e.g. a stored
   * message's {epoch, offset}): the publications after it are recovered
   * from the channel's history and delivered first, in order, then the
   * live ones. Check subscription.recovered once subscribe() resolves:
   * false means the history did not reach back that far (or the epoch
   * changed), and delivery starts at the channel's current position.
   */
  since?: Position;
  /**
   * Ask for the channel's "join" and "leave" events (channels that keep
   * presence; at most the node's event limit of members, 1000 by
   * default). Resubscriptions after a reconnect ask again; events that
   * went by meanwhile are not replayed: fetch client.presence() again on
   * the client's "subscribed" event with resubscribed true.
   */
  presence?: boolean;
}

/**
 * A client in a channel's presence: its session id, and the user and info
 * it gave connect(). A client that reconnected may be listed twice (its
 * old session, until the server notices it is gone: then "leave").
 */
export interface Member {
  client: string;
  user: string;
  /** The member's info as sent (a string as UTF-8: decodeText(member.info)); empty when it gave none. */
  info: Uint8Array;
}

/** Options of client.presence(). Every field is optional. */
export interface PresenceOptions {
  /** Only the counts: members comes back empty (and truncated true when there is anybody). */
  countsOnly?: boolean;
}

/** Who is in a channel, over the whole cluster (client.presence()). */
export interface PresenceResult {
  /** How many clients (sessions) are members. */
  clients: number;
  /** How many distinct users they are. */
  users: number;
  /** The members, sorted by client id, at most 1000 (see truncated); empty with countsOnly. */
  members: Member[];
  /** Whether there are more members than listed. */
  truncated: boolean;
}

/** Payload of a subscription's "resync": what lies between previous and {epoch, offset} is lost. */
export interface ResyncEvent extends Position {
  /** The position the subscription asked to recover from (the last one it had seen). */
  previous: Position;
}

/** A subscription's events and their payloads. */
export interface SubscriptionEvents {
  /**
   * A resubscription (after a reconnect, or after the server ended the
   * subscription) asked to recover from the last position seen and the
   * server could not: publications were missed, refetch the app's state.
   * epoch and offset are the channel's position the messages now continue
   * from. Fires before those messages; the handler keeps receiving them.
   * (A first subscribe with since reports the same through recovered: its
   * Subscription does not exist yet when the server answers.)
   */
  resync: ResyncEvent;
  /**
   * A client joined the channel (subscribed to it); only with the
   * presence option, and not for this client's own session.
   */
  join: Member;
  /** A client left the channel (unsubscribed, or its session ended); only with the presence option. */
  leave: Member;
}

export type SubscriptionEventName = keyof SubscriptionEvents;

/** A live subscription to one channel. */
export interface Subscription {
  readonly channel: string;
  /**
   * The last position seen: the since option until confirmed, then the
   * server's confirmation, then each message's.
   */
  readonly position: Position;
  /**
   * Whether the last (re)subscription recovered everything: true on a
   * first subscribe without since (nothing to miss) and whenever the server
   * recovered what was asked; false when it could not (see "resync"), and
   * on a volatile channel after a resubscription (datagrams are never
   * recovered).
   */
  readonly recovered: boolean;
  /** Whether the server currently delivers the channel's messages (false while reconnecting). */
  readonly active: boolean;
  /**
   * Whether the channel is volatile (known once the server confirmed):
   * its messages are datagrams, latest wins, nothing is resent; send on it
   * with client.sendDatagram().
   */
  readonly volatile: boolean;
  /**
   * Datagrams of a volatile channel that never arrived: the gaps in their
   * sequence numbers (loss on the way, or publications the server replaced
   * with newer ones). A late arrival counts back. Not counted: what went by
   * while disconnected (the "subscribed" event's missed).
   */
  readonly lost: number;
  /**
   * Deliveries the client dropped: more than 1024 arriving (on a
   * subscription stream or as datagrams) before the server's confirmation.
   */
  readonly dropped: number;
  /** Stops the subscription; resolves once the server confirms (or at once when disconnected). */
  unsubscribe(): Promise<void>;
  /** Adds an event handler; returns a function that removes it. */
  on<E extends SubscriptionEventName>(event: E, handler: (e: SubscriptionEvents[E]) => void): () => void;
  off<E extends SubscriptionEventName>(event: E, handler: (e: SubscriptionEvents[E]) => void): void;
}

/** Payload of "connected": a session began. */
export interface ConnectedEvent {
  transport: TransportName;
  sessionId: string;
  node: string;
  region: string;
}

/** Payload of "disconnected": a session ended, or a terminal code stopped the client. */
export interface DisconnectedEvent {
  code: number;
  reason: string;
  /** Whether the client reconnects (false: it is closed now). */
  reconnect: boolean;
}

/** Payload of "transport": the client moved its session to another transport (WebSocket → WebTransport). */
export interface TransportEvent {
  from: TransportName;
  to: TransportName;
}

/** Payload of "reconnecting": the client waits delay ms before attempt number `attempt`. */
export interface ReconnectingEvent {
  attempt: number;
  delay: number;
}

/** Payload of "subscribed": the server confirmed a subscription, first or again after a reconnect. */
export interface SubscribedEvent {
  channel: string;
  epoch: string;
  offset: number;
  resubscribed: boolean;
  /**
   * Publications missed: 0 on a first subscribe without since, when nothing
   * was missed, and when recovered (the missed ones follow); null when the
   * epoch changed (the stream restarted: resync the app's state).
   */
  missed: number | null;
  /** The subscription's recovered (see Subscription.recovered). */
  recovered: boolean;
}

/**
 * Payload of "error": something failed that no promise reports (a
 * resubscribe refused, a throwing handler, a datagram the server refused,
 * a failed token refresh).
 */
export interface ClientErrorEvent {
  error: Error;
  channel?: string;
}

export interface ClientEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  subscribed: SubscribedEvent;
  error: ClientErrorEvent;
  transport: TransportEvent;
}

export type ClientEventName = keyof ClientEvents;

export interface Client {
  /** The transport of the current (or last) connection. */
  readonly transport: TransportName;
  readonly state: ClientState;
  /** The current (or last) session's id. */
  readonly sessionId: string;
  /**
   * The largest datagram payload, in bytes, the server takes
   * (connected.max_datagram_size of the current or last session; 1100 by
   * default): sendDatagram refuses larger ones.
   */
  readonly maxDatagramSize: number;
  /**
   * Subscribes to channel; resolves once the server confirms. The handler
   * gets every message published after that (or after options.since), and
   * keeps getting them across reconnects: the client resubscribes,
   * recovering what went by meanwhile from the channel's history (the
   * subscription's "resync" event tells when it could not). Rejects with
   * RequestError (e.g. 102 invalid channel, 103 too many, 104 already
   * subscribed on this client), TimeoutError, ClosedError, or TypeError on
   * a bad since.
   */
  subscribe(channel: string, handler: MessageHandler, options?: SubscribeOptions): Promise<Subscription>;
  /**
   * Publishes data (a string is sent as UTF-8) and resolves with its
   * position once the server acknowledges. Every publish carries an
   * idempotency key (options.idempotencyKey, else a random one). A publish
   * made while disconnected waits for the next connection; one in flight
   * when the connection drops is sent again, with the same key, on the
   * next session (after the resubscriptions), and the server applies it
   * once: duplicate tells when an earlier send had been applied already.
   * Rejects with RequestError (e.g. 102 invalid channel, 106 payload too
   * large), TimeoutError (requestTimeout after the call, resends
   * included), ClosedError (close(), a terminal close code), or TypeError
   * on a bad channel, data or idempotencyKey.
   */
  publish(channel: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView, options?: PublishOptions): Promise<PublishResult>;
  /**
   * Publishes data on a volatile channel this client is subscribed to,
   * unreliably and without an answer: a QUIC datagram on WebTransport, a
   * datagram frame on WebSocket. Subscribers (this one included) receive it
   * with datagram: true. Returns true when sent, false when dropped because
   * the client is reconnecting. Throws RequestError 105 when the channel
   * has no confirmed subscription, TypeError when it is not volatile or
   * data is not bytes or a string, RangeError when the payload is over
   * maxDatagramSize, and ClosedError once the client is closed.
   */
  sendDatagram(channel: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView): boolean;
  /**
   * Asks who is in channel, over the whole cluster; the client must be
   * subscribed to it (the presence option is not needed). Rejects with
   * RequestError (105 not subscribed, 100 a channel that keeps no
   * presence), TimeoutError, ClosedError, or TypeError on a bad channel.
   * Asked while disconnected, or when the connection drops before the
   * answer, it is sent on the next session.
   */
  presence(channel: string, options?: PresenceOptions): Promise<PresenceResult>;
  /**
   * Hands the node a new token for the live session (a Refresh frame,
   * no reconnect) and resolves once it took it: the session's permissions
   * and expiry are the new token's from then on. token defaults to the
   * token function's (called with reason "refresh"), else the token
   * option. A token given here also replaces a string token option for
   * later connects. With a token function the client refreshes by itself
   * before the token expires; call this to switch tokens sooner (e.g. for
   * new permissions). Resolves at once while reconnecting (the next
   * session connects with the token option), and when the session ends
   * before the answer. Rejects with RequestError 110 (refused: a bad
   * token, or another user's; the old token stays in force),
   * TimeoutError, ClosedError, an Error "token: …" when the token function
   * fails (its error as cause), or TypeError when token is not a string.
   */
  refresh(token?: string): Promise<void>;
  /** Adds an event handler; returns a function that removes it. */
  on<E extends ClientEventName>(event: E, handler: (e: ClientEvents[E]) => void): () => void;
  off<E extends ClientEventName>(event: E, handler: (e: ClientEvents[E]) => void): void;
  /** Closes the connection (code 1000) and stops reconnecting; pending requests reject with ClosedError. Idempotent. */
  close(): void;
}

// ----------------------------------------------------------------- errors

/** The server refused a request with an Error frame; code is its error code (docs/protocol.md §7). */
export class RequestError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = "RequestError";
    this.code = code;
  }
}

/**
 * The client is closed, or the connection a request depended on ended:
 * code and reason are the close code and reason (1000 "client closed"
 * after close(); a terminal code such as 3503 from the server).
 */
export class ClosedError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(reason ? `closed: ${code} ${reason}` : `closed: ${code}`);
    this.name = "ClosedError";
    this.code = code;
    this.reason = reason;
  }
}

/** connect(), joinRoom() or a request did not complete within requestTimeout. */
export class TimeoutError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/**
 * The signaling server refused something (docs/signaling.md §4): code is
 * its error code, e.g. "room_full" or "bad_room" (joinRoom() rejects with
 * it) or "unknown_peer" (a room's "error" event); message is the server's
 * text; to is the target of a refused relay.
 */
export class SignalError extends Error {
  readonly code: string;
  readonly to: string | undefined;
  constructor(code: string, message: string, to?: string) {
    super(message || code);
    this.name = "SignalError";
    this.code = code;
    this.to = to;
  }
}

// ---------------------------------------------------------------- helpers

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/** The bytes to send for data (strings as UTF-8); undefined for other types. The result may share data's memory. */
function toBytes(data: unknown): Uint8Array | undefined {
  if (typeof data === "string") return textEncoder.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/** The longest idempotency key, in bytes (protocol: publish.idempotency_key). */
const MAX_KEY_BYTES = 64;
const KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** A random idempotency key: 16 base64url characters, 96 bits. */
function newKey(): string {
  let key = "";
  for (const b of crypto.getRandomValues(new Uint8Array(16))) key += KEY_CHARS[b & 63];
  return key;
}

/** Decodes a message's data (or any bytes) as UTF-8 text. */
export function decodeText(m: Message | Uint8Array): string {
  return textDecoder.decode(m instanceof Uint8Array ? m : m.data);
}

/**
 * Connects to a Switchyard node and resolves with a Client once a session
 * is established. url is one node's URL, or several: attempts go through
 * them in turn. It keeps retrying, with backoff, failures that allow it,
 * and rejects with ClosedError on a terminal close code (e.g. 3503 origin
 * not allowed), with options.signal's reason when it aborts, and with
 * TypeError or RangeError on bad options.
 */
export function connect(url: string | string[], options: ConnectOptions = {}): Promise<Client> {
  let client: ClientImpl;
  try {
    client = new ClientImpl(url, options);
  } catch (e) {
    return Promise.reject(e);
  }
  return client.start().then(() => client);
}

// ------------------------------------------------------------------ rooms

/** Options of joinRoom(). Every field is optional. */
export interface JoinOptions {
  /** Sent in join; a function is called before each join (rejoins included). */
  token?: string | (() => string | Promise<string>);
  /** ICE servers for every RTCPeerConnection, instead of the server's (joined.iceServers). */
  iceServers?: RTCIceServer[];
  /** Further RTCConfiguration for every RTCPeerConnection (bundlePolicy, iceTransportPolicy…); its iceServers are room.iceServers. */
  rtcConfig?: RTCConfiguration;
  /** How long, in ms, joinRoom() and each rejoin may take until joined. Default 10000. */
  requestTimeout?: number;
  /** Rejoin backoff bounds, in ms, as for connect(). Default {min: 500, max: 20000}. */
  backoff?: { min?: number; max?: number };
  /** The WebSocket constructor to use. Default globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocket;
  /** The RTCPeerConnection constructor to use. Default globalThis.RTCPeerConnection. */
  RTCPeerConnection?: new (configuration: RTCConfiguration) => RTCPeerConnection;
}

/** Where a room is: joined, rejoining after losing its WebSocket, or closed (leave(), a terminal close code). */
export type RoomState = "connected" | "reconnecting" | "closed";

/** Payload of a room's "reconnected": joined again; resumed false means a new peerId (and new peers). */
export interface ReconnectedEvent {
  peerId: string;
  resumed: boolean;
}

/** A room's events and their handlers. */
export interface RoomEvents {
  /** Another peer joined the room. */
  join: (peerId: string) => void;
  /** A peer left the room; its RTCPeerConnection (if any) is closed already. */
  leave: (peerId: string) => void;
  /**
   * A peer started a connection to this one: pc is this side's, wired, and
   * the peer's offer is applied right after the handler returns (set
   * ondatachannel and ontrack here).
   */
  connection: (peerId: string, pc: RTCPeerConnection) => void;
  /** A peer's room.send(). */
  message: (peerId: string, data: unknown) => void;
  /** A non-fatal failure: a SignalError from the server (e.g. unknown_peer), or an error of a negotiation. */
  error: (error: Error) => void;
  /** The WebSocket of the room ended; reconnect false: the room is closed (terminal code, e.g. 4500 replaced). Not after leave(). */
  disconnected: (e: DisconnectedEvent) => void;
  /** Before each wait for a rejoin; attempt counts from 1. */
  reconnecting: (e: ReconnectingEvent) => void;
  /** Joined again, after the leave and join events the new peer list caused. */
  reconnected: (e: ReconnectedEvent) => void;
}

export type RoomEventName = keyof RoomEvents;

/** Membership of one signaling room, and an RTCPeerConnection to each peer on demand. */
export interface Room {
  /** The room's name. */
  readonly name: string;
  /** This peer's id (a new one after a rejoin with resumed false). */
  readonly peerId: string;
  /** The ICE servers of the peer connections: options.iceServers, else the server's. */
  readonly iceServers: RTCIceServer[];
  readonly state: RoomState;
  /** The other peers' ids, in join order. */
  peers(): string[];
  /**
   * The RTCPeerConnection to peer id, created and wired on first use:
   * adding a track or data channel to it starts a negotiation. id need not
   * be in peers() yet (its join may still be on the way). Throws TypeError
   * for this peer's own id, ClosedError once closed.
   */
  peer(id: string): RTCPeerConnection;
  /** Relays data (any JSON value) to peer id, who gets a "message" event. Throws ClosedError once closed. */
  send(id: string, data: unknown): void;
  /** Adds an event handler; returns a function that removes it. */
  on<E extends RoomEventName>(event: E, handler: RoomEvents[E]): () => void;
  off<E extends RoomEventName>(event: E, handler: RoomEvents[E]): void;
  /** Leaves the room: sends leave, closes every peer connection and the WebSocket. Idempotent. */
  leave(): void;
}

/**
 * Joins a signaling room (docs/signaling.md) and resolves once joined.
 * signalUrl is the node's /signal WebSocket URL (ws:// or wss://; http(s)://
 * maps to ws(s)://, path /signal when it has none). Rejects with
 * SignalError when the server refuses (room_full, bad_room…), ClosedError
 * when the WebSocket closes first, TimeoutError after requestTimeout, and
 * TypeError on a bad URL or room name. The first join is not retried.
 */
export function joinRoom(signalUrl: string, roomName: string, options: JoinOptions = {}): Promise<Room> {
  return join(signalUrl, roomName, options);
}

// ------------------------------------------------------------------ client

const EVENTS: readonly ClientEventName[] = ["connected", "disconnected", "reconnecting", "subscribed", "error", "transport"];

function positiveNumber(name: string, v: number | undefined, def: number, min = 0, max = Infinity): number {
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw new RangeError(`switchyard: ${name} must be a number in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

interface Settings {
  names: TransportName[];
  token: ConnectOptions["token"];
  fallbackDelay: number;
  stableAfter: number;
  requestTimeout: number;
  connectTimeout: number;
  maxInflight: number;
  discover: boolean;
  /** Whether this browser has WebTransport. */
  wt: boolean;
  /** Connect's user and info (presence). */
  hello: Partial<ConnectBody>;
}

function settings(url: string | string[], o: ConnectOptions, hooks: Internals): { s: Settings; targets: Target[]; factory: TransportFactory; backoff: Backoff } {
  const transports = o.transports ?? ["webtransport", "websocket"];
  if (!Array.isArray(transports) || transports.length === 0 ||
    transports.some((t) => t !== "webtransport" && t !== "websocket") || new Set(transports).size !== transports.length) {
    throw new TypeError(`switchyard: transports must list "webtransport" and/or "websocket" once each, got ${JSON.stringify(transports)}`);
  }
  if (o.token !== undefined && typeof o.token !== "string" && typeof o.token !== "function") {
    throw new TypeError("switchyard: token must be a string or a function returning one");
  }
  // Too long a user or info is the node's to refuse (3500, terminal: connect() rejects with its reason).
  const info = o.info === undefined ? undefined : toBytes(o.info)?.slice();
  if ((o.user !== undefined && typeof o.user !== "string") || (o.info !== undefined && !info)) {
    throw new TypeError("switchyard: user must be a string, info a string or a Uint8Array");
  }
  const urls = Array.isArray(url) ? url : [url];
  if (!urls.length) throw new TypeError("switchyard: no URL");
  // The URL options (webSocketUrl, webTransportUrl, certHashUrl) are the first URL's.
  const targets = urls.map((u, i) => ({ url: u, ...resolveEndpoints(u, i === 0 ? o : {}) }));
  const auto = o.certHash === "auto";
  if (auto && targets[0]!.certHash === undefined) throw new TypeError("switchyard: certHash \"auto\" needs a webSocketUrl or certHashUrl");
  const bytes = o.certHash !== undefined && !auto ? decodeCertHash(o.certHash) : undefined;
  const wt = hooks.webTransport ?? typeof (globalThis as { WebTransport?: unknown }).WebTransport === "function";
  const names = transports.filter((t) => targets.some((ep) => (t === "websocket" ? ep.webSocket : wt && ep.webTransport)));
  if (names.length === 0) {
    throw new TypeError(`switchyard: none of the transports ${JSON.stringify(transports)} can be used here` +
      (wt ? " (WebTransport needs an https:// URL)" : " (this browser has no WebTransport)"));
  }
  const min = positiveNumber("backoff.min", o.backoff?.min, 500, 1);
  const max = positiveNumber("backoff.max", o.backoff?.max, Math.max(20000, min), min);
  // certHash "auto": each node's own /certhash.
  const hash = (t: Target): CertHashSource => (bytes ? { bytes } : auto && t.certHash ? { url: t.certHash } : undefined);
  const factory: TransportFactory = hooks.factory ?? ((name, h, t) =>
    name === "webtransport" ? new WebTransportTransport(t.webTransport!, hash(t), h) : new WebSocketTransport(t.webSocket!, h));
  return {
    s: {
      names,
      token: o.token,
      fallbackDelay: positiveNumber("fallbackDelay", o.fallbackDelay, 500, 0, 1000),
      stableAfter: positiveNumber("stableAfter", o.stableAfter, 10000),
      requestTimeout: positiveNumber("requestTimeout", o.requestTimeout, 10000, 1),
      connectTimeout: positiveNumber("connectTimeout", o.connectTimeout, 10000, 1),
      maxInflight: positiveNumber("maxInflight", o.maxInflight, 1000, 1),
      discover: o.discover ?? Array.isArray(url),
      wt,
      hello: { user: o.user, info },
    },
    targets,
    factory,
    backoff: new Backoff(min, max, hooks.random, true),
  };
}

/** A publish, unsubscribe, presence or refresh request waiting for its reply (or for a connection). */
interface Req extends ReqBody {
  kind: "publish" | "unsubscribe" | "presence" | "refresh";
  channel: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: unknown;
  settled: boolean;
}

/** What a request carries besides its channel. */
interface ReqBody {
  data?: Uint8Array;
  key?: string; // a publish's idempotency key, the same on every send
  countsOnly?: boolean; // a presence request's
  token?: string; // a refresh's
}

/** Whether a request needs nothing more once its session ended: an unsubscribe (the next session starts without it), a refresh (it connects with a fresh token). */
const moot = (r: Req): boolean => r.kind === "unsubscribe" || r.kind === "refresh";

/** What a request id in flight on a connection is for. */
type Inflight =
  | { kind: "subscribe"; sub: SubscriptionImpl }
  | { kind: "request"; req: Req }
  | { kind: "ignore" };

/** After WebSocket won a race WebTransport was in, reconnects skip WebTransport this long (ms). */
const WT_SKIP_MS = 60_000;
/** Background WebTransport attempts while on WebSocket: first after this many ms, doubling up to UPGRADE_MAX. */
const UPGRADE_MIN = 5000;
const UPGRADE_MAX = 60_000;
/** How often a client held back by a full send buffer looks again, ms. */
const POLL_MS = 50;
const CODE_UNAUTHORIZED = 3502;
const MOVED = "moved to another transport";

type TokenReason = TokenContext["reason"];

class ClientImpl implements Client {
  // immutable after the constructor
  private readonly s: Settings;
  private readonly factory: TransportFactory;
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private readonly fetch: typeof fetch | undefined;
  private readonly events: EventTarget;
  private readonly signal: AbortSignal | undefined;
  private readonly listeners = new Map<ClientEventName, Set<(e: never) => void>>();

  transport: TransportName;
  state: ClientState = "connecting";
  sessionId = "";
  maxDatagramSize = 0;

  private closed = false;
  private endError: Error | undefined; // what requests fail with once closed
  private readonly subs = new Map<string, SubscriptionImpl>(); // by channel: pending or active
  private readonly aliases = new Map<number, SubscriptionImpl>(); // the same, by alias
  private lastAlias = 0; // the last alias given out
  private datagramSeq = 0; // the last datagram sequence number sent
  private waiting: Req[] = []; // requests for the next connection, or held back
  private conn: Connection | undefined; // the live session
  private inflight = new Map<number, Inflight>(); // of conn
  /** The WebSocket session being left for WebTransport, until its subscriptions moved. */
  private old: { conn: Connection; inflight: Map<number, Inflight>; timer: unknown } | undefined;
  private cancel: AbortController | undefined; // the race under way
  private wake: (() => void) | undefined; // ends the backoff wait under way
  private readonly online: () => boolean; // whether the device says it has a network
  private serveDone: ((info: CloseInfo) => void) | undefined;
  private first: { resolve(): void; reject(e: Error): void } | undefined;
  private readonly targets: Target[]; // nodes to try, in order
  private cur = 0; // the one the next attempt goes to
  private tries = 0; // attempts since the last session began
  private healed = false; // a 3502 asked the token function again since the last session
  private wtSkipUntil = 0;
  private upgradeDelay = UPGRADE_MIN;
  private upgradeTimer: unknown;
  private pollTimer: unknown;
  private readonly refresher: Refresher | undefined; // with a token function
  private readonly onOnline = (): void => {
    this.backoff.reset();
    this.wake?.();
  };
  // The device lost its network: the session is gone even if no close
  // arrives for a heartbeat's time. End it now (the app sees
  // "disconnected" at once) and wait for "online" to try again.
  private readonly onOffline = (): void => {
    this.conn?.abandon("the device went offline");
    this.cancel?.abort(); // an attempt under way cannot succeed either
  };

  constructor(url: string | string[], options: ConnectOptions) {
    const hooks = (options as { [INTERNALS]?: Internals })[INTERNALS] ?? {};
    const { s, targets, factory, backoff } = settings(url, options, hooks);
    this.s = s;
    this.targets = targets;
    this.factory = factory;
    this.backoff = backoff;
    this.clock = hooks.clock ?? realClock;
    this.fetch = hooks.fetch ?? globalThis.fetch;
    this.transport = s.names[0]!;
    if (options.on !== undefined) {
      if (typeof options.on !== "object" || options.on === null) throw new TypeError("switchyard: on must map event names to handlers");
      for (const [event, handler] of Object.entries(options.on)) {
        if (handler !== undefined) this.on(event as ClientEventName, handler as (e: unknown) => void);
      }
    }
    this.events = hooks.events ?? (globalThis as unknown as EventTarget);
    this.events.addEventListener?.("online", this.onOnline);
    this.events.addEventListener?.("offline", this.onOffline);
    this.online = hooks.online ?? (() => (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine !== false);
    this.signal = options.signal;
    if (typeof s.token === "function") {
      this.refresher = new Refresher(this.clock, (attempt) => this.renew(this.conn!, attempt), (e) => this.emit("error", {
        error: e instanceof RequestError || e instanceof TimeoutError ? e : new Error(`switchyard: token refresh failed: ${(e as Error).message}`, { cause: e }),
      }));
    }
  }

  /** Runs the client; resolves on the first session, rejects when connect() fails. */
  start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.first = { resolve, reject };
    });
    const sig = this.signal;
    const abort = (): void => {
      this.first?.reject(sig!.reason);
      this.close();
    };
    if (sig?.aborted) abort();
    sig?.addEventListener("abort", abort, { once: true });
    void this.run();
    return p;
  }

  // ------------------------------------------------------ reconnect loop

  private async run(): Promise<void> {
    let why: TokenReason = "connect";
    while (!this.closed) {
      let conn: Connection;
      try {
        conn = await this.attempt(why);
      } catch (e) {
        if (this.closed) return;
        const info = e as CloseInfo;
        if (this.heal(info)) {
          why = "unauthorized";
          continue;
        }
        if (!reconnectAllowed(info.code)) {
          this.terminate(info);
          return;
        }
        this.cur = (this.cur + 1) % this.targets.length; // a failed node: the next one
        why = this.first ? "connect" : "reconnect";
        if (!(await this.pause(info.reconnectAfterMs))) return;
        continue;
      }
      if (this.closed) {
        conn.close(CLOSE_NORMAL, "client closed");
        return;
      }
      this.healed = false;
      const info = await this.serve(conn);
      if (this.closed) return;
      const heal = this.heal(info);
      if (!heal && !reconnectAllowed(info.code)) {
        this.terminate(info);
        return;
      }
      this.emit("disconnected", { code: info.code, reason: info.reason, reconnect: true });
      if (this.closed) return;
      if (this.clock.now() - conn.connectedAt >= this.s.stableAfter) this.backoff.reset();
      // A drain names the node to go to; a node going away without one: the next.
      const i = info.reconnectUrl ? this.add({ url: info.reconnectUrl, ...resolveEndpoints(info.reconnectUrl) }) : -1;
      if (i >= 0) this.cur = i;
      else if (info.code === CODE_GOING_AWAY) this.cur = (this.cur + 1) % this.targets.length;
      why = heal ? "unauthorized" : "reconnect";
      if (!heal && !(await this.pause(info.reconnectAfterMs))) return;
    }
  }

  /** Whether a 3502 should be answered by asking the token function once more. */
  private heal(info: CloseInfo): boolean {
    if (info.code !== CODE_UNAUTHORIZED || typeof this.s.token !== "function" || this.healed) return false;
    return (this.healed = true);
  }

  /** Adds a node to the targets unless known (by its URLs); returns its index. */
  private add(t: Target | undefined): number {
    if (!t) return -1;
    const i = this.targets.findIndex((x) => x.webTransport === t.webTransport && x.webSocket === t.webSocket);
    return i >= 0 ? i : this.targets.push(t) - 1;
  }

  /** The token for an attempt; rejects with a CloseInfo. */
  private async token(reason: TokenReason, t: Target, signal?: AbortSignal): Promise<string> {
    try {
      return await this.fresh(reason, t.url, ++this.tries, signal);
    } catch (e) {
      throw { code: 0, reason: (e as Error).message } satisfies CloseInfo;
    }
  }

  /** The token option's token: a function's is asked for (within connectTimeout); rejects with an Error "token: …". */
  private async fresh(reason: TokenReason, url: string, attempt: number, signal?: AbortSignal): Promise<string> {
    const fn = this.s.token;
    if (typeof fn !== "function") return fn ?? "";
    let token: unknown;
    try {
      token = await this.within(Promise.resolve(fn({ attempt, url, reason })), this.s.connectTimeout, signal);
    } catch (e) {
      throw new Error(`token: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (typeof token !== "string") throw new Error("token: the function did not return a string");
    return token;
  }

  /**
   * Hands conn's node a new token (token, else the token option's, asked
   * for with reason "refresh"); resolves with the new expires_in_s, or
   * undefined when the session ended first.
   */
  private async renew(conn: Connection, attempt: number, token?: string): Promise<number | undefined> {
    token ??= await this.fresh("refresh", conn.target.url, attempt);
    if (this.conn !== conn) return undefined;
    return (await this.request("refresh", "", { token })) as number | undefined;
  }

  /** Whether WebTransport can be tried on this node at all. */
  private wtOn(t: Target): boolean {
    return this.s.wt && t.webTransport !== undefined && this.s.names.includes("webtransport");
  }

  /** One connection attempt to the current node: get the token, race the transports. Rejects with a CloseInfo. */
  private async attempt(reason: TokenReason): Promise<Connection> {
    const ac = new AbortController();
    this.cancel = ac;
    const t = this.targets[this.cur]!;
    try {
      let names = this.s.names.filter((n) => (n === "websocket" ? t.webSocket !== undefined : this.wtOn(t)));
      // WebTransport failed here lately: WebSocket alone (the background upgrade retries it).
      if (names.length > 1 && this.clock.now() < this.wtSkipUntil) names = ["websocket"];
      if (names.length === 0) throw { code: 0, reason: `no usable transport for ${t.url}` } satisfies CloseInfo;
      const token = await this.token(reason, t, ac.signal);
      const conn = await race({
        names,
        fallbackDelay: this.s.fallbackDelay,
        timeout: this.s.connectTimeout,
        clock: this.clock,
        start: (name) => new Connection(name, this.factory, { ...this.s.hello, token }, this.clock, t),
        signal: ac.signal,
      });
      if (conn.name === "websocket" && names.length > 1) this.wtSkipUntil = this.clock.now() + WT_SKIP_MS;
      return conn;
    } finally {
      if (this.cancel === ac) this.cancel = undefined;
    }
  }

  /** Resolves like p, or rejects after ms or on abort. */
  private within<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = this.clock.setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      const onAbort = () => reject(new Error("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      p.then(resolve, reject).finally(() => {
        this.clock.clearTimeout(t);
        signal?.removeEventListener("abort", onAbort);
      });
    });
  }

  /**
   * Waits out the next backoff delay (an "online" event cuts it short);
   * false if the client closed meanwhile. Offline, it waits for "online",
   * or the longest backoff delay in case the browser is wrong about it.
   */
  private async pause(hintMs?: number): Promise<boolean> {
    this.state = "reconnecting";
    const { attempt, delay: jittered } = this.online() ? this.backoff.next() : { attempt: this.backoff.attempt, delay: this.backoff.max };
    const delay = Math.max(jittered, hintMs ?? 0);
    this.emit("reconnecting", { attempt, delay });
    if (this.closed) return false;
    await new Promise<void>((resolve) => {
      const t = this.clock.setTimeout(() => this.wake?.(), delay);
      this.wake = () => {
        this.wake = undefined;
        this.clock.clearTimeout(t);
        resolve();
      };
    });
    return !this.closed;
  }

  /** Runs a session until it ends; resolves with how it ended. */
  private serve(conn: Connection): Promise<CloseInfo> {
    return new Promise<CloseInfo>((resolve) => {
      this.serveDone = resolve;
      this.adopt(conn);
    });
  }

  /** Makes conn the live session: resubscribes, sends what waits. */
  private adopt(conn: Connection): void {
    const c = conn.connected!;
    this.conn = conn;
    this.inflight = new Map();
    this.state = "connected";
    this.transport = conn.name;
    this.sessionId = c.sessionId;
    this.maxDatagramSize = c.maxDatagramSize;
    this.tries = 0;
    this.refresher?.arm(c.expiresInS);
    conn.attach({
      frame: (f) => this.onFrame(conn, f),
      streamMessage: (alias, f) => this.onStreamMessage(conn, alias, f),
      datagram: (d) => this.onDatagram(conn, d),
      closed: (info) => {
        if (this.conn === conn) {
          const done = this.serveDone;
          this.lost();
          done?.(info);
        } else if (this.old?.conn === conn) {
          this.leave();
        }
      },
    });
    if (this.conn !== conn) return; // it ended already
    for (const sub of this.subs.values()) {
      sub.state = "pending";
      sub.discard();
      this.sendSubscribe(conn, sub);
    }
    this.flush();
    this.clock.clearTimeout(this.upgradeTimer);
    if (conn.name === "websocket" && this.s.names[0] === "webtransport" && this.wtOn(conn.target)) {
      this.upgradeTimer = this.clock.setTimeout(() => void this.upgrade(conn), this.upgradeDelay);
    }
    if (this.s.discover) void this.discover(conn);
    const first = this.first;
    this.first = undefined;
    if (this.old) return; // a transport switch: no new "connected"
    this.emit("connected", { transport: conn.name, sessionId: c.sessionId, node: c.node, region: c.region });
    first?.resolve();
  }

  /**
   * On WebSocket: tries WebTransport to the same node in the background;
   * when it connects, moves there (subscriptions recover from their last
   * position, the WebSocket session closes once they are confirmed).
   */
  private async upgrade(ws: Connection): Promise<void> {
    let next: Connection | undefined;
    try {
      const token = await this.token("upgrade", ws.target);
      if (this.conn !== ws) return;
      next = new Connection("webtransport", this.factory, { ...this.s.hello, token }, this.clock, ws.target);
      await this.within(next.ready, this.s.connectTimeout);
    } catch {
      next?.close();
      if (this.conn === ws && !this.closed) {
        this.upgradeDelay = Math.min(UPGRADE_MAX, this.upgradeDelay * 2);
        this.upgradeTimer = this.clock.setTimeout(() => void this.upgrade(ws), this.upgradeDelay);
      }
      return;
    }
    if (this.conn !== ws || this.closed || this.old) {
      next.close();
      return;
    }
    this.upgradeDelay = UPGRADE_MIN;
    this.wtSkipUntil = 0;
    this.old = { conn: ws, inflight: this.inflight, timer: this.clock.setTimeout(() => this.leave(), this.s.requestTimeout) };
    this.adopt(next);
    this.emit("transport", { from: "websocket", to: "webtransport" });
    this.moved();
  }

  /** Closes the session being left once every subscription is confirmed on the new one. */
  private moved(): void {
    if (this.old && ![...this.subs.values()].some((s) => s.state === "pending")) this.leave();
  }

  /** Closes the session being left; returns its publishes that await an ack (to resend). */
  private dropOld(): Req[] {
    const o = this.old;
    if (!o) return [];
    this.old = undefined;
    this.clock.clearTimeout(o.timer);
    o.conn.close(CLOSE_NORMAL, MOVED);
    const reqs: Req[] = [];
    for (const x of o.inflight.values()) {
      if (x.kind !== "request" || x.req.settled) continue;
      if (moot(x.req)) this.settle(x.req);
      else reqs.push(x.req);
    }
    return reqs;
  }

  /** Closes the session being left; its unacknowledged publishes go first on the live one. */
  private leave(): void {
    this.waiting = this.dropOld().concat(this.waiting);
    this.flush();
  }

  /** Sends waiting requests while fewer than maxInflight await replies and the transport takes more. */
  private flush(_?: unknown): void {
    const conn = this.conn;
    while (conn && this.waiting.length > 0 && this.inflight.size < this.s.maxInflight) {
      if (!conn.writable()) {
        this.pollTimer ??= this.clock.setTimeout(() => this.flush(this.pollTimer = undefined), POLL_MS);
        return;
      }
      this.sendRequest(conn, this.waiting.shift()!);
    }
  }

  /** Learns the cluster's nodes from GET /api/nodes; failures are ignored. */
  private async discover(conn: Connection): Promise<void> {
    try {
      const rsp = await this.fetch!(`${httpOrigin(conn.target)}/api/nodes`, { cache: "no-store", credentials: "omit" });
      const body = (await rsp.json()) as { self?: string; region?: string; regions?: Record<string, { name?: string; urls?: Record<string, string>; draining?: boolean }[]> };
      const regions = body.regions!;
      for (const r of [body.region!, ...Object.keys(regions)]) {
        for (const n of regions[r] ?? []) if (!n.draining && n.name !== body.self) this.add(nodeTarget(n.urls));
      }
    } catch {
      // no list: the known URLs
    }
  }

  /**
   * The live session ended: what was in flight on it waits for the next
   * one, with what was queued already.
   */
  private lost(): void {
    this.conn = undefined;
    this.serveDone = undefined;
    this.state = "reconnecting";
    this.clock.clearTimeout(this.upgradeTimer);
    this.refresher?.stop();
    const resend = this.dropOld();
    const inflight = this.inflight;
    this.inflight = new Map();
    for (const x of inflight.values()) {
      if (x.kind !== "request") continue;
      // Unsubscribing and refreshing need nothing more: the next session
      // starts clean, with a fresh token.
      if (moot(x.req)) this.settle(x.req);
      // An unacknowledged publish goes again, with its idempotency key: if
      // the server applied it, the owner node says duplicate instead of
      // publishing it twice. Its timer keeps running from publish().
      else if (!x.req.settled) resend.push(x.req);
    }
    this.waiting = resend.concat(this.waiting);
    for (const sub of this.subs.values()) {
      if (sub.state === "active") sub.state = "pending";
      sub.discard();
    }
  }

  /** A terminal close code: stop for good. */
  private terminate(info: CloseInfo): void {
    this.shutdown(new ClosedError(info.code, info.reason), { code: info.code, reason: info.reason, reconnect: false });
  }

  /** Stops everything; err is what pending and later requests fail with. */
  private shutdown(err: Error, event?: DisconnectedEvent, code = CLOSE_NORMAL, reason = "client closed"): void {
    if (this.closed) return;
    this.closed = true;
    this.endError = err;
    this.state = "closed";
    this.cancel?.abort();
    this.wake?.();
    this.events.removeEventListener?.("online", this.onOnline);
    this.events.removeEventListener?.("offline", this.onOffline);
    this.clock.clearTimeout(this.upgradeTimer);
    this.clock.clearTimeout(this.pollTimer);
    this.refresher?.stop();
    const conn = this.conn;
    this.conn = undefined;
    conn?.close(code, reason);
    const inflight = this.inflight;
    this.inflight = new Map();
    for (const req of this.dropOld()) this.settle(req, err);
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
      sub.waiter = undefined;
      if (w) {
        this.clock.clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.subs.clear();
    this.aliases.clear();
    const done = this.serveDone;
    this.serveDone = undefined;
    done?.({ code, reason });
    const first = this.first;
    this.first = undefined;
    first?.reject(err);
    if (event) this.emit("disconnected", event);
  }

  // ------------------------------------------------------------ frames

  private onFrame(conn: Connection, f: Frame): void {
    if (conn !== this.conn) {
      if (conn === this.old?.conn) this.onOldFrame(f);
      return;
    }
    if (f.type === "message") {
      const sub = this.subs.get(f.channel);
      if (sub?.state !== "active") return; // not subscribed (any more)
      sub.message(f.epoch, f.offset, f.data);
      return;
    }
    if (f.id === 0) {
      // A refused datagram is answered with an error of id 0.
      if (f.type === "error") this.emit("error", { error: new RequestError(f.code, f.message) });
      // Presence events, for the subscriptions that asked.
      if ((f.type === "join" || f.type === "leave") && f.member) this.subs.get(f.channel)?.emit(f.type, f.member);
      // The server ended a subscription (3005: publications lost on the
      // way): subscribe again at once, recovering from the last position.
      if (f.type === "unsubscribed" && f.code !== 0) {
        const sub = this.subs.get(f.channel);
        if (sub?.state === "active") {
          sub.state = "pending";
          this.sendSubscribe(conn, sub);
        }
      }
      return; // any other push is unexpected
    }
    const x = this.inflight.get(f.id);
    if (!x) return;
    this.inflight.delete(f.id);
    if (x.kind === "subscribe") this.onSubscribeReply(conn, x.sub, f);
    else if (x.kind === "request") this.onRequestReply(x.req, f);
    this.moved();
    this.flush();
  }

  /**
   * A frame of the WebSocket session being left: its messages still count
   * until the subscriptions are confirmed on WebTransport (the duplicate
   * guard drops the overlap), its replies settle what was sent on it.
   */
  private onOldFrame(f: Frame): void {
    if (f.type === "message") {
      const sub = this.subs.get(f.channel);
      if (sub?.confirmed && sub.state !== "closed" && !sub.volatile) sub.message(f.epoch, f.offset, f.data);
      return;
    }
    const x = this.old!.inflight.get(f.id);
    if (x?.kind === "request") {
      this.old!.inflight.delete(f.id);
      this.onRequestReply(x.req, f);
    }
  }

  /** A message from a subscription's stream: it may come before Subscribed. */
  private onStreamMessage(conn: Connection, alias: number, f: FrameOf<"message">): void {
    if (conn !== this.conn) return;
    const sub = this.aliases.get(alias);
    if (sub === undefined || sub.channel !== f.channel) return; // only its own channel comes on a stream
    if (sub.state === "active") sub.message(f.epoch, f.offset, f.data);
    else if (sub.state === "pending") sub.hold(false, f.epoch, f.offset, f.data);
  }

  private onDatagram(conn: Connection, d: Datagram): void {
    if (conn !== this.conn) return;
    const sub = this.aliases.get(d.alias);
    if (sub === undefined) return; // unsubscribed meanwhile
    if (sub.state === "active") {
      if (sub.volatile) sub.datagram(d.seq, d.payload.slice());
    } else if (sub.state === "pending") {
      sub.hold(true, "", d.seq, d.payload.slice());
    }
  }

  private onSubscribeReply(conn: Connection, sub: SubscriptionImpl, f: Frame): void {
    if (sub.state === "closed" || this.subs.get(sub.channel) !== sub) {
      // Unsubscribed meanwhile (its Unsubscribe follows on this session) or
      // given up after a timeout: undo a subscription nobody wants.
      if (f.type === "subscribed" && sub.unsubscribedOn !== conn) this.sendUnsubscribeNoWait(conn, sub.channel);
      return;
    }
    if (f.type === "subscribed") {
      const resubscribed = sub.confirmed;
      const missed = sub.confirm(f);
      const w = sub.waiter;
      sub.waiter = undefined;
      if (w) {
        this.clock.clearTimeout(w.timer);
        w.resolve(sub);
      }
      this.emit("subscribed", { channel: sub.channel, epoch: f.epoch, offset: f.offset, resubscribed, missed, recovered: sub.recovered });
      if (this.subs.get(sub.channel) === sub) sub.release();
      return;
    }
    this.forget(sub);
    sub.state = "closed";
    const err = f.type === "error"
      ? new RequestError(f.code, f.message)
      : new Error(`switchyard: unexpected reply ${f.type} to subscribe`);
    const w = sub.waiter;
    sub.waiter = undefined;
    if (w) {
      this.clock.clearTimeout(w.timer);
      w.reject(err);
    } else {
      this.emit("error", { error: err, channel: sub.channel });
    }
  }

  private onRequestReply(req: Req, f: Frame): void {
    if (f.type === "error") {
      if (req.kind === "unsubscribe" && f.code === ERR_NOT_SUBSCRIBED) this.settle(req);
      else this.settle(req, new RequestError(f.code, f.message));
    } else if (req.kind === "publish" && f.type === "publishAck") {
      this.settle(req, undefined, { epoch: f.epoch, offset: f.offset, duplicate: f.duplicate } satisfies PublishResult);
    } else if (req.kind === "unsubscribe" && f.type === "unsubscribed") {
      this.settle(req);
    } else if (req.kind === "refresh" && f.type === "refreshed") {
      this.settle(req, undefined, f.expiresInS);
    } else if (req.kind === "presence" && f.type === "presenceReply") {
      this.settle(req, undefined, { clients: f.clients, users: f.users, members: f.members, truncated: f.truncated } satisfies PresenceResult);
    } else {
      this.settle(req, new Error(`switchyard: unexpected reply ${f.type} to ${req.kind}`));
    }
  }

  private nextId(conn: Connection): number {
    return conn.nextId((id) => this.inflight.has(id));
  }

  private sendSubscribe(conn: Connection, sub: SubscriptionImpl): void {
    const id = this.nextId(conn);
    this.inflight.set(id, { kind: "subscribe", sub });
    const r = sub.recover; // from the last position seen
    conn.send(id, "subscribe", {
      channel: sub.channel, alias: sub.alias, recover: r, sinceEpoch: r ? sub.epoch : "", sinceOffset: r ? sub.offset : 0, presence: sub.presence,
    });
  }

  /**
   * The next free alias. Aliases go up to MAX_ALIAS before any is used
   * again, so that a late delivery for an ended subscription (its stream,
   * its datagrams) cannot reach a new one.
   */
  private newAlias(): number {
    for (;;) {
      this.lastAlias = (this.lastAlias % MAX_ALIAS) + 1;
      if (!this.aliases.has(this.lastAlias)) return this.lastAlias;
    }
  }

  /** Takes a subscription out of the client's maps. */
  private forget(sub: SubscriptionImpl): void {
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
    if (this.aliases.get(sub.alias) === sub) this.aliases.delete(sub.alias);
    sub.discard();
  }

  private sendUnsubscribeNoWait(conn: Connection, channel: string): void {
    const id = this.nextId(conn);
    this.inflight.set(id, { kind: "ignore" });
    conn.send(id, "unsubscribe", { channel });
  }

  private sendRequest(conn: Connection, req: Req): void {
    if (req.settled) return;
    const id = this.nextId(conn);
    let frame: Uint8Array;
    try {
      frame = encodeFrame(id, req.kind, { channel: req.channel, data: req.data, idempotencyKey: req.key, countsOnly: req.countsOnly, token: req.token });
    } catch (e) {
      this.settle(req, e as Error);
      return;
    }
    const max = conn.connected?.maxFrameSize ?? 0;
    const size = frameBodyLength(frame);
    if (max > 0 && size > max) {
      this.settle(req, new RequestError(ERR_PAYLOAD_TOO_LARGE,
        `publish frame of ${size} bytes exceeds the server's max_frame_size of ${max}`));
      return;
    }
    this.inflight.set(id, { kind: "request", req });
    conn.sendRaw(frame);
  }

  private settle(req: Req, err?: Error, value?: unknown): void {
    if (req.settled) return;
    req.settled = true;
    this.clock.clearTimeout(req.timer);
    if (err) req.reject(err);
    else req.resolve(value);
  }

  // -------------------------------------------------------- public API

  subscribe(channel: string, handler: MessageHandler, options: SubscribeOptions = {}): Promise<Subscription> {
    if (this.closed) return Promise.reject(this.endError);
    if (typeof channel !== "string") return Promise.reject(new TypeError("switchyard: channel must be a string"));
    if (typeof handler !== "function") return Promise.reject(new TypeError("switchyard: subscribe needs a handler function"));
    const since = options?.since;
    if (since !== undefined && (typeof since?.epoch !== "string" || !Number.isInteger(since.offset) || since.offset < 0)) {
      return Promise.reject(new TypeError("switchyard: since must be a position {epoch: string, offset: integer ≥ 0}"));
    }
    if (this.subs.has(channel)) {
      return Promise.reject(new RequestError(ERR_ALREADY_SUBSCRIBED, `already subscribed to ${channel}`));
    }
    const sub = new SubscriptionImpl(this, channel, this.newAlias(), handler, since && { epoch: since.epoch, offset: since.offset }, !!options?.presence);
    this.subs.set(channel, sub);
    this.aliases.set(sub.alias, sub);
    return new Promise<Subscription>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        if (sub.waiter === undefined) return;
        sub.waiter = undefined;
        this.forget(sub);
        sub.state = "closed";
        reject(new TimeoutError(`switchyard: subscribe to ${channel} not confirmed within ${this.s.requestTimeout} ms`));
      }, this.s.requestTimeout);
      sub.waiter = { resolve, reject, timer };
      if (this.conn) this.sendSubscribe(this.conn, sub);
    });
  }

  /** Subscription.unsubscribe. */
  unsubscribe(sub: SubscriptionImpl): Promise<void> {
    if (sub.state === "closed") return Promise.resolve();
    sub.state = "closed";
    this.forget(sub);
    const conn = this.conn;
    if (!conn) return Promise.resolve(); // the next session starts without it
    sub.unsubscribedOn = conn;
    return this.request("unsubscribe", sub.channel).then(() => {});
  }

  publish(channel: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView, options?: PublishOptions): Promise<PublishResult> {
    if (this.closed) return Promise.reject(this.endError);
    if (typeof channel !== "string") return Promise.reject(new TypeError("switchyard: channel must be a string"));
    const view = toBytes(data);
    if (view === undefined) return Promise.reject(new TypeError("switchyard: publish data must be a string, Uint8Array or ArrayBuffer"));
    const key = options?.idempotencyKey ?? newKey();
    // Non-empty (an empty key is no key on the wire), at most 64 bytes,
    // and no lone surrogate (UTF-8 would turn it into U+FFFD: another key).
    if (typeof key !== "string" || key === "" || /\p{Cs}/u.test(key) || textEncoder.encode(key).length > MAX_KEY_BYTES) {
      return Promise.reject(new TypeError(`switchyard: idempotencyKey must be a string of 1 to ${MAX_KEY_BYTES} bytes (UTF-8)`));
    }
    // A copy: the caller may change data while the publish waits.
    const bytes = typeof data === "string" ? view : view.slice();
    return this.request("publish", channel, { data: bytes, key }) as Promise<PublishResult>;
  }

  sendDatagram(channel: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView): boolean {
    if (this.closed) throw this.endError!;
    if (typeof channel !== "string") throw new TypeError("switchyard: channel must be a string");
    const bytes = toBytes(data);
    if (bytes === undefined) throw new TypeError("switchyard: datagram data must be a string, Uint8Array or ArrayBuffer");
    const sub = this.subs.get(channel);
    if (sub === undefined || !sub.confirmed) {
      throw new RequestError(ERR_NOT_SUBSCRIBED, `subscribe to ${channel} (and wait for it) before sending datagrams on it`);
    }
    if (!sub.volatile) throw new TypeError(`switchyard: ${channel} is not a volatile channel: publish() on it`);
    if (bytes.length > this.maxDatagramSize) {
      throw new RangeError(`switchyard: datagram payload is ${bytes.length} bytes, limit ${this.maxDatagramSize} (maxDatagramSize)`);
    }
    const conn = this.conn;
    if (conn === undefined || sub.state !== "active") return false; // reconnecting: lost, as datagrams may be
    this.datagramSeq = this.datagramSeq >= Number.MAX_SAFE_INTEGER ? 1 : this.datagramSeq + 1;
    conn.sendDatagram(sub.alias, this.datagramSeq, bytes);
    return true;
  }

  presence(channel: string, options?: PresenceOptions): Promise<PresenceResult> {
    if (this.closed) return Promise.reject(this.endError);
    if (typeof channel !== "string") return Promise.reject(new TypeError("switchyard: channel must be a string"));
    return this.request("presence", channel, { countsOnly: !!options?.countsOnly }) as Promise<PresenceResult>;
  }

  async refresh(token?: string): Promise<void> {
    if (this.closed) throw this.endError;
    if (token !== undefined && typeof token !== "string") throw new TypeError("switchyard: token must be a string");
    if (token !== undefined && typeof this.s.token !== "function") this.s.token = token;
    const conn = this.conn;
    if (!conn) return; // the next session's Connect carries the token option's
    const s = await this.renew(conn, 1, token);
    if (s !== undefined && this.conn === conn) this.refresher?.arm(s);
  }

  private request(kind: Req["kind"], channel: string, body: ReqBody = {}): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const req: Req = { kind, channel, ...body, resolve, reject, timer: undefined, settled: false };
      req.timer = this.clock.setTimeout(() => {
        if (req.settled) return;
        this.waiting = this.waiting.filter((r) => r !== req);
        // No longer awaited: a late reply finds nothing, and the slot is free.
        for (const m of [this.inflight, this.old?.inflight]) {
          for (const [id, x] of m ?? []) if (x.kind === "request" && x.req === req) m!.delete(id);
        }
        if (kind === "unsubscribe") {
          this.settle(req); // locally it is gone already
        } else {
          this.settle(req, new TimeoutError(`switchyard: ${kind} ${channel && `to ${channel} `}not acknowledged within ${this.s.requestTimeout} ms`));
        }
        this.flush();
      }, this.s.requestTimeout);
      // A refresh goes first: it has a deadline, the others only order.
      if (kind === "refresh") this.waiting.unshift(req);
      else this.waiting.push(req);
      this.flush();
    });
  }

  on<E extends ClientEventName>(event: E, handler: (e: ClientEvents[E]) => void): () => void {
    if (!EVENTS.includes(event)) throw new TypeError(`switchyard: unknown event ${JSON.stringify(event)}`);
    if (typeof handler !== "function") throw new TypeError("switchyard: handler must be a function");
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(handler as (e: never) => void);
    return () => this.off(event, handler);
  }

  off<E extends ClientEventName>(event: E, handler: (e: ClientEvents[E]) => void): void {
    this.listeners.get(event)?.delete(handler as (e: never) => void);
  }

  private emit<E extends ClientEventName>(event: E, payload: ClientEvents[E]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        (h as (e: ClientEvents[E]) => void)(payload);
      } catch (e) {
        rethrowLater(e);
      }
    }
  }

  /** An exception from a message handler: to "error" listeners, else reported as uncaught. */
  report(e: unknown, channel: string): void {
    if (this.listeners.get("error")?.size) {
      this.emit("error", { error: e instanceof Error ? e : new Error(String(e)), channel });
    } else {
      rethrowLater(e);
    }
  }

  close(): void {
    this.shutdown(new ClosedError(CLOSE_NORMAL, "client closed"),
      this.conn ? { code: CLOSE_NORMAL, reason: "client closed", reconnect: false } : undefined);
  }
}
