/**
 * Tests that follow the Raft paper ("In Search of an Understandable Consensus Algorithm",
 * extended version), section by section, in etcd's three parts: init, tick/step, check the
 * state and the messages drained from the state machine.
 *
 * These run the bare state machine without pre-vote and check-quorum, as the paper describes
 * it; those extensions are tested in raft_test.ts.
 */
import assert from "node:assert/strict";
import { bytes, Network, seededRandom } from "./_network_test_helper.ts";
import { type Config, Raft } from "./raft.ts";
import { MemoryStorage } from "./storage.ts";
import {
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  None,
  type PeerMessage,
} from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

interface TestRaftOptions {
  entries?: Entry[];
  hardState?: HardState;
  config?: Partial<Config>;
}

function newTestRaft(id: NodeId, peers: NodeId[], options: TestRaftOptions = {}) {
  const storage = new MemoryStorage({ confState: { voters: peers, learners: [] } });
  if (options.entries) storage.append(options.entries);
  if (options.hardState) storage.setHardState(options.hardState);
  const r = new Raft({
    id,
    storage,
    electionTick: 10,
    heartbeatTick: 1,
    preVote: false,
    checkQuorum: false,
    random: seededRandom(id),
    ...options.config,
  });
  return { r, storage };
}

/** An entry of `term` at `index` (data optional). */
function ent(term: number, index: number, data = ""): Entry {
  return { term, index, type: "normal", data: bytes(data) };
}

/** Persists the unstable tail, as an application handling a Ready would, and acknowledges it. */
function persist(r: Raft, storage: MemoryStorage): void {
  const ents = r.raftLog.nextUnstableEntries();
  r.raftLog.acceptUnstable();
  storage.append(ents);
  const last = ents.at(-1);
  if (last) r.stableTo(last.index, last.term);
}

/** Drained messages, sorted by recipient (the order of a broadcast is not the point). */
function sortedMessages(r: Raft): PeerMessage[] {
  return r.readMessages().sort((a, b) => a.to - b.to);
}

const hup = (id: NodeId): Message => ({ type: "MsgHup", from: id, to: id, term: 0 });

function appResp(from: NodeId, to: NodeId, term: number, index: number): PeerMessage {
  return { type: "MsgAppResp", from, to, term, index, reject: false, rejectHint: 0, logTerm: 0 };
}

/** Makes `r` (id 1) leader and commits its empty entry with acks from every follower. */
function commitNoopEntry(r: Raft, storage: MemoryStorage): void {
  assert.equal(r.role, "leader");
  r.bcastAppend();
  persist(r, storage);
  for (const m of r.readMessages()) {
    assert.equal(m.type, "MsgApp");
    if (m.type !== "MsgApp") continue;
    r.step(appResp(m.to, r.id, r.term, m.index + m.entries.length));
  }
  r.readMessages();
  // The application applies what committed.
  const committed = r.raftLog.nextCommittedEntries();
  r.raftLog.acceptApplying(committed.at(-1)!.index);
  r.appliedTo(r.raftLog.committed);
}

// ---------------------------------------------------------------------------------------------
// §5.1 Raft basics

Deno.test("§5.1: a node starts as a follower", () => {
  const { r } = newTestRaft(1, [1, 2, 3]);
  assert.equal(r.role, "follower");
  assert.equal(r.term, 0);
});

Deno.test("§5.1: a node of any role that sees a higher term adopts it and follows", () => {
  for (const become of ["follower", "candidate", "leader"] as const) {
    const { r } = newTestRaft(1, [1, 2, 3]);
    if (become === "follower") r.becomeFollower(1, 2);
    if (become !== "follower") r.becomeCandidate();
    if (become === "leader") r.becomeLeader();
    r.step({
      type: "MsgApp",
      from: 2,
      to: 1,
      term: 2,
      index: 0,
      logTerm: 0,
      entries: [],
      commit: 0,
    });
    assert.equal(r.term, 2, become);
    assert.equal(r.role, "follower", become);
    assert.equal(r.lead, 2, become);
  }
});

Deno.test("§5.1: a message with a stale term is ignored", () => {
  const { r } = newTestRaft(1, [1, 2, 3]);
  r.becomeFollower(2, 2);
  r.step({
    type: "MsgApp",
    from: 3,
    to: 1,
    term: 1,
    index: 0,
    logTerm: 0,
    entries: [ent(1, 1)],
    commit: 0,
  });
  assert.equal(r.term, 2);
  assert.equal(r.lead, 2);
  assert.equal(r.raftLog.lastIndex(), 0);
  assert.deepEqual(r.readMessages(), []);
});

