/**
 * Multi-node scenarios on the in-memory {@linkcode Network} (etcd's raft_test.go style):
 * elections, failures, partitions, pre-vote and check-quorum, snapshots, membership changes,
 * leadership transfer and ReadIndex.
 */
import assert from "node:assert/strict";
import { bytes, Network } from "./_network_test_helper.ts";
import { ProposalDroppedError } from "./errors.ts";
import { Raft } from "./raft.ts";
import { MemoryStorage } from "./storage.ts";
import type { NodeId, PeerMessage } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

function role(net: Network, id: NodeId): string {
  return net.node(id).status().softState.role;
}

function term(net: Network, id: NodeId): number {
  return net.node(id).status().hardState.term;
}

function commit(net: Network, id: NodeId): number {
  return net.node(id).status().hardState.commit;
}

/** Ticks every node (stabilizing after each tick) until `done`, at most `max` times. */
function tickUntil(net: Network, done: () => boolean, max = 200): void {
  for (let i = 0; i < max; i++) {
    if (done()) return;
    net.tickAll();
  }
  assert.ok(done(), `condition not reached in ${max} ticks`);
}

/** Whether every node in `ids` applied exactly the same entries. */
function sameApplied(net: Network, ids: NodeId[]): boolean {
  const first = JSON.stringify(net.applied.get(ids[0]));
  return ids.every((id) => JSON.stringify(net.applied.get(id)) === first);
}

// ---------------------------------------------------------------------------------------------
// Elections

Deno.test("election: a 3-node cluster elects the node that campaigns", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  assert.equal(net.leader(), 1);
  for (const id of [1, 2, 3]) {
    assert.equal(term(net, id), 1);
    assert.equal(net.node(id).status().softState.lead, 1);
    // Every node applied the leader's empty entry.
    assert.deepEqual(net.applied.get(id), [""]);
  }
});

Deno.test("election: a 5-node cluster elects a leader by timeouts alone", () => {
  const net = new Network([1, 2, 3, 4, 5], { seed: 7 });
  tickUntil(net, () => net.leader() !== undefined);
  const lead = net.leader()!;
  for (const id of [1, 2, 3, 4, 5]) {
    assert.equal(net.node(id).status().softState.lead, lead);
    assert.equal(term(net, id), term(net, lead));
  }
});

Deno.test("election: a candidate wins with two of three nodes up, not with one", () => {
  const net = new Network([1, 2, 3], { config: { preVote: false } });
  net.remove(3);
  net.elect(1);
  assert.equal(net.leader(), 1);

  const lonely = new Network([1, 2, 3], { config: { preVote: false } });
  lonely.isolate(1);
  lonely.elect(1);
  assert.equal(role(lonely, 1), "candidate");
});

Deno.test("election: with pre-vote, an isolated node never raises its term", () => {
  const net = new Network([1, 2, 3]);
  net.isolate(1);
  net.elect(1);
  assert.equal(role(net, 1), "preCandidate");
  assert.equal(term(net, 1), 0);
  net.tick(1, 100);
  assert.equal(term(net, 1), 0);
});

Deno.test("election: the leader crashes (isolated) and the others elect a new one", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.propose(1, "before");
  net.stabilize();
  net.isolate(1);
  tickUntil(net, () => net.leader() !== undefined && net.leader() !== 1);
  const lead = net.leader()!;
  assert.ok(term(net, lead) > 1);
  net.propose(lead, "after");
  net.stabilize();
  const other = lead === 2 ? 3 : 2;
  assert.deepEqual(net.applied.get(other)?.filter((t) => t !== ""), ["before", "after"]);
  // The old leader rejoins and catches up.
  net.recover();
  tickUntil(net, () => sameApplied(net, [1, 2, 3]));
  assert.equal(net.node(1).status().softState.lead, lead);
});

// ---------------------------------------------------------------------------------------------
// Check-quorum and pre-vote

