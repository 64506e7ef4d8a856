// Fails when the committed dist/ differs from a fresh build of src/:
// run `npm run build` and commit dist/ after changing the sources.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const fresh = mkdtempSync(join(tmpdir(), "switchyard-check-"));
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
    process.exit(1);
  }
  console.log(`dist/ is up to date (${want.join(", ")})`);
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
