// Volatile channels (datagrams), subscription aliases and per-subscription
// streams, against the fake node of fakes.ts.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDatagram } from "../src/datagram.js";
import { ClosedError, connect, decodeText, RequestError } from "../src/switchyard.js";
import type { Client, ClientEvents, ConnectOptions, Message } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";

async function start(net: FakeNet, o: ConnectOptions = {}): Promise<Client> {
  let result: Client | undefined;
  let error: unknown;
  connect("https://127.0.0.1:4433", net.options(o)).then((c) => (result = c), (e) => (error = e));
  await net.clock.until(() => result !== undefined || error !== undefined, 60_000, 1);
  if (error !== undefined) throw error;
  return result!;
}

async function subscribeNow(net: FakeNet, c: Client, channel: string, handler: (m: Message) => void = () => {}) {
  const p = c.subscribe(channel, handler);
  await net.clock.advance(1);
  return p;
}

function record<E extends keyof ClientEvents>(c: Client, event: E): ClientEvents[E][] {
  const got: ClientEvents[E][] = [];
  c.on(event, (e) => got.push(e));
  return got;
}

const text = (m: Message) => `${m.offset}:${decodeText(m)}${m.datagram ? "" : " (reliable)"}`;

describe("volatile channels", () => {
  for (const transport of ["webtransport", "websocket"] as const) {
    it(`sends and receives datagrams over ${transport}`, async () => {
      const net = new FakeNet();
      const c = await start(net, { transports: [transport] });
      assert.equal(c.maxDatagramSize, 1100);
      const got: Message[] = [];
      const sub = await subscribeNow(net, c, "game:1", (m) => got.push(m));
      assert.equal(sub.volatile, true);
      assert.deepEqual([sub.lost, sub.dropped], [0, 0]);
      const room = await subscribeNow(net, c, "room");
      assert.equal(room.volatile, false);
      const t = net.current;
      const aliases = t.sent("subscribe").map((f) => f.alias);
      assert.equal(new Set(aliases).size, 2);
      assert.ok(aliases.every((a) => a >= 1 && a <= 16383), `aliases ${aliases}`);

      net.publish("game:1", "from server");
      assert.equal(c.sendDatagram("game:1", "from page"), true);
      assert.equal(c.sendDatagram("game:1", Uint8Array.of(104, 105)), true);
      await net.clock.advance(1);
      assert.deepEqual(got.map(text), ["1:from server", "2:from page", "3:hi"]);
      assert.deepEqual({ ...got[0]!, data: undefined }, { channel: "game:1", epoch: "", offset: 1, datagram: true, data: undefined });
      assert.deepEqual(sub.position, { epoch: "", offset: 3 });

      const alias = t.sent("subscribe").find((f) => f.channel === "game:1")!.alias;
      if (transport === "webtransport") {
        // real datagrams: alias, the client's own sequence numbers, payload
        assert.equal(t.sent("datagram").length, 0);
        assert.deepEqual(t.datagrams.map((d) => { const p = parseDatagram(d)!; return [p.alias, p.seq, decodeText(p.payload)]; }),
          [[alias, 1, "from page"], [alias, 2, "hi"]]);
      } else {
        assert.deepEqual(t.sent("datagram").map((f) => [f.id, f.alias, f.seq, decodeText(f.data)]),
          [[0, alias, 1, "from page"], [0, alias, 2, "hi"]]);
      }
      c.close();
    });
  }

  it("refuses datagrams with clear errors", async () => {
    const net = new FakeNet();
    const c = await start(net);
    await subscribeNow(net, c, "game:1");
    await subscribeNow(net, c, "room");
    assert.throws(() => c.sendDatagram("game:2", "x"), (e: unknown) => e instanceof RequestError && e.code === 105 && /subscribe to game:2/.test(e.message));
    assert.throws(() => c.sendDatagram("room", "x"), (e: unknown) => e instanceof TypeError && /room is not a volatile channel/.test(e.message));
    assert.throws(() => c.sendDatagram("game:1", new Uint8Array(1101)), (e: unknown) => e instanceof RangeError && /1101 bytes, limit 1100/.test(e.message));
    assert.throws(() => c.sendDatagram("game:1", 5 as never), TypeError);
    assert.throws(() => c.sendDatagram(5 as never, "x"), TypeError);
    assert.equal(c.sendDatagram("game:1", new Uint8Array(1100)), true);
    // a subscribe not yet confirmed: the channel's kind is unknown
    net.answer = false;
    c.subscribe("game:3", () => {}).catch(() => {});
    assert.throws(() => c.sendDatagram("game:3", "x"), (e: unknown) => e instanceof RequestError && e.code === 105);
    c.close();
    assert.throws(() => c.sendDatagram("game:1", "x"), ClosedError);
  });

  it("sends a datagram too large for the QUIC path as a datagram frame", async () => {
    const net = new FakeNet();
    net.datagramPathMax = 100;
    const c = await start(net);
    const got: string[] = [];
    await subscribeNow(net, c, "game:1", (m) => got.push(decodeText(m)));
    c.sendDatagram("game:1", "small");
    c.sendDatagram("game:1", "x".repeat(200));
    await net.clock.advance(1);
    assert.equal(net.current.datagrams.length, 1);
    assert.equal(net.current.sent("datagram").length, 1);
    assert.deepEqual(got.map((s) => s.length), [5, 200]);
    c.close();
  });

  it("counts gaps in sequence numbers as lost; a late arrival counts back", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: number[] = [];
    const sub = await subscribeNow(net, c, "game:1", (m) => got.push(m.offset));
    const t = net.current;
    const alias = t.sent("subscribe")[0]!.alias;
    const d = (seq: number) => t.pushDatagram(alias, seq, Uint8Array.of(seq));
    d(1); d(2); d(5);
    assert.equal(sub.lost, 2);
    d(3);
    assert.equal(sub.lost, 1);
    d(4);
    assert.equal(sub.lost, 0);
    d(4); // a late one with nothing counted lost: nothing to undo
    assert.equal(sub.lost, 0);
    d(9);
    assert.equal(sub.lost, 3);
    assert.deepEqual(got, [1, 2, 5, 3, 4, 4, 9]);
    assert.deepEqual(sub.position, { epoch: "", offset: 9 });
    // the same over WebSocket messages (conflated by the server: gaps)
    t.push(0, "message", { channel: "game:1", offset: 12, data: Uint8Array.of(1) });
    assert.equal(sub.lost, 5);
    c.close();
  });

  it("ignores datagrams of unknown aliases and of reliable channels, and malformed ones", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: Message[] = [];
    await subscribeNow(net, c, "room", (m) => got.push(m));
    const t = net.current;
    t.pushDatagram(t.sent("subscribe")[0]!.alias, 1, Uint8Array.of(1));
    t.pushDatagram(999, 1, Uint8Array.of(1));
    for (const bad of [[], [0x80], [0x03], [0xff, 0xff, 0x01, 0x00]]) t.pushDatagramBytes(Uint8Array.from(bad));
    assert.equal(got.length, 0);
    assert.equal(c.state, "connected");
    c.close();
  });

  it("re-sends aliases on resubscribe; what went by while away is missed, not lost", async () => {
    const net = new FakeNet();
    const c = await start(net);
    const got: string[] = [];
    const sub = await subscribeNow(net, c, "game:1", (m) => got.push(text(m)));
    await subscribeNow(net, c, "room", (m) => got.push(text(m)));
    const before = net.current.sent("subscribe").map((f) => [f.channel, f.alias]);
    net.publish("game:1", "a");
    const events = record(c, "subscribed");
    net.current.drop(1006, "lost");
    assert.equal(c.sendDatagram("game:1", "while away"), false);
    net.publish("game:1", "b");
    net.publish("game:1", "c");
    await net.clock.until(() => events.length === 2);
    assert.deepEqual(net.current.sent("subscribe").map((f) => [f.channel, f.alias]).sort(), before.sort());
    assert.deepEqual(events.find((e) => e.channel === "game:1"), { channel: "game:1", epoch: "", offset: 3, resubscribed: true, missed: 2, recovered: false });
    net.publish("game:1", "d");
    net.publish("room", "e");
    assert.equal(c.sendDatagram("game:1", "f"), true);
    await net.clock.advance(1);
    assert.deepEqual(got, ["1:a", "4:d", "1:e (reliable)", "5:f"]);
    assert.equal(sub.lost, 0);
    c.close();
  });

  it("reports a datagram the server refused (an error with id 0) as an error event", async () => {
    const net = new FakeNet();
    const c = await start(net, { transports: ["websocket"] });
    await subscribeNow(net, c, "game:1");
    const errors = record(c, "error");
    net.current.push(0, "error", { code: 106, message: "datagram for game:1: payload is 2000 bytes, limit 1100" });
    assert.equal(errors.length, 1);
    assert.ok(errors[0]!.error instanceof RequestError && (errors[0]!.error as RequestError).code === 106);
    c.close();
  });
});

