// The check that ties src/codec.ts to protocols/proto/switchyard.proto
// (scripts/protocheck.ts, run by `npm run check`) must pass on the real
// schema and catch every kind of drift: each case edits a copy of the .proto
// (or of the codec's tables) and expects the check to name the difference.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { camel, checkProto, codecTables } from "../scripts/protocheck.js";
import type { CodecTables } from "../scripts/protocheck.js";

const protoPath = resolve(process.cwd(), "..", "..", "protocols", "proto", "switchyard.proto");
const original = readFileSync(protoPath, "utf8");

const protoc = (() => {
  try {
    execFileSync("protoc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** Runs the check on an edited copy of the .proto. */
function problemsOf(edit: (s: string) => string, tables: CodecTables = codecTables): string[] {
  const edited = edit(original);
  const dir = mkdtempSync(join(tmpdir(), "switchyard-protocheck-"));
  try {
    const p = join(dir, "switchyard.proto");
    writeFileSync(p, edited);
    const r = checkProto(p, tables);
    if ("skipped" in r) throw new Error(r.skipped);
    return r.problems;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function replace(from: string | RegExp, to: string): (s: string) => string {
  return (s) => {
    const out = s.replace(from, to);
    if (out === s) throw new Error(`the .proto has no ${String(from)}: update this test`);
    return out;
  };
}

describe("codec vs switchyard.proto", { skip: protoc ? false : "protoc is not installed" }, () => {
  it("agree", () => {
    const r = checkProto(protoPath);
    assert.ok(!("skipped" in r));
    assert.deepEqual(r.problems, []);
    assert.ok(r.messages >= 15 && r.fields >= 50, `${r.messages} messages, ${r.fields} fields`);
  });

  const cases: [string, (s: string) => string, RegExp][] = [
    ["a field added to the .proto", replace("bool recovered = 6;", "bool recovered = 6;\n  string extra = 7;"), /Subscribed\.extra = 7 \(string\) is missing in the codec/],
    ["a type changed", replace("uint64 since_offset = 5;", "uint32 since_offset = 5;"), /Subscribe\.since_offset = 5: uint32 in the \.proto, uint64 in the codec/],
    ["a field renumbered", replace("bool recovered = 6;", "bool recovered = 7;"), /Subscribed\.recovered = 7 .* missing[\s\S]*the codec has subscribed\.recovered = 6/],
    ["a field renamed", replace("uint64 seq = 2;", "uint64 sequence = 2;"), /the codec calls field 2 seq, want sequence/],
    ["a repeated field", replace(/message Unsubscribe \{\n  string channel = 1;/, "message Unsubscribe {\n  repeated string channel = 1;"), /Unsubscribe\.channel = 1: repeated/],
    ["an explicit-presence field", replace("uint32 max_datagram_size = 8;", "optional uint32 max_datagram_size = 8;"), /max_datagram_size = 8: proto3 optional/],
    ["a new frame kind", replace("Leave leave = 19;", "Leave leave = 19;\n    Ping ping2 = 99;"), /Frame\.kind ping2 = 99 \(Ping\) is missing in the codec/],
    ["a kind renumbered", replace("Pong pong = 13;", "Pong pong = 99;"), /Frame\.kind pong is field 99 in the \.proto, 13 in the codec/],
    ["a kind removed", replace("    Disconnect disconnect = 14;\n", ""), /the codec has kind disconnect \(field 14\)[\s\S]*message Disconnect is not a kind of Frame/],
    ["a message the codec does not know", (s) => s + "\nmessage Extra { string x = 1; }\n", /message Extra is not a kind of Frame/],
    ["an enum", (s) => s + "\nenum Color { RED = 0; }\n", /enum Color: the codec has no enums/],
    ["another package", replace("package switchyard.v1;", "package switchyard.v2;"), /package switchyard\.v2/],
    // messages that are field types (ClientInfo), repeated fields
    ["a field added to a field type", replace("bytes info = 3;\n}", "bytes info = 3;\n  string extra = 4;\n}"), /ClientInfo\.extra = 4 \(string\) is missing in the codec \(messages\.ClientInfo\)/],
    ["a field type's field retyped", replace("bytes info = 3;\n}", "string info = 3;\n}"), /ClientInfo\.info = 3: string in the \.proto, bytes in the codec/],
    ["a repeated field made singular", replace("repeated ClientInfo members = 2;", "ClientInfo members = 2;"), /PresenceReply\.members = 2: singular in the \.proto, repeated in the codec/],
    ["a scalar made repeated", replace("uint32 clients = 3;", "repeated uint32 clients = 3;"), /PresenceReply\.clients = 3: repeated in the \.proto, singular in the codec/],
    ["a message field retyped", replace(/message Join \{\n  string channel = 1;\n  ClientInfo member = 2;/, "message Join {\n  string channel = 1;\n  Ping member = 2;"), /Join\.member = 2: Ping in the \.proto, ClientInfo in the codec/],
    ["a scalar made a message", replace("uint32 users = 4;", "Pong users = 4;"), /PresenceReply\.users = 4: Pong in the \.proto, uint32 in the codec/],
    ["a field type renamed", (s) => s.replaceAll("ClientInfo", "Member"), /message Member, a field type in the \.proto, is missing in the codec \(messages\.Member\)[\s\S]*the codec has message ClientInfo, which no field/],
  ];
  for (const [name, edit, want] of cases) {
    it(`catch ${name}`, () => {
      const problems = problemsOf(edit);
      assert.match(problems.join("\n"), want);
    });
  }

  it("catch a kind or a field missing in the codec's tables", () => {
    const { datagram: _d, ...kindFields } = codecTables.kindFields;
    const problems = problemsOf((s) => s, { ...codecTables, kindFields: kindFields as CodecTables["kindFields"] });
    assert.match(problems.join("\n"), /Frame\.kind datagram = 15 \(Datagram\) is missing in the codec/);
    const schemas = { ...codecTables.schemas, connect: codecTables.schemas.connect.slice(0, 3) };
    assert.match(problemsOf((s) => s, { ...codecTables, schemas }).join("\n"), /Connect\.streams = 4 \(bool\) is missing in the codec/);
  });

  it("catch a repeated scalar, which the codec does not read (packed)", () => {
    const schemas = { ...codecTables.schemas, presence: [[1, "channel", "string", 1], [2, "countsOnly", "bool"]] as const };
    const problems = problemsOf(replace(/message PresenceRequest \{\n  string channel = 1;/, "message PresenceRequest {\n  repeated string channel = 1;"), { ...codecTables, schemas });
    assert.match(problems.join("\n"), /PresenceRequest\.channel = 1: a repeated scalar \(packed\), the codec repeats messages only/);
  });

  it("catch a message missing in the codec's tables", () => {
    const problems = problemsOf((s) => s, { ...codecTables, messages: {} as CodecTables["messages"] });
    assert.match(problems.join("\n"), /message ClientInfo, a field type in the \.proto, is missing in the codec \(messages\.ClientInfo\)/);
  });

  it("maps names to camelCase", () => {
    assert.equal(camel("publish_ack"), "publishAck");
    assert.equal(camel("reconnect_after_ms"), "reconnectAfterMs");
    assert.equal(camel("id"), "id");
  });
});
