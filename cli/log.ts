/**
 * `shoal log`: the log tools, in the manner of swarm-rafttool, on a stopped manager's data dir
 * (offline; `raft.db` or a single manager's `log.db`, found by `events/stored_log.ts`) or, given
 * `-H/--host`, on a running manager through its API (`/shoal/v1/log/...`):
 *
 * - `dump-wal`: each entry and its events (with Raft's conf changes and empty entries);
 * - `dump-snapshot`: the stored snapshots: index, term, size, and the state summarised or as JSON;
 * - `dump-object [--at I] KIND [ID|NAME]`: objects as of an index, never a secret's data;
 * - `verify`: checksums, decryption, index continuity, and that every snapshot equals the fold
 *   of the log up to its index; exits 1 naming the first bad index and what is wrong with it;
 * - `decrypt --out DIR`: an unencrypted copy of the log and its snapshots, for offline study.
 *
 * A data dir encrypted at rest (`keys.json`, `node/keys.ts`) is read with the key stored beside
 * it, or, when the swarm is autolocked, with `--unlock-key` (or `SHOAL_UNLOCK_KEY`).
 *
 * @module
 */
import { join } from "node:path";
import { globalOptions, runGroup, str, type Subcommand } from "./command.ts";
import { CliError } from "./format.ts";
import type { ParsedArgs } from "./flags.ts";
import type { LogEntry } from "../events/log.ts";
import type { AtRestCipher } from "../events/at_rest_cipher.ts";
import { copyLog } from "../events/sqlite_log.ts";
import { copyStorage } from "../events/raft/sqlite_storage.ts";
import {
  findLogFile,
  openStoredLog,
  type StoredLog,
  type StoredSnapshot,
  type WalRecord,
} from "../events/stored_log.ts";
import { openCipher, readKeyFile, UnlockError } from "../node/keys.ts";
import { HistoryError, stateAt } from "../actors/history.ts";
import {
  describeSnapshots,
  dumpObjects,
  formatSnapshots,
  parseKind,
  type SnapshotDump,
  verifyLog,
  type VerifyReport,
} from "../actors/log_inspect.ts";

const PAGE = 1_000;

const DATA_DIR_FLAG = {
  name: "data-dir",
  kind: "string" as const,
  description: "The stopped manager's data dir (offline)",
  default: ".shoal",
};

const UNLOCK_KEY_FLAG = {
  name: "unlock-key",
  kind: "string" as const,
  description: "Unlock key of an autolocked swarm (SWMKEY-1-...; or $SHOAL_UNLOCK_KEY)",
};

const FORMAT_FLAG = {
  name: "format",
  kind: "string" as const,
  description: 'Output format: "text" or "json"',
};

/** The manager named with `-H/--host`, if any: the tool then works through its API. */
function liveHost(p: ParsedArgs): string | undefined {
  return (p.flags.host as string | undefined) ?? globalOptions.host;
}

/** The data dir's cipher (none when it is not encrypted), with a clear error when locked. */
async function cipherOf(dataDir: string, p: ParsedArgs): Promise<AtRestCipher | undefined> {
  const key = str(p, "unlock-key") || Deno.env.get("SHOAL_UNLOCK_KEY") || undefined;
  try {
    return await openCipher(dataDir, key);
  } catch (err) {
    if (err instanceof UnlockError) throw new CliError(err.message);
    throw err;
  }
}

/** Opens the data dir's log, decrypting it when needed. */
async function openLog(p: ParsedArgs): Promise<StoredLog> {
  const dataDir = str(p, "data-dir");
  try {
    findLogFile(dataDir);
  } catch (err) {
    throw new CliError(`${(err as Error).message.replace(/^no log in/, "no log at")}`);
  }
  const cipher = await cipherOf(dataDir, p);
  try {
    return openStoredLog(dataDir, { cipher });
  } catch (err) {
    throw new CliError(`cannot open the log in ${dataDir}: ${(err as Error).message}`);
  }
}

function format(env: { badFlag(f: string, v: string, e: unknown): never }, p: ParsedArgs) {
  const f = str(p, "format") || "text";
  if (f !== "text" && f !== "json") {
    env.badFlag("format", f, new Error('expected "text" or "json"'));
  }
  return f;
}

