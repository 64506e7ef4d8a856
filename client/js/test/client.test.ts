import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClosedError, connect, decodeText, RequestError, TimeoutError } from "../src/switchyard.js";
import type { Client, ClientEvents, ConnectOptions, Message } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

/** Starts connect() and advances fake time until it settles. */
async function start(net: FakeNet, o: ConnectOptions = {}, hooks = {}): Promise<Client> {
  let result: Client | undefined;
  let error: unknown;
  connect("https://127.0.0.1:4433", net.options(o, hooks)).then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 60_000, 1);
  if (error !== undefined) throw error;
  return result!;
}

/** Starts connect() and returns its settled outcome after advancing time until it settles. */
async function attempt(net: FakeNet, o: ConnectOptions = {}, hooks = {}): Promise<{ client?: Client; error?: unknown; at: number }> {
  const out: { client?: Client; error?: unknown; at: number } = { at: -1 };
  connect("https://127.0.0.1:4433", net.options(o, hooks)).then(
    (c) => { out.client = c; out.at = net.clock.now(); },
    (e) => { out.error = e; out.at = net.clock.now(); },
  );
  await net.clock.until(() => out.at >= 0, 120_000, 1);
  return out;
}

/** Marks a promise's rejection as handled now; assert.rejects checks it later. */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

function record<E extends keyof ClientEvents>(c: Client, event: E): ClientEvents[E][] {
  const got: ClientEvents[E][] = [];
  c.on(event, (e) => got.push(e));
  return got;
}

