// The browser codec (src/codec.ts) is hand-written, table-driven protobuf
// for one schema: protocols/proto/switchyard.proto. This check keeps the two
// tied: it reads protoc's descriptor of the .proto (a FileDescriptorSet,
// itself protobuf, decoded by the small reader below) and compares every
// message, field number, name, type and label with the codec's tables,
// both ways. Any difference is a problem: a field added to the .proto and
// not to the codec, a number or type changed on one side only, a message
// the codec does not know. `npm run check` runs it (scripts/check.mjs); it
// is skipped, saying so, only when protoc is not installed.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { kindFields, messages, schemas } from "../src/codec.js";
import type { Field, Kind, MessageName, ScalarType } from "../src/codec.js";

/** The tables the check compares (the codec's, or altered ones in tests). */
export interface CodecTables {
  schemas: { readonly [K in Kind]: readonly Field[] };
  kindFields: { readonly [K in Kind]: number };
  messages: { readonly [M in MessageName]: readonly Field[] };
}

export const codecTables: CodecTables = { schemas, kindFields, messages };

// ------------------------------------------------- a tiny protobuf reader

type Value = number | Uint8Array;

/** Splits one message into its fields: number → values (varints as numbers, length-delimited as bytes). */
function fieldsOf(b: Uint8Array): Map<number, Value[]> {
  const out = new Map<number, Value[]>();
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= b.length) throw new Error("descriptor: truncated varint");
      const c = b[pos++]!;
      v += (c & 0x7f) * scale;
      scale *= 0x80;
      if (c < 0x80) return v;
    }
    throw new Error("descriptor: varint too long");
  };
  while (pos < b.length) {
    const tag = varint();
    const num = Math.floor(tag / 8);
    let v: Value;
    switch (tag & 7) {
      case 0: v = varint(); break;
      case 1: pos += 8; continue;
      case 2: {
        const n = varint();
        if (pos + n > b.length) throw new Error("descriptor: field runs past the end");
        v = b.subarray(pos, pos + n);
        pos += n;
        break;
      }
      case 5: pos += 4; continue;
      default: throw new Error(`descriptor: wire type ${tag & 7}`);
    }
    const list = out.get(num) ?? [];
    list.push(v);
    out.set(num, list);
  }
  return out;
}

const utf8 = new TextDecoder();
const str = (f: Map<number, Value[]>, n: number): string => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? utf8.decode(v) : "";
};
const num = (f: Map<number, Value[]>, n: number): number | undefined => {
  const v = f.get(n)?.[0];
  return typeof v === "number" ? v : undefined;
};
const msgs = (f: Map<number, Value[]>, n: number): Map<number, Value[]>[] =>
  (f.get(n) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array).map(fieldsOf);

/** A field of the .proto, from its FieldDescriptorProto. */
export interface ProtoField {
  name: string;
  number: number;
  label: number; // 1 optional (proto3 singular), 2 required, 3 repeated
  type: number; // FieldDescriptorProto.Type
  typeName: string; // ".switchyard.v1.Connect" for messages and enums
  oneof: string | undefined;
  proto3Optional: boolean;
}

export interface ProtoMessage {
  name: string;
  fields: ProtoField[];
  nested: string[]; // nested messages and enums: the codec has none
}

export interface ProtoFile {
  name: string;
  package: string;
  syntax: string;
  messages: ProtoMessage[];
  enums: string[];
}

/** Decodes a FileDescriptorSet (protoc --descriptor_set_out). */
export function readDescriptorSet(b: Uint8Array): ProtoFile[] {
  return msgs(fieldsOf(b), 1).map((file) => ({
    name: str(file, 1),
    package: str(file, 2),
    syntax: str(file, 12) || "proto2",
    enums: msgs(file, 5).map((e) => str(e, 1)),
    messages: msgs(file, 4).map((m) => {
      const oneofs = msgs(m, 8).map((o) => str(o, 1));
      return {
        name: str(m, 1),
        nested: [...msgs(m, 3).map((x) => str(x, 1)), ...msgs(m, 4).map((x) => str(x, 1))],
        fields: msgs(m, 2).map((f) => {
          const oneofIndex = num(f, 9);
          return {
            name: str(f, 1),
            number: num(f, 3) ?? 0,
            label: num(f, 4) ?? 0,
            type: num(f, 5) ?? 0,
            typeName: str(f, 6),
            oneof: oneofIndex === undefined ? undefined : oneofs[oneofIndex],
            proto3Optional: num(f, 17) === 1,
          };
        }),
      };
    }),
  }));
}

