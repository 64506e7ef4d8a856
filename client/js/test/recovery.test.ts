// History recovery: resubscribing from the last position after a reconnect
// or a subscription the server ended (Unsubscribed push, code 3005), the
// since option, "resync" when the history cannot cover the gap, and the
// duplicate guard; against the fake node of fakes.ts (FakeNet.history).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { connect, decodeText } from "../src/switchyard.js";
import type { Client, ClientEvents, ConnectOptions, Message, ResyncEvent, SubscribeOptions, Subscription } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

async function start(net: FakeNet, o: ConnectOptions = {}): Promise<Client> {
  let result: Client | undefined;
  let error: unknown;
  connect("https://127.0.0.1:4433", net.options(o)).then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 60_000, 1);
  if (error !== undefined) throw error;
  return result!;
}

async function subscribeNow(net: FakeNet, c: Client, channel: string, handler: (m: Message) => void, o?: SubscribeOptions) {
  const p = c.subscribe(channel, handler, o);
  await net.clock.advance(1);
  return p;
}

function record<E extends keyof ClientEvents>(c: Client, event: E): ClientEvents[E][] {
  const got: ClientEvents[E][] = [];
  c.on(event, (e) => got.push(e));
  return got;
}

function resyncs(sub: Subscription, log?: string[]): ResyncEvent[] {
  const got: ResyncEvent[] = [];
  sub.on("resync", (e) => {
    got.push(e);
    log?.push(`resync ${e.previous.offset}→${e.offset}`);
  });
  return got;
}

const text = (m: Message) => `${m.offset}:${decodeText(m)}`;

/** Drops the connection and waits until the client resubscribed n subscriptions. */
async function reconnect(net: FakeNet, events: unknown[], n = 1): Promise<void> {
  const want = events.length + n;
  net.current.drop(1006, "lost");
  await net.clock.until(() => events.length === want);
}