// ---------------------------------------------------------------------------------------------
// §5.2 Leader election

Deno.test("§5.2: a leader sends heartbeats every heartbeat timeout", () => {
  const { r } = newTestRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  r.readMessages();
  r.tick();
  assert.deepEqual(sortedMessages(r), [
    { type: "MsgHeartbeat", from: 1, to: 2, term: 1, commit: 0 },
    { type: "MsgHeartbeat", from: 1, to: 3, term: 1, commit: 0 },
  ]);
});

Deno.test("§5.2: a follower or candidate that hears nothing starts an election", () => {
  for (const start of ["follower", "candidate"] as const) {
    const { r } = newTestRaft(1, [1, 2, 3]);
    if (start === "follower") r.becomeFollower(1, 2);
    else r.becomeCandidate();
    for (let i = 0; i < 2 * r.electionTimeout && r.term === 1; i++) r.tick();
    assert.equal(r.term, 2, start);
    assert.equal(r.role, "candidate", start);
    assert.equal(r.vote, 1, start);
    assert.equal(r.trk.votes.get(1), true, start);
    assert.deepEqual(sortedMessages(r), [
      { type: "MsgVote", from: 1, to: 2, term: 2, index: 0, logTerm: 0 },
      { type: "MsgVote", from: 1, to: 3, term: 2, index: 0, logTerm: 0 },
    ], start);
  }
});

Deno.test("§5.2: a candidate wins with a majority, loses with a majority against", () => {
  const cases: [size: number, votes: [NodeId, boolean][], role: string][] = [
    [1, [], "leader"],
    [3, [[2, true], [3, true]], "leader"],
    [3, [[2, true]], "leader"],
    [5, [[2, true], [3, true], [4, true], [5, true]], "leader"],
    [5, [[2, true], [3, true], [4, true]], "leader"],
    [5, [[2, true], [3, true]], "leader"],
    [3, [[2, false], [3, false]], "follower"],
    [5, [[2, false], [3, false], [4, false], [5, false]], "follower"],
    [5, [[2, true], [3, false], [4, false], [5, false]], "follower"],
    [3, [], "candidate"],
    [5, [[2, true]], "candidate"],
    [5, [[2, false], [3, false]], "candidate"],
    [5, [], "candidate"],
  ];
  for (const [size, votes, role] of cases) {
    const ids = Array.from({ length: size }, (_, i) => i + 1);
    const { r } = newTestRaft(1, ids);
    r.step(hup(1));
    for (const [id, granted] of votes) {
      r.step({ type: "MsgVoteResp", from: id, to: 1, term: r.term, reject: !granted });
    }
    assert.equal(r.role, role, `size ${size}, votes ${JSON.stringify(votes)}`);
    assert.equal(r.term, 1);
  }
});

Deno.test("§5.2: a follower votes at most once per term, first come first served", () => {
  const cases: [vote: NodeId, candidate: NodeId, reject: boolean][] = [
    [0, 2, false],
    [0, 3, false],
    [2, 2, false],
    [3, 3, false],
    [2, 3, true],
    [3, 2, true],
  ];
  for (const [vote, candidate, reject] of cases) {
    const { r } = newTestRaft(1, [1, 2, 3], { hardState: { term: 1, vote, commit: 0 } });
    r.step({ type: "MsgVote", from: candidate, to: 1, term: 1, index: 0, logTerm: 0 });
    assert.deepEqual(r.readMessages(), [
      { type: "MsgVoteResp", from: 1, to: candidate, term: 1, reject },
    ], `vote ${vote}, candidate ${candidate}`);
  }
});

Deno.test("§5.2: a candidate that hears from the leader of its term or later steps down", () => {
  for (const term of [1, 2]) {
    const { r } = newTestRaft(1, [1, 2, 3]);
    r.step(hup(1));
    assert.equal(r.role, "candidate");
    r.step({ type: "MsgApp", from: 2, to: 1, term, index: 0, logTerm: 0, entries: [], commit: 0 });
    assert.equal(r.role, "follower");
    assert.equal(r.term, term);
    assert.equal(r.lead, 2);
  }
});

