// Token refresh: Connected.expires_in_s arms a refresh (reason "refresh",
// a Refresh frame on the live session) at four fifths of the lifetime, at
// most 30 s before expiry; Refreshed re-arms it; a refused refresh (110) or
// a failing token function is retried until expiry with an "error" event
// each time; timers end with the session and the client; client.refresh().
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClosedError, connect, RequestError } from "../src/switchyard.js";
import type { Client, ClientEvents, ConnectOptions, TokenContext } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

const URL_A = "https://a.example";

/** A client on net whose token function records its calls (with when) and returns t1, t2, …; t0 is when the (last) session began. */
async function start(net: FakeNet, o: ConnectOptions = {}) {
  const calls: (TokenContext & { at: number })[] = [];
  const at = { t0: 0 };
  const token = o.token ?? ((x: TokenContext) => (calls.push({ ...x, at: net.clock.now() }), `t${calls.length}`));
  let result: Client | undefined;
  let error: unknown;
  connect(URL_A, net.options({ transports: ["websocket"], ...o, token, on: { connected: () => (at.t0 = net.clock.now()) } }))
    .then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 60_000, 1);
  if (error !== undefined) throw error;
  return { c: result!, calls, at };
}

function record<E extends keyof ClientEvents>(c: Client, event: E): ClientEvents[E][] {
  const got: ClientEvents[E][] = [];
  c.on(event, (e) => got.push(e));
  return got;
}

/** When (after t0) the token function was asked for a refresh. */
const refreshes = (calls: (TokenContext & { at: number })[], t0: number) => calls.filter((x) => x.reason === "refresh").map((x) => x.at - t0);

describe("token refresh", () => {
  it("refreshes at four fifths of the lifetime with reason refresh, on the same session, and re-arms from refreshed", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 10;
    const { c, calls, at } = await start(net);
    const session = c.sessionId;
    const t = net.current;
    const events = [record(c, "connected"), record(c, "disconnected"), record(c, "error")];
    await net.clock.advance(7_990);
    assert.equal(t.sent("refresh").length, 0, "not before 8 s");
    net.refresh = () => 5; // the new token lasts 5 s
    await net.clock.advance(20);
    assert.deepEqual(calls.slice(1).map(({ attempt, url, reason }) => ({ attempt, url, reason })), [{ attempt: 1, url: URL_A, reason: "refresh" }]);
    assert.deepEqual(t.sent("refresh").map((f) => f.token), ["t2"]);
    // Refreshed (5 s): the next at 4 s after it, then 0 stops.
    net.refresh = () => 0;
    await net.clock.advance(5_000);
    assert.deepEqual(refreshes(calls, at.t0), [8_000, 12_000]);
    await net.clock.advance(120_000);
    assert.deepEqual(t.sent("refresh").map((f) => f.token), ["t2", "t3"], "expires_in_s 0: no more refreshes");
    assert.equal(net.current, t);
    assert.equal(c.sessionId, session);
    assert.deepEqual(events.map((e) => e.length), [0, 0, 0], "no reconnect, no error");
    c.close();
  });

  it("refreshes a long-lived token 30 s before it expires", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 3600;
    const { c, calls, at } = await start(net);
    await net.clock.advance(3_600_000);
    assert.deepEqual(refreshes(calls, at.t0), [3_570_000]);
    c.close();
  });

  it("retries a refused refresh (110) until expiry, with an error event each time, and re-arms once one works", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 60;
    const { c, calls, at } = await start(net);
    const errors = record(c, "error");
    net.refresh = () => undefined;
    await net.clock.advance(58_500);
    // At 48 s, then every 2 s, then half the time left.
    assert.deepEqual(refreshes(calls, at.t0), [48_000, 50_000, 52_000, 54_000, 56_000, 58_000]);
    assert.deepEqual(calls.slice(1).map((x) => x.attempt), [1, 2, 3, 4, 5, 6]);
    assert.equal(errors.length, 6);
    const e = errors[0]!.error;
    assert.ok(e instanceof RequestError && e.code === 110, String(e));
    assert.match(e.message, /refresh refused/);
    net.refresh = () => 60;
    await net.clock.advance(600); // the try at 59 s works
    assert.deepEqual(refreshes(calls, at.t0).slice(6), [59_000]);
    await net.clock.advance(48_000);
    assert.deepEqual(refreshes(calls, at.t0).slice(7), [59_000 + 48_000], "re-armed from refreshed");
    assert.equal(calls.at(-1)!.attempt, 1, "the tries count again");
    assert.equal(errors.length, 6);
    c.close();
  });

  it("stops retrying at expiry; after the node's 3502 the new session re-arms from its own connected", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 60;
    const { c, calls, at } = await start(net);
    const t0 = at.t0;
    const errors = record(c, "error");
    net.refresh = () => undefined;
    await net.clock.advance(60_000);
    const tries = refreshes(calls, t0);
    assert.deepEqual(tries, [48_000, 50_000, 52_000, 54_000, 56_000, 58_000, 59_000, 59_500, 59_750, 59_875, 59_937.5]);
    assert.equal(errors.length, tries.length);
    await net.clock.advance(10_000);
    assert.equal(refreshes(calls, t0).length, tries.length, "nothing after expiry");
    // The node ends the session: the function is asked once more, and the new session has its own expiry.
    net.connected.expiresInS = 20;
    net.refresh = () => 20;
    const session = c.sessionId;
    net.current.disconnect(3502, "token expired: refresh it before expires_in_s");
    await net.clock.until(() => c.state === "connected" && c.sessionId !== session, 10_000, 1);
    assert.equal(calls.at(-1)!.reason, "unauthorized");
    const n = calls.length;
    const t1 = at.t0;
    await net.clock.advance(16_000);
    assert.deepEqual(calls.slice(n).map((x) => [x.reason, x.attempt, x.at - t1]), [["refresh", 1, 16_000]]);
    c.close();
  });

  it("retries when the token function fails, saying so in the error event", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 10;
    let fail = true;
    const seen: TokenContext[] = [];
    const { c } = await start(net, {
      token: async (x) => {
        seen.push(x);
        if (x.reason === "refresh" && fail) throw new Error("token service down");
        return "tok";
      },
    });
    const errors = record(c, "error");
    await net.clock.advance(8_000);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.error.message, /token refresh failed: token: token service down/);
    assert.equal(net.current.sent("refresh").length, 0);
    fail = false;
    await net.clock.advance(1_000); // min(2 s, half of the 2 s left)
    assert.deepEqual(net.current.sent("refresh").map((f) => f.token), ["tok"]);
    assert.deepEqual(seen.slice(1).map((x) => [x.reason, x.attempt]), [["refresh", 1], ["refresh", 2]]);
    assert.equal(errors.length, 1);
    c.close();
  });

  it("clears its timers when the session ends and when the client closes", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 10;
    const { c, calls } = await start(net, { backoff: { min: 60_000, max: 60_000 } });
    const failures = record(c, "error");
    await net.clock.advance(5_000);
    net.behave = () => ({ kind: "hang" });
    net.current.drop(1006, "lost");
    await net.clock.advance(20_000);
    assert.equal(refreshes(calls, 0).length, 0, "no refresh without a session");
    assert.equal(failures.length, 0, "no try either");
    c.close();
    assert.equal(net.clock.pending, 0, "no timer left");

    // Closed while the token function is working on a refresh: nothing is sent, no error.
    const net2 = new FakeNet();
    net2.connected.expiresInS = 10;
    let give: ((t: string) => void) | undefined;
    const { c: c2 } = await start(net2, { token: (x) => (x.reason === "refresh" ? new Promise<string>((r) => (give = r)) : "tok") });
    const errors = record(c2, "error");
    await net2.clock.advance(8_000);
    assert.ok(give, "asked for a refresh");
    const t = net2.current;
    c2.close();
    give!("late");
    await net2.clock.advance(10_000);
    assert.equal(t.sent("refresh").length, 0);
    assert.equal(errors.length, 0);
    assert.equal(net2.clock.pending, 0, "no timer left");
  });

  it("does not refresh a string token; the node's 3502 then ends the client", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 10;
    const { c } = await start(net, { token: "static" });
    const t = net.current;
    await net.clock.advance(9_999);
    assert.equal(t.sent("refresh").length, 0);
    const gone = record(c, "disconnected");
    t.disconnect(3502, "token expired: refresh it before expires_in_s");
    await net.clock.advance(100);
    assert.equal(c.state, "closed");
    assert.deepEqual(gone.map((e) => [e.code, e.reconnect]), [[3502, false]]);
    assert.equal(net.transports.length, 1, "no reconnect");
  });
});

