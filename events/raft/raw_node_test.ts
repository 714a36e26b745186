import assert from "node:assert/strict";
import { bytes, seededRandom } from "./_network_test_helper.ts";
import { describeReady } from "./describe.ts";
import { ProposalDroppedError, StepLocalMsgError, StepPeerNotFoundError } from "./errors.ts";
import { validateConfig } from "./raft.ts";
import { RawNode } from "./raw_node.ts";
import { MemoryStorage } from "./storage.ts";
import type { PeerMessage, Ready } from "./types.ts";

function newNode(
  id: number,
  voters: number[],
  storage = new MemoryStorage({
    confState: { voters, learners: [] },
  }),
) {
  return { node: new RawNode({ id, storage, random: seededRandom(id) }), storage };
}

/** Persists a Ready the classic way and advances. */
function handle(node: RawNode, storage: MemoryStorage): Ready {
  const rd = node.ready();
  if (rd.snapshot) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState) storage.setHardState(rd.hardState);
  node.advance();
  return rd;
}

Deno.test("validateConfig: defaults and refusals", () => {
  const storage = new MemoryStorage();
  const c = validateConfig({ id: 1, storage, random: () => 0 });
  assert.equal(c.electionTick, 10);
  assert.equal(c.heartbeatTick, 1);
  assert.equal(c.maxInflightMsgs, 256);
  assert.equal(c.checkQuorum, true);
  assert.equal(c.preVote, true);
  assert.throws(() => validateConfig({ id: 0, storage, random: () => 0 }), RangeError);
  assert.throws(
    () => validateConfig({ id: 1, storage, random: () => 0, electionTick: 1 }),
    /electionTick/,
  );
  assert.throws(
    () => validateConfig({ id: 1, storage, random: () => 0, maxInflightMsgs: 0 }),
    /maxInflightMsgs/,
  );
  assert.throws(
    () => validateConfig({ id: 1, storage, random: undefined as unknown as () => number }),
    /random/,
  );
});

Deno.test("RawNode: a single node elects itself; commits only after persisting", () => {
  const { node, storage } = newNode(1, [1]);
  assert.equal(node.hasReady(), false);
  node.campaign();
  assert.equal(node.hasReady(), true);
  const rd1 = handle(node, storage);
  assert.equal(
    describeReady(rd1),
    [
      "Ready MustSync=true:",
      "Lead:1 State:StateLeader",
      "HardState Term:1 Vote:1 Commit:0",
      "Entries:",
      '1/1 EntryNormal ""',
    ].join("\n"),
  );
  const rd2 = handle(node, storage);
  assert.equal(
    describeReady(rd2),
    [
      "Ready MustSync=false:",
      "HardState Term:1 Vote:1 Commit:1",
      "CommittedEntries:",
      '1/1 EntryNormal ""',
    ].join("\n"),
  );
  assert.equal(node.hasReady(), false);
  node.propose(bytes("foo"));
  handle(node, storage);
  const rd4 = handle(node, storage);
  assert.deepEqual(rd4.committedEntries.map((e) => e.index), [2]);
  assert.equal(node.status().applied, 2);
});

Deno.test("RawNode: a vote answer leaves in the same Ready as the vote it must persist", () => {
  const { node } = newNode(2, [1, 2, 3]);
  node.step({ type: "MsgVote", from: 1, to: 2, term: 1, index: 0, logTerm: 0 });
  const rd = node.ready();
  assert.deepEqual(rd.hardState, { term: 1, vote: 1, commit: 0 });
  assert.equal(rd.mustSync, true);
  assert.deepEqual(rd.messages, [
    { type: "MsgVoteResp", from: 2, to: 1, term: 1, reject: false },
  ]);
});

Deno.test("RawNode: an append acknowledgement leaves with the entries it acknowledges", () => {
  const { node } = newNode(2, [1, 2, 3]);
  const entries = [{ term: 1, index: 1, type: "normal" as const, data: bytes("x") }];
  node.step({ type: "MsgApp", from: 1, to: 2, term: 1, index: 0, logTerm: 0, entries, commit: 1 });
  const rd = node.ready();
  assert.deepEqual(rd.entries, entries);
  assert.deepEqual(rd.committedEntries, entries, "persist first, then apply");
  assert.equal(rd.messages.length, 1);
  assert.equal(rd.messages[0].type, "MsgAppResp");
  assert.deepEqual(rd.softState, { lead: 1, role: "follower" });
});

Deno.test("RawNode: ready() and advance() must alternate", () => {
  const { node } = newNode(1, [1]);
  node.campaign();
  assert.throws(() => node.advance(), /without a Ready/);
  node.ready();
  assert.throws(() => node.ready(), /before advance/);
  node.advance();
});

Deno.test("RawNode: step refuses local messages and answers from strangers", () => {
  const { node } = newNode(1, [1, 2, 3]);
  const hup = { type: "MsgHup", from: 2, to: 1, term: 0 } as unknown as PeerMessage;
  assert.throws(() => node.step(hup), StepLocalMsgError);
  assert.throws(
    () => node.step({ type: "MsgVoteResp", from: 9, to: 1, term: 1, reject: false }),
    StepPeerNotFoundError,
  );
});

Deno.test("RawNode: a follower refuses proposals", () => {
  const { node } = newNode(1, [1, 2, 3]);
  assert.throws(() => node.propose(bytes("x")), ProposalDroppedError);
});

Deno.test("RawNode: restarts from storage with its term, vote, log and applied index", () => {
  const { node, storage } = newNode(1, [1]);
  node.campaign();
  for (const s of ["a", "b"]) {
    while (node.hasReady()) handle(node, storage);
    node.propose(bytes(s));
  }
  while (node.hasReady()) handle(node, storage);
  assert.deepEqual(storage.initialState().hardState, { term: 1, vote: 1, commit: 3 });

  const restarted = new RawNode({ id: 1, storage, applied: 2, random: seededRandom(9) });
  const st = restarted.status();
  assert.deepEqual(st.hardState, { term: 1, vote: 1, commit: 3 });
  assert.equal(st.softState.role, "follower");
  const rd = restarted.ready();
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [3], "entries up to 2 were applied");
  restarted.advance();
  restarted.campaign();
  while (restarted.hasReady()) handle(restarted, storage);
  assert.equal(restarted.status().softState.role, "leader");
  assert.equal(restarted.status().hardState.term, 2);
});

Deno.test("RawNode: status shows progress only on the leader", () => {
  const { node, storage } = newNode(1, [1]);
  assert.equal(node.status().progress.size, 0);
  node.campaign();
  while (node.hasReady()) handle(node, storage);
  const pr = node.status().progress.get(1);
  assert.equal(pr?.state, "replicate");
  assert.equal(pr?.match, 1);
  assert.deepEqual(node.status().config, { voters: [1], learners: [] });
});

Deno.test("RawNode: readIndex answers in a Ready's readStates", () => {
  const { node, storage } = newNode(1, [1]);
  node.campaign();
  while (node.hasReady()) handle(node, storage);
  node.readIndex(bytes("ctx"));
  const rd = handle(node, storage);
  assert.deepEqual(rd.readStates, [{ index: 1, context: bytes("ctx") }]);
});