describe("recovery on reconnect", () => {
  for (const transport of ["webtransport", "websocket"] as const) {
    it(`resubscribes from the last position and gets what it missed once, in order (${transport})`, async () => {
      const net = new FakeNet();
      net.history = 10;
      const c = await start(net, { transports: [transport] });
      const got: string[] = [];
      const sub = await subscribeNow(net, c, "a", (m) => got.push(text(m)));
      const gaps = resyncs(sub);
      assert.deepEqual(net.current.sent("subscribe").map((f) => [f.recover, f.sinceEpoch, f.sinceOffset]), [[false, "", 0]]);
      assert.equal(sub.recovered, true, "nothing to miss on a first subscribe");
      net.publish("a", "one");
      net.publish("a", "two");
      const events = record(c, "subscribed");

      net.current.drop(1006, "lost");
      net.publish("a", "three"); // while away
      net.publish("a", "four");
      await net.clock.until(() => events.length === 1);
      const req = net.current.sent("subscribe");
      assert.deepEqual(req.map((f) => [f.channel, f.recover, f.sinceEpoch, f.sinceOffset]), [["a", true, "epoch1", 2]]);
      assert.deepEqual(events, [{ channel: "a", epoch: "epoch1", offset: 2, resubscribed: true, missed: 0, recovered: true }]);
      assert.deepEqual(got, ["1:one", "2:two", "3:three", "4:four"]);
      assert.equal(sub.recovered, true);
      assert.deepEqual(sub.position, { epoch: "epoch1", offset: 4 });

      net.publish("a", "five");
      assert.deepEqual(got, ["1:one", "2:two", "3:three", "4:four", "5:five"]);
      // and again: the next resubscribe starts from offset 5
      await reconnect(net, events);
      assert.equal(net.current.sent("subscribe")[0]!.sinceOffset, 5);
      assert.equal(got.length, 5);
      assert.deepEqual(gaps, []);
      c.close();
    });
  }

  it("emits resync when the history does not reach back far enough; delivery goes on", async () => {
    const net = new FakeNet();
    net.history = 2;
    const c = await start(net);
    const got: string[] = [];
    const order: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => {
      got.push(text(m));
      order.push(`message ${m.offset}`);
    });
    const gaps = resyncs(sub, order);
    net.publish("a", "one");
    const events = record(c, "subscribed");
    net.current.drop(1006, "lost");
    for (const s of ["two", "three", "four", "five"]) net.publish("a", s); // 2..5: the ring holds 4 and 5
    await net.clock.until(() => events.length === 1);
    assert.deepEqual(events, [{ channel: "a", epoch: "epoch1", offset: 5, resubscribed: true, missed: 4, recovered: false }]);
    assert.deepEqual(gaps, [{ epoch: "epoch1", offset: 5, previous: { epoch: "epoch1", offset: 1 } }]);
    assert.equal(sub.recovered, false);
    assert.deepEqual(sub.position, { epoch: "epoch1", offset: 5 });
    net.publish("a", "six");
    assert.deepEqual(got, ["1:one", "6:six"]);
    assert.deepEqual(order, ["message 1", "resync 1→5", "message 6"]);

    // the next reconnect recovers again: recovered is back to true
    net.current.drop(1006, "lost");
    net.publish("a", "seven");
    await net.clock.until(() => events.length === 2);
    assert.equal(sub.recovered, true);
    assert.deepEqual(got, ["1:one", "6:six", "7:seven"]);
    assert.equal(gaps.length, 1);
    c.close();
  });

  it("emits resync with the new epoch when the stream restarted", async () => {
    const net = new FakeNet();
    net.history = 100;
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    const gaps = resyncs(sub);
    net.publish("a", "x");
    const events = record(c, "subscribed");
    net.current.drop(1006, "lost");
    net.reset("a");
    net.publish("a", "y");
    await net.clock.until(() => events.length === 1);
    assert.equal(events[0]!.missed, null);
    assert.deepEqual(gaps, [{ epoch: "epoch2", offset: 1, previous: { epoch: "epoch1", offset: 1 } }]);
    assert.equal(sub.recovered, false);
    c.close();
  });

  it("does not ask volatile channels to recover, nor emit resync for them", async () => {
    const net = new FakeNet();
    net.history = 10;
    const c = await start(net);
    const sub = await subscribeNow(net, c, "game:1", () => {});
    const gaps = resyncs(sub);
    net.publish("game:1", "a");
    const events = record(c, "subscribed");
    await reconnect(net, events);
    assert.deepEqual(net.current.sent("subscribe").map((f) => [f.recover, f.sinceEpoch, f.sinceOffset]), [[false, "", 0]]);
    assert.equal(sub.recovered, false, "what went by is gone");
    assert.equal(events[0]!.recovered, false);
    assert.deepEqual(gaps, []);
    c.close();
  });
});

