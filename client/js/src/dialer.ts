// Happy eyeballs for transports: start the first transport; when it has not
// completed the handshake within fallbackDelay, or as soon as it fails,
// start the next one as well; keep whichever is Connected first and close
// the others. A terminal close code from any of them ends the race at once.
// A transport that fails while another one is still trying (a WebSocket
// refused while a WebTransport handshake hangs) is started again after
// RETRY_MS, so that a hung transport does not hold up one that may work.

import type { Clock } from "./clock.js";
import { CLOSE_NORMAL, reconnectAllowed } from "./codes.js";
import type { CloseInfo, Connection } from "./connection.js";
import type { TransportName } from "./switchyard.js";

export interface RaceOptions {
  /** Transports in order of preference; at least one. */
  names: readonly TransportName[];
  /** Head start of each transport over the next, in ms. */
  fallbackDelay: number;
  /** The whole race gives up after this many ms. */
  timeout: number;
  clock: Clock;
  /** Starts a connection over one transport. */
  start(name: TransportName): Connection;
  /** Aborts the race: every connection is closed, the race rejects. */
  signal?: AbortSignal;
}

/** How long a failed transport waits before it is started again while another one still tries. */
export const RETRY_MS = 1000;

/** Runs the race; resolves with the winner, rejects with a CloseInfo. */
export function race(o: RaceOptions): Promise<Connection> {
  return new Promise<Connection>((resolve, reject) => {
    const started: Connection[] = [];
    const failures: CloseInfo[] = [];
    let next = 0;
    let settled = false;
    let fallbackTimer: unknown;

    const finish = (winner: Connection | undefined, err?: CloseInfo): void => {
      if (settled) return;
      settled = true;
      o.clock.clearTimeout(fallbackTimer);
      o.clock.clearTimeout(deadline);
      o.clock.clearTimeout(retry);
      o.signal?.removeEventListener("abort", onAbort);
      for (const c of started) if (c !== winner) c.close(CLOSE_NORMAL, "another transport connected first");
      if (winner) resolve(winner);
      else reject(err);
    };

    const summary = (): CloseInfo => {
      const last = failures[failures.length - 1]!;
      const reason = failures.map((f) => `${f.transport}: ${f.code} ${f.reason}`.trim()).join("; ");
      return { ...last, reason };
    };

    let trying = 0; // started and neither failed nor closed
    const launch = (name: TransportName): void => {
      const c = o.start(name);
      started.push(c);
      trying++;
      c.ready.then(
        () => finish(c),
        (info: CloseInfo) => {
          if (settled) return;
          trying--;
          failures.push(info);
          if (!reconnectAllowed(info.code)) {
            finish(undefined, info);
          } else if (next < o.names.length) {
            startNext(); // a failure starts the next transport at once
          } else if (trying === 0) {
            finish(undefined, summary());
          } else {
            // Another transport still tries: try this one again meanwhile
            // (with two transports, one retry at most is pending).
            retry = o.clock.setTimeout(() => launch(name), RETRY_MS);
          }
        },
      );
    };
    let retry: unknown;

    const startNext = (): void => {
      o.clock.clearTimeout(fallbackTimer);
      fallbackTimer = undefined;
      if (settled || next >= o.names.length) return;
      launch(o.names[next++]!);
      if (next < o.names.length) fallbackTimer = o.clock.setTimeout(startNext, o.fallbackDelay);
    };

    const deadline = o.clock.setTimeout(() => {
      const why = failures.length > 0 ? `; ${summary().reason}` : "";
      finish(undefined, { code: 0, reason: `no transport connected within ${o.timeout} ms${why}` });
    }, o.timeout);
    const onAbort = (): void => finish(undefined, { code: CLOSE_NORMAL, reason: "aborted" });
    if (o.signal?.aborted) {
      onAbort();
      return;
    }
    o.signal?.addEventListener("abort", onAbort);
    startNext();
  });
}
