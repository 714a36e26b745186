import assert from "node:assert/strict";
import { CompactedError, SnapOutOfDateError, UnavailableError } from "./errors.ts";
import { MemoryStorage } from "./storage.ts";
import type { Entry } from "./types.ts";

const ent = (term: number, index: number, size = 0): Entry => ({
  term,
  index,
  type: "normal",
  data: new Uint8Array(size),
});

/** Storage holding 3/3, 4/4, 5/5 after a snapshot at 3 (etcd's storage tests use this). */
function storage345(): MemoryStorage {
  const s = new MemoryStorage({ confState: { voters: [1, 2, 3], learners: [] } });
  s.append([ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 5)]);
  s.createSnapshot(3, undefined, new Uint8Array([3]));
  s.compact(3);
  return s;
}

Deno.test("MemoryStorage: starts empty with the bootstrapped configuration", () => {
  const s = new MemoryStorage({ confState: { voters: [1], learners: [2] } });
  assert.equal(s.firstIndex(), 1);
  assert.equal(s.lastIndex(), 0);
  assert.equal(s.term(0), 0);
  assert.deepEqual(s.initialState(), {
    hardState: { term: 0, vote: 0, commit: 0 },
    confState: { voters: [1], learners: [2] },
  });
});

Deno.test("MemoryStorage: term of the snapshot's entry and after; errors outside", () => {
  const s = storage345();
  assert.throws(() => s.term(2), CompactedError);
  assert.equal(s.term(3), 3);
  assert.equal(s.term(5), 5);
  assert.throws(() => s.term(6), UnavailableError);
  assert.equal(s.firstIndex(), 4);
  assert.equal(s.lastIndex(), 5);
});

Deno.test("MemoryStorage: entries in [lo, hi), limited by size but at least one", () => {
  const s = new MemoryStorage();
  s.append([ent(1, 1, 10), ent(1, 2, 10), ent(1, 3, 10)]);
  assert.deepEqual(s.entries(1, 4, Infinity).map((e) => e.index), [1, 2, 3]);
  assert.deepEqual(s.entries(1, 4, 20).map((e) => e.index), [1, 2]);
  assert.deepEqual(s.entries(1, 4, 0).map((e) => e.index), [1]);
  assert.deepEqual(s.entries(2, 2, Infinity), []);
  assert.throws(() => s.entries(1, 5, Infinity), RangeError);
  const c = storage345();
  assert.throws(() => c.entries(3, 5, Infinity), CompactedError);
  assert.deepEqual(c.entries(4, 6, Infinity).map((e) => e.index), [4, 5]);
});

Deno.test("MemoryStorage: append truncates a conflicting tail and skips compacted entries", () => {
  const s = storage345();
  s.append([ent(3, 3), ent(6, 4), ent(6, 5), ent(6, 6)]);
  assert.deepEqual(s.entries(4, 7, Infinity).map((e) => e.term), [6, 6, 6]);
  s.append([ent(7, 5)]);
  assert.equal(s.lastIndex(), 5);
  assert.equal(s.term(5), 7);
  s.append([ent(1, 1), ent(1, 2)]); // all compacted: nothing happens
  assert.equal(s.lastIndex(), 5);
  assert.throws(() => s.append([ent(8, 7)]), RangeError, "a gap");
});

Deno.test("MemoryStorage: compact keeps the compacted entry's term readable", () => {
  const s = storage345();
  assert.throws(() => s.compact(3), CompactedError);
  assert.throws(() => s.compact(6), RangeError);
  s.compact(4);
  assert.equal(s.firstIndex(), 5);
  assert.equal(s.term(4), 4);
});

Deno.test("MemoryStorage: snapshots must move forward", () => {
  const s = storage345();
  const snap = s.snapshot();
  assert.equal(snap.metadata.index, 3);
  assert.equal(snap.metadata.term, 3);
  assert.deepEqual(snap.metadata.confState, { voters: [1, 2, 3], learners: [] });
  assert.throws(() => s.createSnapshot(3, undefined, new Uint8Array()), SnapOutOfDateError);
  assert.throws(() => s.createSnapshot(9, undefined, new Uint8Array()), RangeError);
  const newer = s.createSnapshot(5, { voters: [1, 2], learners: [] }, new Uint8Array([5]));
  assert.equal(newer.metadata.term, 5);

  const other = new MemoryStorage();
  other.append([ent(1, 1)]);
  other.applySnapshot(newer);
  assert.equal(other.firstIndex(), 6);
  assert.equal(other.lastIndex(), 5);
  assert.equal(other.term(5), 5);
  assert.deepEqual(other.initialState().confState, { voters: [1, 2], learners: [] });
  assert.throws(() => other.applySnapshot(snap), SnapOutOfDateError);
});