Deno.test("check-quorum: a partitioned leader cannot commit and steps down", () => {
  const net = new Network([1, 2, 3, 4, 5]);
  net.elect(1);
  net.isolate(1);
  net.propose(1, "lost");
  net.stabilize();
  assert.equal(commit(net, 1), 1);
  // Within an election timeout, or two, it notices no quorum answers.
  for (let i = 0; i < 20 && role(net, 1) === "leader"; i++) net.tick(1);
  assert.equal(role(net, 1), "follower");
  // The majority elects a leader meanwhile and commits new entries.
  tickUntil(net, () => net.leader() !== undefined && net.leader() !== 1);
  const lead = net.leader()!;
  net.propose(lead, "kept");
  net.stabilize();
  // On recovery the old leader's uncommitted entry is replaced.
  net.recover();
  tickUntil(net, () => sameApplied(net, [1, 2, 3, 4, 5]));
  assert.ok(net.applied.get(1)!.includes("kept"));
  assert.ok(!net.applied.get(1)!.includes("lost"));
});

Deno.test("check-quorum: a leader with an active quorum stays leader", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.tickAll(50);
  assert.equal(net.leader(), 1);
  assert.equal(term(net, 1), 1);
});

Deno.test("check-quorum: followers that heard from a leader ignore a disruptive candidate", () => {
  const net = new Network([1, 2, 3], { config: { preVote: false } });
  net.elect(1);
  // Node 3 campaigns at once (no pre-vote): 1 and 2 are within their lease and ignore it.
  net.node(3).campaign();
  net.processAll();
  const votes = net.queue.filter((m) => m.type === "MsgVote");
  for (const m of votes) net.deliver(m);
  net.queue = net.queue.filter((m) => m.type !== "MsgVote");
  net.processAll();
  assert.equal(net.queue.filter((m) => m.type === "MsgVoteResp").length, 0);
  assert.equal(role(net, 1), "leader");
  assert.equal(term(net, 1), 1);
});

Deno.test("pre-vote: a node rejoining from a partition does not disrupt the leader", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.tickAll(50);
  net.recover();
  net.tickAll(5);
  assert.equal(net.leader(), 1);
  assert.equal(term(net, 1), 1);
  assert.equal(term(net, 3), 1);
  assert.equal(net.node(3).status().softState.lead, 1);
});

Deno.test("pre-vote: without it, the rejoining node's higher term deposes the leader", () => {
  const net = new Network([1, 2, 3], { config: { preVote: false, checkQuorum: false } });
  net.elect(1);
  net.isolate(3);
  net.tickAll(50);
  assert.ok(term(net, 3) > 1);
  net.recover();
  net.tickAll(30);
  assert.ok(term(net, 1) > 1, "the leader had to give up its term");
});

Deno.test("pre-vote: a pre-candidate whose log is behind gets no votes and keeps its term", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.propose(1, "y");
  net.stabilize();
  net.recover();
  // Node 2 refuses (3's log is behind); the leader ignores it (its lease holds).
  net.node(3).campaign();
  net.stabilize();
  assert.equal(role(net, 3), "preCandidate");
  assert.equal(term(net, 3), 1);
  // The leader's next heartbeat brings 3 back.
  net.tickAll(1);
  assert.equal(role(net, 3), "follower");
  assert.equal(net.node(3).status().softState.lead, 1);
  assert.equal(term(net, 1), 1);
});

// ---------------------------------------------------------------------------------------------
// Replication

Deno.test("replication: proposals commit on a majority and every node applies them in order", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  for (const s of ["a", "b", "c"]) net.propose(1, s);
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.applied.get(id), ["", "a", "b", "c"]);
});

Deno.test("replication: followers drop proposals; the driver must find the leader", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  assert.throws(() => net.propose(2, "x"), ProposalDroppedError);
});

