import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { signalUrl } from "../src/signaling.js";
import { ClosedError, joinRoom, SignalError, TimeoutError } from "../src/switchyard.js";
import type { JoinOptions, Room, RoomEventName, RoomEvents } from "../src/switchyard.js";
import { FakeClock } from "./fakes.js";
import { FakePC, FakeSignalServer, fakeOptions, settle } from "./signalfakes.js";
import type { FakeWebSocket, Msg } from "./signalfakes.js";

const URL = "ws://127.0.0.1:8080/signal";

interface Joined {
  room: Room;
  pcs: FakePC[];
  ws: FakeWebSocket;
  log: string[];
}

/** Everything a room emits, as strings ("join p02", "connection p01", …). */
function listen(room: Room): string[] {
  const log: string[] = [];
  const events: RoomEventName[] = ["join", "leave", "connection", "message", "error", "disconnected", "reconnecting", "reconnected"];
  for (const e of events) {
    room.on(e, ((...args: unknown[]) => {
      log.push([e, ...args.map((a) =>
        a instanceof FakePC ? "pc" : a instanceof Error ? `${a.name}:${(a as SignalError).code ?? ""}:${a.message}` : typeof a === "string" ? a : JSON.stringify(a))].join(" "));
    }) as RoomEvents[typeof e]);
  }
  return log;
}

/** Joins and waits until joinRoom() settles; the room's events land in log. */
async function join(srv: FakeSignalServer, clock: FakeClock, name: string, room = "lobby", o: JoinOptions = {}): Promise<Joined> {
  const pcs: FakePC[] = [];
  let result: Room | undefined;
  let error: unknown;
  joinRoom(URL, room, fakeOptions(srv, clock, pcs, name, o)).then((r) => (result = r), (e) => (error = e));
  const ws = srv.last;
  await settle();
  if (error !== undefined) throw error;
  assert.ok(result, "joinRoom() settled");
  return { room: result, pcs, ws, log: listen(result) };
}

/** Starts joinRoom() and returns its outcome once settled (advancing fake time as needed). */
async function attempt(srv: FakeSignalServer, clock: FakeClock, room = "lobby", o: JoinOptions = {}): Promise<{ room?: Room; error?: unknown }> {
  const out: { room?: Room; error?: unknown; done?: boolean } = {};
  joinRoom(URL, room, fakeOptions(srv, clock, [], "x", o)).then((r) => { out.room = r; out.done = true; }, (e) => { out.error = e; out.done = true; });
  for (let t = 0; !out.done && t < 60_000; t += 100) {
    await settle(20);
    if (!out.done) await clock.advance(100);
  }
  return out;
}

/** The single peer connection of a room (to its only peer). */
function only(j: Joined): FakePC {
  assert.equal(j.pcs.length, 1, `${j.pcs.length} peer connections`);
  return j.pcs[0]!;
}

