// npm test: type-checks src/ and test/, compiles each test/*.test.ts with
// esbuild into .build/test/, and runs them with node's test runner.
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], {
  cwd: root,
  stdio: "inherit",
});

const outdir = join(root, ".build", "test");
rmSync(outdir, { recursive: true, force: true });
const tests = readdirSync(join(root, "test")).filter((f) => f.endsWith(".test.ts")).sort();
await esbuild.build({
  absWorkingDir: root,
  entryPoints: tests.map((f) => join("test", f)),
  outdir,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: "inline",
  logLevel: "warning",
});

const files = tests.map((f) => join(outdir, f.replace(/\.ts$/, ".mjs")));
const r = spawnSync(process.execPath, ["--enable-source-maps", "--test", "--test-reporter=spec", ...files], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
