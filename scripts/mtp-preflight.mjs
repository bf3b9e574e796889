// mtp's config preflight, run inside a throwaway container of a tenant's gateway image:
//
//   node /tmp/mtp-preflight/mtp-preflight.mjs /tmp/mtp-preflight/0.json /tmp/mtp-preflight/1.json ...
//
// with the image's working directory (the openclaw package dir), no network, HOME and
// OPENCLAW_STATE_DIR pointing at scratch directories. For each file it prints one JSON line
//
//   {"path":"...","valid":true|false,"issues":[{"path","message"}],"warnings":[...],
//    "startupPluginInstalls":[{"pluginId":"codex","installSpec":"@openclaw/codex@2026.9.6"}]}
//
// and exits 0. `issues` and `warnings` are exactly what `openclaw config validate --json`
// reports (the same code path: `createConfigIO(...).readConfigFileSnapshotWithPluginMetadata`
// then `finishConfigValidationForCli`, as `runConfigValidate` in dist/config-cli-*.mjs does),
// but for all files in one process (~3 s for 20 files instead of ~4 s each).
// `startupPluginInstalls` lists the plugins the gateway would try to install from npm when it
// starts (`detectConfiguredPluginInstallHealthIssues`, the check behind the start-time plugin
// convergence): the image has no npm and the container no network, so a listed plugin means
// the gateway will not start (exit 78, gateway.maintenance_required). `config validate` does
// not see this.
//
// The dist chunk names are content-hashed and change with every release, so the modules are
// found by their name prefix and the exports by the function's own name. If they cannot be
// found, the script falls back to running `node dist/index.js config validate --json` once
// per file (slower, and the plugin-install check is then approximated: an `openai/*` model
// needs the `codex` plugin under dist/extensions/codex). MTP_PREFLIGHT_USE_CLI=1 forces that
// fallback (to test it).

import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { pathToFileURL } from "node:url";

// Our JSON lines go to the real stdout; anything the gateway's modules print goes to stderr.
const writeOut = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => process.stderr.write(chunk, ...rest);
for (const k of ["log", "info", "debug"]) console[k] = (...a) => console.error(...a);

function emit(obj) {
  writeOut(`${JSON.stringify(obj)}\n`);
}

function isPackageDir(dir) {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    return pkg.name === "openclaw" && fs.existsSync(path.join(dir, "dist", "index.js"));
  } catch {
    return false;
  }
}

/** The openclaw package dir: the working directory, or an `openclaw` package it holds. */
function resolvePackageDir(start) {
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    for (const c of [dir, path.join(dir, "node_modules", "openclaw")]) {
      if (isPackageDir(c)) return c;
    }
    if (path.dirname(dir) === dir) return null;
  }
}