describe("rooms: joining", () => {
  it("resolves after joined, with the peer id, the other peers and the ICE servers", async () => {
    const srv = new FakeSignalServer();
    srv.ids = ["hV3xq0T8mB2kP9aZ", "Qm8d2LxR0cVt5nYw"];
    const clock = new FakeClock();
    const a = await join(srv, clock, "A", "lobby", { token: "secret" });
    assert.equal(a.ws.url, URL);
    assert.deepEqual(a.ws.sent, [{ type: "join", room: "lobby", token: "secret" }]);
    assert.equal(a.room.name, "lobby");
    assert.equal(a.room.peerId, "hV3xq0T8mB2kP9aZ");
    assert.deepEqual(a.room.peers(), []);
    assert.deepEqual(a.room.iceServers, srv.iceServers);
    assert.equal(a.room.state, "connected");

    const mine = [{ urls: "turn:turn.example.com:3478", username: "u", credential: "c" }];
    const b = await join(srv, clock, "B", "lobby", { iceServers: mine, token: () => Promise.resolve("fresh") });
    assert.deepEqual(b.ws.sent, [{ type: "join", room: "lobby", token: "fresh" }]);
    assert.equal(b.room.peerId, "Qm8d2LxR0cVt5nYw");
    assert.deepEqual(b.room.peers(), ["hV3xq0T8mB2kP9aZ"]);
    assert.deepEqual(b.room.iceServers, mine, "options.iceServers replace the server's");
    assert.deepEqual(a.log, ["join Qm8d2LxR0cVt5nYw"]);
    assert.deepEqual(a.room.peers(), ["Qm8d2LxR0cVt5nYw"]);
    a.room.leave();
    b.room.leave();
  });

  it("waits for joined: nothing resolves on open, and messages before joined are ignored", async () => {
    const srv = new FakeSignalServer();
    srv.answer = false;
    const clock = new FakeClock();
    const got: Room[] = [];
    void joinRoom("http://127.0.0.1:8080", "lobby", fakeOptions(srv, clock, [], "A")).then((r) => got.push(r));
    await settle();
    const ws = srv.last;
    assert.equal(ws.url, "ws://127.0.0.1:8080/signal");
    assert.deepEqual(ws.sent, [{ type: "join", room: "lobby" }]);
    ws.push({ type: "peer-joined", peer: "early" });
    ws.push("not json");
    ws.push({ type: "pong" });
    await settle();
    assert.equal(got.length, 0);
    ws.push({ type: "joined", room: "lobby", peer: "me", resume: "r", resumed: false, peers: ["p1", "p2"], iceServers: [], grace: 10, limits: {} });
    await settle();
    const room = got[0]!;
    assert.equal(room.peerId, "me");
    assert.deepEqual(room.peers(), ["p1", "p2"]);
    room.leave();
  });

  it("maps http(s) URLs to ws(s) and adds /signal when there is no path", () => {
    assert.equal(signalUrl("https://edge.example.com"), "wss://edge.example.com/signal");
    assert.equal(signalUrl("http://127.0.0.1:8080/"), "ws://127.0.0.1:8080/signal");
    assert.equal(signalUrl("wss://edge.example.com:4433"), "wss://edge.example.com:4433/signal");
    assert.equal(signalUrl("ws://h/custom/signal?x=1"), "ws://h/custom/signal?x=1");
    assert.throws(() => signalUrl("ftp://h"), TypeError);
    assert.throws(() => signalUrl("::"), TypeError);
  });

  it("rejects bad arguments with TypeError", async () => {
    const srv = new FakeSignalServer();
    const o = fakeOptions(srv, new FakeClock(), [], "A");
    await assert.rejects(joinRoom("ftp://h", "lobby", o), TypeError);
    await assert.rejects(joinRoom(URL, "", o), TypeError);
    await assert.rejects(joinRoom(URL, 7 as unknown as string, o), TypeError);
    assert.equal(srv.sockets.length, 0);
  });
});

describe("rooms: joinRoom() failures", () => {
  it("rejects with SignalError for an error before joined (room_full, bad_room), without retrying", async () => {
    const srv = new FakeSignalServer();
    srv.maxRoomSize = 1;
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const full = await attempt(srv, clock);
    assert.ok(full.error instanceof SignalError, String(full.error));
    assert.equal(full.error.code, "room_full");
    assert.equal(full.error.message, "room lobby is full");
    assert.equal(full.error.name, "SignalError");
    const bad = await attempt(srv, clock, "two words");
    assert.ok(bad.error instanceof SignalError);
    assert.equal(bad.error.code, "bad_room");
    assert.equal(srv.sockets.length, 3);
    await clock.advance(60_000);
    await settle();
    assert.equal(srv.sockets.length, 3, "nothing retried");
    assert.equal(clock.pending, 0, "no timer left");
    assert.deepEqual(a.log, [], "the others saw nothing");
    a.room.leave();
  });

  it("rejects with ClosedError when the WebSocket closes before joined", async () => {
    const srv = new FakeSignalServer();
    srv.answer = false;
    const clock = new FakeClock();
    let error: unknown;
    joinRoom(URL, "lobby", fakeOptions(srv, clock, [], "A")).catch((e) => (error = e));
    await settle();
    srv.last.drop(3503, "origin not allowed");
    await settle();
    assert.ok(error instanceof ClosedError, String(error));
    assert.deepEqual([error.code, error.reason], [3503, "origin not allowed"]);

    // refused before the upgrade (the browser says 1006): not retried either
    error = undefined;
    srv.accept = false;
    joinRoom(URL, "lobby", fakeOptions(srv, clock, [], "A")).catch((e) => (error = e));
    srv.last.drop(1006, "");
    await settle();
    assert.ok(error instanceof ClosedError && error.code === 1006);
    await clock.advance(60_000);
    assert.equal(srv.sockets.length, 2);
  });

  it("rejects with TimeoutError after requestTimeout and closes the WebSocket", async () => {
    const srv = new FakeSignalServer();
    srv.answer = false;
    const clock = new FakeClock();
    let error: unknown;
    joinRoom(URL, "lobby", fakeOptions(srv, clock, [], "A", { requestTimeout: 3000 })).catch((e) => (error = e));
    await settle();
    await clock.advance(2999);
    assert.equal(error, undefined);
    await clock.advance(1);
    assert.ok((error as unknown) instanceof TimeoutError, String(error));
    assert.equal(srv.last.closedBy?.code, 1000);
    assert.equal(srv.sockets.length, 1);
  });
});