Deno.test("replication: entries proposed while a follower is busy travel in one append", () => {
  // A window of one append: while "a" is in flight, "b", "c" and "d" wait, then go together.
  const net = new Network([1, 2, 3], { config: { maxInflightMsgs: 1 } });
  net.elect(1);
  net.trace = [];
  for (const s of ["a", "b", "c", "d"]) net.propose(1, s);
  net.stabilize();
  const appsTo2 = net.trace.filter((l) => l.startsWith("1->2 MsgApp") && l.includes("Entries"));
  assert.deepEqual(appsTo2, [
    '1->2 MsgApp Term:1 Log:1/1 Commit:1 Entries:[1/2 EntryNormal "a"]',
    '1->2 MsgApp Term:1 Log:1/2 Commit:2 Entries:[1/3 EntryNormal "b", 1/4 EntryNormal "c", ' +
    '1/5 EntryNormal "d"]',
  ]);
  for (const id of [1, 2, 3]) assert.deepEqual(net.applied.get(id), ["", "a", "b", "c", "d"]);
});

Deno.test("replication: the in-flight window bounds the appends streamed to a follower", () => {
  const net = new Network([1, 2, 3], { config: { maxInflightMsgs: 2, maxSizePerMsg: 0 } });
  net.elect(1);
  for (let i = 0; i < 5; i++) {
    net.propose(1, `e${i}`);
    net.processReady(1);
  }
  const apps = net.queue.filter((m) => m.type === "MsgApp" && m.to === 2);
  assert.equal(apps.length, 2);
  assert.equal(net.node(1).status().progress.get(2)?.paused, true);
  // Acknowledgements open the window again and everything gets through.
  net.stabilize();
  for (const id of [1, 2, 3]) assert.equal(net.applied.get(id)!.length, 6);
});

Deno.test("replication: maxSizePerMsg splits a catch-up into several appends", () => {
  const net = new Network([1, 2, 3], { config: { maxSizePerMsg: 2048 } });
  net.elect(1);
  net.isolate(3);
  const big = "x".repeat(1000);
  for (let i = 0; i < 6; i++) net.propose(1, big);
  net.stabilize();
  net.trace = [];
  net.recover();
  tickUntil(net, () => sameApplied(net, [1, 2, 3]));
  const apps = net.trace.filter((l) => l.startsWith("1->3 MsgApp") && l.includes("Entries"));
  assert.ok(apps.length >= 3, apps.join("\n"));
  for (const l of apps) assert.ok((l.match(/EntryNormal/g) ?? []).length <= 2, l);
});

Deno.test("replication: maxCommittedSizePerReady bounds what one Ready applies", () => {
  const net = new Network([1], { config: { maxCommittedSizePerReady: 10 } });
  net.elect(1);
  for (let i = 0; i < 5; i++) net.propose(1, "0123456789");
  const node = net.node(1);
  const storage = net.storages.get(1)!;
  let rd = node.ready();
  storage.append(rd.entries);
  node.advance();
  const sizes: number[] = [];
  while (node.hasReady()) {
    rd = node.ready();
    storage.append(rd.entries);
    if (rd.hardState) storage.setHardState(rd.hardState);
    if (rd.committedEntries.length > 0) sizes.push(rd.committedEntries.length);
    node.advance();
  }
  assert.deepEqual(sizes, [1, 1, 1, 1, 1]);
});

Deno.test("replication: an unreachable follower is probed, not streamed to", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  assert.equal(net.node(1).status().progress.get(2)?.state, "replicate");
  net.node(1).reportUnreachable(2);
  assert.equal(net.node(1).status().progress.get(2)?.state, "probe");
  net.propose(1, "x");
  net.stabilize();
  assert.equal(net.node(1).status().progress.get(2)?.state, "replicate");
  assert.ok(sameApplied(net, [1, 2, 3]));
});

