// Refresher times token refreshes for the live session: a token that
// expires (Connected.expires_in_s) is renewed a little before, at four
// fifths of its lifetime and at most 30 s before the end; a failed renewal
// is tried again every 2 s at most (half the time left, when less) until
// the token expires and the node closes the session (3502). The client
// arms it from each Connected and Refreshed and stops it when the session
// ends; what a renewal does (ask the token function, send Refresh) is the
// client's.

import type { Clock } from "./clock.js";

/** The most, in ms, a refresh comes before expiry (else at four fifths of the lifetime). */
const LEAD_MAX = 30_000;
/** The longest wait, in ms, between tries after a failed refresh. */
const RETRY_MAX = 2_000;
/** No retry this close to expiry, in ms: the node's 3502 comes first. */
const RETRY_MIN = 50;

export class Refresher {
  // owned by the client's callbacks (one thread: the event loop)
  private timer: unknown;
  private expiry = 0; // when the token expires, by the clock
  private gen = 0; // bumped by arm and stop: a renewal begun before is stale
  private tries = 0; // since the last arm

  constructor(
    private readonly clock: Clock,
    /** Renews the token (try counts from 1); resolves with the new expires_in_s, undefined when the session ended first. */
    private readonly renew: (attempt: number) => Promise<number | undefined>,
    /** A renewal failed; the next try is timed already. */
    private readonly failed: (e: unknown) => void,
  ) {}

  /** Times the refresh of a token that expires in s seconds; 0: it does not expire. */
  arm(s: number): void {
    this.stop();
    this.tries = 0;
    if (s <= 0) return;
    const ms = s * 1000;
    this.expiry = this.clock.now() + ms;
    this.after(Math.max(ms * 0.8, ms - LEAD_MAX));
  }

  /** Cancels the timer and any renewal under way (its outcome is ignored). */
  stop(): void {
    this.gen++;
    this.clock.clearTimeout(this.timer);
  }

  private after(ms: number): void {
    this.timer = this.clock.setTimeout(() => void this.run(), ms);
  }

  private async run(): Promise<void> {
    const gen = this.gen;
    let s: number | undefined;
    try {
      s = await this.renew(++this.tries);
    } catch (e) {
      if (gen !== this.gen) return;
      const wait = Math.min(RETRY_MAX, (this.expiry - this.clock.now()) / 2);
      if (wait >= RETRY_MIN) this.after(wait);
      this.failed(e);
      return;
    }
    if (gen === this.gen && s !== undefined) this.arm(s);
  }
}