describe("rooms: membership", () => {
  it("emits join and leave; on() returns an off function; peer-left closes and forgets the peer connection", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const joins: string[] = [];
    const off = a.room.on("join", (id) => joins.push(id));
    const b = await join(srv, clock, "B");
    off();
    const c = await join(srv, clock, "C");
    assert.deepEqual(joins, ["p02"]);
    assert.deepEqual(a.room.peers(), ["p02", "p03"]);
    assert.deepEqual(c.room.peers(), ["p01", "p02"]);

    const pc = a.room.peer("p02") as unknown as FakePC;
    assert.equal(a.room.peer("p02"), pc as unknown as RTCPeerConnection, "one per peer");
    b.room.leave();
    await settle();
    assert.deepEqual(a.log, ["join p02", "join p03", "leave p02"]);
    assert.deepEqual(c.log, ["leave p02"]);
    assert.ok(pc.closed);
    assert.deepEqual(a.room.peers(), ["p03"]);
    assert.throws(() => a.room.peer("p01"), TypeError, "not to itself");
    const again = a.room.peer("p02") as unknown as FakePC;
    assert.ok(again !== pc && !again.closed, "a peer that left gets a new connection if asked (it may come back)");
    assert.throws(() => a.room.on("nope" as "join", () => {}), TypeError);
    a.room.leave();
    c.room.leave();
  });

  it("leave() sends leave, closes every peer connection and the WebSocket, once", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    const c = await join(srv, clock, "C");
    a.room.peer("p02");
    a.room.peer("p03");
    const before = [...a.log];
    a.room.leave();
    assert.deepEqual(a.ws.sent.at(-1), { type: "leave" });
    assert.equal(a.ws.closedBy?.code, 1000);
    assert.ok(a.pcs.length === 2 && a.pcs.every((pc) => pc.closed));
    assert.equal(a.room.state, "closed");
    assert.deepEqual(a.room.peers(), []);
    a.room.leave();
    assert.equal(a.ws.of("leave").length, 1, "idempotent");
    assert.throws(() => a.room.peer("p02"), ClosedError);
    assert.throws(() => a.room.send("p02", 1), ClosedError);
    await settle();
    assert.deepEqual(b.log, ["join p03", "leave p01"]);
    assert.deepEqual(c.log, ["leave p01"]);
    assert.deepEqual(srv.members("lobby"), ["p02", "p03"]);
    assert.deepEqual(a.log, before, "no events from leave()");
    await clock.advance(60_000);
    assert.equal(srv.sockets.length, 3, "no reconnect");
    b.room.leave();
    c.room.leave();
  });
});