Deno.test("replication: a rejecting follower's hint skips a whole divergent term at once", () => {
  const divergent = (t: number, from: number, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      term: t,
      index: from + i,
      type: "normal" as const,
      data: bytes(""),
    }));
  const net = new Network([1, 2, 3], {
    config: { preVote: false, maxSizePerMsg: 0 },
    prepare: (id, storage) => {
      storage.append(divergent(1, 1, 2));
      // Node 2 has a long tail of term 2 that never committed; 1 and 3 a shorter one of term 3.
      if (id === 2) storage.append(divergent(2, 3, 50));
      else storage.append(divergent(3, 3, 5));
      storage.setHardState({ term: id === 2 ? 2 : 3, vote: 0, commit: 2 });
    },
  });
  net.trace = [];
  net.elect(1);
  assert.equal(net.leader(), 1);
  const rejects = net.trace.filter((l) =>
    l.startsWith("2->1 MsgAppResp") && l.includes("Rejected")
  );
  assert.ok(rejects.length <= 2, `${rejects.length} rejections:\n${rejects.join("\n")}`);
  tickUntil(net, () => sameApplied(net, [1, 2, 3]));
});

Deno.test("replication: duplicated and reordered messages are harmless", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  const seen: PeerMessage[] = [];
  net.msgHook = (m) => {
    seen.push(m);
    return true;
  };
  net.propose(1, "a");
  net.stabilize();
  net.msgHook = undefined;
  // Replay everything, newest first.
  net.send(...seen.reverse());
  net.propose(1, "b");
  net.stabilize();
  for (const id of [1, 2, 3]) assert.deepEqual(net.applied.get(id), ["", "a", "b"]);
});

// ---------------------------------------------------------------------------------------------
// Snapshots

Deno.test("snapshot: a follower behind the leader's compacted log catches up from a snapshot", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 10; i++) net.propose(1, `e${i}`);
  net.stabilize();
  const snap = net.compact(1);
  assert.equal(snap.metadata.index, 11);
  net.compact(2);
  net.trace = [];
  net.recover();
  tickUntil(net, () => sameApplied(net, [1, 2, 3]));
  assert.ok(net.trace.some((l) => l.startsWith("1->3 MsgSnap")));
  assert.equal(net.storages.get(3)!.snapshot().metadata.index, 11);
  assert.equal(net.node(1).status().progress.get(3)?.state, "replicate");
  // Replication continues after the snapshot.
  net.propose(1, "after");
  net.stabilize();
  assert.deepEqual(net.applied.get(3)!.at(-1), "after");
});

Deno.test("snapshot: a restarted node resumes from its snapshot and log", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`);
  net.stabilize();
  net.compact(2);
  net.propose(1, "tail");
  net.stabilize();
  const before = [...net.applied.get(2)!];
  net.restart(2);
  net.tickAll(3);
  assert.deepEqual(net.applied.get(2), before);
  net.propose(1, "more");
  net.stabilize();
  assert.equal(net.applied.get(2)!.at(-1), "more");
});

// ---------------------------------------------------------------------------------------------
// Membership

Deno.test("membership: a learner is added, catches up from a snapshot, then becomes a voter", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`);
  net.stabilize();
  net.proposeConfChange(1, { type: "addLearner", nodeId: 4 });
  net.stabilize();
  assert.deepEqual(net.confStates.get(1), { voters: [1, 2, 3], learners: [4] });
  // The leader compacts after the change, so its snapshot knows the learner.
  net.compact(1);
  net.add(4, { voters: [1, 2, 3], learners: [4] });
  tickUntil(net, () => sameApplied(net, [1, 2, 3, 4]));
  assert.equal(net.storages.get(4)!.snapshot().metadata.index > 0, true);
  // A learner never campaigns and is not needed for commit.
  net.tick(4, 100);
  assert.equal(role(net, 4), "follower");
  assert.equal(term(net, 4), 1);
  net.isolate(4);
  net.propose(1, "without 4");
  net.stabilize();
  assert.equal(net.applied.get(1)!.at(-1), "without 4");
  net.recover();
  // Promotion.
  net.proposeConfChange(1, { type: "addNode", nodeId: 4 });
  net.stabilize();
  tickUntil(net, () => sameApplied(net, [1, 2, 3, 4]));
  for (const id of [1, 2, 3, 4]) {
    assert.deepEqual(net.confStates.get(id), { voters: [1, 2, 3, 4], learners: [] });
  }
  assert.equal(net.node(1).status().progress.get(4)?.isLearner, false);
  // Now 4 can lead.
  net.node(1).transferLeader(4);
  net.stabilize();
  assert.equal(net.leader(), 4);
});

