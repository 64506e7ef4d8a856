// Idempotent publishes: every publish carries an idempotency key (the
// app's, or a random one), a publish whose connection drops before its ack
// is sent again with the same key on the next session, and the node acks a
// key it has seen with the original position and duplicate: true; against
// the fake node of fakes.ts (FakeNet.loseAcks, dedupeWindow).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClosedError, connect, decodeText, RequestError, TimeoutError } from "../src/switchyard.js";
import type { Client, ConnectOptions, Message } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

async function start(net: FakeNet, o: ConnectOptions = {}): Promise<Client> {
  let result: Client | undefined;
  let error: unknown;
  connect("https://127.0.0.1:4433", net.options(o)).then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 60_000, 1);
  if (error !== undefined) throw error;
  return result!;
}

async function subscribeNow(net: FakeNet, c: Client, channel: string, handler: (m: Message) => void) {
  const p = c.subscribe(channel, handler);
  await net.clock.advance(1);
  return p;
}

/** A promise's outcome, once settled: { value } or { error }, with the fake time it settled at. */
function track<T>(net: FakeNet, p: Promise<T>): { value?: T; error?: unknown; at?: number } {
  const out: { value?: T; error?: unknown; at?: number } = {};
  p.then((v) => {
    out.value = v;
    out.at = net.clock.now();
  }, (e) => {
    out.error = e;
    out.at = net.clock.now();
  });
  return out;
}

const keysOf = (net: FakeNet, n: number) => net.transports[n]!.sent("publish").map((f) => f.idempotencyKey);

