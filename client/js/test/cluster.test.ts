// Several nodes, drains, discovery, the move back to WebTransport, and the
// robustness items: token context and 3502, online events, hung transports,
// backpressure, timed-out requests, offsets beyond 2^53.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { connect, decodeText } from "../src/switchyard.js";
import type { Client, ClientEvents, ConnectOptions, TokenContext } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

async function start(net: FakeNet, url: string | string[], o: ConnectOptions = {}, hooks = {}): Promise<Client> {
  let result: Client | undefined;
  let error: unknown;
  connect(url, net.options(o, hooks)).then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 120_000, 1);
  if (error !== undefined) throw error;
  return result!;
}

function record<E extends keyof ClientEvents>(c: Client, event: E): ClientEvents[E][] {
  const got: ClientEvents[E][] = [];
  c.on(event, (e) => got.push(e));
  return got;
}

const hosts = (net: FakeNet) => net.transports.map((t) => new URL(t.target.url).host);

describe("several nodes", () => {
  it("takes a list of URLs, moves on from a node that fails, and keeps a node whose session was lost", async () => {
    const net = new FakeNet();
    net.behave = (_n, _i, url) => (url.includes("a.example") ? { kind: "fail", after: 1 } : { kind: "serve" });
    const c = await start(net, ["https://a.example", "https://b.example"], { discover: false });
    assert.equal(net.current.target.url, "https://b.example");
    assert.deepEqual([...new Set(hosts(net))], ["a.example", "b.example"]);
    const n = net.transports.length;
    const connected = record(c, "connected");
    net.current.drop(1006, "lost");
    await net.clock.until(() => connected.length === 1);
    assert.equal(new URL(net.transports[n]!.target.url).host, "b.example", "the current node first");
    c.close();
  });

  it("follows a drain's reconnect_url, waiting at least reconnect_after_ms", async () => {
    const net = new FakeNet();
    const c = await start(net, "https://a.example", { transports: ["websocket"] });
    const connected = record(c, "connected");
    const t0 = net.clock.now();
    net.current.push(0, "disconnect", { code: 3000, reason: "drain", reconnect: true, reconnectAfterMs: 2500, reconnectUrl: "wss://c.example/ws" });
    await net.clock.until(() => connected.length === 1);
    const t = net.last;
    assert.equal(t.target.webSocket, "wss://c.example/ws");
    assert.ok(t.createdAt - t0 >= 2500, `after ${t.createdAt - t0} ms`);
    c.close();
  });

  it("fetches each node's own /certhash with certHash auto", async () => {
    const net = new FakeNet();
    net.behave = (_n, _i, url) => (url.includes("a.example") ? { kind: "fail", after: 1 } : { kind: "serve" });
    const c = await start(net, ["https://a.example", "https://b.example:4433"], { certHash: "auto", discover: false });
    assert.deepEqual([...new Set(net.transports.map((t) => t.target.certHash))], ["https://a.example/certhash", "https://b.example:4433/certhash"]);
    c.close();
  });

  it("learns the cluster's nodes from /api/nodes (same region first, no draining ones) when given a list", async () => {
    const net = new FakeNet();
    const asked: string[] = [];
    const body = {
      self: "n1", region: "eu",
      regions: {
        us: [{ name: "u1", region: "us", urls: { wt: "https://u1.example/wt", wss: "wss://u1.example/ws" } }],
        eu: [
          { name: "n1", region: "eu", urls: { wt: "https://a.example/wt", wss: "wss://a.example/ws" } },
          { name: "n2", region: "eu", urls: { wt: "https://e2.example/wt", wss: "wss://e2.example/ws" }, draining: true },
          { name: "n3", region: "eu", urls: { wt: "https://e3.example/wt", wss: "wss://e3.example/ws" } },
        ],
      },
    };
    const fetch = (async (url: string) => {
      asked.push(url);
      return { json: async () => body };
    }) as unknown as typeof globalThis.fetch;
    const c = await start(net, ["https://a.example"], {}, { fetch });
    await net.clock.advance(10);
    assert.deepEqual(asked, ["https://a.example/api/nodes"]);
    // a.example goes away for good: the learnt nodes come next, e3 (same region) before u1.
    net.behave = (_n, _i, url) => (url.includes("a.example") ? { kind: "fail", after: 1 } : { kind: "serve" });
    const connected = record(c, "connected");
    net.current.disconnect(3000, "going away");
    await net.clock.until(() => connected.length === 1);
    assert.equal(net.current.target.url, "https://e3.example/wt");
    assert.ok(!hosts(net).includes("e2.example") && !hosts(net).includes("u1.example"));
    c.close();

    // A single URL does not ask, unless discover says so; a failure is ignored.
    const net2 = new FakeNet();
    const c2 = await start(net2, "https://a.example", {}, { fetch: (async () => { asked.push("x"); throw new Error("down"); }) as unknown as typeof globalThis.fetch });
    await net2.clock.advance(10);
    assert.equal(asked.length, 2);
    c2.close();
  });
});