function packageVersion(pkgDir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

/** dist/<prefix><hash>.mjs files, the ones another chunk names first. */
function chunks(dist, prefix, preferredBy) {
  const re = new RegExp(`^${prefix}[A-Za-z0-9_-]+\\.mjs$`);
  const names = fs.readdirSync(dist).filter((n) => re.test(n) && !n.slice(prefix.length).includes("-", 9));
  const preferred = new Set();
  for (const file of preferredBy) {
    const text = fs.readFileSync(path.join(dist, file), "utf8");
    for (const m of text.matchAll(new RegExp(`${prefix}[A-Za-z0-9_-]+\\.mjs`, "g"))) preferred.add(m[0]);
  }
  return names.toSorted((a, b) => Number(preferred.has(b)) - Number(preferred.has(a)));
}

/** The exported function called `name` from the first chunk with that prefix that has one. */
async function findExport(dist, prefix, name, preferredBy = []) {
  for (const file of chunks(dist, prefix, preferredBy)) {
    let mod;
    try {
      mod = await import(pathToFileURL(path.join(dist, file)).href);
    } catch {
      continue;
    }
    const fn = mod[name] ?? Object.values(mod).find((v) => typeof v === "function" && v.name === name);
    if (typeof fn === "function") return fn;
  }
  return null;
}

/** Plugin ids whose start-time install is pinned to the gateway's own version (codex). */
async function versionBoundPluginIds(dist) {
  const ids = new Set(["codex"]);
  for (const file of chunks(dist, "configured-runtime-plugin-installs-", [])) {
    try {
      const mod = await import(pathToFileURL(path.join(dist, file)).href);
      for (const v of Object.values(mod)) {
        if (!Array.isArray(v) || !v.every((c) => c && typeof c.pluginId === "string")) continue;
        ids.clear();
        for (const c of v) if (c.versionBoundToOpenClaw) ids.add(c.pluginId);
      }
    } catch {}
  }
  return ids;
}

async function loadModules(pkgDir) {
  const dist = path.join(pkgDir, "dist");
  const config = await import(pathToFileURL(path.join(dist, "config", "config.js")).href);
  const cli = fs.readdirSync(dist).filter((n) => /^config-cli-[A-Za-z0-9_]+\.mjs$/.test(n));
  const finish = await findExport(dist, "config-cli-validation-", "finishConfigValidationForCli", cli);
  const normalize = await findExport(dist, "issue-format-", "normalizeConfigIssues");
  if (typeof config.createConfigIO !== "function" || !finish || !normalize) return null;
  const detect = await findExport(
    dist,
    "missing-configured-plugin-install-",
    "detectConfiguredPluginInstallHealthIssues",
  );
  return {
    createConfigIO: config.createConfigIO,
    finish,
    normalize,
    detect,
    versionBound: await versionBoundPluginIds(dist),
  };
}

function installSpecFor(issue, versionBound, version) {
  const spec = issue.installSpec;
  if (!spec) return undefined;
  // `@scope/name` without a version: the gateway installs `<spec>@<its version>` for the
  // version-bound runtime plugins (resolveCoreBoundNpmSpec) and the bare spec otherwise.
  const bare = !/^(@[^/]+\/)?[^@]+@/.test(spec);
  return bare && versionBound.has(issue.pluginId) && version ? `${spec}@${version}` : spec;
}

async function checkInProcess(m, file, version) {
  const configPath = path.resolve(file);
  const io = m.createConfigIO({ configPath, observe: false });
  const snapshot = await m.finish(
    await io.readConfigFileSnapshotWithPluginMetadata({ prepareValidation: "strict" }),
  );
  if (!snapshot.exists) {
    return { path: configPath, valid: false, issues: [{ path: "<root>", message: "file not found" }], warnings: [], startupPluginInstalls: [] };
  }
  const warnings = m.normalize(snapshot.warnings ?? []);
  if (!snapshot.valid) {
    return { path: configPath, valid: false, issues: m.normalize(snapshot.issues ?? []), warnings, startupPluginInstalls: [] };
  }
  const installs = [];
  if (m.detect) {
    const found = await m.detect({ cfg: snapshot.runtimeConfig ?? snapshot.config, env: process.env });
    for (const issue of found ?? []) {
      const installSpec = installSpecFor(issue, m.versionBound, version);
      installs.push({ pluginId: issue.pluginId, ...(installSpec ? { installSpec } : {}) });
    }
  }
  return { path: configPath, valid: true, issues: [], warnings, startupPluginInstalls: installs };
}

/** Model refs the config names (primary, fallbacks, per-model settings, per agent). */
function modelRefs(cfg) {
  const refs = [];
  const add = (m) => {
    if (typeof m === "string") refs.push(m);
    else if (m && typeof m === "object") {
      if (typeof m.primary === "string") refs.push(m.primary);
      if (Array.isArray(m.fallbacks)) refs.push(...m.fallbacks.filter((f) => typeof f === "string"));
    }
  };
  add(cfg?.agents?.defaults?.model);
  refs.push(...Object.keys(cfg?.agents?.defaults?.models ?? {}));
  for (const a of Array.isArray(cfg?.agents?.list) ? cfg.agents.list : []) add(a?.model);
  return refs;
}

function checkWithCli(pkgDir, file, version) {
  const configPath = path.resolve(file);
  const r = spawnSync(process.execPath, [path.join(pkgDir, "dist", "index.js"), "config", "validate", "--json"], {
    cwd: pkgDir,
    env: { ...process.env, OPENCLAW_CONFIG_PATH: configPath },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  let out;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    const detail = `${r.stderr ?? ""}${r.error ? String(r.error) : ""}`.trim().split("\n").slice(-3).join(" ");
    return { path: configPath, valid: false, issues: [{ path: "<root>", message: `config validate failed: ${detail || `exit ${r.status}`}` }], warnings: [], startupPluginInstalls: [] };
  }
  if (out.valid !== true) {
    const issues = Array.isArray(out.issues) ? out.issues : [{ path: "<root>", message: out.error?.message ?? "invalid" }];
    return { path: configPath, valid: false, issues, warnings: out.warnings ?? [], startupPluginInstalls: [] };
  }
  const installs = [];
  let cfg = null;
  try {
    cfg = JSON.parse(fs.readFileSync(configPath, "utf8"));
  } catch {}
  const codex = path.join(pkgDir, "dist", "extensions", "codex", "openclaw.plugin.json");
  if (cfg && modelRefs(cfg).some((m) => m.startsWith("openai/")) && !fs.existsSync(codex)) {
    installs.push({ pluginId: "codex", installSpec: `@openclaw/codex${version ? `@${version}` : ""}` });
  }
  return { path: configPath, valid: true, issues: [], warnings: out.warnings ?? [], startupPluginInstalls: installs };
}

const files = process.argv.slice(2);
const pkgDir = resolvePackageDir(process.cwd());
if (!pkgDir) {
  for (const f of files) {
    emit({ path: path.resolve(f), valid: false, issues: [{ path: "<root>", message: `no openclaw package under ${process.cwd()}` }], warnings: [], startupPluginInstalls: [] });
  }
} else {
  const version = packageVersion(pkgDir);
  let modules = null;
  try {
    if (process.env.MTP_PREFLIGHT_USE_CLI !== "1") modules = await loadModules(pkgDir);
  } catch (err) {
    process.stderr.write(`mtp-preflight: falling back to the CLI: ${err?.message ?? err}\n`);
  }
  if (!modules) {
    const why = process.env.MTP_PREFLIGHT_USE_CLI === "1" ? "MTP_PREFLIGHT_USE_CLI=1" : "validation modules not found";
    process.stderr.write(`mtp-preflight: ${why}; using \`config validate\` per file\n`);
  }
  for (const f of files) {
    let out;
    try {
      out = modules ? await checkInProcess(modules, f, version) : checkWithCli(pkgDir, f, version);
    } catch (err) {
      out = { path: path.resolve(f), valid: false, issues: [{ path: "<root>", message: String(err?.message ?? err) }], warnings: [], startupPluginInstalls: [] };
    }
    emit(out);
  }
}
writeOut("", () => process.exit(0));
