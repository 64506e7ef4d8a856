// The transport seam: a Transport carries length-prefixed frames to and
// from one server session. The WebSocket and WebTransport adapters
// implement it; unit tests substitute fakes through the internal option
// below. WebTransport adds two capabilities: datagrams both ways, and the
// server's unidirectional streams, one per subscription.

import type { Clock } from "./clock.js";
import type { Target } from "./endpoints.js";
import type { TransportName } from "./switchyard.js";

/** What a transport reports to its owner. No call comes after close. */
export interface TransportHandlers {
  /** The transport is ready: frames may be sent. */
  open(): void;
  /** One frame body, without its length prefix, from the control stream (or a WebSocket message). */
  frame(body: Uint8Array): void;
  /** One frame body from the server's stream for the subscription with this alias (WebTransport). */
  streamFrame(alias: number, body: Uint8Array): void;
  /** One datagram from the server, as received: alias, seq, payload (WebTransport). */
  datagram(b: Uint8Array): void;
  /** The transport ended by itself (server close, failure, bad data). */
  close(code: number, reason: string): void;
}

export interface Transport {
  readonly name: TransportName;
  /** Sends one length-prefixed frame; dropped unless open. */
  send(frame: Uint8Array): void;
  /**
   * Sends one datagram (alias, seq, payload), where the transport has
   * datagrams (WebTransport). Returns false when it cannot take it (not
   * open, or larger than the path allows): the caller sends a Datagram
   * frame instead.
   */
  sendDatagram?(datagram: Uint8Array): boolean;
  /**
   * Whether the transport takes more now: false while its send buffer is
   * over its high-water mark (WebSocket bufferedAmount, WebTransport
   * writer.desiredSize). The client then holds requests back.
   */
  writable?(): boolean;
  /**
   * Closes the session with code and reason and silences the transport:
   * no handler is called afterwards. Idempotent.
   */
  close(code: number, reason: string): void;
}

/** Starts connecting a transport to one node and returns it at once. */
export type TransportFactory = (name: TransportName, handlers: TransportHandlers, target: Target) => Transport;

/** Internal hooks for tests; not part of the public API. */
export interface Internals {
  factory?: TransportFactory;
  clock?: Clock;
  random?: () => number;
  /** Whether WebTransport exists here (default: typeof WebTransport). */
  webTransport?: boolean;
  /** fetch for /api/nodes (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Where "online" and "offline" events come from (default globalThis when it has addEventListener). */
  events?: EventTarget;
  /** Whether the device has a network (default navigator.onLine, true when unknown). */
  online?: () => boolean;
}

/** The key under which ConnectOptions may carry Internals. */
export const INTERNALS: unique symbol = Symbol.for("switchyard.internals");