// ------------------------------------------------------------- comparing

/** FieldDescriptorProto.Type of each codec type. */
const TYPE: { readonly [T in ScalarType]: number } = { uint64: 4, bool: 8, string: 9, bytes: 12, uint32: 13 };
const TYPE_MESSAGE = 11;
const LABEL_OPTIONAL = 1;
const LABEL_REPEATED = 3;
const TYPE_NAMES: Record<number, string> = {
  1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool", 9: "string",
  10: "group", 11: "message", 12: "bytes", 13: "uint32", 14: "enum", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64",
};
const LABEL_NAMES: Record<number, string> = { 1: "singular", 2: "required", 3: "repeated" };

/** publish_ack → publishAck: the codec's names are the .proto's in camelCase. */
export function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const typeName = (t: number) => TYPE_NAMES[t] ?? `type ${t}`;
const short = (name: string) => name.replace(/^\.switchyard\.v1\./, "");
/** A field's type as the codec names it: a scalar's name, or a message's. */
const protoType = (f: ProtoField) => (f.type === TYPE_MESSAGE ? short(f.typeName) : typeName(f.type));

/**
 * Compares the schema of the file (package switchyard.v1) with the codec's
 * tables; returns one line per difference, none when they agree.
 */
export function compare(file: ProtoFile, tables: CodecTables = codecTables): string[] {
  const problems: string[] = [];
  const where = file.name;
  if (file.package !== "switchyard.v1") problems.push(`${where}: package ${file.package}, the codec speaks switchyard.v1`);
  if (file.syntax !== "proto3") problems.push(`${where}: syntax ${file.syntax}, the codec follows proto3 rules`);
  for (const e of file.enums) problems.push(`${where}: enum ${e}: the codec has no enums`);
  const byName = new Map(file.messages.map((m) => [m.name, m]));
  const frame = byName.get("Frame");
  if (frame === undefined) return [...problems, `${where}: no message Frame`];

  const seen = new Set<string>(["Frame"]);
  const types: string[] = []; // messages that fields have as their type
  const codecKinds = new Set(Object.keys(tables.kindFields));
  for (const f of frame.fields) {
    if (f.number === 1) {
      if (f.name !== "id" || f.type !== TYPE.uint32 || f.label !== LABEL_OPTIONAL || f.oneof !== undefined) {
        problems.push(`Frame field 1 is ${LABEL_NAMES[f.label]} ${typeName(f.type)} ${f.name}, the codec reads uint32 id`);
      }
      continue;
    }
    const kind = camel(f.name);
    if (f.type !== TYPE_MESSAGE || f.oneof !== "kind" || f.label !== LABEL_OPTIONAL) {
      problems.push(`Frame field ${f.number} (${f.name}) is not a message in oneof kind: the codec knows only id and kinds`);
      continue;
    }
    const msgName = short(f.typeName);
    const codecNum = (tables.kindFields as Record<string, number>)[kind];
    if (codecNum === undefined) {
      problems.push(`Frame.kind ${f.name} = ${f.number} (${msgName}) is missing in the codec (kindFields.${kind})`);
      continue;
    }
    codecKinds.delete(kind);
    if (codecNum !== f.number) problems.push(`Frame.kind ${f.name} is field ${f.number} in the .proto, ${codecNum} in the codec`);
    const m = byName.get(msgName);
    if (m === undefined) {
      problems.push(`Frame.kind ${f.name}: message ${f.typeName} is not in ${where}`);
      continue;
    }
    seen.add(msgName);
    problems.push(...compareMessage(m, kind, (tables.schemas as Record<string, readonly Field[]>)[kind] ?? [], types));
  }
  for (const kind of codecKinds) problems.push(`the codec has kind ${kind} (field ${(tables.kindFields as Record<string, number>)[kind]}), the .proto's Frame has not`);
  // The messages that are field types (ClientInfo), and those they use in turn.
  const codecMessages = new Set(Object.keys(tables.messages));
  for (let i = 0; i < types.length; i++) {
    const name = types[i]!;
    if (types.indexOf(name) < i) continue;
    seen.add(name);
    const m = byName.get(name);
    const fields = (tables.messages as Record<string, readonly Field[]>)[name];
    if (m === undefined) {
      problems.push(`message ${name}, a field type, is not in ${where}`);
    } else if (fields === undefined) {
      problems.push(`message ${name}, a field type in the .proto, is missing in the codec (messages.${name})`);
    } else {
      codecMessages.delete(name);
      problems.push(...compareMessage(m, name, fields, types, "messages"));
    }
  }
  for (const name of codecMessages) problems.push(`the codec has message ${name}, which no field of the .proto's frames has as its type`);
  for (const m of file.messages) {
    if (!seen.has(m.name)) problems.push(`message ${m.name} is not a kind of Frame, nor a field type of one: the codec does not know it`);
  }
  return problems;
}