describe("back to WebTransport", () => {
  it("keeps trying WebTransport in the background and moves there, losing and doubling nothing", async () => {
    const net = new FakeNet();
    net.history = 100;
    let wtUp = false;
    net.behave = (name) => (name === "webtransport" && !wtUp ? { kind: "fail", after: 1 } : { kind: "serve" });
    const c = await start(net, "https://a.example");
    assert.equal(c.transport, "websocket");
    const got: number[] = [];
    await c.subscribe("room", (m) => got.push(m.offset));
    await net.clock.advance(1);
    const moves = record(c, "transport");
    net.publish("room", "1");
    // First background attempt after 5 s fails; the next after 10 more.
    await net.clock.advance(5100);
    assert.equal(net.of("webtransport").length, 2, JSON.stringify(net.transports.map((t) => [t.name, t.createdAt])));
    assert.equal(c.transport, "websocket");
    wtUp = true;
    const ws = net.current;
    const pub = c.publish("room", "mine");
    net.publish("room", "2");
    await net.clock.advance(10_000);
    net.publish("room", "3");
    await net.clock.advance(100);
    assert.deepEqual(moves, [{ from: "websocket", to: "webtransport" }]);
    assert.equal(c.transport, "webtransport");
    assert.equal(ws.closedBy?.code, 1000);
    assert.equal(net.current.name, "webtransport");
    assert.equal(net.current.sent("subscribe")[0]!.recover, true);
    assert.equal((await pub).offset, 3); // "2" was published before the node took it
    assert.deepEqual(got, [1, 2, 3, 4]);
    c.close();
  });
});

