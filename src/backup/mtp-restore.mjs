// mtp's restore helper, run by `node` in a throwaway container of the tenant's image that
// mounts the tenant's (stopped) state directory: `node mtp-restore.mjs <op> <state dir>`.
//   aside  move every entry of the state directory into <dir>/.mtp-restore-aside/
//   back   remove everything else, move the set-aside entries back
//   drop   remove the set-aside entries
// Renames stay on one filesystem: setting aside costs no copy.
import fs from "node:fs";
import path from "node:path";

const [op, dir] = process.argv.slice(2);
const ASIDE = ".mtp-restore-aside";
const aside = path.join(dir, ASIDE);
const others = () => fs.readdirSync(dir).filter((n) => n !== ASIDE);

if (op === "aside") {
  if (fs.existsSync(aside) && fs.readdirSync(aside).length > 0) {
    console.error(`an earlier restore's set-aside data is still in ${aside}: move it away first`);
    process.exit(3);
  }
  fs.mkdirSync(aside, { recursive: true, mode: 0o700 });
  for (const n of others()) fs.renameSync(path.join(dir, n), path.join(aside, n));
} else if (op === "back") {
  if (!fs.existsSync(aside)) {
    console.error(`no set-aside data in ${aside}`);
    process.exit(3);
  }
  for (const n of others()) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
  for (const n of fs.readdirSync(aside)) fs.renameSync(path.join(aside, n), path.join(dir, n));
  fs.rmdirSync(aside);
} else if (op === "drop") {
  fs.rmSync(aside, { recursive: true, force: true });
} else {
  console.error(`unknown operation ${op}`);
  process.exit(2);
}
console.log(JSON.stringify({ ok: true, op }));
