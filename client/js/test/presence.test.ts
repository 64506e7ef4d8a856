// Presence: user and info in Connect, the subscribe option presence (join
// and leave events, asked again on every resubscription) and
// client.presence(); against the fake node of fakes.ts, which keeps
// presence on "chat" and "chat:*" as a dev node does.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClosedError, connect, decodeText, RequestError, TimeoutError } from "../src/switchyard.js";
import type { Client, ConnectOptions, Member, PresenceResult, SubscribeOptions, Subscription } from "../src/switchyard.js";
import { FakeNet } from "./fakes.js";
import type { FakeTransport } from "./fakes.js";

async function start(net: FakeNet, o: ConnectOptions = {}): Promise<Client> {
  return settle(net, connect("https://127.0.0.1:4433", net.options(o)));
}

/** Advances fake time until p settles; returns its value or throws its error. */
async function settle<T>(net: FakeNet, p: Promise<T>, limit = 60_000): Promise<T> {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  p.then((v) => { done = true; value = v; }, (e) => { done = true; error = e; });
  await net.clock.until(() => done, limit, 1);
  if (error !== undefined) throw error;
  return value!;
}

function subscribe(net: FakeNet, c: Client, channel: string, o?: SubscribeOptions): Promise<Subscription> {
  return settle(net, c.subscribe(channel, () => {}, o));
}

/** Records a subscription's join and leave events as "join bob" / "leave bob". */
function watch(sub: Subscription): string[] {
  const got: string[] = [];
  sub.on("join", (m) => got.push(`join ${m.user}`));
  sub.on("leave", (m) => got.push(`leave ${m.user}`));
  return got;
}

/** The live transport of the session with this id. */
function session(net: FakeNet, id: string): FakeTransport {
  const t = net.transports.find((x) => x.live && x.member?.client === id);
  if (!t) throw new Error(`no live session ${id}`);
  return t;
}

const utf8 = (s: string) => new TextEncoder().encode(s);

describe("presence: who the client is", () => {
  it("sends user and info in connect: a string as UTF-8, bytes as they are (copied), on every session", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada", info: '{"avatar":"🦊"}' });
    const fa = session(net, a.sessionId).sent("connect")[0]!;
    assert.equal(fa.user, "ada");
    assert.equal(decodeText(fa.info), '{"avatar":"🦊"}');

    const info = new Uint8Array([1, 2, 3]);
    const b = await start(net, { user: "bob", info });
    info[0] = 9; // connect() keeps its own copy
    session(net, b.sessionId).drop(1006, "lost");
    await net.clock.until(() => b.state === "connected" && b.sessionId !== "s2");
    const again = session(net, b.sessionId).sent("connect")[0]!;
    assert.equal(again.user, "bob");
    assert.deepEqual(again.info, new Uint8Array([1, 2, 3]));

    const c = await start(net);
    const fc = session(net, c.sessionId).sent("connect")[0]!;
    assert.deepEqual([fc.user, fc.info], ["", new Uint8Array(0)]);
    for (const x of [a, b, c]) x.close();
  });

  it("refuses a user or info of another type with TypeError", async () => {
    const net = new FakeNet();
    await assert.rejects(connect("https://127.0.0.1:4433", net.options({ user: 5 as never })), TypeError);
    await assert.rejects(connect("https://127.0.0.1:4433", net.options({ info: { a: 1 } as never })), TypeError);
    assert.equal(net.transports.length, 0);
  });
});