Deno.test("membership: only one conf change may be pending at a time", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.proposeConfChange(1, { type: "addLearner", nodeId: 4 });
  assert.throws(
    () => net.proposeConfChange(1, { type: "addLearner", nodeId: 5 }),
    ProposalDroppedError,
  );
  net.stabilize();
  // Once applied, the next one is accepted.
  net.proposeConfChange(1, { type: "addLearner", nodeId: 5 });
  net.stabilize();
  assert.deepEqual(net.confStates.get(2), { voters: [1, 2, 3], learners: [4, 5] });
});

Deno.test("membership: a change that would leave no voters is refused", () => {
  const net = new Network([1]);
  net.elect(1);
  assert.throws(
    () => net.proposeConfChange(1, { type: "removeNode", nodeId: 1 }),
    ProposalDroppedError,
  );
});

Deno.test("membership: a removed follower no longer counts for commit", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.proposeConfChange(1, { type: "removeNode", nodeId: 3 });
  net.stabilize();
  net.remove(3);
  assert.deepEqual(net.node(1).status().config, { voters: [1, 2], learners: [] });
  net.propose(1, "two of two");
  net.stabilize();
  assert.equal(net.applied.get(2)!.at(-1), "two of two");
  // With 2 gone too, 1 alone is no majority of {1, 2}.
  net.isolate(2);
  net.propose(1, "stuck");
  net.stabilize();
  assert.notEqual(net.applied.get(1)!.at(-1), "stuck");
});

Deno.test("membership: a removed leader steps down and the rest elect a new one", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.proposeConfChange(1, { type: "removeNode", nodeId: 1 });
  net.stabilize();
  assert.equal(role(net, 1), "follower");
  net.remove(1);
  tickUntil(net, () => net.leader() !== undefined);
  assert.ok([2, 3].includes(net.leader()!));
  net.propose(net.leader()!, "x");
  net.stabilize();
  assert.ok(sameApplied(net, [2, 3]));
});

// ---------------------------------------------------------------------------------------------
// Leadership transfer

Deno.test("transfer: the leader hands over to an up-to-date follower", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.trace = [];
  net.node(1).transferLeader(2);
  net.stabilize();
  assert.equal(net.leader(), 2);
  assert.equal(term(net, 2), 2);
  assert.ok(net.trace.includes("1->2 MsgTimeoutNow Term:1 Log:0/0"));
});

Deno.test("transfer: a lagging transferee is caught up first", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 3; i++) net.propose(1, `e${i}`);
  net.stabilize();
  net.recover();
  net.node(1).transferLeader(3);
  // No proposals while the transfer is in progress.
  assert.throws(() => net.propose(1, "no"), ProposalDroppedError);
  net.stabilize();
  assert.equal(net.leader(), 3);
  assert.ok(sameApplied(net, [1, 2, 3]));
});

Deno.test("transfer: requested at a follower, it is forwarded to the leader", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.node(3).transferLeader(3);
  net.stabilize();
  assert.equal(net.leader(), 3);
});