describe("subscribe with since", () => {
  it("starts after the given position", async () => {
    const net = new FakeNet();
    net.history = 10;
    const c = await start(net);
    for (const s of ["one", "two", "three", "four"]) net.publish("a", s);
    const events = record(c, "subscribed");
    const got: string[] = [];
    const p = c.subscribe("a", (m) => got.push(text(m)), { since: { epoch: "epoch1", offset: 2 } });
    await net.clock.advance(1);
    const sub = await p;
    assert.deepEqual(net.current.sent("subscribe").map((f) => [f.recover, f.sinceEpoch, f.sinceOffset]), [[true, "epoch1", 2]]);
    assert.deepEqual(got, ["3:three", "4:four"]);
    assert.equal(sub.recovered, true);
    assert.deepEqual(sub.position, { epoch: "epoch1", offset: 4 });
    assert.deepEqual(events, [{ channel: "a", epoch: "epoch1", offset: 2, resubscribed: false, missed: 0, recovered: true }]);
    net.publish("a", "five");
    assert.deepEqual(got, ["3:three", "4:four", "5:five"]);
    c.close();
  });

  it("reports recovered false when the position is out of reach, and starts at the current one", async () => {
    const net = new FakeNet();
    net.history = 1;
    const c = await start(net);
    for (const s of ["one", "two", "three"]) net.publish("a", s);
    const events = record(c, "subscribed");
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => got.push(text(m)), { since: { epoch: "epoch1", offset: 1 } });
    assert.equal(sub.recovered, false);
    assert.deepEqual(sub.position, { epoch: "epoch1", offset: 3 });
    assert.deepEqual(events, [{ channel: "a", epoch: "epoch1", offset: 3, resubscribed: false, missed: 2, recovered: false }]);
    const old = await subscribeNow(net, c, "b", () => {}, { since: { epoch: "gone", offset: 7 } });
    assert.equal(old.recovered, false);
    assert.equal(events[1]!.missed, null);
    net.publish("a", "four");
    assert.deepEqual(got, ["4:four"]);
    c.close();
  });

  it("keeps the since position while waiting for a connection", async () => {
    const net = new FakeNet();
    net.history = 10;
    const c = await start(net);
    net.publish("a", "one");
    net.publish("a", "two");
    net.behave = () => ({ kind: "fail", after: 1 });
    net.current.drop(1006, "lost");
    await net.clock.advance(1);
    const got: string[] = [];
    const p = c.subscribe("a", (m) => got.push(text(m)), { since: { epoch: "epoch1", offset: 1 } });
    assert.deepEqual((await Promise.race([p, Promise.resolve(undefined)])), undefined);
    net.behave = () => ({ kind: "serve" });
    let sub: Subscription | undefined;
    void p.then((s) => (sub = s));
    await net.clock.until(() => sub !== undefined);
    assert.equal(sub!.recovered, true);
    assert.deepEqual(got, ["2:two"]);
    c.close();
  });

  it("rejects a malformed since", async () => {
    const net = new FakeNet();
    const c = await start(net);
    for (const since of [{ epoch: 1, offset: 0 }, { epoch: "e", offset: -1 }, { epoch: "e", offset: 1.5 }, { epoch: "e" }, null, 5]) {
      await assert.rejects(c.subscribe("a", () => {}, { since: since as never }), TypeError, JSON.stringify(since));
    }
    assert.equal(net.current.sent("subscribe").length, 0);
    const sub = await subscribeNow(net, c, "a", () => {}, {});
    assert.equal(sub.active, true);
    c.close();
  });
});

describe("subscriptions the server ends", () => {
  it("resubscribes at once with recover on an Unsubscribed push with code 3005", async () => {
    const net = new FakeNet();
    net.history = 10;
    const c = await start(net);
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => got.push(text(m)));
    const gaps = resyncs(sub);
    const errors = record(c, "error");
    const events = record(c, "subscribed");
    net.publish("a", "one");
    net.lose("a", "two"); // lost on the way to this node
    net.lose("a", "three");
    const t = net.current;
    net.endSubscriptions("a", 3005, "missed messages");
    assert.equal(sub.active, false, "until the server confirms again");
    await net.clock.advance(1);
    assert.equal(net.current, t, "same session");
    assert.deepEqual(t.sent("subscribe").slice(1).map((f) => [f.channel, f.recover, f.sinceEpoch, f.sinceOffset]), [["a", true, "epoch1", 1]]);
    assert.deepEqual(got, ["1:one", "2:two", "3:three"]);
    assert.equal(sub.active, true);
    assert.equal(sub.recovered, true);
    assert.deepEqual(events.map((e) => [e.resubscribed, e.recovered]), [[true, true]]);
    assert.deepEqual(gaps, []);
    assert.deepEqual(errors, []);
    assert.equal(t.sent("unsubscribe").length, 0);
    net.publish("a", "four");
    assert.deepEqual(got, ["1:one", "2:two", "3:three", "4:four"]);
    c.close();
  });

  it("emits resync when the resubscription cannot recover", async () => {
    const net = new FakeNet();
    const c = await start(net, { transports: ["websocket"] });
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => got.push(text(m)));
    const gaps = resyncs(sub);
    net.publish("a", "one");
    net.lose("a", "two");
    net.endSubscriptions("a");
    await net.clock.advance(1);
    assert.deepEqual(gaps, [{ epoch: "epoch1", offset: 2, previous: { epoch: "epoch1", offset: 1 } }]);
    assert.equal(sub.recovered, false);
    net.publish("a", "three");
    assert.deepEqual(got, ["1:one", "3:three"]);
    c.close();
  });

  it("ignores a push for a channel it is not subscribed to, and one without a code", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    const t = net.current;
    t.push(0, "unsubscribed", { channel: "b", code: 3005 });
    t.push(0, "unsubscribed", { channel: "a" });
    await net.clock.advance(1);
    assert.equal(t.sent("subscribe").length, 1);
    assert.equal(sub.active, true);
    c.close();
  });
});

