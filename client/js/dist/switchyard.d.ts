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
    backoff?: {
        min?: number;
        max?: number;
    };
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
    on?: {
        [E in ClientEventName]?: (e: ClientEvents[E]) => void;
    };
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
/** The server refused a request with an Error frame; code is its error code (docs/protocol.md §7). */
export declare class RequestError extends Error {
    readonly code: number;
    constructor(code: number, message: string);
}
/**
 * The client is closed, or the connection a request depended on ended:
 * code and reason are the close code and reason (1000 "client closed"
 * after close(); a terminal code such as 3503 from the server).
 */
export declare class ClosedError extends Error {
    readonly code: number;
    readonly reason: string;
    constructor(code: number, reason: string);
}
/** connect(), joinRoom() or a request did not complete within requestTimeout. */
export declare class TimeoutError extends Error {
    constructor(message: string, options?: {
        cause?: unknown;
    });
}
/**
 * The signaling server refused something (docs/signaling.md §4): code is
 * its error code, e.g. "room_full" or "bad_room" (joinRoom() rejects with
 * it) or "unknown_peer" (a room's "error" event); message is the server's
 * text; to is the target of a refused relay.
 */
export declare class SignalError extends Error {
    readonly code: string;
    readonly to: string | undefined;
    constructor(code: string, message: string, to?: string);
}
/** Decodes a message's data (or any bytes) as UTF-8 text. */
export declare function decodeText(m: Message | Uint8Array): string;
/**
 * Connects to a Switchyard node and resolves with a Client once a session
 * is established. url is one node's URL, or several: attempts go through
 * them in turn. It keeps retrying, with backoff, failures that allow it,
 * and rejects with ClosedError on a terminal close code (e.g. 3503 origin
 * not allowed), with options.signal's reason when it aborts, and with
 * TypeError or RangeError on bad options.
 */
export declare function connect(url: string | string[], options?: ConnectOptions): Promise<Client>;
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
    backoff?: {
        min?: number;
        max?: number;
    };
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
export declare function joinRoom(signalUrl: string, roomName: string, options?: JoinOptions): Promise<Room>;