describe("robustness", () => {
  it("retries a failed WebSocket while WebTransport hangs", async () => {
    const net = new FakeNet();
    net.behave = (name, n) => (name === "webtransport" ? { kind: "hang" } : n < 2 ? { kind: "fail", after: 1 } : { kind: "serve" });
    const c = await start(net, "https://a.example");
    assert.equal(c.transport, "websocket");
    assert.ok(net.clock.now() < 2000, `connected at ${net.clock.now()}`);
    assert.equal(net.of("webtransport").length, 1);
    c.close();
  });

  it("calls the token function with a context, and heals a 3502 with a fresh token once", async () => {
    const net = new FakeNet();
    const ctx: TokenContext[] = [];
    net.behave = (_n, i) => (i === 0 ? { kind: "refuse", code: 3502, reason: "unauthorized" } : { kind: "serve" });
    const c = await start(net, "https://a.example", { transports: ["websocket"], token: (x) => (ctx.push(x), `t${ctx.length}`) });
    assert.deepEqual(ctx, [{ attempt: 1, url: "https://a.example", reason: "connect" }, { attempt: 2, url: "https://a.example", reason: "unauthorized" }]);
    assert.equal(net.current.sent("connect")[0]!.token, "t2");
    // Twice in a row: terminal.
    net.behave = () => ({ kind: "refuse", code: 3502, reason: "unauthorized" });
    const gone = record(c, "disconnected");
    net.current.disconnect(3502, "token expired");
    await net.clock.until(() => c.state === "closed");
    assert.deepEqual(ctx.slice(2).map((x) => x.reason), ["unauthorized"]);
    assert.equal(gone.at(-1)!.reconnect, false);
  });

  it("retries at once when the browser comes back online", async () => {
    const net = new FakeNet();
    const events = new EventTarget();
    const c = await start(net, "https://a.example", { backoff: { min: 30_000, max: 60_000 } }, { events });
    net.behave = () => ({ kind: "fail", after: 1 });
    net.current.drop(1006, "offline");
    await net.clock.advance(100);
    const n = net.transports.length;
    net.behave = () => ({ kind: "serve" });
    events.dispatchEvent(new Event("online"));
    await net.clock.advance(10);
    assert.ok(net.transports.length > n);
    assert.equal(c.state, "connected");
    c.close();
  });

  it("ends the session when the device goes offline and waits for online", async () => {
    const net = new FakeNet();
    const events = new EventTarget();
    let online = true;
    const c = await start(net, "https://a.example", { backoff: { min: 100, max: 5_000 } }, { events, online: () => online });
    const gone = record(c, "disconnected");
    online = false;
    events.dispatchEvent(new Event("offline"));
    await net.clock.advance(1);
    assert.equal(c.state, "reconnecting");
    assert.equal(gone.length, 1);
    assert.equal(gone[0]!.reconnect, true);
    const n = net.transports.length;
    // Offline: no attempt at the short backoff delays.
    await net.clock.advance(2_000);
    assert.equal(net.transports.length, n);
    online = true;
    events.dispatchEvent(new Event("online"));
    await net.clock.advance(10);
    assert.ok(net.transports.length > n);
    await net.clock.until(() => c.state === "connected");
    c.close();
  });

  it("holds publishes back beyond maxInflight and while the send buffer is full", async () => {
    const net = new FakeNet();
    net.answer = false;
    const c = await start(net, "https://a.example", { maxInflight: 2, transports: ["websocket"] });
    const ps = [1, 2, 3, 4].map((i) => c.publish("ch", `m${i}`));
    for (const p of ps) p.catch(() => {});
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 2);
    // A reply frees a slot.
    const first = net.current.sent("publish")[0]!;
    net.current.push(first.id, "publishAck", { epoch: "e", offset: 1 });
    await net.clock.advance(1);
    assert.equal(net.current.sent("publish").length, 3);
    net.current.full = true;
    const second = net.current.sent("publish")[1]!;
    net.current.push(second.id, "publishAck", { epoch: "e", offset: 2 });
    await net.clock.advance(200);
    assert.equal(net.current.sent("publish").length, 3, "nothing while the buffer is full");
    net.current.full = false;
    await net.clock.advance(100);
    assert.equal(net.current.sent("publish").length, 4);
    c.close();
  });

  it("forgets a timed-out request: its slot is free and a late reply is ignored", async () => {
    const net = new FakeNet();
    net.answer = false;
    const c = await start(net, "https://a.example", { maxInflight: 1, requestTimeout: 1000, transports: ["websocket"] });
    const p1 = c.publish("ch", "a");
    p1.catch(() => {});
    await net.clock.advance(1001);
    await assert.rejects(p1, /not acknowledged/);
    const p2 = c.publish("ch", "b");
    await net.clock.advance(1);
    const [s1, s2] = net.current.sent("publish");
    assert.ok(s2, "the second went out: the slot was freed");
    net.current.push(s1!.id, "publishAck", { epoch: "e", offset: 1 }); // late: ignored
    net.current.push(s2.id, "publishAck", { epoch: "e", offset: 2 });
    assert.equal((await p2).offset, 2);
    c.close();
  });

  it("delivers offsets beyond 2^53 instead of failing the session", async () => {
    const net = new FakeNet();
    const c = await start(net, "https://a.example", { transports: ["websocket"] });
    const got: string[] = [];
    await c.subscribe("big", (m) => got.push(decodeText(m)));
    net.current.push(0, "message", { channel: "big", epoch: "epoch1", offset: 2 ** 53 + 2, data: new TextEncoder().encode("x") });
    net.current.push(0, "message", { channel: "big", epoch: "epoch1", offset: 2 ** 53 + 2, data: new TextEncoder().encode("y") });
    await net.clock.advance(1);
    assert.deepEqual(got, ["x", "y"]); // rounded: delivered rather than risk dropping
    assert.equal(c.state, "connected");
    c.close();
  });
});