describe("client.refresh()", () => {
  it("sends the given token, resolves on refreshed, and keeps a string token for later connects", async () => {
    const net = new FakeNet();
    const { c } = await start(net, { token: "old" });
    const t = net.current;
    await c.refresh("new");
    assert.deepEqual(t.sent("refresh").map((f) => f.token), ["new"]);
    t.drop(1006, "lost");
    await net.clock.until(() => c.state === "connected", 60_000, 1);
    assert.equal(net.current.sent("connect")[0]!.token, "new");
    c.close();
  });

  it("asks the token function with reason refresh and re-arms from the answer", async () => {
    const net = new FakeNet();
    net.connected.expiresInS = 100;
    const { c, calls, at } = await start(net);
    await net.clock.advance(10_000);
    net.refresh = () => 50;
    await c.refresh();
    assert.deepEqual(refreshes(calls, at.t0), [10_000]);
    assert.equal(calls.at(-1)!.attempt, 1);
    await net.clock.advance(40_000); // 4/5 of 50 s after the manual refresh; the first timer (80 s) is gone
    assert.deepEqual(refreshes(calls, at.t0), [10_000, 50_000]);
    c.close();
  });

  it("rejects with RequestError 110 when the node refuses, and on bad input", async () => {
    const net = new FakeNet();
    const { c } = await start(net, { token: "old" });
    net.refresh = () => undefined;
    await assert.rejects(c.refresh("other user's"), (e: unknown) => e instanceof RequestError && e.code === 110);
    await assert.rejects(c.refresh(42 as unknown as string), TypeError);
    assert.equal(c.state, "connected", "the session lives on");
    c.close();
    await assert.rejects(c.refresh("x"), ClosedError);
  });

  it("resolves at once while reconnecting, and when the session ends before the answer", async () => {
    const net = new FakeNet();
    net.answer = false;
    const { c } = await start(net, { token: "old", backoff: { min: 60_000, max: 60_000 } });
    const p = c.refresh("new");
    await net.clock.advance(1);
    assert.equal(net.current.sent("refresh").length, 1);
    net.behave = () => ({ kind: "hang" });
    net.current.drop(1006, "lost");
    await p;
    await c.refresh("newer");
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => c.state === "connected", 120_000, 10);
    assert.equal(net.current.sent("connect")[0]!.token, "newer");
    c.close();
  });
});