describe("rooms: relaying", () => {
  it("relays offer, answer and candidates with to/from; the answering side gets connection before the offer is applied", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    let seen: { state: string; remote: unknown } | undefined;
    const channels: string[] = [];
    b.room.on("connection", (id, pc) => {
      seen = { state: pc.signalingState, remote: pc.remoteDescription };
      pc.ondatachannel = (e) => channels.push(`${id}:${e.channel.label}`);
    });
    const pcA = a.room.peer("p02") as unknown as FakePC;
    assert.deepEqual(pcA.configuration, { iceServers: srv.iceServers });
    pcA.createDataChannel("chat");
    await settle();

    const pcB = only(b);
    assert.deepEqual(b.log, ["connection p01 pc"]);
    assert.deepEqual(seen, { state: "stable", remote: null }, "connection fires before the offer is applied");
    assert.deepEqual(channels, ["p01:chat"]);
    assert.equal(pcA.signalingState, "stable");
    assert.equal(pcB.signalingState, "stable");
    assert.deepEqual([pcA.negotiated, pcB.negotiated], [["chat"], ["chat"]]);

    // A's wire: the offer, then its candidates (toJSON) and the end (null), all to p02
    const offer = a.ws.of("offer");
    assert.equal(offer.length, 1);
    assert.deepEqual(Object.keys(offer[0]!).sort(), ["sdp", "to", "type"]);
    assert.equal(offer[0]!.to, "p02");
    assert.equal(offer[0]!.sdp, pcA.localDescription?.sdp);
    assert.deepEqual(a.ws.of("candidate"), [
      { type: "candidate", to: "p02", candidate: { candidate: "candidate:1 1 udp 2122260223 10.0.0.1 50001 typ host", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "A0.0" } },
      { type: "candidate", to: "p02", candidate: null },
    ]);
    // B received them from p01, without to
    const got = b.ws.received as Msg[];
    assert.deepEqual(got.find((m) => m.type === "offer"), { type: "offer", sdp: offer[0]!.sdp, from: "p01" });
    // B's answer goes to p01; B applied A's candidates, the end of candidates without an argument
    assert.deepEqual(b.ws.of("answer").map((m) => [m.to, m.sdp]), [["p01", pcB.localDescription?.sdp]]);
    assert.deepEqual(pcB.candidates, [[a.ws.of("candidate")[0]!.candidate], [undefined]]);
    assert.deepEqual(pcA.candidates.map((c) => (c[0] as RTCIceCandidateInit | undefined)?.usernameFragment), ["B0.0", undefined]);
    assert.ok(b.ws.of("candidate").every((m) => m.to === "p01"));
    assert.deepEqual(a.log.filter((l) => l.startsWith("error")), []);
    assert.deepEqual(b.log.filter((l) => l.startsWith("error")), []);
    a.room.leave();
    b.room.leave();
  });

  it("connects to a peer whose join is still on the way", async () => {
    const srv = new FakeSignalServer();
    srv.answer = false; // the test plays the server
    const clock = new FakeClock();
    const pcs: FakePC[] = [];
    const got: Room[] = [];
    void joinRoom(URL, "lobby", fakeOptions(srv, clock, pcs, "A")).then((r) => got.push(r));
    await settle();
    const ws = srv.last;
    ws.push({ type: "joined", room: "lobby", peer: "me", resume: "r", resumed: false, peers: [], iceServers: [] });
    await settle();
    const room = got[0]!;
    const log = listen(room);
    const pc = room.peer("later") as unknown as FakePC; // learnt from its joinRoom(), say
    pc.createDataChannel("x");
    await settle();
    assert.deepEqual(ws.of("offer").map((m) => m.to), ["later"]);
    ws.push({ type: "peer-joined", peer: "later" });
    ws.push({ type: "answer", from: "later", sdp: JSON.stringify({ labels: ["x"], ufrag: "L" }) });
    await settle();
    assert.equal(pc.signalingState, "stable");
    assert.deepEqual(log, ["join later"], "no connection event: this side made it");
    assert.equal(room.peer("later"), pc as unknown as RTCPeerConnection);
    room.leave();
  });

  it("does not take its own old id for a peer when a resume is refused", async () => {
    const srv = new FakeSignalServer();
    srv.answer = false; // the test plays the server
    const clock = new FakeClock();
    const got: Room[] = [];
    void joinRoom(URL, "lobby", fakeOptions(srv, clock, [], "A")).then((r) => got.push(r));
    await settle();
    srv.last.push({ type: "joined", room: "lobby", peer: "me", resume: "r", resumed: false, peers: ["other"], iceServers: [] });
    await settle();
    const room = got[0]!;
    const log = listen(room);
    srv.last.drop(1006, "");
    await settle();
    await clock.advance(20_000);
    await settle();
    const again = srv.last;
    assert.deepEqual(again.of("join").map((m) => [m.peer, m.resume]), [["me", "r"]]);
    // Refused (say, a wrong secret), while "me" is still within its grace.
    again.push({ type: "joined", room: "lobby", peer: "me2", resume: "r2", resumed: false, peers: ["me", "other"], iceServers: [] });
    await settle();
    assert.equal(room.peerId, "me2");
    assert.deepEqual(room.peers(), ["other"]);
    assert.ok(!log.includes("join me"), log.join(", "));
    room.leave();
  });

  it("passes rtcConfig through, with the room's ICE servers", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A", "lobby", { rtcConfig: { bundlePolicy: "max-bundle", iceServers: [{ urls: "stun:ignored" }] } });
    const b = await join(srv, clock, "B", "lobby", { iceServers: [] });
    const pc = a.room.peer("p02") as unknown as FakePC;
    assert.deepEqual(pc.configuration, { bundlePolicy: "max-bundle", iceServers: srv.iceServers });
    pc.createDataChannel("x");
    await settle();
    assert.deepEqual(only(b).configuration, { iceServers: [] });
    a.room.leave();
    b.room.leave();
  });

  it("relays messages; errors of the server are error events", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    a.room.send("p02", { hello: ["world", 1] });
    a.room.send("nobody", "x");
    await settle();
    assert.deepEqual(a.ws.of("message"), [{ type: "message", to: "p02", data: { hello: ["world", 1] } }, { type: "message", to: "nobody", data: "x" }]);
    assert.deepEqual(b.log, ['message p01 {"hello":["world",1]}']);
    assert.deepEqual(a.log, ["join p02", "error SignalError:unknown_peer:no peer nobody"]);
    assert.equal(b.pcs.length, 0, "a message makes no peer connection");
    let err: SignalError | undefined;
    a.room.on("error", (e) => (err = e as SignalError));
    a.room.send("gone", 1);
    await settle();
    assert.equal(err?.to, "gone");
    assert.equal(a.room.state, "connected");

    // peer() takes an id not (yet) in peers(): the server says whether it is in the room
    const stray = a.room.peer("p09") as unknown as FakePC;
    assert.deepEqual(a.room.peers(), ["p02"]);
    stray.createDataChannel("x");
    await settle();
    assert.equal(a.ws.of("offer").at(-1)?.to, "p09");
    assert.equal(err?.code, "unknown_peer");
    assert.equal(err?.to, "p09");
    a.room.leave();
    b.room.leave();
  });

  it("restarts ICE when the connection fails", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    const pcA = a.room.peer("p02") as unknown as FakePC;
    pcA.createDataChannel("chat");
    await settle();
    const pcB = only(b);
    pcA.setIceState("disconnected");
    await settle();
    assert.equal(a.ws.of("offer").length, 1, "disconnected is left alone");
    pcA.setIceState("failed");
    await settle();
    assert.ok(pcA.log.includes("restartIce"));
    assert.equal(a.ws.of("offer").length, 2);
    assert.equal(pcA.ufrag, "A0.1");
    assert.equal(pcA.signalingState, "stable");
    assert.equal(pcB.signalingState, "stable");
    assert.ok(pcB.candidates.some((c) => (c[0] as RTCIceCandidateInit | undefined)?.usernameFragment === "A0.1"), "the new generation's candidates apply");
    assert.deepEqual(b.log, ["connection p01 pc"]);
    a.room.leave();
    b.room.leave();
  });
});

