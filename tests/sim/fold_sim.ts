/**
 * The fold under simulation: one seed drives a synthetic cluster history (users, projections and
 * agents at work, with deliberate bad batches), and after every entry the checker verifies the
 * state's invariants; at random points it also checks that a snapshot restores to the same state
 * and that folding the log again gives the same bytes. A failing seed reproduces exactly.
 *
 * The Raft simulator (virtual network, crashes, partitions) joins this runner with events/raft.
 *
 * @module
 */
import { applyBatch, ClusterState } from "../../actors/state.ts";
import { restore, snapshot } from "../../actors/snapshot.ts";
import { taskStateName } from "../../events/schema.ts";
import { ClusterHistory, SeededRandom } from "../_harness/cluster_history.ts";
import { checkInvariants } from "../_harness/invariants.ts";
import type { Batch } from "../../events/schema.ts";

/** What one seed's run found. */
export interface SeedResult {
  seed: number;
  entries: number;
  events: number;
  rejected: number;
  /** The first violation, if any. */
  violation?: string;
}

/** Runs one seed for `steps` entries; `trace` receives a line per entry. */
export function runFoldSeed(
  seed: number,
  steps: number,
  trace?: (line: string) => void,
): SeedResult {
  const rnd = new SeededRandom(seed ^ 0x5eed);
  const history = new ClusterHistory({
    seed,
    nodes: rnd.int(6),
    maxServices: 1 + rnd.int(8),
    maxReplicas: 1 + rnd.int(20),
    batchSize: 1 + rnd.int(120),
    invalidRate: rnd.next() * 0.3,
  });
  const log: { index: number; batch: Batch }[] = [];
  const mirror = new ClusterState();
  let events = 0;
  try {
    for (let i = 0; i < steps; i++) {
      const batch = history.next();
      const index = history.state.index;
      log.push({ index, batch });
      events += batch.events.length;
      const result = applyBatch(mirror, batch, index);
      if (trace) {
        const kinds = [...new Set(batch.events.map((e) => e.type))].join(",");
        trace(
          `${String(index).padStart(6)} ${batch.by.padEnd(22)} ${
            String(batch.events.length).padStart(3)
          } ${kinds}${
            result.applied ? "" : `  REJECTED ${result.rejection.code}: ${result.rejection.reason}`
          }`,
        );
      }
      checkInvariants(mirror);
      if (rnd.chance(0.02)) {
        const restored = restore(snapshot(mirror));
        checkInvariants(restored);
        if (!equalBytes(snapshot(restored), snapshot(mirror))) {
          throw new Error(`snapshot at index ${index} does not restore to the same state`);
        }
      }
    }
    const again = new ClusterState();
    for (const { index, batch } of log) applyBatch(again, batch, index);
    if (!equalBytes(snapshot(again), snapshot(mirror))) {
      throw new Error("folding the same log twice gave different states");
    }
    if (!equalBytes(snapshot(history.state), snapshot(mirror))) {
      throw new Error("two folds of the same batches disagree");
    }
  } catch (err) {
    return {
      seed,
      entries: log.length,
      events,
      rejected: mirror.rejections.length,
      violation: `${(err as Error).message} (after entry ${log.length})`,
    };
  }
  if (trace) {
    const counts = new Map<string, number>();
    for (const t of mirror.tasks.values()) {
      const k = taskStateName(t.status.state);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    trace(
      `final: ${mirror.services.size} services, ${mirror.tasks.size} tasks ${
        JSON.stringify(Object.fromEntries(counts))
      }`,
    );
  }
  return { seed, entries: log.length, events, rejected: mirror.rejections.length };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
