/**
 * `deno task bench timetravel`: time travel over a log of 1,000,000 events with a snapshot every
 * 10,000 entries (SwarmKit's interval), as issue 7 sets it:
 *
 * - the state at a random index (restore the nearest snapshot, fold the rest): goal at most 50 ms;
 * - a diff between two random points (both states rebuilt, then compared): goal at most 300 ms;
 * - `why` for a random task, with the history index a manager keeps: goal at most 10 ms.
 *
 * The log is the replay benchmark's synthetic history (seed 42: 20 nodes, up to 30 services of up
 * to 40 replicas; users, projections and agents at work, some refused batches), held in memory
 * as decoded entries and generated before any clock starts. Also measured: building the history
 * index (one fold of the whole log, which a manager does anyway as it applies entries), and the
 * state at a random index with extra in-memory checkpoints every 20,000 events.
 *
 * @module
 */
import {
  arraySource,
  diff,
  formatWhy,
  type HistoryEntry,
  HistoryIndex,
  type SnapshotRef,
  stateAt,
  why,
} from "../actors/history.ts";
import { snapshot } from "../actors/snapshot.ts";
import { ClusterHistory, SeededRandom } from "../tests/_harness/cluster_history.ts";
import { type BenchRow, median, report } from "./report.ts";

/** The value below which `p` of the sorted values fall (nearest rank). */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

function time<T>(f: () => T): [T, number] {
  const t = performance.now();
  const out = f();
  return [out, performance.now() - t];
}

const round = (ms: number) => Number(ms.toFixed(1));

/** Runs the benchmark and returns its JSON result. */
export function runTimeTravelBench(
  options: { json: boolean; events?: number; samples?: number },
): Promise<Record<string, unknown>> {
  const target = options.events ?? 1_000_000;
  const samples = options.samples ?? 50;
  const every = 10_000;

  const history = new ClusterHistory({ seed: 42, nodes: 20, maxServices: 30, maxReplicas: 40 });
  const entries: HistoryEntry[] = [];
  const snapshots: SnapshotRef[] = [];
  let events = 0;
  while (events < target) {
    const batch = history.next();
    const index = history.state.index;
    events += batch.events.length;
    entries.push({ index, batch });
    if (index % every === 0) snapshots.push({ index, bytes: snapshot(history.state) });
  }
  const source = arraySource(entries);
  const last = source.lastIndex();
  const rnd = new SeededRandom(7);
  const randomIndex = () => 1 + rnd.int(last);

  // Warm up the fold and restore (JIT) before measuring.
  for (let i = 0; i < 3; i++) stateAt(source, randomIndex(), snapshots);

  const stateTimes: number[] = [];
  for (let i = 0; i < samples; i++) {
    const index = randomIndex();
    const [state, ms] = time(() => stateAt(source, index, snapshots));
    if (state.index !== index) throw new Error(`stateAt(${index}) gave ${state.index}`);
    stateTimes.push(ms);
  }

  const diffTimes: number[] = [];
  const diffOnly: number[] = [];
  let changes = 0;
  for (let i = 0; i < Math.max(5, samples / 5); i++) {
    const [a, b] = [randomIndex(), randomIndex()].sort((x, y) => x - y);
    const t = performance.now();
    const sa = stateAt(source, a, snapshots);
    const sb = stateAt(source, b, snapshots);
    const [d, ms] = time(() => diff(sa, sb));
    diffTimes.push(performance.now() - t);
    diffOnly.push(ms);
    changes += d.changes.length;
  }

  const [index, buildMs] = time(() => HistoryIndex.build(source));
  const tasks = [...index.taskIds()];
  const whyTimes: number[] = [];
  let steps = 0;
  for (let i = 0; i < samples + 3; i++) {
    const id = tasks[rnd.int(tasks.length)];
    const [text, ms] = time(() => formatWhy(why(source, "task", id, last, { index })));
    if (i >= 3) whyTimes.push(ms); // the first three warm up
    steps += text.split("\n").length;
  }

  const [checkpointed, checkpointMs] = time(() =>
    HistoryIndex.build(source, { checkpointEvery: 20_000 })
  );
  const dense = [...snapshots, ...checkpointed.checkpoints];
  const denseTimes: number[] = [];
  for (let i = 0; i < samples; i++) {
    const index = randomIndex();
    denseTimes.push(time(() => stateAt(source, index, dense))[1]);
  }

  const rows: BenchRow[] = [
    { metric: "events", value: events, unit: "" },
    { metric: "entries", value: last, unit: "batches" },
    {
      metric: "snapshots",
      value: snapshots.length,
      unit: `every ${every.toLocaleString("en-US")}`,
    },
    {
      metric: "snapshot_kb",
      value: Math.round((snapshots.at(-1)?.bytes.length ?? 0) / 1024),
      unit: "KB",
    },
    {
      metric: "state_at_median_ms",
      value: round(median(stateTimes)),
      unit: "ms",
      goal: "≤ 50",
      ok: median(stateTimes) <= 50,
    },
    { metric: "state_at_p99_ms", value: round(percentile(stateTimes, 0.99)), unit: "ms" },
    {
      metric: "diff_median_ms",
      value: round(median(diffTimes)),
      unit: "ms",
      goal: "≤ 300",
      ok: median(diffTimes) <= 300,
    },
    { metric: "diff_p99_ms", value: round(percentile(diffTimes, 0.99)), unit: "ms" },
    { metric: "diff_compare_only_ms", value: round(median(diffOnly)), unit: "ms" },
    {
      metric: "why_median_ms",
      value: round(median(whyTimes)),
      unit: "ms",
      goal: "≤ 10",
      ok: median(whyTimes) <= 10,
    },
    { metric: "why_p99_ms", value: round(percentile(whyTimes, 0.99)), unit: "ms" },
    { metric: "index_build_ms", value: Math.round(buildMs), unit: "ms" },
    { metric: "checkpoints", value: checkpointed.checkpoints.length, unit: "every 20k events" },
    { metric: "checkpoint_build_ms", value: Math.round(checkpointMs), unit: "ms" },
    {
      metric: "state_at_checkpointed_median_ms",
      value: round(median(denseTimes)),
      unit: "ms",
      goal: "≤ 50",
      ok: median(denseTimes) <= 50,
    },
    {
      metric: "state_at_checkpointed_p99_ms",
      value: round(percentile(denseTimes, 0.99)),
      unit: "ms",
    },
  ];
  return Promise.resolve(
    report("timetravel", rows, {
      json: options.json,
      extra: {
        samples,
        events_per_entry: round(events / last),
        diff_changes_avg: Math.round(changes / diffTimes.length),
        why_lines_avg: Math.round(steps / (samples + 3)),
      },
    }),
  );
}

if (import.meta.main) {
  await runTimeTravelBench({ json: Deno.args.includes("--json") });
}