function index(p: ParsedArgs, name: string, env: {
  badFlag(flag: string, value: string, err: unknown): never;
}): number | undefined {
  const raw = (p.flags[name] as string | undefined) ?? "";
  if (raw === "") return undefined;
  if (!/^\d+$/.test(raw)) env.badFlag(name, raw, new Error("expected a log index"));
  return Number(raw);
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

/** One entry as a readable block: a header line, then one line per event. */
export function formatEntry(
  e: LogEntry,
  raft?: { raftIndex?: number; committed?: boolean },
): string {
  const extra = (raft?.raftIndex === undefined ? "" : ` raft=${raft.raftIndex}`) +
    (raft?.committed === false ? " uncommitted" : "");
  const lines = [
    `index=${e.index} term=${e.term} time=${iso(e.batch.at)} by=${e.batch.by}${extra}`,
  ];
  for (const ev of e.batch.events) {
    const id = (ev.data as { id?: string }).id ?? "";
    lines.push(
      `  ${ev.type}${id ? ` id=${id}` : ""} by=${ev.meta.by} reason=${
        JSON.stringify(ev.meta.reason)
      }${ev.meta.cause !== undefined ? ` cause=${ev.meta.cause}` : ""}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** A stored record (an entry, a conf change, an empty entry) as text or a JSON line. */
export function formatRecord(r: WalRecord, json: boolean): string {
  if (r.type === "events") {
    const e = r.entry;
    if (!json) return formatEntry(e, r);
    return JSON.stringify({
      index: e.index,
      ...(r.raftIndex === undefined ? {} : { raftIndex: r.raftIndex }),
      term: e.term,
      ...(r.committed ? {} : { committed: false }),
      at: e.batch.at,
      time: iso(e.batch.at),
      by: e.batch.by,
      events: e.batch.events,
    }) + "\n";
  }
  const change = r.type === "confChange"
    ? {
      change: r.change.type,
      node: r.change.nodeId,
      ...(r.change.context?.byteLength
        ? { context: new TextDecoder().decode(r.change.context) }
        : {}),
    }
    : {};
  if (json) {
    return JSON.stringify({
      raftIndex: r.raftIndex,
      term: r.term,
      type: r.type,
      ...(r.committed ? {} : { committed: false }),
      ...change,
    }) + "\n";
  }
  const tail = r.committed ? "" : " uncommitted";
  if (r.type === "empty") return `raft=${r.raftIndex} term=${r.term} empty entry${tail}\n`;
  const c = change as { change: string; node: number; context?: string };
  return `raft=${r.raftIndex} term=${r.term} conf change ${c.change} node=${c.node}${
    c.context ? ` context=${JSON.stringify(c.context)}` : ""
  }${tail}\n`;
}

/** An entry as `GET /shoal/v1/log` answers it. */
interface ApiEntry {
  index: number;
  term: number;
  at: number;
  by: string;
  events: LogEntry["batch"]["events"];
}

const dumpWal: Subcommand = {
  name: "dump-wal",
  use: "[OPTIONS]",
  summary: "Print the log's entries and their events",
  description: "Offline on --data-dir, or on a running manager with -H/--host.",
  flags: [
    DATA_DIR_FLAG,
    UNLOCK_KEY_FLAG,
    { name: "start", kind: "string", description: "First index (default: the first)" },
    { name: "end", kind: "string", description: "Last index (default: the last)" },
    { name: "format", kind: "string", description: 'Output format: "text" or "json" (lines)' },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const json = format(env, p) === "json";
    const start = index(p, "start", env);
    const end = index(p, "end", env);
    if (liveHost(p) !== undefined) {
      let next = Math.max(1, start ?? 1);
      for (;;) {
        const page = await env.client.get<{ lastIndex: number; entries: ApiEntry[] }>(
          "/shoal/v1/log",
          { from: String(next), to: String(Math.min(end ?? Infinity, next + PAGE - 1)) },
        );
        const out = page.entries.map((e) =>
          json ? JSON.stringify(e) + "\n" : formatEntry({
            index: e.index,
            term: e.term,
            bytes: new Uint8Array(),
            batch: { at: e.at, by: e.by, events: e.events },
          })
        );
        if (out.length > 0) await env.io.out(out.join(""));
        const last = page.entries.at(-1)?.index;
        if (last === undefined || last >= Math.min(end ?? Infinity, page.lastIndex)) return;
        next = last + 1;
      }
    }
    const log = await openLog(p);
    try {
      const from = Math.max(1, start ?? 1);
      const to = end ?? Infinity;
      let out: string[] = [];
      for (const r of log.records(from, to)) {
        out.push(formatRecord(r, json));
        if (out.length >= PAGE) {
          await env.io.out(out.join(""));
          out = [];
        }
      }
      if (out.length > 0) await env.io.out(out.join(""));
    } catch (err) {
      throw new CliError(`log corrupt: ${(err as Error).message}`);
    } finally {
      log.close();
    }
  },
};

const dumpSnapshot: Subcommand = {
  name: "dump-snapshot",
  use: "[OPTIONS]",
  summary: "Print the stored snapshots: index, term, size and the state",
  description:
    "Text summarises each snapshot's state; --format json prints it whole (secret data, the CA key and join tokens redacted).",
  flags: [DATA_DIR_FLAG, UNLOCK_KEY_FLAG, FORMAT_FLAG],
  args: { exact: 0 },
  async run(env, p) {
    const json = format(env, p) === "json";
    let dumps: SnapshotDump[];
    if (liveHost(p) !== undefined) {
      dumps = await env.client.get<SnapshotDump[]>("/shoal/v1/log/snapshots", {
        full: json ? "1" : undefined,
      });
    } else {
      const log = await openLog(p);
      try {
        dumps = describeSnapshots(log.snapshots(), json);
      } catch (err) {
        throw new CliError(`log corrupt: ${(err as Error).message}`);
      } finally {
        log.close();
      }
    }
    await env.io.out(json ? JSON.stringify(dumps, null, 4) + "\n" : formatSnapshots(dumps));
  },
};

const dumpObject: Subcommand = {
  name: "dump-object",
  use: "[OPTIONS] KIND [ID|NAME]",
  summary: "Print objects as they were at an index (default: the last)",
  description:
    "KIND is nodes, services, tasks, networks, secrets, configs or cluster. The state is rebuilt from the newest snapshot at or before the index and the log after it. Secret data, the CA key and join tokens are never printed.",
  flags: [
    DATA_DIR_FLAG,
    UNLOCK_KEY_FLAG,
    { name: "at", kind: "string", description: "Log index (default: the last)" },
  ],
  args: { min: 1, max: 2 },
  async run(env, p) {
    const [word, ref] = p.args;
    let kind;
    try {
      kind = parseKind(word);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const at = index(p, "at", env);
    let objects: unknown[];
    if (liveHost(p) !== undefined) {
      objects = await env.client.get<unknown[]>(
        `/shoal/v1/log/objects/${kind}${ref ? `/${encodeURIComponent(ref)}` : ""}`,
        { at: at === undefined ? undefined : String(at) },
      );
    } else {
      const log = await openLog(p);
      try {
        const state = stateAt(log, at ?? log.lastIndex(), log.snapshots());
        objects = dumpObjects(state, kind, ref);
      } catch (err) {
        if (err instanceof HistoryError) throw new CliError(err.message);
        throw new CliError(`log corrupt: ${(err as Error).message}`);
      } finally {
        log.close();
      }
    }
    await env.io.out(JSON.stringify(objects, null, 4) + "\n");
  },
};

/** The verify report as the CLI prints it: stdout lines, and the problems for stderr. */
export function formatVerify(r: VerifyReport): { out: string; err: string } {
  const out: string[] = [];
  for (const s of r.snapshots) {
    const where = `snapshot at index ${s.index}${
      s.raftIndex === undefined ? "" : ` (raft index ${s.raftIndex})`
    }`;
    if (s.result === "ok") out.push(`${where}: ok, equals the fold of the log`);
    else if (s.result === "unchecked") out.push(`${where}: not checked: ${s.detail}`);
  }
  if (r.live === "ok") out.push("running state: ok, equals the fold of the log");
  if (r.problems.length === 0) {
    out.unshift(
      `log ok: ${r.entries} entries (${r.firstIndex} to ${r.lastIndex}), ${
        r.snapshots.filter((s) => s.result === "ok").length
      } of ${r.snapshots.length} snapshots equal to the fold of the log`,
    );
    return { out: out.join("\n") + "\n", err: "" };
  }
  const [first, ...rest] = r.problems;
  const err = [`log corrupt: ${first.message}`, ...rest.map((x) => `also: ${x.message}`)];
  return { out: out.length > 0 ? out.join("\n") + "\n" : "", err: err.join("\n") + "\n" };
}

const verify: Subcommand = {
  name: "verify",
  use: "[OPTIONS]",
  summary: "Check checksums, index continuity and snapshot consistency",
  description:
    "Every entry is read (checksum, decryption, decoding), and every snapshot is compared with the fold of the log up to its index. Exits 1 naming the first bad index and what is wrong with it.",
  flags: [DATA_DIR_FLAG, UNLOCK_KEY_FLAG],
  args: { exact: 0 },
  async run(env, p) {
    let report: VerifyReport;
    if (liveHost(p) !== undefined) {
      report = await env.client.get<VerifyReport>("/shoal/v1/log/verify");
    } else {
      let log: StoredLog;
      try {
        log = await openLog(p);
      } catch (err) {
        // A log that fails its checks as it opens (a bad last entry, a gap) is corrupt.
        const m = /^cannot open the log in .*?: (.*)$/s.exec((err as Error).message);
        if (m === null) throw err;
        await env.io.err(`log corrupt: ${m[1].replace(/^Corrupt record at /, "")}\n`);
        return 1;
      }
      try {
        let snapshots: StoredSnapshot[] = [];
        try {
          snapshots = log.snapshots();
        } catch (err) {
          await env.io.err(`log corrupt: ${(err as Error).message}\n`);
          return 1;
        }
        report = verifyLog(log, snapshots);
      } finally {
        log.close();
      }
    }
    const text = formatVerify(report);
    if (text.out) await env.io.out(text.out);
    if (text.err) {
      await env.io.err(text.err.replace(/Corrupt record at /g, ""));
      return 1;
    }
  },
};

const decrypt: Subcommand = {
  name: "decrypt",
  use: "[OPTIONS] --out DIR",
  summary: "Write an unencrypted copy of the log and its snapshots (offline)",
  description:
    "Reads --data-dir with the key stored beside it, or with --unlock-key when the swarm is autolocked, and writes DIR/raft.db (or DIR/log.db) unencrypted, for the other tools and for study. Keep the copy as safe as the swarm's secrets.",
  flags: [
    DATA_DIR_FLAG,
    UNLOCK_KEY_FLAG,
    { name: "out", short: "o", kind: "string", description: "Directory to write the copy to" },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const dataDir = str(p, "data-dir");
    const out = str(p, "out");
    if (out === "") throw new CliError("decrypt needs --out DIR: where to write the copy");
    let found;
    try {
      found = findLogFile(dataDir);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    if (await readKeyFile(dataDir) === undefined) {
      throw new CliError(`${dataDir} is not encrypted (it has no keys.json): nothing to decrypt`);
    }
    const cipher = await cipherOf(dataDir, p);
    await Deno.mkdir(out, { recursive: true });
    const name = found.format === "raft" ? "raft.db" : "log.db";
    const target = join(out, name);
    for (const f of [target, `${target}-wal`, join(out, "keys.json")]) {
      try {
        await Deno.lstat(f);
        throw new CliError(`${f} already exists: give an empty --out directory`);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    let copied: { entries: number };
    try {
      copied = found.format === "raft"
        ? copyStorage(found.path, target, { from: cipher })
        : copyLog(found.path, target, { from: cipher });
    } catch (err) {
      throw new CliError(`cannot decrypt ${found.path}: ${(err as Error).message}`);
    }
    try {
      await Deno.copyFile(join(dataDir, "node.json"), join(out, "node.json"));
    } catch {
      // No node.json: the log is all the tools need.
    }
    await env.io.out(`decrypted ${found.path} (${copied.entries} entries) to ${target}\n`);
  },
};

/** Runs `shoal log`. */
export function logCommand(args: string[]): Promise<number> {
  return runGroup(
    "log",
    "Inspect and check a manager's log: offline on its data dir, or through the API with -H",
    [dumpWal, dumpSnapshot, dumpObject, verify, decrypt],
    args,
  );
}