describe("per-subscription streams", () => {
  it("asks for streams on WebTransport only, and reads messages from them", async () => {
    const net = new FakeNet();
    const c = await start(net);
    assert.equal(net.current.sent("connect")[0]!.streams, true);
    assert.equal(net.current.streams, true);
    const got: string[] = [];
    await subscribeNow(net, c, "room", (m) => got.push(text(m)));
    net.publish("room", "on its stream");
    assert.deepEqual(got, ["1:on its stream (reliable)"]);
    c.close();

    const ws = new FakeNet();
    const c2 = await start(ws, { transports: ["websocket"] });
    assert.equal(ws.current.sent("connect")[0]!.streams, false);
    c2.close();
  });

  it("holds messages that overtake Subscribed, then delivers them in order", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.answer = false;
    const got: string[] = [];
    const order: string[] = [];
    c.on("subscribed", (e) => order.push(`subscribed ${e.channel}`));
    const p = c.subscribe("room", (m) => { got.push(text(m)); order.push("message"); });
    const g = c.subscribe("game:1", (m) => got.push(text(m)));
    await net.clock.advance(1);
    const t = net.current;
    const [room, game] = t.sent("subscribe");
    t.pushStream(room!.alias, "message", { channel: "room", epoch: "E", offset: 6, data: Uint8Array.of(0x61) });
    t.pushStream(room!.alias, "message", { channel: "room", epoch: "E", offset: 7, data: Uint8Array.of(0x62) });
    t.pushStream(room!.alias, "message", { channel: "other", epoch: "E", offset: 1, data: Uint8Array.of(0x78) }); // not its channel
    t.pushStream(999, "message", { channel: "room", epoch: "E", offset: 1, data: Uint8Array.of(0x78) }); // no such alias
    t.pushDatagram(game!.alias, 3, Uint8Array.of(0x63));
    assert.deepEqual(got, []);
    t.push(room!.id, "subscribed", { channel: "room", epoch: "E", offset: 5, alias: room!.alias });
    t.push(game!.id, "subscribed", { channel: "game:1", offset: 2, alias: game!.alias, volatile: true });
    assert.deepEqual(got, ["6:a (reliable)", "7:b (reliable)", "3:c"]);
    assert.deepEqual(order, ["subscribed room", "message", "message", "subscribed game:1"]);
    const sub = await p;
    assert.deepEqual(sub.position, { epoch: "E", offset: 7 });
    assert.equal((await g).lost, 0);
    c.close();
  });

  it("drops what it held when the connection ends or the subscribe fails, and counts overflow", async () => {
    const net = new FakeNet();
    const c = await start(net);
    net.answer = false;
    const got: string[] = [];
    const p = c.subscribe("game:1", (m) => got.push(text(m)));
    const bad = c.subscribe("room", () => got.push("room"));
    bad.catch(() => {});
    await net.clock.advance(1);
    const t = net.current;
    const [game, room] = t.sent("subscribe");
    for (let i = 1; i <= 1030; i++) t.pushDatagram(game!.alias, i, Uint8Array.of(0x61));
    t.pushStream(room!.alias, "message", { channel: "room", epoch: "E", offset: 1, data: Uint8Array.of(0x61) });
    t.push(room!.id, "error", { code: 103, message: "too many subscriptions" });
    await assert.rejects(bad, RequestError);
    t.drop(1006, "lost");
    net.answer = true;
    let confirmed = false;
    void p.then(() => (confirmed = true));
    await net.clock.until(() => confirmed);
    const sub = await p;
    assert.deepEqual(got, []);
    assert.equal(sub.dropped, 6);
    net.publish("game:1", "after");
    assert.deepEqual(got, ["1:after"]);
    c.close();
  });
});
