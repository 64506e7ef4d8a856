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
    ["a new frame kind", replace("Datagram datagram = 15;", "Datagram datagram = 15;\n    Ping ping2 = 16;"), /Frame\.kind ping2 = 16 \(Ping\) is missing in the codec/],
    ["a kind renumbered", replace("Pong pong = 13;", "Pong pong = 16;"), /Frame\.kind pong is field 16 in the \.proto, 13 in the codec/],
    ["a kind removed", replace("    Disconnect disconnect = 14;\n", ""), /the codec has kind disconnect \(field 14\)[\s\S]*message Disconnect is not a kind of Frame/],
    ["a message the codec does not know", (s) => s + "\nmessage Extra { string x = 1; }\n", /message Extra is not a kind of Frame/],
    ["an enum", (s) => s + "\nenum Color { RED = 0; }\n", /enum Color: the codec has no enums/],
    ["another package", replace("package switchyard.v1;", "package switchyard.v2;"), /package switchyard\.v2/],
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

  it("maps names to camelCase", () => {
    assert.equal(camel("publish_ack"), "publishAck");
    assert.equal(camel("reconnect_after_ms"), "reconnectAfterMs");
    assert.equal(camel("id"), "id");
  });
});
