// One subscription: its state across reconnects, and delivery to its
// handler of reliable messages and of a volatile channel's datagrams
// (sequence numbers, loss counting), including what arrives on a
// subscription stream or as a datagram before the server's Subscribed;
// history recovery (the position a resubscribe asks to resume from, the
// duplicate guard, "resync" when the server could not recover); its events
// ("resync", and presence's "join" and "leave").

import type { SubscribedBody } from "./codec.js";
import type { Connection } from "./connection.js";
import { rethrowLater } from "./report.js";
import type {
  Message,
  MessageHandler,
  Position,
  ResyncEvent,
  Subscription,
  SubscriptionEventName,
  SubscriptionEvents,
} from "./switchyard.js";

/**
 * The most deliveries a subscription holds while its Subscribed is on the
 * way (a subscription stream or a datagram may overtake it); more are
 * dropped and counted.
 */
export const HOLD_LIMIT = 1024;

const EVENTS: readonly SubscriptionEventName[] = ["resync", "join", "leave"];

/** What a subscription needs from its client. */
export interface SubscriptionOwner {
  unsubscribe(sub: SubscriptionImpl): Promise<void>;
  /** An exception thrown by the handler. */
  report(e: unknown, channel: string): void;
}

/** A delivery that came before Subscribed. */
interface Held {
  datagram: boolean;
  epoch: string;
  offset: number;
  data: Uint8Array;
}

export class SubscriptionImpl implements Subscription {
  /** pending: waiting for Subscribed (first time or after a reconnect). */
  state: "pending" | "active" | "closed" = "pending";
  /** The server confirmed it at least once. */
  confirmed = false;
  epoch = "";
  offset = 0;
  volatile = false;
  recovered = true;
  /** The next Subscribe asks to recover from position (a since option, or confirmed on a reliable channel). */
  recover: boolean;
  lost = 0;
  dropped = 0;
  waiter: { resolve(s: Subscription): void; reject(e: Error): void; timer: unknown } | undefined;
  /** The connection its Unsubscribe went out on. */
  unsubscribedOn: Connection | undefined;

  /** The highest datagram sequence number seen. */
  private lastSeq = 0;
  /** Deliveries of the current connection that came before Subscribed. */
  private held: Held[] = [];
  /** A failed recovery, reported by release(). */
  private gap: ResyncEvent | undefined;
  private readonly handlers = new Map<SubscriptionEventName, Set<(e: never) => void>>();

  constructor(
    private readonly owner: SubscriptionOwner,
    readonly channel: string,
    /** The subscription's alias, sent in every Subscribe (resubscribes too). */
    readonly alias: number,
    readonly handler: MessageHandler,
    since?: Position,
    /** Every Subscribe asks for presence events (resubscribes too). */
    readonly presence = false,
  ) {
    this.recover = since !== undefined;
    if (since) {
      this.epoch = since.epoch;
      this.offset = since.offset;
    }
  }

  get position(): Position {
    return { epoch: this.epoch, offset: this.offset };
  }

  get active(): boolean {
    return this.state === "active";
  }

  unsubscribe(): Promise<void> {
    return this.owner.unsubscribe(this);
  }

  on<E extends SubscriptionEventName>(event: E, handler: (e: SubscriptionEvents[E]) => void): () => void {
    if (!EVENTS.includes(event)) throw new TypeError(`switchyard: unknown subscription event ${JSON.stringify(event)}`);
    if (typeof handler !== "function") throw new TypeError("switchyard: handler must be a function");
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => this.off(event, handler);
  }

  off<E extends SubscriptionEventName>(event: E, handler: (e: SubscriptionEvents[E]) => void): void {
    this.handlers.get(event)?.delete(handler);
  }

  /** Calls the event's handlers; what one throws is reported as uncaught, the others still run. */
  emit<E extends SubscriptionEventName>(event: E, e: SubscriptionEvents[E]): void {
    for (const h of [...(this.handlers.get(event) ?? [])]) {
      try {
        (h as (e: SubscriptionEvents[E]) => void)(e);
      } catch (err) {
        rethrowLater(err);
      }
    }
  }

  /**
   * The server confirmed the subscription. Returns how many publications
   * went by since the last position on a resubscribe or a subscribe with
   * since (0 on a plain first subscribe, and when recovered), or null when
   * the epoch changed. Deliveries held until now follow.
   */
  confirm(f: SubscribedBody): number | null {
    const asked = this.recover;
    const previous = this.position;
    const missed = !this.confirmed && !asked ? 0 : f.epoch === this.epoch ? Math.max(0, f.offset - this.offset) : null;
    // Not asked: a plain first subscribe (nothing to miss) or a volatile
    // channel's resubscribe (what went by is gone).
    this.recovered = asked ? f.recovered : !this.confirmed;
    this.gap = asked && !f.recovered && !f.volatile ? { epoch: f.epoch, offset: f.offset, previous } : undefined;
    this.state = "active";
    this.confirmed = true;
    this.volatile = f.volatile;
    this.recover = !f.volatile;
    // Recovered from a position while another session went on delivering
    // (a transport switch): keep the later one, the replay's overlap is
    // dropped by the guard.
    if (!(asked && f.recovered && f.epoch === this.epoch && this.offset > f.offset)) this.offset = f.offset;
    this.epoch = f.epoch;
    this.lastSeq = f.offset;
    return missed;
  }

  /** Reports a failed recovery, then delivers what came before Subscribed (call after confirm). */
  release(): void {
    const gap = this.gap;
    this.gap = undefined;
    if (gap) this.emit("resync", gap);
    const held = this.held;
    this.held = [];
    for (const h of held) {
      if (this.state !== "active") return;
      if (h.datagram) this.datagram(h.offset, h.data);
      else this.message(h.epoch, h.offset, h.data);
    }
  }

  /** The connection ended (or the subscription failed): what was held goes. */
  discard(): void {
    this.held = [];
  }

  /** Keeps a delivery that overtook Subscribed, up to HOLD_LIMIT. */
  hold(datagram: boolean, epoch: string, offset: number, data: Uint8Array): void {
    if (this.held.length >= HOLD_LIMIT) {
      this.dropped++;
      return;
    }
    this.held.push({ datagram, epoch, offset, data });
  }

  /** A message frame of the channel (control stream or the subscription's stream). */
  message(epoch: string, offset: number, data: Uint8Array): void {
    if (this.volatile) {
      // Over WebSocket (and for what does not fit a datagram) a volatile
      // channel's datagrams come as messages: epoch "", offset = sequence number.
      this.datagram(offset, data);
      return;
    }
    // Recovery and live delivery meet here: none twice.
    // Beyond 2^53 − 1 offsets are rounded doubles: deliver rather than risk
    // dropping a publication that rounds to the same value.
    if (epoch === this.epoch && offset <= this.offset && offset <= Number.MAX_SAFE_INTEGER) return;
    this.epoch = epoch;
    this.offset = offset;
    this.deliver({ channel: this.channel, data, epoch, offset, datagram: false });
  }

  /** A volatile publication with its sequence number. */
  datagram(seq: number, data: Uint8Array): void {
    if (seq > this.lastSeq) {
      this.lost += seq - this.lastSeq - 1;
      this.lastSeq = seq;
      this.offset = seq;
    } else if (this.lost > 0) {
      this.lost--; // a late one: it was counted lost
    }
    this.deliver({ channel: this.channel, data, epoch: "", offset: seq, datagram: true });
  }

  private deliver(m: Message): void {
    try {
      this.handler(m);
    } catch (e) {
      this.owner.report(e, this.channel);
    }
  }
}
