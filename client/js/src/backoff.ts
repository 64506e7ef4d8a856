// Full-jitter exponential backoff (the "Full Jitter" of the AWS architecture
// blog): the n-th wait is uniform in [0, min(max, min * 2^(n-1))), so the
// first retry waits at most `min` and a crowd of clients spreads out
// instead of reconnecting in lockstep. With floor (the pub/sub client) the
// n-th wait is uniform in [min, max(min, min(max, min * 2^n))) instead: no
// retry comes sooner than `min`.

export class Backoff {
  /** The number of waits since the last reset. */
  attempt = 0;

  constructor(
    readonly min: number,
    readonly max: number,
    private readonly random: () => number = Math.random,
    private readonly floor = false,
  ) {}

  /** The cap of the n-th wait (n counts from 1). */
  ceiling(n: number): number {
    return Math.max(this.min, Math.min(this.max, this.min * 2 ** (this.floor ? n : n - 1)));
  }

  /** Counts one more attempt and returns it with its delay in ms. */
  next(): { attempt: number; delay: number } {
    this.attempt++;
    const lo = this.floor ? this.min : 0;
    return { attempt: this.attempt, delay: Math.floor(lo + this.random() * (this.ceiling(this.attempt) - lo)) };
  }

  /** Starts over: the next wait is the first one again. */
  reset(): void {
    this.attempt = 0;
  }
}
