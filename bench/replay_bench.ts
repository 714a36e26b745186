/**
 * `deno task bench replay`: cold start from a stored log of 1,000,000 events in batches, through
 * checksum, decode and the whole fold, with no snapshot: open the SQLite log, start a Manager,
 * wait until it has applied everything. Goal at most 5 s (aim 2 s).
 *
 * The log is a synthetic cluster history (users, projections and agents at work, some rejected
 * batches), generated and written before the clock starts.
 *
 * @module
 */
import { SqliteLog } from "../events/sqlite_log.ts";
import { Manager } from "../actors/manager.ts";
import { ClusterHistory } from "../tests/_harness/cluster_history.ts";
import { report } from "./report.ts";

/** Runs the benchmark and returns its JSON result. */
export async function runReplayBench(options: { json: boolean; events?: number }) {
  const target = options.events ?? 1_000_000;
  const dir = await Deno.makeTempDir({ prefix: "shoal-replay-" });
  const path = `${dir}/log.db`;
  try {
    const history = new ClusterHistory({ seed: 42, nodes: 20, maxServices: 30, maxReplicas: 40 });
    const writer = new SqliteLog({ path, synchronous: "off" });
    let events = 0;
    let pending: Promise<number>[] = [];
    while (events < target) {
      const batch = history.next();
      events += batch.events.length;
      pending.push(writer.append(batch));
      if (pending.length >= 1000) {
        await Promise.all(pending);
        pending = [];
      }
    }
    await Promise.all(pending);
    const entries = writer.lastIndex();
    await writer.close();
    const bytes = (await Deno.stat(path)).size;

    const t0 = performance.now();
    const log = new SqliteLog({ path });
    const manager = new Manager({ log });
    await manager.start();
    const ms = performance.now() - t0;
    const state = manager.state;
    if (state.index !== entries || state.tasks.size !== history.state.tasks.size) {
      throw new Error("replayed state differs from the generator's");
    }
    await manager.stop();
    await log.close();
    return report("replay", [
      { metric: "events", value: events, unit: "" },
      { metric: "entries", value: entries, unit: "batches" },
      { metric: "log_mb", value: Number((bytes / 1e6).toFixed(1)), unit: "MB" },
      {
        metric: "replay_ms",
        value: Math.round(ms),
        unit: "ms",
        goal: "≤ 5000 (aim 2000)",
        ok: ms <= 5000,
      },
      { metric: "events_per_s", value: Math.round(events / (ms / 1000)), unit: "events/s" },
      { metric: "rejected_batches", value: state.rejections.length, unit: "(last 256)" },
    ], { json: options.json });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