describe("idempotent publish", () => {
  it("sends each publish with a random key of 16 base64url characters", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const p1 = c.publish("a", "one");
    const p2 = c.publish("a", "two", {});
    await net.clock.advance(1);
    assert.deepEqual(await p1, { epoch: "epoch1", offset: 1, duplicate: false });
    assert.deepEqual(await p2, { epoch: "epoch1", offset: 2, duplicate: false });
    const keys = keysOf(net, 0);
    assert.equal(keys.length, 2);
    for (const k of keys) assert.match(k, /^[A-Za-z0-9_-]{16}$/);
    assert.notEqual(keys[0], keys[1]);
    c.close();
  });

  it("sends a given key as it is; a repeat of it resolves with the original position, duplicate", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: string[] = [];
    await subscribeNow(net, c, "a", (m) => got.push(decodeText(m)));
    const key = "order-42/ü " + "€".repeat(17); // 64 bytes of UTF-8
    const p1 = c.publish("a", "once", { idempotencyKey: key });
    await net.clock.advance(1);
    assert.deepEqual(await p1, { epoch: "epoch1", offset: 1, duplicate: false });
    const p2 = c.publish("a", "once again", { idempotencyKey: key });
    await net.clock.advance(1);
    assert.deepEqual(await p2, { epoch: "epoch1", offset: 1, duplicate: true });
    // the same key on another channel is another publish
    const p3 = c.publish("b", "elsewhere", { idempotencyKey: key });
    await net.clock.advance(1);
    assert.deepEqual(await p3, { epoch: "epoch2", offset: 1, duplicate: false });
    assert.deepEqual(keysOf(net, 0), [key, key, key]);
    assert.deepEqual(got, ["once"]);
    c.close();
  });

  it("refuses a bad idempotencyKey with TypeError, sending nothing", async () => {
    const net = new FakeNet();
    const c = await start(net);
    for (const bad of ["k".repeat(65), "€".repeat(22), "", "\uD800x", 42, {}]) {
      await assert.rejects(c.publish("a", "x", { idempotencyKey: bad as string }), TypeError, `key ${JSON.stringify(bad)}`);
    }
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 0);
    // 64 bytes is fine, and so is an explicit undefined (a random key)
    const ok = c.publish("a", "x", { idempotencyKey: "k".repeat(64) });
    const random = c.publish("a", "y", { idempotencyKey: undefined });
    await net.clock.advance(1);
    assert.equal((await ok).offset, 1);
    assert.equal((await random).offset, 2);
    c.close();
  });

  it("resends a publish whose ack was lost, with the same key, after the resubscriptions; the node says duplicate", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: Message[] = [];
    await subscribeNow(net, c, "a", (m) => got.push(m));
    const gone: number[] = [];
    c.on("disconnected", (e) => gone.push(e.code));
    net.loseAcks = true;
    const p = track(net, c.publish("a", "once"));
    await net.clock.advance(1);
    assert.equal(got.length, 1, "the node published it");
    net.current.drop(1006, "lost");
    net.loseAcks = false;
    await net.clock.until(() => p.at !== undefined);
    assert.deepEqual(gone, [1006]);
    assert.equal(p.error, undefined);
    assert.deepEqual(p.value, { epoch: "epoch1", offset: 1, duplicate: true });
    assert.equal(net.transports.length, 2);
    const [first, second] = [keysOf(net, 0), keysOf(net, 1)];
    assert.equal(first.length, 1);
    assert.deepEqual(second, first, "the same key");
    assert.deepEqual(net.transports[1]!.received.map((f) => f.type), ["connect", "subscribe", "publish"]);
    assert.deepEqual(got.map((m) => [m.offset, decodeText(m)]), [[1, "once"]], "delivered once");
    c.close();
  });

  it("resends a publish the node never got: published then, not a duplicate", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.answer = false; // neither applied nor answered
    const p = track(net, c.publish("a", "x", { idempotencyKey: "mine" }));
    await net.clock.advance(1);
    net.current.drop(3000, "going away");
    net.answer = true;
    await net.clock.until(() => p.at !== undefined);
    assert.deepEqual(p.value, { epoch: "epoch1", offset: 1, duplicate: false });
    assert.deepEqual(keysOf(net, 1), ["mine"]);
    c.close();
  });

  it("keeps resending across several drops and transports, then resolves once", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.loseAcks = true;
    const p = track(net, c.publish("a", "x"));
    await net.clock.advance(1);
    // the next session goes over WebSocket (WebTransport fails), and drops too
    net.behave = (name) => (name === "webtransport" ? { kind: "fail" } : { kind: "serve" });
    net.current.drop(1006, "lost");
    await net.clock.until(() => c.state === "connected" && c.transport === "websocket");
    await net.clock.advance(1);
    assert.equal(p.at, undefined);
    net.behave = () => ({ kind: "serve" });
    net.current.drop(1006, "lost again");
    net.loseAcks = false;
    await net.clock.until(() => p.at !== undefined);
    assert.deepEqual(p.value, { epoch: "epoch1", offset: 1, duplicate: true });
    const keys = net.transports.flatMap((t) => t.sent("publish").map((f) => f.idempotencyKey));
    assert.equal(keys.length, 3);
    assert.equal(new Set(keys).size, 1);
    c.close();
  });

  it("resends publishes in their order, before the ones made while disconnected", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.loseAcks = true;
    const p1 = track(net, c.publish("a", "1"));
    const p2 = track(net, c.publish("a", "2"));
    await net.clock.advance(1);
    net.behave = () => ({ kind: "fail", after: 1 });
    net.current.drop(1006, "lost");
    net.loseAcks = false;
    await net.clock.advance(1);
    const p3 = track(net, c.publish("a", "3"));
    await net.clock.advance(2000);
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => p3.at !== undefined);
    const before = keysOf(net, 0);
    const after = net.current.sent("publish").map((f) => f.idempotencyKey);
    assert.deepEqual(after.slice(0, 2), before);
    assert.equal(after.length, 3);
    assert.deepEqual([p1.value, p2.value, p3.value], [
      { epoch: "epoch1", offset: 1, duplicate: true },
      { epoch: "epoch1", offset: 2, duplicate: true },
      { epoch: "epoch1", offset: 3, duplicate: false },
    ]);
    c.close();
  });

  it("times out requestTimeout after the call, resends included, and is not sent again", async () => {
    const net = new FakeNet();
    const c = await start(net, { requestTimeout: 3000 });
    net.answer = false;
    const t0 = net.clock.now();
    const p = track(net, c.publish("a", "x"));
    await net.clock.advance(1000);
    net.current.drop(1006, "lost");
    await net.clock.until(() => net.transports.length === 2 && c.state === "connected");
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 1, "resent");
    await net.clock.advance(t0 + 2999 - net.clock.now());
    assert.equal(p.at, undefined);
    await net.clock.advance(1);
    assert.ok(p.error instanceof TimeoutError, String(p.error));
    assert.equal(p.at, t0 + 3000);
    // given up: a later session does not carry it
    net.answer = true;
    net.current.drop(1006, "lost");
    await net.clock.until(() => net.transports.length === 3 && c.state === "connected");
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 0);
    c.close();
  });

  it("times out while waiting for a connection to resend on", async () => {
    const net = new FakeNet();
    const c = await start(net, { requestTimeout: 3000 });
    net.loseAcks = true;
    const t0 = net.clock.now();
    const p = track(net, c.publish("a", "x"));
    await net.clock.advance(500);
    net.behave = () => ({ kind: "hang" });
    net.current.drop(1006, "lost");
    await net.clock.advance(2499);
    assert.equal(p.at, undefined);
    await net.clock.advance(1);
    assert.ok(p.error instanceof TimeoutError, String(p.error));
    assert.equal(p.at, t0 + 3000);
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => c.state === "connected", 120_000);
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 0);
    c.close();
  });

  it("close() rejects a publish waiting to be resent with ClosedError", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.loseAcks = true;
    const p = track(net, c.publish("a", "x"));
    await net.clock.advance(1);
    net.behave = () => ({ kind: "hang" });
    net.current.drop(1006, "lost");
    await net.clock.advance(1);
    assert.equal(p.at, undefined);
    c.close();
    await net.clock.advance(1);
    assert.ok(p.error instanceof ClosedError && p.error.code === 1000, String(p.error));
    assert.equal(net.clock.pending, 0);
  });

  it("a terminal close code rejects a publish waiting to be resent with ClosedError", async () => {
    // the session that loses the ack ends with a terminal code
    const net = new FakeNet();
    const c = await start(net);
    net.loseAcks = true;
    const p = track(net, c.publish("a", "x"));
    await net.clock.advance(1);
    net.current.disconnect(4501, "banned");
    await net.clock.advance(1);
    assert.ok(p.error instanceof ClosedError && p.error.code === 4501, String(p.error));

    // the next attempt is refused with one
    const net2 = new FakeNet();
    const c2 = await start(net2);
    net2.loseAcks = true;
    const p2 = track(net2, c2.publish("a", "x"));
    await net2.clock.advance(1);
    net2.behave = () => ({ kind: "refuse", code: 3503, reason: "origin not allowed" });
    net2.current.drop(1006, "lost");
    await net2.clock.until(() => p2.at !== undefined);
    assert.ok(p2.error instanceof ClosedError && p2.error.code === 3503, String(p2.error));
    assert.equal(c2.state, "closed");
  });

  it("a resend the new session cannot carry rejects with its RequestError", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.loseAcks = true;
    const p = track(net, c.publish("a", new Uint8Array(2000)));
    await net.clock.advance(1);
    net.connected = { ...net.connected, maxFrameSize: 1000 };
    net.current.drop(1006, "lost");
    await net.clock.until(() => p.at !== undefined);
    assert.ok(p.error instanceof RequestError && p.error.code === 106, String(p.error));
    assert.equal(net.current.sent("publish").length, 0);
    c.close();
  });
});