describe("rooms: perfect negotiation", () => {
  // Both sides add a data channel at once: both offer (glare). The impolite
  // side (greater id) ignores the polite side's offer; the polite side rolls
  // its offer back, answers, then offers again for its own channel.
  for (const [first, second] of [["aaaa", "zzzz"], ["zzzz", "aaaa"]] as const) {
    it(`resolves glare (${first} joins first, ${second} second; aaaa is polite)`, async () => {
      const srv = new FakeSignalServer();
      srv.ids = [first, second];
      const clock = new FakeClock();
      const x = await join(srv, clock, "X");
      const y = await join(srv, clock, "Y");
      const pcX = x.room.peer(second) as unknown as FakePC;
      const pcY = y.room.peer(first) as unknown as FakePC;
      pcX.createDataChannel("x");
      pcY.createDataChannel("y");
      await settle();

      assert.equal(x.ws.of("offer").length + y.ws.of("offer").length, 3, "two offers at once, then the polite side's again");
      const [polite, impolite] = first === "aaaa" ? [pcX, pcY] : [pcY, pcX];
      assert.ok(polite.log.includes("rollback"), `polite: ${polite.log.join(", ")}`);
      assert.ok(!impolite.log.includes("rollback"), `impolite: ${impolite.log.join(", ")}`);
      assert.deepEqual(impolite.log.filter((l) => l === "SRD offer").length, 1, "the impolite side applied only the second offer");
      for (const pc of [pcX, pcY]) {
        assert.equal(pc.signalingState, "stable");
        assert.deepEqual([...pc.negotiated].sort(), ["x", "y"]);
      }
      assert.deepEqual([pcX.remoteChannels, pcY.remoteChannels], [["y"], ["x"]]);
      assert.equal(x.pcs.length + y.pcs.length, 2, "no second connection on either side");
      for (const j of [x, y]) {
        assert.deepEqual(j.log.filter((l) => l.startsWith("error") || l.startsWith("connection")), [], "no errors, no connection events");
      }
      x.room.leave();
      y.room.leave();
    });
  }

  it("does not take an offer that crosses a slow setLocalDescription for a free one (makingOffer)", async () => {
    const srv = new FakeSignalServer();
    srv.ids = ["aaaa", "zzzz"];
    const clock = new FakeClock();
    const x = await join(srv, clock, "X");
    const y = await join(srv, clock, "Y");
    const pcX = x.room.peer("zzzz") as unknown as FakePC;
    const pcY = y.room.peer("aaaa") as unknown as FakePC;
    pcY.delay = 40; // X's offer arrives while Y (impolite) still makes its own: signalingState is still stable
    pcX.createDataChannel("x");
    pcY.createDataChannel("y");
    await settle(2000);
    for (const pc of [pcX, pcY]) {
      assert.equal(pc.signalingState, "stable");
      assert.deepEqual([...pc.negotiated].sort(), ["x", "y"]);
    }
    assert.ok(pcX.log.includes("rollback") && !pcY.log.includes("rollback"), "aaaa (polite) rolled back");
    for (const j of [x, y]) assert.deepEqual(j.log.filter((l) => l.startsWith("error")), []);
    x.room.leave();
    y.room.leave();
  });

  it("takes an offer that follows an answer still being applied (isSettingRemoteAnswerPending)", async () => {
    const srv = new FakeSignalServer();
    srv.ids = ["zzzz", "aaaa"]; // A is impolite
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    b.room.on("connection", (_id, pc) => {
      (pc as unknown as FakePC).createDataChannel("b"); // B offers right after its answer
    });
    const pcA = a.room.peer("aaaa") as unknown as FakePC;
    pcA.delay = 40; // A is still applying B's answer when B's offer arrives
    pcA.createDataChannel("a");
    await settle(2000);
    const pcB = only(b);
    assert.equal(pcA.log.filter((l) => l === "SRD offer").length, 1, `A: ${pcA.log.join(", ")}`);
    for (const pc of [pcA, pcB]) {
      assert.equal(pc.signalingState, "stable");
      assert.deepEqual([...pc.negotiated].sort(), ["a", "b"]);
    }
    for (const j of [a, b]) assert.deepEqual(j.log.filter((l) => l.startsWith("error")), []);
    a.room.leave();
    b.room.leave();
  });

  it("resolves glare of ICE restarts and renegotiates", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    const pcA = a.room.peer("p02") as unknown as FakePC;
    pcA.createDataChannel("one");
    await settle();
    const pcB = only(b);
    pcA.setIceState("failed");
    pcB.setIceState("failed");
    pcB.createDataChannel("two");
    await settle();
    for (const pc of [pcA, pcB]) {
      assert.equal(pc.signalingState, "stable");
      assert.deepEqual([...pc.negotiated].sort(), ["one", "two"]);
    }
    assert.equal(pcA.ice, 1);
    assert.deepEqual([a.log, b.log], [["join p02"], ["connection p01 pc"]]);
    a.room.leave();
    b.room.leave();
  });
});

