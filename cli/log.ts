/**
 * `shoal log`: offline tools for a stopped single manager's log (`<data-dir>/log.db`), in the
 * manner of swarm-rafttool: `dump-wal` prints entries and their events, `verify` checks every
 * entry's checksum and the continuity of the indexes.
 *
 * @module
 */
import { runGroup, str, type Subcommand } from "./command.ts";
import { CliError } from "./format.ts";
import { SqliteLog } from "../events/sqlite_log.ts";
import type { LogEntry } from "../events/log.ts";

const PAGE = 1_000;

const DATA_DIR_FLAG = {
  name: "data-dir",
  kind: "string" as const,
  description: "The stopped node's data dir",
  default: ".shoal",
};

/** Opens `<dataDir>/log.db`, refusing a missing file (SQLite would create one). */
function openLog(dataDir: string): SqliteLog {
  const path = `${dataDir}/log.db`;
  try {
    if (!Deno.statSync(path).isFile) throw new Error("not a file");
  } catch {
    throw new CliError(`no log at ${path}: is --data-dir a Shoal node's data dir?`);
  }
  return new SqliteLog({ path, synchronous: "off" });
}

/** Calls `each` for every entry in `[from, to]`, a page at a time. */
function forEntries(log: SqliteLog, from: number, to: number, each: (e: LogEntry) => void) {
  let next = from;
  while (next <= to) {
    const page = log.read(next, Math.min(to, next + PAGE - 1));
    if (page.length === 0) break;
    for (const e of page) each(e);
    next = page[page.length - 1].index + 1;
  }
}

function index(p: { flags: Record<string, unknown> }, name: string, env: {
  badFlag(flag: string, value: string, err: unknown): never;
}): number | undefined {
  const raw = (p.flags[name] as string | undefined) ?? "";
  if (raw === "") return undefined;
  if (!/^\d+$/.test(raw)) env.badFlag(name, raw, new Error("expected a log index"));
  return Number(raw);
}

/** One entry as a readable block: a header line, then one line per event. */
export function formatEntry(e: LogEntry): string {
  const lines = [
    `index=${e.index} term=${e.term} time=${new Date(e.batch.at).toISOString()} by=${e.batch.by}`,
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

const dumpWal: Subcommand = {
  name: "dump-wal",
  use: "[OPTIONS]",
  summary: "Print the log's entries and their events (offline)",
  flags: [
    DATA_DIR_FLAG,
    { name: "start", kind: "string", description: "First index (default: the first)" },
    { name: "end", kind: "string", description: "Last index (default: the last)" },
    { name: "format", kind: "string", description: 'Output format: "text" or "json" (lines)' },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const format = str(p, "format") || "text";
    if (format !== "text" && format !== "json") {
      env.badFlag("format", format, new Error('expected "text" or "json"'));
    }
    const start = index(p, "start", env);
    const end = index(p, "end", env);
    const log = openLog(str(p, "data-dir"));
    let out: string[] = [];
    try {
      const from = Math.max(1, start ?? log.firstIndex());
      const to = Math.min(end ?? log.lastIndex(), log.lastIndex());
      const flush = async () => {
        if (out.length > 0) await env.io.out(out.join(""));
        out = [];
      };
      let next = from;
      while (next <= to) {
        const page = log.read(next, Math.min(to, next + PAGE - 1));
        if (page.length === 0) break;
        for (const e of page) {
          out.push(
            format === "json"
              ? JSON.stringify({
                index: e.index,
                term: e.term,
                at: e.batch.at,
                time: new Date(e.batch.at).toISOString(),
                by: e.batch.by,
                events: e.batch.events,
              }) + "\n"
              : formatEntry(e),
          );
        }
        await flush();
        next = page[page.length - 1].index + 1;
      }
    } finally {
      await log.close();
    }
  },
};

const verify: Subcommand = {
  name: "verify",
  use: "[OPTIONS]",
  summary: "Check every entry's checksum and the continuity of the indexes (offline)",
  description: "Exits 1 naming the first bad index and what is wrong with it.",
  flags: [DATA_DIR_FLAG],
  args: { exact: 0 },
  async run(env, p) {
    const log = openLog(str(p, "data-dir"));
    let count = 0;
    let expected = 0;
    let problem: string | undefined;
    try {
      const first = log.firstIndex(), last = log.lastIndex();
      expected = first;
      try {
        forEntries(log, first, last, (e) => {
          if (e.index !== expected) {
            throw new Error(
              `index ${expected}: missing (the log goes from ${expected - 1} to ${e.index})`,
            );
          }
          count++;
          expected++;
        });
        if (last > 0 && expected !== last + 1) {
          problem = `index ${expected}: missing (the last index is ${last})`;
        }
      } catch (err) {
        const message = (err as Error).message;
        problem = /index \d+/.test(message) ? message : `index ${expected}: ${message}`;
      }
    } finally {
      await log.close();
    }
    if (problem !== undefined) {
      await env.io.err(`log corrupt: ${problem}\n`);
      return 1;
    }
    await env.io.out(`log ok: ${count} entries\n`);
  },
};

/** Runs `shoal log`. */
export function logCommand(args: string[]): Promise<number> {
  return runGroup(
    "log",
    "Inspect and check a stopped node's log (offline)",
    [dumpWal, verify],
    args,
  );
}
