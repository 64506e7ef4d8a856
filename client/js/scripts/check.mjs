// npm run check:
//  1. the committed dist/ is what a fresh build of src/ produces (run
//     `npm run build` and commit dist/ after changing the sources);
//  2. the codec's tables (src/codec.ts) agree with protoc's descriptor of
//     protocols/proto/switchyard.proto (scripts/protocheck.ts); skipped,
//     saying so, only when protoc is not installed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const proto = resolve(root, "..", "..", "protocols", "proto", "switchyard.proto");
const dist = join(root, "dist");
const fresh = mkdtempSync(join(tmpdir(), "switchyard-check-"));
let failed = false;
try {
  execFileSync(process.execPath, [join(root, "scripts", "build.mjs"), fresh], { cwd: root, stdio: "inherit" });
  const list = (d) => {
    try {
      return readdirSync(d).sort();
    } catch {
      return [];
    }
  };
  const want = list(fresh);
  const have = list(dist);
  const problems = [];
  for (const f of want) {
    if (!have.includes(f)) problems.push(`dist/${f} is missing`);
    else if (!readFileSync(join(dist, f)).equals(readFileSync(join(fresh, f)))) problems.push(`dist/${f} is stale`);
  }
  for (const f of have) if (!want.includes(f)) problems.push(`dist/${f} is not produced by the build`);
  if (problems.length > 0) {
    console.error(problems.join("\n") + "\nRun `npm run build` in client/js and commit dist/.");
    failed = true;
  } else {
    const gz = gzipSync(readFileSync(join(dist, "switchyard.js")), { level: 9 }).length;
    console.log(`dist/ is up to date (${want.join(", ")}); switchyard.js is ${gz} bytes gzipped ` +
      "(zlib level 9; TestBundleGzipBudget holds Go's gzip to 17 KB)");
  }

  // The proto check is TypeScript: bundle it (with the codec) and run it.
  const checker = join(fresh, "protocheck.mjs");
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ["scripts/protocheck.ts"],
    outfile: checker,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "warning",
  });
  const { checkProto } = await import(pathToFileURL(checker).href);
  const r = checkProto(proto);
  if ("skipped" in r) {
    console.log(`codec vs switchyard.proto: SKIPPED, ${r.skipped}`);
  } else if (r.problems.length > 0) {
    console.error(`src/codec.ts does not match protocols/proto/switchyard.proto:\n  ${r.problems.join("\n  ")}\n` +
      "Update the tables in src/codec.ts (and the types above them) to the .proto.");
    failed = true;
  } else {
    console.log(`codec matches switchyard.proto (${r.messages} messages, ${r.fields} fields, per protoc's descriptor)`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
if (failed) process.exit(1);