/** Compares one message with its codec table; adds the messages its fields have as types to types. */
function compareMessage(m: ProtoMessage, kind: string, fields: readonly Field[], types: string[], table = "schemas"): string[] {
  const problems: string[] = [];
  for (const n of m.nested) problems.push(`${m.name}.${n}: the codec has no nested types`);
  const codec = new Map(fields.map((f) => [f[0], f]));
  for (let i = 1; i < fields.length; i++) {
    if (fields[i]![0] <= fields[i - 1]![0]) problems.push(`codec table ${kind} is not in field-number order (protobuf-go writes in that order)`);
  }
  for (const f of m.fields) {
    const c = codec.get(f.number);
    const desc = `${m.name}.${f.name} = ${f.number}`;
    if (c === undefined) {
      problems.push(`${desc} (${typeName(f.type)}) is missing in the codec (${table}.${kind})`);
      continue;
    }
    codec.delete(f.number);
    const [, name, type, repeated] = c;
    if (f.type === TYPE_MESSAGE) types.push(short(f.typeName));
    if (name !== camel(f.name)) problems.push(`${desc}: the codec calls field ${f.number} ${name}, want ${camel(f.name)}`);
    if (protoType(f) !== type) problems.push(`${desc}: ${protoType(f)} in the .proto, ${type} in the codec`);
    const label = repeated ? LABEL_REPEATED : LABEL_OPTIONAL;
    if (f.label !== label) {
      problems.push(`${desc}: ${LABEL_NAMES[f.label] ?? f.label} in the .proto, ${LABEL_NAMES[label]} in the codec`);
    } else if (repeated && f.type !== TYPE_MESSAGE) {
      problems.push(`${desc}: a repeated scalar (packed), the codec repeats messages only`);
    }
    if (f.proto3Optional) problems.push(`${desc}: proto3 optional (explicit presence), the codec has implicit presence only`);
    if (f.oneof !== undefined) problems.push(`${desc}: in oneof ${f.oneof}, the codec has no oneofs in messages`);
  }
  for (const [n, name] of codec.values()) problems.push(`the codec has ${kind}.${name} = ${n}, ${m.name} in the .proto has no field ${n}`);
  return problems;
}

// --------------------------------------------------------------- running

export type Outcome = { skipped: string } | { problems: string[]; messages: number; fields: number };

/** Whether protoc runs here. */
function haveProtoc(): boolean {
  try {
    execFileSync("protoc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Runs protoc on a .proto file and returns its FileDescriptorSet. */
export function describeProto(protoPath: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-proto-"));
  try {
    const out = join(dir, "descriptor.pb");
    execFileSync("protoc", [`--proto_path=${dirname(protoPath)}`, `--descriptor_set_out=${out}`, basename(protoPath)], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Checks the .proto at protoPath against the codec's tables. */
export function checkProto(protoPath: string, tables: CodecTables = codecTables): Outcome {
  if (!haveProtoc()) {
    return { skipped: "protoc is not installed (Debian: apt-get install protobuf-compiler)" };
  }
  const files = readDescriptorSet(describeProto(protoPath));
  const file = files.find((f) => f.name === basename(protoPath));
  if (file === undefined) return { problems: [`protoc described no file ${basename(protoPath)}`], messages: 0, fields: 0 };
  return {
    problems: compare(file, tables),
    messages: file.messages.length,
    fields: file.messages.reduce((n, m) => n + m.fields.length, 0),
  };
}