describe("duplicate guard", () => {
  it("drops messages at or before the last position of the same epoch", async () => {
    const net = new FakeNet();
    const c = await start(net, { transports: ["websocket"] });
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => got.push(`${m.epoch}/${text(m)}`));
    const t = net.current;
    const msg = (epoch: string, offset: number) => t.push(0, "message", { channel: "a", epoch, offset, data: Uint8Array.of(0x78) });
    msg("epoch1", 1);
    msg("epoch1", 2);
    msg("epoch1", 2);
    msg("epoch1", 1);
    msg("epoch1", 0);
    msg("epoch1", 4); // a gap is not the guard's business
    msg("epoch2", 1); // a new epoch starts over
    msg("epoch2", 1);
    assert.deepEqual(got, ["epoch1/1:x", "epoch1/2:x", "epoch1/4:x", "epoch2/1:x"]);
    assert.deepEqual(sub.position, { epoch: "epoch2", offset: 1 });
    c.close();
  });

  it("drops a replay that overlaps what was delivered before the reconnect", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "a", (m) => got.push(text(m)));
    net.publish("a", "one");
    net.publish("a", "two");
    net.answer = false;
    const events = record(c, "subscribed");
    net.current.drop(1006, "lost");
    await net.clock.until(() => c.state === "connected");
    const t = net.current;
    const req = t.sent("subscribe")[0]!;
    assert.deepEqual([req.recover, req.sinceEpoch, req.sinceOffset], [true, "epoch1", 2]);
    // a replay on the subscription's stream overtakes Subscribed and repeats 1 and 2
    for (const [o, s] of [[1, "one"], [2, "two"], [3, "three"]] as const) {
      t.pushStream(req.alias, "message", { channel: "a", epoch: "epoch1", offset: o, data: new TextEncoder().encode(s) });
    }
    t.push(req.id, "subscribed", { channel: "a", epoch: "epoch1", offset: 2, alias: req.alias, recovered: true });
    t.pushStream(req.alias, "message", { channel: "a", epoch: "epoch1", offset: 3, data: Uint8Array.of(0x78) });
    t.pushStream(req.alias, "message", { channel: "a", epoch: "epoch1", offset: 4, data: new TextEncoder().encode("four") });
    assert.equal(events.length, 1);
    assert.deepEqual(got, ["1:one", "2:two", "3:three", "4:four"]);
    assert.equal(sub.recovered, true);
    c.close();
  });
});

describe("subscription events", () => {
  it("on/off manage resync handlers and refuse unknown events", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const sub = await subscribeNow(net, c, "a", () => {});
    const got: number[] = [];
    const h = (e: ResyncEvent) => got.push(e.offset);
    const off = sub.on("resync", h);
    sub.off("resync", h);
    sub.on("resync", (e) => got.push(-e.offset));
    off();
    assert.throws(() => sub.on("nope" as never, () => {}), TypeError);
    assert.throws(() => sub.on("resync", 5 as never), TypeError);
    net.publish("a", "one");
    net.lose("a", "two");
    net.endSubscriptions("a");
    await net.clock.advance(1);
    assert.deepEqual(got, [-2]);
    c.close();
  });
});