describe("rooms: reconnecting", () => {
  it("rejoins with peer + resume after a lost WebSocket, keeping peer connections and sending what waited", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    const d = await join(srv, clock, "D");
    const pcA = a.room.peer("p02") as unknown as FakePC;
    pcA.createDataChannel("chat");
    await settle();

    a.ws.drop(1006, "network changed");
    await settle();
    assert.equal(a.room.state, "reconnecting");
    assert.deepEqual(a.log.slice(2), ['disconnected {"code":1006,"reason":"network changed","reconnect":true}', 'reconnecting {"attempt":1,"delay":750}']);
    a.room.send("p02", "while away"); // waits for the rejoin
    b.room.send("p01", "kept for you"); // the server keeps it
    const c = await join(srv, clock, "C"); // A hears of it from joined
    d.room.leave();
    await settle();
    assert.equal(srv.sockets.length, 4);

    await clock.advance(750);
    await settle();
    const ws = srv.last;
    assert.deepEqual(ws.sent[0], { type: "join", room: "lobby", peer: "p01", resume: "resume-p01" });
    assert.equal(a.room.state, "connected");
    assert.equal(a.room.peerId, "p01");
    assert.deepEqual(a.log.slice(4), ["leave p03", "join p04", 'reconnected {"peerId":"p01","resumed":true}', "message p02 kept for you"]);
    assert.deepEqual(a.room.peers(), ["p02", "p04"]);
    assert.deepEqual(ws.of("message"), [{ type: "message", to: "p02", data: "while away" }]);
    assert.deepEqual(b.log, ["join p03", "connection p01 pc", "join p04", "leave p03", "message p01 while away"], "B saw nothing of A's absence");
    assert.ok(!pcA.closed && a.pcs.length === 1, "the peer connection survives");
    assert.equal(a.room.peer("p02"), pcA as unknown as RTCPeerConnection);

    // and it still negotiates over the new WebSocket
    pcA.setIceState("failed");
    await settle();
    assert.equal(ws.of("offer").length, 1);
    assert.equal(only(b).signalingState, "stable");
    for (const j of [a, b, c]) j.room.leave();
  });

  it("retries with backoff while the node is unreachable, firing only reconnecting", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A", "lobby", { backoff: { min: 1000, max: 4000 } });
    srv.accept = false;
    a.ws.drop(3000, "node draining");
    for (let i = 0; i < 4; i++) {
      await settle();
      await clock.advance(4000);
      srv.last.drop(1006, "");
    }
    await settle();
    assert.deepEqual(a.log, [
      'disconnected {"code":3000,"reason":"node draining","reconnect":true}',
      'reconnecting {"attempt":1,"delay":1500}',
      'reconnecting {"attempt":2,"delay":2500}',
      'reconnecting {"attempt":3,"delay":2500}',
      'reconnecting {"attempt":4,"delay":2500}',
      'reconnecting {"attempt":5,"delay":2500}',
    ]);
    srv.accept = true;
    await clock.advance(2500);
    await settle();
    assert.equal(a.room.state, "connected");
    assert.deepEqual(a.log.at(-1), 'reconnected {"peerId":"p01","resumed":true}');
    // the backoff started over
    srv.last.drop(1006, "");
    await settle();
    assert.deepEqual(a.log.at(-1), 'reconnecting {"attempt":1,"delay":1500}');
    a.room.leave();
  });

  it("gives a rejoin that hangs requestTimeout, then tries again, without a normal close", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A", "lobby", { requestTimeout: 5000 });
    srv.answer = false;
    a.ws.drop(1006, "");
    await settle();
    await clock.advance(750);
    await settle();
    const hung = srv.last;
    assert.equal(hung.of("join").length, 1);
    await clock.advance(5000);
    await settle();
    assert.notEqual(hung.closedBy?.code, 1000, "a normal close would end the peer at once");
    assert.deepEqual(a.log.at(-1), 'reconnecting {"attempt":2,"delay":1250}');
    srv.answer = true;
    await clock.advance(1250);
    await settle();
    assert.equal(a.room.state, "connected");
    a.room.leave();
  });

  it("starts over with the new id when the server answers resumed: false", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    const b = await join(srv, clock, "B");
    const pcA = a.room.peer("p02") as unknown as FakePC;
    pcA.createDataChannel("chat");
    await settle();
    const pcB = only(b);

    a.ws.drop(1006, "");
    await settle();
    a.room.send("p02", "lost"); // for the old id: dropped
    srv.remove("lobby", "p01"); // the grace period ran out
    await settle();
    assert.ok(pcB.closed);
    await clock.advance(750);
    await settle();

    assert.equal(a.room.peerId, "p03");
    assert.deepEqual(a.room.peers(), ["p02"]);
    assert.ok(pcA.closed);
    assert.deepEqual(a.log.slice(1), [
      'disconnected {"code":1006,"reason":"","reconnect":true}',
      'reconnecting {"attempt":1,"delay":750}',
      "leave p02",
      "join p02",
      'reconnected {"peerId":"p03","resumed":false}',
    ]);
    assert.deepEqual(srv.last.of("message"), [], "what waited for the old id is dropped");
    assert.deepEqual(b.log, ["connection p01 pc", "leave p01", "join p03"]);

    // a fresh connection from the new id
    const pc2 = a.room.peer("p02") as unknown as FakePC;
    assert.notEqual(pc2, pcA);
    pc2.createDataChannel("again");
    await settle();
    assert.equal(b.pcs.length, 2);
    assert.equal(b.pcs[1]!.signalingState, "stable");
    assert.deepEqual(b.log.at(-1), "connection p03 pc");
    a.room.leave();
    b.room.leave();
  });

  for (const [code, reason] of [[3505, "flood"], [4500, "replaced"], [4501, "kicked"], [3503, "origin not allowed"]] as const) {
    it(`stops at close ${code} (${reason}): closed, peer connections closed, no rejoin`, async () => {
      const srv = new FakeSignalServer();
      const clock = new FakeClock();
      const a = await join(srv, clock, "A");
      const b = await join(srv, clock, "B");
      const pc = a.room.peer("p02") as unknown as FakePC;
      a.ws.drop(code, reason);
      await settle();
      assert.deepEqual(a.log.slice(1), [`disconnected ${JSON.stringify({ code, reason, reconnect: false })}`]);
      assert.equal(a.room.state, "closed");
      assert.ok(pc.closed);
      assert.throws(() => a.room.send("p02", 1), (e: unknown) => e instanceof ClosedError && e.code === code);
      await clock.advance(60_000);
      await settle();
      assert.equal(srv.sockets.length, 2);
      a.room.leave(); // a no-op now
      b.room.leave();
    });
  }

  it("stops when a rejoin is refused for good (room_full, then 3505)", async () => {
    const srv = new FakeSignalServer();
    srv.maxRoomSize = 1;
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    a.ws.drop(1006, "");
    srv.remove("lobby", "p01");
    const b = await join(srv, clock, "B");
    await clock.advance(750);
    await settle();
    assert.deepEqual(a.log.slice(2), ["error SignalError:room_full:room lobby is full", 'disconnected {"code":3505,"reason":"room full","reconnect":false}']);
    assert.equal(a.room.state, "closed");
    b.room.leave();
  });

  it("stops when the room is left during a backoff wait", async () => {
    const srv = new FakeSignalServer();
    const clock = new FakeClock();
    const a = await join(srv, clock, "A");
    a.ws.drop(1006, "");
    await settle();
    a.room.leave();
    await clock.advance(60_000);
    assert.equal(srv.sockets.length, 1);
    assert.equal(clock.pending, 0);
  });
});
