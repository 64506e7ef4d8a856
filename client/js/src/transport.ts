// The transport seam: a Transport carries length-prefixed frames to and
// from one server session. The WebSocket and WebTransport adapters
// implement it; unit tests substitute fakes through the internal option
// below.

import type { Clock } from "./clock.js";
import type { TransportName } from "./switchyard.js";

/** What a transport reports to its owner. No call comes after close. */
export interface TransportHandlers {
  /** The transport is ready: frames may be sent. */
  open(): void;
  /** One frame body, without its length prefix. */
  frame(body: Uint8Array): void;
  /** The transport ended by itself (server close, failure, bad data). */
  close(code: number, reason: string): void;
}

export interface Transport {
  readonly name: TransportName;
  /** Sends one length-prefixed frame; dropped unless open. */
  send(frame: Uint8Array): void;
  /**
   * Closes the session with code and reason and silences the transport:
   * no handler is called afterwards. Idempotent.
   */
  close(code: number, reason: string): void;
}

/** Starts connecting a transport and returns it at once. */
export type TransportFactory = (name: TransportName, handlers: TransportHandlers) => Transport;

/** Internal hooks for tests; not part of the public API. */
export interface Internals {
  factory?: TransportFactory;
  clock?: Clock;
  random?: () => number;
  /** Whether WebTransport exists here (default: typeof WebTransport). */
  webTransport?: boolean;
}

/** The key under which ConnectOptions may carry Internals. */
export const INTERNALS: unique symbol = Symbol.for("switchyard.internals");