describe("presence events", () => {
  it("delivers the others' joins and leaves, with their member, to a subscription that asked", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada" });
    const b = await start(net, { user: "bob", info: "hi" });
    const c = await start(net, { user: "cy" });
    const subA = await subscribe(net, a, "chat", { presence: true });
    assert.equal(session(net, a.sessionId).sent("subscribe")[0]!.presence, true);
    const members: Member[] = [];
    subA.on("join", (m) => members.push(m));
    const gotA = watch(subA);

    const subB = await subscribe(net, b, "chat"); // no events asked
    assert.equal(session(net, b.sessionId).sent("subscribe")[0]!.presence, false);
    const gotB = watch(subB);
    await net.clock.advance(1);
    assert.deepEqual(members, [{ client: b.sessionId, user: "bob", info: utf8("hi") }]);
    assert.equal(decodeText(members[0]!.info), "hi");

    const subC = await subscribe(net, c, "chat:1", { presence: true }); // another channel: nothing for a
    await net.clock.advance(1);
    assert.deepEqual(gotA, ["join bob"]);

    // c comes to chat: a hears it, c does not hear its own join
    const subC2 = await subscribe(net, c, "chat", { presence: true });
    const gotC = watch(subC2);
    await net.clock.advance(1);
    assert.deepEqual(gotA, ["join bob", "join cy"]);

    await settle(net, subB.unsubscribe());
    c.close();
    await net.clock.advance(1);
    assert.deepEqual(gotA, ["join bob", "join cy", "leave bob", "leave cy"]);
    assert.deepEqual(gotB, []);
    assert.deepEqual(gotC, ["leave bob"]);
    assert.equal(subC.channel, "chat:1");
    a.close();
    b.close();
  });

  it("keeps asking for presence on every resubscription: after a reconnect and after the server ended it", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada" });
    const sub = await subscribe(net, a, "chat", { presence: true });
    const plain = await subscribe(net, a, "chat:plain");
    const got = watch(sub);
    const first = a.sessionId;

    session(net, first).drop(1006, "lost");
    await net.clock.until(() => a.state === "connected" && sub.active && plain.active);
    const t = session(net, a.sessionId);
    assert.deepEqual(t.sent("subscribe").map((f) => [f.channel, f.presence]), [["chat", true], ["chat:plain", false]]);

    net.endSubscriptions("chat");
    await net.clock.until(() => t.sent("subscribe").length === 3 && sub.active);
    assert.equal(t.sent("subscribe")[2]!.presence, true);

    // and the events still come
    const b = await start(net, { user: "bob" });
    await subscribe(net, b, "chat");
    await net.clock.advance(1);
    assert.deepEqual(got, ["join bob"]);
    a.close();
    b.close();
  });

  it("on/off manage join and leave handlers; a throwing one does not stop the others", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada" });
    const sub = await subscribe(net, a, "chat", { presence: true });
    const got: string[] = [];
    const h = (m: Member) => got.push(`h ${m.user}`);
    const off = sub.on("join", h);
    sub.on("leave", (m) => got.push(`leave ${m.user}`));
    // Handler exceptions go to reportError (the page's error handlers).
    const thrown: unknown[] = [];
    const g = globalThis as { reportError?: (e: unknown) => void };
    const saved = g.reportError;
    g.reportError = (e) => thrown.push(e);
    try {
      sub.on("join", () => {
        throw new Error("boom");
      });
      sub.on("join", (m) => got.push(`after ${m.user}`));
      const b = await start(net, { user: "bob" });
      const subB = await subscribe(net, b, "chat");
      await net.clock.advance(1);
      off();
      sub.off("join", h); // again: a no-op
      await settle(net, subB.unsubscribe());
      await subscribe(net, b, "chat");
      await net.clock.advance(1);
      assert.deepEqual(got, ["h bob", "after bob", "leave bob", "after bob"]);
      assert.equal(thrown.length, 2);
      b.close();
    } finally {
      g.reportError = saved;
    }
    assert.throws(() => sub.on("joined" as never, () => {}), TypeError);
    assert.throws(() => sub.on("leave", null as never), TypeError);
    a.close();
  });
});

describe("client.presence()", () => {
  it("answers with the members, sorted by client, and the counts; countsOnly leaves the list out", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada", info: "x" });
    const b = await start(net, { user: "bob" });
    const a2 = await start(net, { user: "ada" });
    for (const c of [a, b, a2]) await subscribe(net, c, "chat");
    const r = await settle(net, b.presence("chat"));
    assert.deepEqual(r, {
      clients: 3,
      users: 2,
      truncated: false,
      members: [
        { client: a.sessionId, user: "ada", info: utf8("x") },
        { client: b.sessionId, user: "bob", info: new Uint8Array(0) },
        { client: a2.sessionId, user: "ada", info: new Uint8Array(0) },
      ],
    } satisfies PresenceResult);
    const counts = await settle(net, b.presence("chat", { countsOnly: true }));
    assert.deepEqual(counts, { clients: 3, users: 2, members: [], truncated: true });
    assert.deepEqual(session(net, b.sessionId).sent("presence").map((f) => [f.channel, f.countsOnly]), [["chat", false], ["chat", true]]);
    for (const c of [a, b, a2]) c.close();
  });

  it("rejects with RequestError when not subscribed (105) or the channel keeps no presence (100), TypeError on a bad channel", async () => {
    const net = new FakeNet();
    const a = await start(net);
    await assert.rejects(settle(net, a.presence("chat")), (e: unknown) => e instanceof RequestError && e.code === 105);
    await subscribe(net, a, "room");
    await assert.rejects(settle(net, a.presence("room")), (e: unknown) => e instanceof RequestError && e.code === 100);
    await assert.rejects(a.presence(5 as never), TypeError);
    a.close();
  });

  it("is sent on the next session when asked while disconnected, after the resubscription", async () => {
    const net = new FakeNet();
    const a = await start(net, { user: "ada" });
    await subscribe(net, a, "chat", { presence: true });
    session(net, a.sessionId).drop(1006, "lost");
    await net.clock.advance(1);
    assert.equal(a.state, "reconnecting");
    const r = await settle(net, a.presence("chat"));
    assert.deepEqual(r.members.map((m) => m.client), [a.sessionId]);
    assert.deepEqual(session(net, a.sessionId).received.map((f) => f.type), ["connect", "subscribe", "presence"]);
    a.close();
  });

  it("rejects with TimeoutError after requestTimeout, and with ClosedError on close()", async () => {
    const net = new FakeNet();
    const a = await start(net, { requestTimeout: 1000 });
    await subscribe(net, a, "chat");
    net.answer = false;
    const t0 = net.clock.now();
    await assert.rejects(settle(net, a.presence("chat")), TimeoutError);
    assert.equal(net.clock.now() - t0, 1000);
    const p = a.presence("chat");
    p.catch(() => {});
    a.close();
    await assert.rejects(p, ClosedError);
    await assert.rejects(a.presence("chat"), ClosedError);
  });
});
