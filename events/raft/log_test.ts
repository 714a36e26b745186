import assert from "node:assert/strict";
import { CompactedError, UnavailableError } from "./errors.ts";
import { RaftLog } from "./log.ts";
import { Unstable } from "./log_unstable.ts";
import { MemoryStorage } from "./storage.ts";
import { discardLogger, type Entry, type Snapshot } from "./types.ts";

const ent = (term: number, index: number, size = 0): Entry => ({
  term,
  index,
  type: "normal",
  data: new Uint8Array(size),
});

const snapshot = (index: number, term: number): Snapshot => ({
  metadata: { index, term, confState: { voters: [1], learners: [] } },
  data: new Uint8Array(),
});

function logWith(stable: Entry[], unstable: Entry[] = []): RaftLog {
  const s = new MemoryStorage();
  s.append(stable);
  const log = new RaftLog(s, discardLogger);
  if (unstable.length > 0) log.append(unstable);
  return log;
}

Deno.test("RaftLog: findConflict finds the first entry that differs", () => {
  const log = logWith([ent(1, 1), ent(2, 2), ent(3, 3)]);
  const cases: [Entry[], number][] = [
    [[], 0],
    [[ent(1, 1), ent(2, 2), ent(3, 3)], 0],
    [[ent(2, 2), ent(3, 3)], 0],
    [[ent(2, 2), ent(3, 3), ent(4, 4), ent(4, 5)], 4], // new entries, no conflict
    [[ent(4, 1), ent(4, 2)], 1],
    [[ent(2, 2), ent(4, 3), ent(4, 4)], 3],
  ];
  for (const [ents, want] of cases) assert.equal(log.findConflict(ents), want);
});

Deno.test("RaftLog: findConflictByTerm skips whole terms", () => {
  const log = logWith([ent(1, 1), ent(1, 2), ent(4, 3), ent(4, 4), ent(5, 5)]);
  assert.deepEqual(log.findConflictByTerm(5, 3), [2, 1]);
  assert.deepEqual(log.findConflictByTerm(5, 4), [4, 4]);
  assert.deepEqual(log.findConflictByTerm(5, 6), [5, 5]);
  assert.deepEqual(log.findConflictByTerm(2, 0), [0, 0]);
});

Deno.test("RaftLog: maybeAppend appends after a match, truncates conflicts, commits", () => {
  const base = () => logWith([ent(1, 1), ent(2, 2), ent(3, 3)]);
  // A mismatch at the previous entry: refused.
  let log = base();
  assert.equal(log.maybeAppend(3, 2, 3, [ent(4, 4)]), undefined);
  assert.equal(log.committed, 0);
  // A match: appended, commit = min(leader commit, last new).
  log = base();
  assert.equal(log.maybeAppend(3, 3, 10, [ent(4, 4), ent(4, 5)]), 5);
  assert.equal(log.committed, 5);
  // Already there: nothing truncated.
  log = base();
  assert.equal(log.maybeAppend(1, 1, 2, [ent(2, 2)]), 2);
  assert.equal(log.lastIndex(), 3);
  assert.equal(log.committed, 2);
  // A conflict: the suffix is replaced.
  log = base();
  assert.equal(log.maybeAppend(1, 1, 0, [ent(4, 2)]), 2);
  assert.deepEqual(log.allEntries(), [ent(1, 1), ent(4, 2)]);
  // A conflict with a committed entry is a broken invariant.
  log = base();
  log.commitTo(2);
  assert.throws(() => log.maybeAppend(0, 0, 0, [ent(5, 1)]));
});

Deno.test("RaftLog: commitTo never goes back nor beyond the log", () => {
  const log = logWith([ent(1, 1), ent(2, 2)]);
  log.commitTo(2);
  log.commitTo(1);
  assert.equal(log.committed, 2);
  assert.throws(() => log.commitTo(3));
});

Deno.test("RaftLog: entries flow unstable -> in progress -> stable", () => {
  const log = logWith([ent(1, 1)], [ent(1, 2), ent(1, 3)]);
  assert.equal(log.stableLastIndex(), 1);
  assert.deepEqual(log.nextUnstableEntries(), [ent(1, 2), ent(1, 3)]);
  log.acceptUnstable();
  assert.deepEqual(log.nextUnstableEntries(), []);
  log.append([ent(1, 4)]);
  assert.deepEqual(log.nextUnstableEntries(), [ent(1, 4)]);
  log.stableTo(3, 1);
  assert.equal(log.stableLastIndex(), 3);
  // A stale acknowledgement (the entry was replaced since) is ignored.
  log.append([ent(2, 4)]);
  log.stableTo(4, 1);
  assert.equal(log.stableLastIndex(), 3);
});

