// mtp's restore helper, run by `node` in a throwaway container of the tenant's image that
// mounts the tenant's (stopped) state directory: `node mtp-restore.mjs <op> <state dir>`.
//   aside  move every entry of the state directory into <dir>/.mtp-restore-aside/
//   back   remove everything else, move the set-aside entries back
//   drop   remove the set-aside entries
//   own    give <dir> and everything in it to <uid>:<gid> (`own <dir> <uid> <gid> [<dir>...]`,
//          every further argument a directory too), links themselves, never followed: run as
//          root with CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER only, when
//          a tenant's uid changes
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
} else if (op === "own") {
  const [uid, gid, ...more] = process.argv.slice(4).map((v, i) => (i < 2 ? Number(v) : v));
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0 || gid <= 0) {
    console.error("own needs a uid and a gid above 0");
    process.exit(2);
  }
  let n = 0;
  const walk = (p) => {
    fs.lchownSync(p, uid, gid);
    n++;
    if (!fs.lstatSync(p).isDirectory()) return;
    for (const e of fs.readdirSync(p, { withFileTypes: true })) walk(path.join(p, e.name));
  };
  for (const d of [dir, ...more]) walk(d);
  console.log(JSON.stringify({ ok: true, op, entries: n }));
  process.exit(0);
} else if (op === "drop") {
  fs.rmSync(aside, { recursive: true, force: true });
} else {
  console.error(`unknown operation ${op}`);
  process.exit(2);
}
console.log(JSON.stringify({ ok: true, op }));