Deno.test("transfer: to a learner or to the leader itself, it is ignored", () => {
  const net = new Network([1, 2, 3, 4], { learners: [4] });
  net.elect(1);
  net.node(1).transferLeader(4);
  net.node(1).transferLeader(1);
  net.stabilize();
  assert.equal(net.node(1).status().leadTransferee, 0);
  assert.equal(net.leader(), 1);
});

Deno.test("transfer: to an unreachable node, it is abandoned after an election timeout", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(3);
  net.node(1).transferLeader(3);
  net.stabilize();
  assert.equal(net.node(1).status().leadTransferee, 3);
  net.tickAll(10);
  assert.equal(net.node(1).status().leadTransferee, 0);
  assert.equal(net.leader(), 1);
  net.propose(1, "accepted again");
});

// ---------------------------------------------------------------------------------------------
// ReadIndex

const ctx = (s: string) => bytes(s);

Deno.test("read index: the leader answers with its commit index after a heartbeat round", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.propose(1, "w");
  net.stabilize();
  net.node(1).readIndex(ctx("r1"));
  net.stabilize();
  assert.deepEqual(net.readStates.get(1), [{ index: 2, context: ctx("r1") }]);
});

Deno.test("read index: a follower's request is forwarded and answered", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.node(2).readIndex(ctx("r2"));
  net.stabilize();
  assert.deepEqual(net.readStates.get(2), [{ index: 1, context: ctx("r2") }]);
});

Deno.test("read index: a partitioned leader answers nothing", () => {
  const net = new Network([1, 2, 3]);
  net.elect(1);
  net.isolate(1);
  net.node(1).readIndex(ctx("stale"));
  net.stabilize();
  net.tickAll(30);
  assert.deepEqual(net.readStates.get(1), []);
  assert.equal(role(net, 1), "follower");
});

Deno.test("read index: a new leader holds reads until an entry of its term commits", () => {
  const net = new Network([1, 2, 3]);
  net.ignore("MsgApp");
  net.elect(1);
  assert.equal(net.leader(), 1);
  net.node(1).readIndex(ctx("early"));
  net.stabilize();
  assert.deepEqual(net.readStates.get(1), []);
  net.recover();
  net.tickAll(2);
  assert.deepEqual(net.readStates.get(1), [{ index: 1, context: ctx("early") }]);
});

Deno.test("read index: a single node answers at once", () => {
  const net = new Network([1]);
  net.elect(1);
  net.node(1).readIndex(ctx("solo"));
  net.stabilize();
  assert.deepEqual(net.readStates.get(1), [{ index: 1, context: ctx("solo") }]);
});

Deno.test("a heartbeat response to a leader whose window to a follower is full sends an empty append", () => {
  // Regression: the leader unpaused the flow on MsgHeartbeatResp and then tried to add entries to
  // a full Inflights window, which threw ("Cannot add to a full Inflights window").
  const storage = new MemoryStorage({ confState: { voters: [1, 2], learners: [] } });
  const r = new Raft({
    id: 1,
    storage,
    random: () => 0,
    maxInflightMsgs: 2,
    electionTick: 10,
    heartbeatTick: 1,
  });
  r.becomeCandidate();
  r.becomeLeader();
  const pr = r.trk.progress.get(2)!;
  pr.becomeReplicate();
  for (let i = 0; i < 4; i++) {
    r.step(
      {
        type: "MsgProp",
        from: 1,
        to: 1,
        term: 0,
        entries: [{ term: 0, index: 0, type: "normal", data: new Uint8Array([i]) }],
      } as never,
    );
  }
  assert.ok(pr.inflights.full(), "the window to 2 is full");
  r.msgs.length = 0;
  assert.doesNotThrow(() =>
    r.step({ type: "MsgHeartbeatResp", from: 2, to: 1, term: r.term } as never)
  );
  const apps = r.msgs.filter((m) => m.type === "MsgApp");
  assert.equal(apps.length, 1);
  assert.equal((apps[0] as { entries: readonly unknown[] }).entries.length, 0, "an empty append");
});