Deno.test("RaftLog: committed entries are handed out once, including unstable ones", () => {
  const log = logWith([ent(1, 1)], [ent(1, 2)]);
  log.commitTo(2);
  assert.deepEqual(log.nextCommittedEntries(), [ent(1, 1), ent(1, 2)]);
  log.acceptApplying(2);
  assert.equal(log.hasNextCommittedEntries(), false);
  log.appliedTo(2);
  assert.equal(log.applied, 2);
  assert.throws(() => log.appliedTo(3));
});

Deno.test("RaftLog: a slice spans storage and the unstable tail, limited by size", () => {
  const log = logWith([ent(1, 1, 10), ent(1, 2, 10)], [ent(1, 3, 10), ent(1, 4, 10)]);
  assert.deepEqual(log.slice(1, 5, Infinity).map((e) => e.index), [1, 2, 3, 4]);
  assert.deepEqual(log.slice(2, 4, Infinity).map((e) => e.index), [2, 3]);
  assert.deepEqual(log.slice(1, 5, 30).map((e) => e.index), [1, 2, 3]);
  assert.deepEqual(log.slice(1, 5, 15).map((e) => e.index), [1]);
  assert.throws(() => log.slice(1, 6, Infinity), RangeError);
});

Deno.test("RaftLog: terms before the first index are compacted, after the last unavailable", () => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 2), ent(3, 3)]);
  s.createSnapshot(2, undefined, new Uint8Array());
  s.compact(2);
  const log = new RaftLog(s, discardLogger);
  assert.throws(() => log.term(1), CompactedError);
  assert.equal(log.term(2), 2);
  assert.throws(() => log.term(4), UnavailableError);
  assert.equal(log.termOrZero(1), 0);
  assert.throws(() => log.slice(2, 4, Infinity), CompactedError);
  assert.equal(log.committed, 2, "a snapshot's entries are committed");
});

Deno.test("RaftLog: isUpToDate compares last terms, then lengths (§5.4.1)", () => {
  const log = logWith([ent(1, 1), ent(2, 2), ent(3, 3)]);
  assert.equal(log.isUpToDate(2, 4), true);
  assert.equal(log.isUpToDate(3, 3), true);
  assert.equal(log.isUpToDate(4, 3), true);
  assert.equal(log.isUpToDate(2, 3), false);
  assert.equal(log.isUpToDate(9, 2), false);
});

Deno.test("RaftLog: restoring a snapshot replaces the log and commits it", () => {
  const log = logWith([ent(1, 1)], [ent(1, 2)]);
  log.restore(snapshot(10, 3));
  assert.equal(log.firstIndex(), 11);
  assert.equal(log.lastIndex(), 10);
  assert.equal(log.committed, 10);
  assert.equal(log.term(10), 3);
  assert.equal(log.stableLastIndex(), 0);
  assert.equal(log.hasNextCommittedEntries(), false, "apply the snapshot first");
  assert.equal(log.nextUnstableSnapshot()?.metadata.index, 10);
  log.acceptUnstable();
  assert.equal(log.nextUnstableSnapshot(), undefined);
  log.stableSnapTo(10);
  assert.equal(log.hasNextOrInProgressSnapshot(), false);
});

Deno.test("Unstable: truncateAndAppend appends, replaces or truncates", () => {
  const u = new Unstable(5);
  u.truncateAndAppend([ent(1, 5), ent(1, 6)]);
  u.acceptInProgress();
  assert.equal(u.offsetInProgress, 7);
  u.truncateAndAppend([ent(1, 7)]);
  assert.deepEqual(u.entries.map((e) => e.index), [5, 6, 7]);
  // Truncate within the tail: in-progress entries from there are no longer in progress.
  u.truncateAndAppend([ent(2, 6)]);
  assert.deepEqual(u.entries.map((e) => `${e.term}/${e.index}`), ["1/5", "2/6"]);
  assert.equal(u.offsetInProgress, 6);
  // Replace from before the tail.
  u.truncateAndAppend([ent(3, 4)]);
  assert.equal(u.offset, 4);
  assert.deepEqual(u.entries.map((e) => e.index), [4]);
  assert.equal(u.maybeTerm(4), 3);
  assert.equal(u.maybeTerm(3), undefined);
});