Deno.test("§5.2: a candidate that sees a higher term in a vote answer steps down", () => {
  const { r } = newTestRaft(1, [1, 2, 3]);
  r.step(hup(1));
  r.step({ type: "MsgVoteResp", from: 2, to: 1, term: 5, reject: true });
  assert.equal(r.role, "follower");
  assert.equal(r.term, 5);
  assert.equal(r.vote, 0);
});

Deno.test("§5.2: election timeouts are randomised in [electionTick, 2 * electionTick)", () => {
  const seen = new Set<number>();
  for (let k = 0; k < 10; k++) {
    const { r } = newTestRaft(1, [1, 2, 3], { config: { random: () => k / 10 } });
    seen.add(r.randomizedElectionTimeout);
  }
  const { r } = newTestRaft(1, [1, 2, 3], { config: { random: () => 0.99999999 } });
  seen.add(r.randomizedElectionTimeout);
  assert.deepEqual([...seen].sort((a, b) => a - b), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
});

Deno.test("§5.2: randomised timeouts make simultaneous candidacies rare", () => {
  // Two followers with different seeds: how often would they time out on the same tick?
  const a = newTestRaft(1, [1, 2, 3], { config: { random: seededRandom(11) } }).r;
  const b = newTestRaft(2, [1, 2, 3], { config: { random: seededRandom(22) } }).r;
  let conflicts = 0;
  const rounds = 1000;
  for (let i = 0; i < rounds; i++) {
    a.becomeFollower(a.term + 1, None);
    b.becomeFollower(b.term + 1, None);
    if (a.randomizedElectionTimeout === b.randomizedElectionTimeout) conflicts++;
  }
  assert.ok(conflicts / rounds <= 0.3, `${conflicts} conflicts in ${rounds} rounds`);
});

// ---------------------------------------------------------------------------------------------
// §5.3 Log replication

Deno.test("§5.3: the leader appends a proposal and sends it to every follower", () => {
  const { r, storage } = newTestRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  commitNoopEntry(r, storage);
  const li = r.raftLog.lastIndex();
  r.step({ type: "MsgProp", from: 1, to: 1, term: 0, entries: [ent(0, 0, "some data")] });
  assert.equal(r.raftLog.lastIndex(), li + 1);
  assert.equal(r.raftLog.committed, li);
  const wents = [ent(1, li + 1, "some data")];
  assert.deepEqual(sortedMessages(r), [
    { type: "MsgApp", from: 1, to: 2, term: 1, index: li, logTerm: 1, entries: wents, commit: li },
    { type: "MsgApp", from: 1, to: 3, term: 1, index: li, logTerm: 1, entries: wents, commit: li },
  ]);
  assert.deepEqual(r.raftLog.nextUnstableEntries(), wents);
});

Deno.test("§5.3: the leader commits an entry once a majority stored it", () => {
  const { r, storage } = newTestRaft(1, [1, 2, 3]);
  r.becomeCandidate();
  r.becomeLeader();
  commitNoopEntry(r, storage);
  const li = r.raftLog.lastIndex();
  r.step({ type: "MsgProp", from: 1, to: 1, term: 0, entries: [ent(0, 0, "some data")] });
  persist(r, storage);
  for (const m of r.readMessages()) {
    if (m.type === "MsgApp") r.step(appResp(m.to, 1, 1, m.index + m.entries.length));
  }
  assert.equal(r.raftLog.committed, li + 1);
  assert.deepEqual(r.raftLog.nextCommittedEntries(), [ent(1, li + 1, "some data")]);
  // Followers learn the new commit index in the next appends.
  const commits = sortedMessages(r).filter((m) => m.type === "MsgApp").map((m) =>
    m.type === "MsgApp" ? [m.to, m.commit] : []
  );
  assert.deepEqual(commits, [[2, li + 1], [3, li + 1]]);
});

Deno.test("§5.3: an entry commits when a majority, the leader's persisted log included, has it", () => {
  const cases: [size: number, acceptors: NodeId[], commits: boolean][] = [
    [1, [], true],
    [3, [], false],
    [3, [2], true],
    [3, [2, 3], true],
    [5, [], false],
    [5, [2], false],
    [5, [2, 3], true],
    [5, [2, 3, 4, 5], true],
  ];
  for (const [size, acceptors, commits] of cases) {
    const ids = Array.from({ length: size }, (_, i) => i + 1);
    const { r, storage } = newTestRaft(1, ids);
    r.becomeCandidate();
    r.becomeLeader();
    commitNoopEntry(r, storage);
    const li = r.raftLog.lastIndex();
    r.step({ type: "MsgProp", from: 1, to: 1, term: 0, entries: [ent(0, 0, "some data")] });
    persist(r, storage);
    for (const m of r.readMessages()) {
      if (m.type === "MsgApp" && acceptors.includes(m.to)) {
        r.step(appResp(m.to, 1, 1, m.index + m.entries.length));
      }
    }
    assert.equal(r.raftLog.committed > li, commits, `size ${size}, acceptors ${acceptors}`);
  }
});

Deno.test("§5.3: a leader does not count its own log before it is persisted", () => {
  const { r, storage } = newTestRaft(1, [1]);
  r.step(hup(1));
  assert.equal(r.role, "leader");
  assert.equal(r.raftLog.committed, 0);
  persist(r, storage);
  assert.equal(r.raftLog.committed, 1);
});

Deno.test("§5.3: a follower commits what the leader says is committed", () => {
  const cases: [entries: Entry[], commit: number][] = [
    [[ent(1, 1, "some data")], 1],
    [[ent(1, 1, "some data"), ent(1, 2, "some data2")], 2],
    [[ent(1, 1, "some data2"), ent(1, 2, "some data")], 2],
    [[ent(1, 1, "some data"), ent(1, 2, "some data2")], 1],
  ];
  for (const [entries, commit] of cases) {
    const { r } = newTestRaft(1, [1, 2, 3]);
    r.becomeFollower(1, 2);
    r.step({ type: "MsgApp", from: 2, to: 1, term: 1, index: 0, logTerm: 0, entries, commit });
    assert.equal(r.raftLog.committed, commit);
    assert.deepEqual(r.raftLog.nextCommittedEntries(), entries.slice(0, commit));
  }
});

Deno.test("§5.3: a follower refuses an append whose previous entry it lacks, with a hint", () => {
  const ents = [ent(1, 1), ent(2, 2)];
  const cases: [
    logTerm: number,
    index: number,
    wIndex: number,
    wReject: boolean,
    wHint: number,
    wLogTerm: number,
  ][] = [
    [0, 0, 1, false, 0, 0], // before the commit index: everything up to it matches
    [1, 1, 1, false, 0, 0],
    [2, 2, 2, false, 0, 0],
    [1, 2, 2, true, 1, 1], // term mismatch at 2: our last entry of term <= 1 is 1
    [3, 3, 3, true, 2, 2], // beyond our log: hint at our last entry
  ];
  for (const [logTerm, index, wIndex, wReject, wHint, wLogTerm] of cases) {
    const { r } = newTestRaft(1, [1, 2, 3], {
      entries: ents,
      hardState: { term: 0, vote: 0, commit: 1 },
    });
    r.becomeFollower(2, 2);
    r.step({ type: "MsgApp", from: 2, to: 1, term: 2, index, logTerm, entries: [], commit: 0 });
    assert.deepEqual(r.readMessages(), [{
      type: "MsgAppResp",
      from: 1,
      to: 2,
      term: 2,
      index: wIndex,
      reject: wReject,
      rejectHint: wHint,
      logTerm: wLogTerm,
    }], `append after ${logTerm}/${index}`);
  }
});

Deno.test("§5.3: a follower deletes a conflicting suffix and appends the leader's entries", () => {
  const cases: [
    index: number,
    logTerm: number,
    ents: Entry[],
    wAll: Entry[],
    wUnstable: Entry[],
  ][] = [
    [2, 2, [ent(3, 3)], [ent(1, 1), ent(2, 2), ent(3, 3)], [ent(3, 3)]],
    [1, 1, [ent(3, 2), ent(4, 3)], [ent(1, 1), ent(3, 2), ent(4, 3)], [ent(3, 2), ent(4, 3)]],
    [0, 0, [ent(1, 1)], [ent(1, 1), ent(2, 2)], []],
    [0, 0, [ent(3, 1)], [ent(3, 1)], [ent(3, 1)]],
  ];
  for (const [index, logTerm, ents, wAll, wUnstable] of cases) {
    const { r } = newTestRaft(1, [1, 2, 3], { entries: [ent(1, 1), ent(2, 2)] });
    r.becomeFollower(2, 2);
    r.step({ type: "MsgApp", from: 2, to: 1, term: 2, index, logTerm, entries: ents, commit: 0 });
    assert.deepEqual(r.raftLog.allEntries(), wAll);
    assert.deepEqual(r.raftLog.nextUnstableEntries(), wUnstable);
  }
});

Deno.test("§5.3 (Figure 7): a new leader brings any follower's log in line with its own", () => {
  const terms = (...ts: number[]) => ts.map((t, i) => ent(t, i + 1));
  const leaderLog = terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6);
  const followerLogs = [
    terms(1, 1, 1, 4, 4, 5, 5, 6, 6), // (a) missing one entry
    terms(1, 1, 1, 4), // (b) missing many
    terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6), // (c) one extra, uncommitted
    terms(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7), // (d) extra entries of a later term
    terms(1, 1, 1, 4, 4, 4, 4), // (e) divergent term-4 tail
    terms(1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3), // (f) terms 2 and 3 that never committed
  ];
  for (const [i, followerLog] of followerLogs.entries()) {
    const net = new Network([1, 2, 3], {
      config: { preVote: false, checkQuorum: false },
      prepare: (id, storage) => {
        if (id === 1) {
          storage.append(leaderLog);
          storage.setHardState({ term: 8, vote: 0, commit: leaderLog.length });
        } else if (id === 2) {
          storage.append(followerLog);
          storage.setHardState({ term: 7, vote: 0, commit: 0 });
        }
      },
    });
    // Node 3 is silent; its vote is forged so that 1 wins whatever 2 thinks of its log.
    net.remove(3);
    net.node(1).campaign();
    net.send({ type: "MsgVoteResp", from: 3, to: 1, term: 9, reject: false });
    assert.equal(net.leader(), 1, `case ${i}`);
    net.propose(1, "");
    net.stabilize();
    const log = (id: NodeId) => {
      const s = net.storages.get(id)!;
      return s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity);
    };
    assert.deepEqual(log(2), log(1), `case ${i}`);
    assert.equal(log(1).length, leaderLog.length + 2);
  }
});

