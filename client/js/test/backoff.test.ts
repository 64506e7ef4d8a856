import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Backoff } from "../src/backoff.js";

describe("Backoff", () => {
  it("doubles its ceiling from min up to max", () => {
    const b = new Backoff(500, 20000, () => 0.999999);
    const delays = Array.from({ length: 10 }, () => b.next());
    assert.deepEqual(delays.map((d) => d.attempt), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(delays.map((d) => d.delay), [499, 999, 1999, 3999, 7999, 15999, 19999, 19999, 19999, 19999]);
  });

  it("jitters fully: delays spread over [0, ceiling)", () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const b = new Backoff(500, 20000, () => r);
      for (let n = 1; n <= 12; n++) {
        const { delay } = b.next();
        const cap = Math.min(20000, 500 * 2 ** (n - 1));
        assert.equal(delay, Math.floor(r * cap));
        assert.ok(delay >= 0 && delay < cap);
      }
    }
    // with Math.random: within bounds, and not all the same
    const b = new Backoff(500, 20000);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      b.reset();
      const { delay } = b.next();
      assert.ok(delay >= 0 && delay < 500);
      seen.add(delay);
    }
    assert.ok(seen.size > 20);
  });

  it("never overflows, however many attempts", () => {
    const b = new Backoff(500, 20000, () => 0.5);
    for (let i = 0; i < 5000; i++) b.next();
    assert.equal(b.next().delay, 10000);
  });

  it("starts over after reset", () => {
    const b = new Backoff(100, 1000, () => 0.999);
    for (let i = 0; i < 6; i++) b.next();
    b.reset();
    assert.deepEqual(b.next(), { attempt: 1, delay: 99 });
  });
});

describe("Backoff with a floor (the pub/sub client)", () => {
  it("never waits less than min: the n-th wait is in [min, min(max, min·2^n))", () => {
    for (const r of [0, 0.5, 0.999]) {
      const b = new Backoff(500, 20000, () => r, true);
      for (let n = 1; n <= 10; n++) {
        const { delay } = b.next();
        const cap = Math.min(20000, 500 * 2 ** n);
        assert.equal(delay, Math.floor(500 + r * (cap - 500)));
        assert.ok(delay >= 500 && delay < cap);
      }
    }
    const b = new Backoff(500, 500, () => 0.7, true);
    assert.equal(b.next().delay, 500); // min = max: exactly min
  });
});