describe("happy eyeballs", () => {
  it("keeps WebTransport when it connects fast", async () => {
    const net = new FakeNet();
    const c = await start(net);
    assert.equal(c.transport, "webtransport");
    assert.equal(c.state, "connected");
    assert.equal(c.sessionId, "s1");
    await net.clock.advance(5000);
    assert.deepEqual(net.transports.map((t) => t.name), ["webtransport"]);
    const connect = net.last.sent("connect")[0]!;
    assert.deepEqual({ ...connect }, { id: 1, type: "connect", token: "", client: "switchyard-js/0.1", protocol: "switchyard.v1", streams: true, user: "", info: new Uint8Array(0) });
    c.close();
  });

  it("starts WebSocket after fallbackDelay when WebTransport is slow, and keeps the winner", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "hang" } : { kind: "serve" });
    const r = await attempt(net);
    const c = r.client!;
    assert.equal(c.transport, "websocket");
    const [wt, ws] = [net.of("webtransport")[0]!, net.of("websocket")[0]!];
    assert.equal(wt.createdAt, 0);
    assert.equal(ws.createdAt, 500);
    assert.ok(r.at < 510, `connected at ${r.at}`);
    assert.deepEqual(wt.closedBy?.code, 1000, "the loser is closed");
    assert.equal(net.transports.length, 2);
    c.close();
  });

  it("honours a custom fallbackDelay and rejects one over 1000 ms", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "hang" } : { kind: "serve" });
    const c = await start(net, { fallbackDelay: 120 });
    assert.equal(net.of("websocket")[0]!.createdAt, 120);
    c.close();
    await assert.rejects(connect("https://h", net.options({ fallbackDelay: 1001 })), RangeError);
  });

  it("keeps WebTransport when it answers after WebSocket started but first", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "serve", openAfter: 600 } : { kind: "serve", openAfter: 300 });
    const c = await start(net);
    assert.equal(c.transport, "webtransport");
    assert.equal(net.of("websocket")[0]!.closedBy?.code, 1000);
    c.close();
  });

  it("starts WebSocket at once when WebTransport fails at once", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "fail", after: 1, code: 0, reason: "QUIC blocked" } : { kind: "serve" });
    const r = await attempt(net);
    assert.equal(r.client!.transport, "websocket");
    assert.equal(net.of("websocket")[0]!.createdAt, 1);
    assert.ok(r.at < 10);
    r.client!.close();
  });

  it("goes straight to WebSocket when WebTransport does not exist", async () => {
    const net = new FakeNet();
    const r = await attempt(net, {}, { webTransport: false });
    assert.equal(r.client!.transport, "websocket");
    assert.deepEqual(net.transports.map((t) => [t.name, t.createdAt]), [["websocket", 0]]);
    r.client!.close();
    await assert.rejects(connect("https://h", net.options({ transports: ["webtransport"] }, { webTransport: false })), /no WebTransport/);
  });

  it("respects the order and subset of transports", async () => {
    let net = new FakeNet();
    let c = await start(net, { transports: ["websocket"] });
    await net.clock.advance(3000);
    assert.deepEqual(net.transports.map((t) => t.name), ["websocket"]);
    c.close();

    net = new FakeNet();
    net.behave = (name) => (name === "websocket" ? { kind: "hang" } : { kind: "serve" });
    c = await start(net, { transports: ["websocket", "webtransport"] });
    assert.equal(c.transport, "webtransport");
    assert.deepEqual(net.transports.map((t) => [t.name, t.createdAt]), [["websocket", 0], ["webtransport", 500]]);
    c.close();

    await assert.rejects(connect("https://h", net.options({ transports: ["quic" as never] })), TypeError);
    await assert.rejects(connect("https://h", net.options({ transports: [] })), TypeError);
  });

  it("uses WebSocket only for an http:// URL", async () => {
    const net = new FakeNet();
    let client: Client | undefined;
    void connect("http://127.0.0.1:8080", net.options()).then((c) => (client = c));
    await net.clock.until(() => client !== undefined);
    assert.equal(client!.transport, "websocket");
    assert.deepEqual(net.transports.map((t) => t.name), ["websocket"]);
    client!.close();
  });

  it("stops at a terminal close code while connecting: reject, no retry", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "refuse", code: 3503, reason: "origin \"http://evil\" not allowed" } : { kind: "hang" });
    const r = await attempt(net);
    assert.ok(r.error instanceof ClosedError, String(r.error));
    assert.equal(r.error.code, 3503);
    assert.equal(r.error.reason, "origin \"http://evil\" not allowed");
    assert.ok(r.at < 10, "no waiting for the other transport");
    const n = net.transports.length;
    assert.ok(net.transports.every((t) => t.closedBy || t.ended));
    assert.deepEqual(net.of("webtransport")[0]!.closedBy, { code: 3503, reason: "origin \"http://evil\" not allowed" },
      "the client closes WebTransport with the server's code");
    await net.clock.advance(60_000);
    assert.equal(net.transports.length, n, "nothing is retried");
    assert.equal(net.clock.pending, 0, "no timer left behind");
  });

  it("reports events of the first connect to handlers given in options.on", async () => {
    const net = new FakeNet();
    net.behave = (name, n) => (n < 2 ? { kind: "fail", after: 5 } : { kind: "refuse", code: 3502, reason: "bad token" });
    const log: string[] = [];
    const r = await attempt(net, {
      transports: ["websocket"],
      on: {
        reconnecting: (e) => log.push(`reconnecting ${e.attempt}`),
        disconnected: (e) => log.push(`disconnected ${e.code} ${e.reason} ${e.reconnect}`),
      },
    });
    assert.ok(r.error instanceof ClosedError && r.error.code === 3502);
    assert.deepEqual(log, ["reconnecting 1", "reconnecting 2", "disconnected 3502 bad token false"]);
    await assert.rejects(connect("https://h", net.options({ on: { nope: () => {} } as never })), TypeError);
  });

  it("stops at a terminal close code of the transport itself (WebSocket close 3503)", async () => {
    const net = new FakeNet();
    net.behave = () => ({ kind: "fail", after: 5, code: 3503, reason: "origin not allowed" });
    const r = await attempt(net, { transports: ["websocket"] });
    assert.ok(r.error instanceof ClosedError);
    assert.equal(r.error.code, 3503);
    await net.clock.advance(60_000);
    assert.equal(net.transports.length, 1);
  });

  it("keeps retrying non-terminal failures until a session begins, however long it takes", async () => {
    const net = new FakeNet();
    net.behave = () => ({ kind: "fail", after: 5 });
    const states: string[] = [];
    let client: Client | undefined;
    connect("https://127.0.0.1:4433", net.options({ on: { reconnecting: () => states.push("reconnecting") } })).then((c) => (client = c));
    await net.clock.advance(120_000);
    assert.equal(client, undefined);
    assert.ok(states.length > 5 && net.transports.length > 10);
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => client !== undefined, 30_000);
    assert.equal(client!.state, "connected");
    client!.close();
  });

  it("stops a pending connect() when its signal aborts, rejecting with the signal's reason", async () => {
    const net = new FakeNet();
    net.behave = (name) => ({ kind: "fail", after: 5, code: name === "websocket" ? 1006 : 0, reason: "refused" });
    const ac = new AbortController();
    const reconnecting = [] as number[];
    let error = undefined as unknown;
    connect("https://h", net.options({ signal: ac.signal, on: { reconnecting: (e) => reconnecting.push(e.attempt) } })).catch((e) => (error = e));
    await net.clock.advance(8000);
    assert.equal(error, undefined);
    assert.ok(net.transports.length >= 6, `${net.transports.length} transports tried`);
    assert.ok(reconnecting.length >= 3);
    ac.abort(new TimeoutError("gave up"));
    await net.clock.advance(1);
    const e = error as unknown as Error;
    assert.ok(e instanceof TimeoutError && e.message === "gave up", String(e));
    const n = net.transports.length;
    await net.clock.advance(60_000);
    assert.equal(net.transports.length, n, "a rejected connect() stops retrying");
    const already = AbortSignal.abort();
    await assert.rejects(connect("https://h", net.options({ signal: already })), (e) => e === already.reason);
  });

  it("close() through the signal once connected: closes the client", async () => {
    const net = new FakeNet();
    const ac = new AbortController();
    const c = await start(net, { signal: ac.signal });
    ac.abort();
    assert.equal(c.state, "closed");
    assert.equal(net.last.closedBy?.code, 1000);
  });

  it("succeeds when a retry works before requestTimeout", async () => {
    const net = new FakeNet();
    net.behave = (name, n) => (n < 4 ? { kind: "fail", after: 5 } : { kind: "serve" });
    const c = await start(net);
    assert.equal(c.state, "connected");
    c.close();
  });

  it("abandons a connection attempt after connectTimeout", async () => {
    const net = new FakeNet();
    net.behave = (name, n) => (n < 2 ? { kind: "hang" } : { kind: "serve" });
    const r = await attempt(net, { connectTimeout: 2000, requestTimeout: 30000 });
    assert.ok(r.client);
    assert.ok(r.at >= 2000 + 500 && r.at < 2000 + 1000 + 10, `connected at ${r.at}`); // the backoff's floor: 500 ms
    assert.ok(net.transports.slice(0, 2).every((t) => t.closedBy));
    r.client.close();
  });
});

