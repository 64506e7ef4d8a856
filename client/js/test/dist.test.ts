// The built bundle (dist/switchyard.js, what nodes serve) exposes exactly
// the public API. Run `npm run build` first; `npm run check` verifies that
// dist/ matches the sources.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pathToFileURL } from "node:url";

describe("dist/switchyard.js", () => {
  it("exports the public API", async () => {
    const url = pathToFileURL(`${process.cwd()}/dist/switchyard.js`).href;
    const mod = (await import(url)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(mod).sort(), ["ClosedError", "RequestError", "SignalError", "TimeoutError", "connect", "decodeText", "joinRoom"]);
    const { ClosedError, RequestError, SignalError, connect, decodeText, joinRoom } = mod as {
      ClosedError: new (code: number, reason: string) => Error & { code: number; reason: string };
      RequestError: new (code: number, message: string) => Error & { code: number };
      connect: (url: string, o?: object) => Promise<unknown>;
      decodeText: (m: { data: Uint8Array }) => string;
      SignalError: new (code: string, message: string, to?: string) => Error & { code: string; to?: string };
      joinRoom: (url: string, room: string, o?: object) => Promise<unknown>;
    };
    const ce = new ClosedError(3503, "origin not allowed");
    assert.ok(ce instanceof Error);
    assert.equal(ce.name, "ClosedError");
    assert.deepEqual([ce.code, ce.reason], [3503, "origin not allowed"]);
    const re = new RequestError(102, "invalid channel");
    assert.deepEqual([re.name, re.code, re.message], ["RequestError", 102, "invalid channel"]);
    assert.equal(decodeText({ data: new TextEncoder().encode("héllo") }), "héllo");
    await assert.rejects(connect("ftp://x"), TypeError);
    const se = new SignalError("unknown_peer", "no such peer", "Qm8d2LxR0cVt5nYw");
    assert.deepEqual([se.name, se.code, se.message, se.to], ["SignalError", "unknown_peer", "no such peer", "Qm8d2LxR0cVt5nYw"]);
    await assert.rejects(joinRoom("ftp://x", "lobby"), TypeError);
  });
});