// ---------------------------------------------------------------------------------------------
// §5.4 Safety

Deno.test("§5.4.1: a node votes only for a candidate whose log is at least as up to date", () => {
  const cases: [log: Entry[], logTerm: number, index: number, reject: boolean][] = [
    // Same last term: the longer log wins.
    [[ent(1, 1)], 1, 1, false],
    [[ent(1, 1)], 1, 2, false],
    [[ent(1, 1), ent(1, 2)], 1, 1, true],
    // A later last term wins whatever the length.
    [[ent(1, 1)], 2, 1, false],
    [[ent(1, 1)], 2, 2, false],
    [[ent(1, 1), ent(1, 2)], 2, 1, false],
    // An earlier last term loses whatever the length.
    [[ent(2, 1)], 1, 1, true],
    [[ent(2, 1)], 1, 2, true],
    [[ent(2, 1), ent(1, 2)], 1, 1, true],
  ];
  for (const [log, logTerm, index, reject] of cases) {
    const { r } = newTestRaft(1, [1, 2], { entries: log });
    r.step({ type: "MsgVote", from: 2, to: 1, term: 3, index, logTerm });
    const msgs = r.readMessages();
    assert.equal(msgs.length, 1);
    const m = msgs[0];
    assert.equal(m.type, "MsgVoteResp");
    assert.equal(m.type === "MsgVoteResp" && m.reject, reject, `${logTerm}/${index}`);
  }
});

Deno.test("§5.4.2: a leader commits entries of earlier terms only through one of its own", () => {
  const cases: [acked: number, wCommit: number][] = [
    [1, 0], // an entry of term 1: not committed by counting replicas
    [2, 0], // term 2: likewise
    [3, 3], // the leader's own empty entry of term 3 commits, and everything before it
  ];
  for (const [acked, wCommit] of cases) {
    const { r, storage } = newTestRaft(1, [1, 2], {
      entries: [ent(1, 1), ent(2, 2)],
      hardState: { term: 2, vote: 0, commit: 0 },
    });
    r.becomeCandidate();
    r.becomeLeader();
    persist(r, storage);
    r.readMessages();
    r.step(appResp(2, 1, r.term, acked));
    assert.equal(r.raftLog.committed, wCommit, `acked ${acked}`);
  }
});