describe("reconnect", () => {
  it("tries WebTransport again after a reconnect", async () => {
    const net = new FakeNet();
    net.behave = (name, n) => ({ kind: "serve", openAfter: n === 0 ? 300 : 600 });
    const c = await start(net, { fallbackDelay: 100 });
    assert.equal(c.transport, "webtransport"); // WebSocket lost the race: nothing to remember
    const events = record(c, "connected");
    net.current.drop(1006, "network changed");
    await net.clock.until(() => events.length === 1);
    assert.equal(c.transport, "webtransport");
    assert.deepEqual(net.transports.slice(0, 3).map((t) => t.name), ["webtransport", "websocket", "webtransport"]);
    c.close();
  });

  it("skips WebTransport for 60 s after it lost a race to WebSocket", async () => {
    const net = new FakeNet();
    net.behave = (name) => (name === "webtransport" ? { kind: "fail", after: 1 } : { kind: "serve" });
    const c = await start(net);
    assert.equal(c.transport, "websocket");
    const events = record(c, "connected");
    net.current.drop(1006, "network changed");
    await net.clock.until(() => events.length === 1);
    // The reconnect went straight to WebSocket (only the background upgrade tries WebTransport).
    assert.deepEqual(net.transports.slice(0, 3).map((t) => t.name), ["webtransport", "websocket", "websocket"]);
    await net.clock.advance(61_000);
    const before = net.transports.length;
    net.current.drop(1006, "network changed");
    await net.clock.until(() => events.length === 2);
    assert.equal(net.transports[before]!.name, "webtransport", "after 60 s WebTransport comes first again");
    c.close();
  });

  it("emits disconnected, then reconnecting with jittered backoff (never under min), then connected", async () => {
    const net = new FakeNet();
    const c = await start(net, {}, { random: () => 0.999 });
    const log: string[] = [];
    c.on("disconnected", (e) => log.push(`disconnected ${e.code} ${e.reason} ${e.reconnect}`));
    c.on("reconnecting", (e) => log.push(`reconnecting ${e.attempt} ${e.delay}`));
    c.on("connected", (e) => log.push(`connected ${e.transport} ${e.sessionId} ${e.node} ${e.region}`));
    net.behave = (name) => ({ kind: "fail", after: 1 });
    net.current.disconnect(3000, "going away");
    await net.clock.until(() => log.length >= 4);
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => log.some((l) => l.startsWith("connected")));
    assert.deepEqual(log, [
      "disconnected 3000 going away true",
      "reconnecting 1 999",
      "reconnecting 2 1998",
      "reconnecting 3 3996",
      "connected webtransport s2 n1 local",
    ]);
    c.close();
  });

  it("caps the backoff and resets it once a connection stayed up for stableAfter", async () => {
    const net = new FakeNet();
    const c = await start(net, { backoff: { min: 100, max: 1000 }, stableAfter: 5000 }, { random: () => 0.999 });
    const waits = record(c, "reconnecting");
    net.behave = () => ({ kind: "fail", after: 1 });
    net.current.drop(1006, "lost");
    await net.clock.until(() => waits.length >= 7);
    assert.deepEqual(waits.map((w) => w.delay), [199, 399, 799, 999, 999, 999, 999]);

    // A short-lived connection does not reset the count...
    net.behave = () => ({ kind: "serve" });
    const connected = record(c, "connected");
    await net.clock.until(() => connected.length === 1);
    await net.clock.advance(1000);
    net.current.drop(1006, "lost");
    await net.clock.until(() => waits.length === 8);
    assert.equal(waits[7]!.attempt, 8);
    // ...one that lasted stableAfter does.
    await net.clock.until(() => connected.length === 2);
    await net.clock.advance(5000);
    net.current.drop(1006, "lost");
    await net.clock.until(() => waits.length === 9);
    assert.deepEqual(waits[8], { attempt: 1, delay: 199 });
    c.close();
  });

  it("waits at least the server's reconnect_after_ms", async () => {
    const net = new FakeNet();
    const c = await start(net, {}, { random: () => 0 });
    const waits = record(c, "reconnecting");
    net.current.push(0, "disconnect", { code: 3000, reason: "drain", reconnect: true, reconnectAfterMs: 2500 });
    await net.clock.until(() => waits.length === 1);
    assert.deepEqual(waits[0], { attempt: 1, delay: 2500 });
    c.close();
  });

  it("answers a Disconnect by closing the transport with the same code", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const t = net.current;
    t.push(0, "disconnect", { code: 3001, reason: "slow consumer", reconnect: true });
    assert.deepEqual(t.closedBy, { code: 3001, reason: "slow consumer" });
    c.close();
  });

  it("stops for good at a terminal code from a live session", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const gone = record(c, "disconnected");
    const sub = await subscribeNow(net, c, "room", () => {});
    net.current.disconnect(4501, "banned");
    await net.clock.advance(1);
    assert.deepEqual(gone, [{ code: 4501, reason: "banned", reconnect: false }]);
    assert.equal(c.state, "closed");
    assert.equal(sub.active, false);
    await net.clock.advance(60_000);
    assert.equal(net.transports.length, 1);
    await assert.rejects(c.publish("room", "x"), (e: unknown) => e instanceof ClosedError && e.code === 4501);
    await assert.rejects(c.subscribe("other", () => {}), ClosedError);
  });

  it("detects a dead connection: nothing received for ping + pong timeout", async () => {
    const net = new FakeNet();
    net.connected = { ...net.connected, pingIntervalMs: 1000, pongTimeoutMs: 500 };
    const c = await start(net);
    const gone = record(c, "disconnected");
    const t = net.current;
    // pings keep it alive, and get a pong each
    for (let i = 0; i < 5; i++) {
      await net.clock.advance(1000);
      t.push(0, "ping");
    }
    assert.equal(t.sent("pong").length, 5);
    assert.equal(gone.length, 0);
    // silence: given up after 1500 ms
    await net.clock.advance(1499);
    assert.equal(gone.length, 0);
    await net.clock.advance(1);
    assert.equal(gone.length, 1);
    assert.equal(gone[0]!.code, 3002);
    assert.equal(t.closedBy?.code, 3002);
    await net.clock.until(() => c.state === "connected");
    assert.equal(net.transports.length, 2);
    c.close();
  });

  it("answers a ping at once, echoing its id", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.current.push(77, "ping");
    assert.deepEqual(net.current.sent("pong").map((f) => f.id), [77]);
    c.close();
  });

  it("closes on a malformed frame from the server (3500, terminal)", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const gone = record(c, "disconnected");
    const t = net.current;
    t.pushRaw(Uint8Array.of(0x02, 0x00, 0x00));
    assert.equal(t.closedBy?.code, 3500);
    await net.clock.advance(1);
    assert.equal(gone[0]!.code, 3500);
    assert.equal(c.state, "closed");
  });

  it("ignores frames of unknown kinds", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.current.pushRaw(Uint8Array.of(0x04, 0x08, 0x00, 0x7a, 0x00)); // field 15
    await net.clock.advance(1);
    assert.equal(c.state, "connected");
    c.close();
  });

  it("close() stops everything, even while reconnecting", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const gone = record(c, "disconnected");
    const t = net.current;
    c.close();
    assert.deepEqual(t.closedBy, { code: 1000, reason: "client closed" });
    assert.deepEqual(gone, [{ code: 1000, reason: "client closed", reconnect: false }]);
    assert.equal(c.state, "closed");
    c.close(); // idempotent
    await assert.rejects(c.publish("a", "b"), (e: unknown) => e instanceof ClosedError && e.code === 1000);

    const net2 = new FakeNet();
    const c2 = await start(net2);
    net2.behave = () => ({ kind: "hang" });
    net2.current.drop(1006, "lost");
    await net2.clock.until(() => net2.transports.length === 2);
    c2.close();
    assert.ok(net2.transports.every((x) => x.closedBy || x.ended));
    await net2.clock.advance(60_000);
    assert.equal(net2.transports.length, 2);
    assert.equal(net2.clock.pending, 0);
  });

  it("passes the token, calling a token function before each attempt", async () => {
    const net = new FakeNet();
    let calls = 0;
    const c = await start(net, { token: async () => `t${++calls}` });
    assert.equal(net.current.sent("connect")[0]!.token, "t1");
    net.current.drop(1006, "lost");
    await net.clock.until(() => net.transports.length === 2 && c.state === "connected");
    assert.equal(net.current.sent("connect")[0]!.token, "t2");
    c.close();
    const c2 = await start(new FakeNet(), { token: "static" });
    c2.close();
  });
});

