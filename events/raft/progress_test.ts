import assert from "node:assert/strict";
import { Inflights, Progress, ProgressTracker } from "./progress.ts";

Deno.test("Inflights: a bounded window freed from the oldest", () => {
  const inf = new Inflights(3);
  inf.add(1, 10);
  inf.add(2, 10);
  assert.equal(inf.full(), false);
  inf.add(5, 10);
  assert.equal(inf.full(), true);
  assert.throws(() => inf.add(6, 1));
  inf.freeLE(2);
  assert.equal(inf.count, 1);
  assert.equal(inf.bytes, 10);
  // The ring wraps around.
  inf.add(6, 1);
  inf.add(7, 1);
  assert.equal(inf.full(), true);
  inf.freeLE(6);
  assert.equal(inf.count, 1);
  inf.freeLE(100);
  assert.equal(inf.count, 0);
  inf.add(8, 1);
  inf.reset();
  assert.equal(inf.count, 0);
});

Deno.test("Inflights: a byte budget also fills the window", () => {
  const inf = new Inflights(10, 100);
  inf.add(1, 60);
  assert.equal(inf.full(), false);
  inf.add(2, 40);
  assert.equal(inf.full(), true);
  inf.freeLE(1);
  assert.equal(inf.full(), false);
});

function progress(state: "probe" | "replicate" | "snapshot", match: number, next: number) {
  const pr = new Progress(next, new Inflights(2));
  pr.match = match;
  if (state === "replicate") pr.becomeReplicate();
  if (state === "snapshot") pr.becomeSnapshot(next);
  pr.next = next;
  return pr;
}

Deno.test("Progress: probe sends one append at a time", () => {
  const pr = progress("probe", 1, 2);
  assert.equal(pr.isPaused(), false);
  pr.sentEntries(1, 5);
  assert.equal(pr.isPaused(), true);
  assert.equal(pr.next, 2, "a probe does not advance next");
  // An acknowledgement moves to replicate.
  assert.equal(pr.maybeUpdate(2), true);
  assert.equal(pr.isPaused(), false);
  pr.becomeReplicate();
  assert.equal(pr.next, 3);
});

Deno.test("Progress: replicate streams optimistically up to the window", () => {
  const pr = progress("replicate", 5, 6);
  pr.sentEntries(2, 10);
  assert.equal(pr.next, 8);
  pr.sentEntries(1, 10);
  assert.equal(pr.next, 9);
  assert.equal(pr.isPaused(), true);
  pr.maybeUpdate(7);
  pr.inflights.freeLE(7);
  assert.equal(pr.inflights.count, 1);
});

Deno.test("Progress: stale updates and rejections change nothing", () => {
  const pr = progress("replicate", 5, 10);
  assert.equal(pr.maybeUpdate(4), false);
  assert.equal(pr.match, 5);
  assert.equal(pr.maybeDecrTo(5, 5), false, "rejection at or below match is stale");
  assert.equal(pr.maybeDecrTo(8, 3), true);
  assert.equal(pr.next, 6, "replicate falls back to match + 1");

  const probe = progress("probe", 0, 10);
  assert.equal(probe.maybeDecrTo(5, 0), false, "only the latest probe (at next - 1) counts");
  assert.equal(probe.maybeDecrTo(9, 3), true);
  assert.equal(probe.next, 4, "the follower's hint decides");
  assert.equal(probe.maybeDecrTo(3, 100), true);
  assert.equal(probe.next, 3, "never beyond the rejected index");
});

Deno.test("Progress: after a snapshot, probing resumes past it", () => {
  const pr = progress("probe", 2, 3);
  pr.becomeSnapshot(10);
  assert.equal(pr.isPaused(), true);
  assert.throws(() => pr.sentEntries(1, 1));
  pr.becomeProbe();
  assert.equal(pr.next, 11);
  assert.equal(pr.pendingSnapshot, 0);
});

Deno.test("ProgressTracker: commit and quorum over voters only", () => {
  const t = new ProgressTracker(8);
  t.voters = new Set([1, 2, 3]);
  t.learners = new Set([4]);
  for (const id of [1, 2, 3, 4]) t.progress.set(id, t.newProgress(1, id === 4));
  t.progress.get(1)!.match = 7;
  t.progress.get(4)!.match = 7;
  assert.equal(t.committed(), 0);
  t.progress.get(2)!.match = 5;
  assert.equal(t.committed(), 5);
  assert.equal(t.quorumActive(), false);
  t.progress.get(1)!.recentActive = true;
  t.progress.get(4)!.recentActive = true;
  assert.equal(t.quorumActive(), false);
  t.progress.get(3)!.recentActive = true;
  assert.equal(t.quorumActive(), true);
  t.recordVote(2, true);
  t.recordVote(2, false);
  t.recordVote(4, true);
  assert.deepEqual(t.tallyVotes(), { granted: 1, rejected: 0, result: "pending" });
  assert.deepEqual(t.confState(), { voters: [1, 2, 3], learners: [4] });
});
