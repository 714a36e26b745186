import assert from "node:assert/strict";
import fc from "fast-check";
import { applyBatch, ClusterState } from "./state.ts";
import { clearState, restore, restoreInto, snapshot, snapshotData } from "./snapshot.ts";
import type { Batch } from "../events/schema.ts";
import { ClusterHistory } from "../tests/_harness/cluster_history.ts";
import { checkInvariants } from "../tests/_harness/invariants.ts";

function fold(entries: readonly { index: number; batch: Batch }[], state = new ClusterState()) {
  for (const { index, batch } of entries) applyBatch(state, batch, index);
  return state;
}

const historyArb = fc.record({
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  length: fc.integer({ min: 1, max: 400 }),
  nodes: fc.integer({ min: 0, max: 6 }),
  invalidRate: fc.double({ min: 0, max: 0.5, noNaN: true }),
  cut: fc.double({ min: 0, max: 1, noNaN: true }),
});

Deno.test("restoring a snapshot of a prefix and folding the rest equals folding everything", () => {
  fc.assert(
    fc.property(historyArb, ({ seed, length, nodes, invalidRate, cut }) => {
      const history = new ClusterHistory({ seed, nodes, invalidRate, batchSize: 40 });
      const entries = history.take(length);
      const k = Math.floor(cut * entries.length);
      const prefix = fold(entries.slice(0, k));
      const restored = restore(snapshot(prefix));
      checkInvariants(restored);
      assert.deepEqual(snapshotData(restored), snapshotData(prefix));
      fold(entries.slice(k), restored);
      const whole = fold(entries);
      checkInvariants(restored);
      assert.deepEqual(snapshotData(restored), snapshotData(whole));
      assert.deepEqual(snapshot(restored), snapshot(whole), "snapshots are byte-identical");
    }),
    { numRuns: 60 },
  );
});

Deno.test("folding the same log twice gives identical state", () => {
  fc.assert(
    fc.property(historyArb, ({ seed, length, nodes, invalidRate }) => {
      const history = new ClusterHistory({ seed, nodes, invalidRate });
      const entries = history.take(length);
      const a = fold(entries);
      const b = fold(entries);
      checkInvariants(a);
      assert.deepEqual(snapshot(a), snapshot(b));
      // The generator folds as it goes: a third, independent fold.
      assert.deepEqual(snapshot(history.state), snapshot(a));
    }),
    { numRuns: 60 },
  );
});

Deno.test("restore refuses bytes that are not a snapshot", () => {
  assert.throws(() => restore(new Uint8Array([1, 2, 3])), /Cannot read snapshot/);
  assert.throws(() => restore(new Uint8Array([0xc1])), /Cannot read snapshot/);
});

Deno.test("restoreInto replaces a state in place, indexes included", () => {
  fc.assert(
    fc.property(historyArb, ({ seed, length, nodes, invalidRate, cut }) => {
      const history = new ClusterHistory({ seed, nodes, invalidRate, batchSize: 40 });
      const entries = history.take(length);
      const k = Math.floor(cut * entries.length);
      // A state ahead of the snapshot, and one from another history: both replaced.
      const other = new ClusterHistory({ seed: seed + 1, nodes: 3, batchSize: 40 }).take(50);
      for (const target of [fold(entries), fold(other)]) {
        const prefix = fold(entries.slice(0, k));
        restoreInto(target, snapshot(prefix));
        checkInvariants(target);
        assert.deepEqual(snapshotData(target), snapshotData(prefix));
        fold(entries.slice(k), target);
        checkInvariants(target);
        assert.deepEqual(snapshot(target), snapshot(fold(entries)));
      }
    }),
    { numRuns: 30 },
  );
});

Deno.test("restoreInto leaves the state alone when the bytes are not a snapshot", () => {
  const history = new ClusterHistory({ seed: 7, nodes: 3, batchSize: 40 });
  const state = fold(history.take(40));
  const before = snapshot(state);
  assert.throws(() => restoreInto(state, new Uint8Array([1, 2, 3])), /Cannot read snapshot/);
  assert.deepEqual(snapshot(state), before);
  clearState(state);
  checkInvariants(state);
  assert.deepEqual(snapshotData(state), snapshotData(new ClusterState()));
});