/** Subscribes and advances time until the server confirms. */
async function subscribeNow(net: FakeNet, c: Client, channel: string, handler: (m: Message) => void) {
  const p = c.subscribe(channel, handler);
  await net.clock.advance(1);
  return p;
}

describe("subscriptions and requests", () => {
  it("subscribes, receives, publishes, unsubscribes", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: Message[] = [];
    const subscribed = record(c, "subscribed");
    const sub = await subscribeNow(net, c, "room", (m) => got.push(m));
    assert.equal(sub.channel, "room");
    assert.equal(sub.active, true);
    assert.deepEqual(subscribed, [{ channel: "room", epoch: "epoch1", offset: 0, resubscribed: false, missed: 0, recovered: true }]);
    const p = c.publish("room", "héllo");
    await net.clock.advance(1);
    assert.deepEqual(await p, { epoch: "epoch1", offset: 1, duplicate: false });
    const p2 = c.publish("room", Uint8Array.of(1, 2, 3));
    await net.clock.advance(1);
    assert.deepEqual(await p2, { epoch: "epoch1", offset: 2, duplicate: false });
    assert.deepEqual(got.map((m) => [m.channel, m.epoch, m.offset]), [["room", "epoch1", 1], ["room", "epoch1", 2]]);
    assert.equal(decodeText(got[0]!), "héllo");
    assert.deepEqual(got[1]!.data, Uint8Array.of(1, 2, 3));
    assert.deepEqual(sub.position, { epoch: "epoch1", offset: 2 });

    const u = sub.unsubscribe();
    await net.clock.advance(1);
    await u;
    assert.equal(net.subscribers("room"), 0);
    net.publish("room", "after");
    assert.equal(got.length, 2);
    await sub.unsubscribe(); // again: nothing to do
    assert.equal(net.current.sent("unsubscribe").length, 1);
    c.close();
  });

  it("turns Error replies into RequestError", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const p = quiet(c.publish("bad name", "x"));
    await net.clock.advance(1);
    await assert.rejects(p, (e: unknown) => e instanceof RequestError && e.code === 102 && e.message === "invalid channel");
    await subscribeNow(net, c, "room", () => {});
    await assert.rejects(c.subscribe("room", () => {}), (e: unknown) => e instanceof RequestError && e.code === 104);
    c.close();
  });

  it("refuses a publish over max_frame_size without sending it", async () => {
    const net = new FakeNet();
    net.connected = { ...net.connected, maxFrameSize: 1000 };
    const c = await start(net);
    await assert.rejects(c.publish("room", new Uint8Array(1000)), (e: unknown) => e instanceof RequestError && e.code === 106);
    assert.equal(net.current.sent("publish").length, 0);
    const ok = c.publish("room", new Uint8Array(900));
    await net.clock.advance(1);
    await ok;
    c.close();
  });

  it("resubscribes every live subscription after a reconnect; handlers keep working", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: string[] = [];
    await subscribeNow(net, c, "a", (m) => got.push(`a${m.offset}:${decodeText(m)}`));
    await subscribeNow(net, c, "b", (m) => got.push(`b${m.offset}:${decodeText(m)}`));
    const gone = await subscribeNow(net, c, "gone", () => got.push("gone"));
    await gone.unsubscribe();
    net.publish("a", "1");
    const events = record(c, "subscribed");

    net.current.drop(1006, "lost");
    net.publish("a", "missed"); // while away: nobody on this node gets it
    await net.clock.until(() => events.length === 2);
    const t = net.current;
    assert.deepEqual(t.sent("subscribe").map((f) => f.channel).sort(), ["a", "b"]);
    assert.deepEqual(events.map((e) => [e.channel, e.resubscribed, e.missed]).sort(), [["a", true, 1], ["b", true, 0]]);

    net.publish("a", "2");
    net.publish("b", "3");
    net.publish("gone", "4");
    assert.deepEqual(got, ["a1:1", "a3:2", "b1:3"]);
    c.close();
  });

  it("reports a stream restart (new epoch) on resubscribe as missed: null", async () => {
    const net = new FakeNet();
    const c = await start(net);
    await subscribeNow(net, c, "a", () => {});
    const events = record(c, "subscribed");
    net.current.drop(1006, "lost");
    net.reset("a");
    await net.clock.until(() => events.length === 1);
    assert.equal(events[0]!.missed, null);
    c.close();
  });

  it("reports a refused resubscribe through the error event", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    const errors = record(c, "error");
    net.answer = false;
    net.current.drop(1006, "lost");
    await net.clock.until(() => net.transports.length === 2 && c.state === "connected");
    const t = net.current;
    const req = t.sent("subscribe")[0]!;
    t.push(req.id, "error", { code: 103, message: "too many subscriptions" });
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.channel, "a");
    assert.ok(errors[0]!.error instanceof RequestError && errors[0]!.error.code === 103);
    assert.equal(sub.active, false);
    c.close();
  });

  it("queues requests made while disconnected and sends them on the next connection", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.behave = () => ({ kind: "fail", after: 1 });
    net.current.drop(1006, "lost");
    await net.clock.advance(1);
    assert.equal(c.state, "reconnecting");
    const got: Message[] = [];
    const s = c.subscribe("late", (m) => got.push(m));
    const p = c.publish("late", "queued");
    await net.clock.advance(2000);
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => c.state === "connected");
    await net.clock.advance(1);
    const sub = await s;
    assert.deepEqual(await p, { epoch: "epoch1", offset: 1, duplicate: false });
    assert.equal(sub.active, true);
    assert.equal(got.length, 1, "subscribe went out before the publish");
    c.close();
  });

  it("rejects queued requests after requestTimeout", async () => {
    const net = new FakeNet();
    const c = await start(net, { requestTimeout: 3000 });
    net.behave = () => ({ kind: "hang" });
    net.current.drop(1006, "lost");
    await net.clock.advance(1);
    const outcomes: unknown[] = [];
    c.publish("x", "y").catch((e) => outcomes.push(e));
    c.subscribe("x", () => {}).catch((e) => outcomes.push(e));
    await net.clock.advance(2999);
    assert.equal(outcomes.length, 0);
    await net.clock.advance(1);
    assert.equal(outcomes.length, 2);
    assert.ok(outcomes.every((e) => e instanceof TimeoutError));
    // a timed-out subscribe is forgotten: the next session does not carry it
    net.behave = () => ({ kind: "serve" });
    await net.clock.until(() => c.state === "connected");
    assert.equal(net.current.sent("subscribe").length, 0);
    assert.equal(net.current.sent("publish").length, 0);
    c.close();
  });

  it("resends a publish in flight when the connection drops, and resolves an unsubscribe", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    net.answer = false;
    let outcome: unknown;
    c.publish("a", "lost?").then((v) => (outcome = v), (e) => (outcome = e));
    const u = sub.unsubscribe();
    await net.clock.advance(1);
    net.current.drop(1006, "lost");
    await u;
    await net.clock.advance(1);
    assert.equal(outcome, undefined, "the publish waits for the next session");
    net.answer = true;
    await net.clock.until(() => outcome !== undefined);
    assert.deepEqual(outcome, { epoch: "epoch1", offset: 1, duplicate: false });
    assert.equal(net.transports.length, 2);
    c.close();
  });

  it("undoes a subscribe confirmed after it timed out", async () => {
    const net = new FakeNet();
    const c = await start(net, { requestTimeout: 1000 });
    net.answer = false;
    const p = quiet(c.subscribe("slow", () => {}));
    await net.clock.advance(1000);
    await assert.rejects(p, TimeoutError);
    const t = net.current;
    const req = t.sent("subscribe")[0]!;
    t.push(req.id, "subscribed", { channel: "slow", epoch: "e", offset: 0 });
    assert.deepEqual(t.sent("unsubscribe").map((f) => f.channel), ["slow"]);
    c.close();
  });

  it("pipelines an unsubscribe behind a subscribe", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    const u = sub.unsubscribe();
    const again = c.subscribe("a", () => {});
    await net.clock.advance(1);
    await u;
    assert.equal((await again).active, true);
    assert.deepEqual(net.current.received.filter((f) => f.type !== "connect").map((f) => f.type), ["subscribe", "unsubscribe", "subscribe"]);
    c.close();
  });

  it("rejects pending requests with ClosedError on close()", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.answer = false;
    const p = quiet(c.publish("a", "b"));
    const s = quiet(c.subscribe("a", () => {}));
    c.close();
    await assert.rejects(p, ClosedError);
    await assert.rejects(s, ClosedError);
  });

  it("keeps delivering when a handler throws, reporting it as an error event", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const errors = record(c, "error");
    let n = 0;
    await subscribeNow(net, c, "a", () => {
      n++;
      throw new Error("app bug");
    });
    net.publish("a", "1");
    net.publish("a", "2");
    assert.equal(n, 2);
    assert.deepEqual(errors.map((e) => [e.channel, e.error.message]), [["a", "app bug"], ["a", "app bug"]]);
    c.close();
  });

  it("on/off manage handlers", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: number[] = [];
    const h = (e: { code: number }) => got.push(e.code);
    const off = c.on("disconnected", h);
    c.off("disconnected", h);
    c.on("disconnected", (e) => got.push(-e.code));
    off();
    assert.throws(() => c.on("nope" as never, () => {}), TypeError);
    c.close();
    assert.deepEqual(got, [-1000]);
  });
});
