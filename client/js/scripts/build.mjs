// Builds the SDK into a directory (default dist/):
//   switchyard.js      one ES module bundled from src/ by esbuild (es2022, minified)
//   switchyard.js.map  its source map, with the TypeScript sources inside
//   switchyard.d.ts    its declarations, emitted by tsc from src/switchyard.ts
// The output depends only on the sources and the pinned tool versions, so
// `npm run check` can compare a fresh build with the committed dist/.
//
//   node scripts/build.mjs [outdir]
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(root, process.argv[2] ?? "dist");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
mkdirSync(out, { recursive: true });

// The output is built as if for dist/ whatever the directory, so that the
// source map's paths (relative to the bundle) are the same everywhere.
const built = await esbuild.build({
  absWorkingDir: root,
  entryPoints: ["src/switchyard.ts"],
  outfile: join(root, "dist", "switchyard.js"),
  write: false,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  sourcesContent: true,
  charset: "utf8",
  legalComments: "none",
  banner: {
    js: `// Switchyard browser SDK ${pkg.version} (switchyard.v1). Generated from client/js/src by \`npm run build\`: do not edit.`,
  },
  logLevel: "warning",
});
for (const f of built.outputFiles) writeFileSync(join(out, basename(f.path)), f.contents);

// Declarations: tsc emits one file per module into a scratch directory;
// the public entry's must stand alone.
const require = createRequire(import.meta.url);
const tsc = require.resolve("typescript/bin/tsc");
const scratch = mkdtempSync(join(tmpdir(), "switchyard-dts-"));
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", scratch], {
    cwd: root,
    stdio: "inherit",
  });
  const dts = readFileSync(join(scratch, "switchyard.d.ts"), "utf8");
  if (/^\s*(import|export)\b[^;]*\bfrom\s+["']\.\.?\//m.test(dts) || /import\(["']\.\.?\//.test(dts)) {
    throw new Error("switchyard.d.ts refers to an internal module: keep public types in src/switchyard.ts");
  }
  copyFileSync(join(scratch, "switchyard.d.ts"), join(out, "switchyard.d.ts"));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
