// Jittered exponential backoff with a floor: the n-th wait is uniform in
// [min, max(min, min(max, min * 2^n))), so no retry comes sooner than `min`
// and a crowd of clients still spreads out instead of reconnecting in
// lockstep.

export class Backoff {
  /** The number of waits since the last reset. */
  attempt = 0;

  constructor(
    readonly min: number,
    readonly max: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The cap of the n-th wait (n counts from 1). */
  ceiling(n: number): number {
    return Math.max(this.min, Math.min(this.max, this.min * 2 ** n));
  }

  /** Counts one more attempt and returns it with its delay in ms. */
  next(): { attempt: number; delay: number } {
    this.attempt++;
    return { attempt: this.attempt, delay: this.min + Math.floor(this.random() * (this.ceiling(this.attempt) - this.min)) };
  }

  /** Starts over: the next wait is at most 2·`min` again. */
  reset(): void {
    this.attempt = 0;
  }
}
