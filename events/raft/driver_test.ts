import assert from "node:assert/strict";
import {
  coalesce,
  type CommittedEntry,
  DriverStoppedError,
  NotLeaderError,
  RaftDriver,
  type RaftDriverOptions,
  type RemovedInfo,
  type StateMachine,
} from "./driver.ts";
import { CompactedError } from "./errors.ts";
import { SqliteStorage } from "./sqlite_storage.ts";
import type { MsgApp, NodeId, PeerMessage } from "./types.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-raft-driver-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshDir = () => Deno.makeTempDirSync({ dir, prefix: `c${++n}-` });
const utf8 = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A state machine that keeps the applied payloads as text. */
class Texts implements StateMachine {
  applied: string[] = [];
  restores = 0;
  apply(e: CommittedEntry): void {
    assert.equal(e.seq, this.applied.length + 1, "seq numbers data entries without gaps");
    this.applied.push(text(e.data));
  }
  snapshot(): Uint8Array {
    return utf8.encode(JSON.stringify(this.applied));
  }
  restore(data: Uint8Array): void {
    this.restores++;
    this.applied = JSON.parse(text(data));
  }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

interface Member {
  id: NodeId;
  path: string;
  driver: RaftDriver;
  sm: Texts;
  /** Where it listens: a restart listens there again. */
  port: number;
}

type Extra = Partial<Omit<RaftDriverOptions, "id" | "storage" | "clusterId">>;

/** Starts member `id` on the storage at `path` (created with `voters` when new). */
async function startMember(
  id: NodeId,
  path: string,
  voters: NodeId[],
  extra: Extra = {},
  sm = new Texts(),
): Promise<Member> {
  const storage = new SqliteStorage({ path, confState: { voters, learners: [] } });
  const driver = await RaftDriver.start({
    id,
    clusterId: "test",
    storage,
    tickMs: 20,
    stateMachine: sm,
    ...extra,
  });
  return { id, path, driver, sm, port: Number(driver.address.split(":")[1]) };
}

/** A cluster of `size` voters, connected, with node 1 leading. */
async function cluster(size: number, extra: Extra = {}): Promise<Member[]> {
  const d = freshDir();
  const ids = Array.from({ length: size }, (_, i) => i + 1);
  const members = await Promise.all(ids.map((id) => startMember(id, `${d}/${id}.db`, ids, extra)));
  connect(members);
  await until("connections", () => members.every((m) => allConnected(m.driver)));
  members[0].driver.campaign();
  await until("a leader everywhere", () => members.every((m) => m.driver.leader === 1));
  return members;
}

function connect(members: Member[]): void {
  for (const m of members) {
    for (const o of members) if (m !== o) m.driver.setPeerAddress(o.id, o.driver.address);
  }
}

function allConnected(d: RaftDriver): boolean {
  return d.status().members.every((m) => m.connected);
}

async function stopAll(members: Member[]): Promise<void> {
  await Promise.all(members.map((m) => m.driver.stop()));
}

const leaderOf = (members: Member[]) => members.find((m) => m.driver.isLeader)!;

Deno.test("driver: a single voter elects itself and commits proposals in order", async () => {
  const m = await startMember(1, `${freshDir()}/1.db`, [1]);
  try {
    assert.equal(m.driver.isLeader, true);
    const indexes = await Promise.all(["a", "b", "c"].map((s) => m.driver.propose(utf8.encode(s))));
    // Index 1 holds the bootstrap configuration, 2 the new leader's empty entry.
    assert.deepEqual(indexes, [3, 4, 5]);
    assert.deepEqual(m.sm.applied, ["a", "b", "c"]);
    const seen: CommittedEntry[] = [];
    for await (const e of m.driver.committed(1)) {
      seen.push(e);
      if (e.index === 5) break;
    }
    assert.deepEqual(seen.map((e) => [e.index, e.seq, text(e.data)]), [
      [3, 1, "a"],
      [4, 2, "b"],
      [5, 3, "c"],
    ]);
    assert.deepEqual(m.driver.readSeq(2, 3).map((e) => text(e.data)), ["b", "c"]);
    await assert.rejects(m.driver.propose(new Uint8Array()), RangeError);
    const st = m.driver.status();
    assert.equal(st.role, "leader");
    assert.equal(st.commit, 5);
    assert.equal(st.applied, 5);
    assert.equal(st.appliedSeq, 3);
  } finally {
    await m.driver.stop();
  }
  await assert.rejects(m.driver.propose(utf8.encode("late")), DriverStoppedError);
});

Deno.test("driver: three members apply the same entries; followers name the leader", async () => {
  const members = await cluster(3);
  try {
    const leader = leaderOf(members);
    const follower = members.find((m) => m !== leader)!;
    await assert.rejects(follower.driver.propose(utf8.encode("x")), (err) => {
      assert.ok(err instanceof NotLeaderError);
      assert.equal(err.leaderId, leader.id);
      assert.equal(err.leaderAddress, leader.driver.address);
      assert.match(err.message, /the leader is node 1 at 127\.0\.0\.1:\d+/);
      return true;
    });
    const payloads = Array.from({ length: 300 }, (_, i) => `p${i}`);
    const indexes = await Promise.all(payloads.map((p) => leader.driver.propose(utf8.encode(p))));
    assert.deepEqual(indexes, indexes.toSorted((a, b) => a - b));
    const last = indexes.at(-1)!;
    await until("everyone applied", () => members.every((m) => m.driver.applied >= last));
    for (const m of members) assert.deepEqual(m.sm.applied, payloads);
    const st = leader.driver.status();
    assert.deepEqual(st.members.map((m) => [m.id, m.voter, m.connected]), [
      [1, true, true],
      [2, true, true],
      [3, true, true],
    ]);
    await until(
      "matches",
      () => leader.driver.status().members.every((m) => (m.match ?? 0) >= last),
    );
    assert.equal(follower.driver.status().leaderAddress, leader.driver.address);
  } finally {
    await stopAll(members);
  }
});

Deno.test("driver: readIndex is linearizable on the leader and on followers", async () => {
  const members = await cluster(3);
  try {
    const leader = leaderOf(members);
    for (let i = 0; i < 20; i++) {
      const index = await leader.driver.propose(utf8.encode(`w${i}`));
      const m = members[i % 3];
      const read = await m.driver.readIndex();
      assert.ok(read >= index, `read index ${read} covers write ${index}`);
      assert.ok(m.driver.applied >= index);
      assert.equal(m.sm.applied.at(-1), `w${i}`);
    }
  } finally {
    await stopAll(members);
  }
});

/**
 * Stops the leader of three members (100 ms ticks: an election timeout is 1,000 to 2,000 ms),
 * runs `afterStop` on the survivors, and checks that a new leader committed within 900 ms and
 * that both survivors applied what both leaders committed.
 */
async function failover(afterStop: (survivors: Member[]) => void): Promise<void> {
  const members = await cluster(3, { tickMs: 100 });
  try {
    const old = leaderOf(members);
    await old.driver.propose(utf8.encode("before"));
    const rest = members.filter((m) => m !== old);
    const t0 = performance.now();
    await old.driver.stop();
    afterStop(rest);
    await until("a new leader", () => rest.some((m) => m.driver.isLeader), 5_000);
    const leader = leaderOf(rest);
    await leader.driver.propose(utf8.encode("after"));
    const ms = performance.now() - t0;
    assert.ok(ms < 900, `failover took ${ms.toFixed(0)} ms`);
    await until("applied", () => rest.every((m) => m.sm.applied.at(-1) === "after"));
    for (const m of rest) assert.deepEqual(m.sm.applied, ["before", "after"]);
  } finally {
    await stopAll(members);
  }
}

Deno.test("driver: when the leader dies a follower takes over well within an election timeout", async () => {
  await failover(() => {});
});

Deno.test("driver: survivors that split the vote after the leader dies retry at once", async () => {
  // Both survivors campaign at the same moment (as when one's own election timer fires just as
  // the other's failover turn comes): each pre-vote is granted, each votes for itself, and the
  // vote splits. Without a retry they would wait out a randomised 1-2 s election timeout.
  await failover((survivors) => {
    for (const m of survivors) m.driver.campaign();
  });
});

Deno.test("driver: membership: add a learner, promote it, transfer to it, remove a member", async () => {
  const members = await cluster(3);
  let fourth: Member | undefined;
  try {
    const leader = leaderOf(members);
    for (let i = 0; i < 50; i++) await leader.driver.propose(utf8.encode(`e${i}`));
    // Node 4 starts with no configuration, knowing where the members are.
    fourth = await startMember(4, `${freshDir()}/4.db`, [], {
      peers: members.map((m) => [m.id, m.driver.address] as const),
    });
    await leader.driver.addLearner(4, fourth.driver.address);
    await until("learner caught up", () => fourth!.sm.applied.length === 50);
    assert.deepEqual(
      leader.driver.status().members.map((m) => [m.id, m.voter]),
      [[1, true], [2, true], [3, true], [4, false]],
    );
    await assert.rejects(fourth.driver.propose(utf8.encode("no")), NotLeaderError);
    await leader.driver.promote(4);
    await until(
      "4 is a voter everywhere",
      () =>
        [...members, fourth!].every((m) =>
          m.driver.status().members.some((x) => x.id === 4 && x.voter)
        ),
    );
    await leader.driver.transferLeadership(4);
    await until("4 leads", () => fourth!.driver.isLeader);
    assert.equal(leader.driver.isLeader, false);
    const told = new Promise<RemovedInfo>((resolve) => members[1].driver.onRemoved(resolve));
    await fourth.driver.remove(2);
    const index = await fourth.driver.propose(utf8.encode("after removal"));
    await until(
      "applied by the rest",
      () => [members[0], members[2], fourth!].every((m) => m.driver.applied >= index),
    );
    assert.deepEqual(fourth.driver.status().members.map((m) => m.id), [1, 3, 4]);
    // The members cut 2 off, and tell it that it was removed (it does not get the entry).
    await until("2 cut off", () => !fourth!.driver.status().members.some((m) => m.id === 2));
    const info = await told;
    // Told by a member, or 2 applied its own removal (then it names the index).
    assert.ok(info.by === 2 ? info.index > 0 : [1, 3, 4].includes(info.by), `by ${info.by}`);
    assert.match(info.message, /raft node 2 was removed from the cluster/);
    assert.equal(members[1].driver.status().removed, true);
    await until(
      "no connection to 2",
      () =>
        [members[0], members[2], fourth!].every((m) =>
          !m.driver.status().members.some((x) => x.id === 2)
        ) && members[1].driver.status().members.every((x) => x.id === 2 || !x.connected),
    );
    for (const m of [members[0], members[2], fourth]) {
      assert.deepEqual(m.sm.applied.at(-1), "after removal");
    }
  } finally {
    await stopAll(fourth ? [...members, fourth] : members);
  }
});

Deno.test("driver: snapshots every N entries; a late learner gets one; restarts restore it", async () => {
  const members = await cluster(3, { snapshotEntries: 40, keepEntries: 10 });
  let fourth: Member | undefined;
  try {
    const leader = leaderOf(members);
    const payloads = Array.from({ length: 130 }, (_, i) => `s${i}`);
    for (const p of payloads) await leader.driver.propose(utf8.encode(p));
    await until("snapshots", () => members.every((m) => m.driver.status().snapshotIndex >= 120));
    const st = leader.driver.status();
    assert.equal(st.firstIndex, st.snapshotIndex - 10 + 1, "10 entries kept behind the snapshot");
    assert.ok(leader.driver.firstSeq > 1);
    assert.throws(() => leader.driver.readSeq(1), CompactedError);
    await assert.rejects(async () => {
      for await (const _ of leader.driver.committed(1)) { /* compacted */ }
    }, CompactedError);

    // A learner added now cannot get the early entries: it gets the snapshot.
    fourth = await startMember(4, `${freshDir()}/4.db`, [], {
      peers: members.map((m) => [m.id, m.driver.address] as const),
      snapshotEntries: 40,
      keepEntries: 10,
    });
    await leader.driver.addLearner(4, fourth.driver.address);
    await until("learner restored and caught up", () => fourth!.sm.applied.length === 130);
    assert.equal(fourth.sm.restores, 1);
    assert.deepEqual(fourth.sm.applied, payloads);
    assert.equal(fourth.driver.lastSeq, 130);
    const more = await leader.driver.propose(utf8.encode("s130"));
    await until("learner applies live entries", () => fourth!.driver.applied >= more);
    assert.equal(fourth.sm.applied.at(-1), "s130");

    // A follower restarted from its storage: snapshot, then the entries after it.
    const follower = members.find((m) => m !== leader)!;
    const path = follower.path;
    await follower.driver.stop();
    const again = await startMember(follower.id, path, [], {
      snapshotEntries: 40,
      keepEntries: 10,
      port: follower.port,
    });
    members[members.indexOf(follower)] = again;
    assert.equal(again.sm.restores, 1);
    assert.deepEqual(again.sm.applied, [...payloads, "s130"]);
    assert.equal(again.driver.lastSeq, 131);
    assert.deepEqual(again.driver.readSeq(131).map((e) => text(e.data)), ["s130"]);
    // It finds the others from the addresses it persisted.
    const last = await leader.driver.propose(utf8.encode("s131"));
    await until("restarted member applies", () => again.driver.applied >= last);
    assert.equal(again.sm.applied.at(-1), "s131");
  } finally {
    await stopAll(fourth ? [...members, fourth] : members);
  }
});

/**
 * A state machine that folds behind the driver, as Shoal's manager does: `seen` is what the
 * driver applied, `folded` how much of it the state includes (the test moves it).
 */
class Lagging implements StateMachine {
  seen: string[] = [];
  folded = 0;
  restores = 0;
  apply(e: CommittedEntry): void {
    this.seen.push(text(e.data));
  }
  appliedSeq(): number {
    return this.folded;
  }
  snapshot(): Uint8Array {
    return utf8.encode(JSON.stringify(this.seen.slice(0, this.folded)));
  }
  restore(data: Uint8Array): void {
    this.restores++;
    this.seen = JSON.parse(text(data));
    this.folded = this.seen.length;
  }
}

Deno.test("driver: a lagging state machine is snapshotted where it is, never compacted past", async () => {
  const d = freshDir();
  const opts = { clusterId: "test", tickMs: 20, snapshotEntries: 40, keepEntries: 10 };
  const sm = new Lagging();
  const leader = await RaftDriver.start({
    ...opts,
    id: 1,
    storage: new SqliteStorage({ path: `${d}/1.db`, confState: { voters: [1], learners: [] } }),
    stateMachine: sm,
  });
  let learner: RaftDriver | undefined;
  const late = new Lagging();
  try {
    await leader.waitForLeader();
    const payloads = Array.from({ length: 100 }, (_, i) => `l${i}`);
    for (const p of payloads) await leader.propose(utf8.encode(p));
    // Nothing folded: no snapshot past the first data entry, nothing compacted.
    assert.ok(leader.status().snapshotIndex < leader.readSeq(1)[0].index);
    assert.equal(leader.status().firstIndex, 1);
    // Folded to 60: the next snapshot stands for the raft index just before data entry 61.
    sm.folded = 60;
    await leader.propose(utf8.encode("l100"));
    const st = leader.status();
    assert.equal(st.snapshotIndex, leader.readSeq(61)[0].index - 1);
    assert.equal(st.firstIndex, st.snapshotIndex - 10 + 1);
    assert.equal(leader.firstSeq, 60 - 10 + 1, "the entries after the snapshot are kept");

    // A learner added while the state machine lags: the snapshot it needs waits for the fold.
    learner = await RaftDriver.start({
      ...opts,
      id: 2,
      storage: new SqliteStorage({ path: `${d}/2.db` }),
      peers: [[1, leader.address]],
      stateMachine: late,
    });
    await leader.addLearner(2, learner.address);
    const waited = leader.status().snapshotIndex;
    assert.equal(waited, st.snapshotIndex, "no snapshot of a state that is not at the change");
    // Once the fold has caught up it is taken, without waiting for another entry.
    sm.folded = 101;
    await until("a snapshot for the learner", () => leader.status().snapshotIndex > waited);
    const l = learner;
    await until("the learner restored it", () => l.lastSeq === 101);
    await leader.propose(utf8.encode("l101"));
    await until("the learner caught up", () => l.lastSeq === 102);
    assert.equal(late.restores, 1);
    assert.deepEqual(late.seen, [...payloads, "l100", "l101"]);

    // A restart: the snapshot's seq numbers the entries after it.
    await leader.stop();
    const again = new Lagging();
    const restarted = await RaftDriver.start({
      ...opts,
      id: 1,
      storage: new SqliteStorage({ path: `${d}/1.db` }),
      stateMachine: again,
      port: Number(leader.address.split(":")[1]),
    });
    try {
      assert.equal(again.restores, 1);
      assert.deepEqual(again.seen, [...payloads, "l100", "l101"]);
      assert.equal(restarted.lastSeq, 102);
      assert.deepEqual(restarted.readSeq(102).map((e) => text(e.data)), ["l101"]);
    } finally {
      await restarted.stop();
    }
  } finally {
    await leader.stop();
    await learner?.stop();
  }
});

Deno.test("driver: a restarted cluster keeps every entry and elects a leader", async () => {
  let members = await cluster(3);
  const payloads = Array.from({ length: 100 }, (_, i) => `r${i}`);
  const paths = members.map((m) => m.path);
  const ports = members.map((m) => m.port);
  try {
    for (const p of payloads) await leaderOf(members).driver.propose(utf8.encode(p));
  } finally {
    await stopAll(members);
  }
  // Each restarts where it listened: the others find it from the addresses they persisted.
  members = await Promise.all(paths.map((p, i) => startMember(i + 1, p, [], { port: ports[i] })));
  try {
    for (const m of members) assert.deepEqual(m.sm.applied.length <= 100, true);
    await until("a leader", () => members.some((m) => m.driver.isLeader), 10_000);
    const leader = leaderOf(members);
    const last = await leader.driver.propose(utf8.encode("r100"));
    await until("everyone applied", () => members.every((m) => m.driver.applied >= last));
    for (const m of members) assert.deepEqual(m.sm.applied, [...payloads, "r100"]);
  } finally {
    await stopAll(members);
  }
});

Deno.test("driver: stop rejects what is pending and ends iterations", async () => {
  const members = await cluster(3);
  const leader = leaderOf(members);
  const follower = members.find((m) => m !== leader)!;
  const iterating = (async () => {
    const seen = [];
    for await (const e of follower.driver.committed(1)) seen.push(e.index);
    return seen;
  })();
  // Stop the followers first: the leader's proposal can no longer commit.
  await Promise.all(members.filter((m) => m !== leader).map((m) => m.driver.stop()));
  assert.deepEqual(await iterating, []);
  const pending = assert.rejects(leader.driver.propose(utf8.encode("never")), DriverStoppedError);
  const read = assert.rejects(leader.driver.readIndex(), DriverStoppedError);
  await leader.driver.stop();
  await pending;
  await read;
});

Deno.test("driver: a removed member that dials the others is told, and remembers it", async () => {
  const members = await cluster(3);
  try {
    // Node 1 (the lowest id: it dials the others) hands over leadership and is removed.
    await members[0].driver.transferLeadership(2);
    await until("2 leads", () => members[1].driver.isLeader);
    const seen: RemovedInfo[] = [];
    members[0].driver.onRemoved((info) => seen.push(info));
    await members[1].driver.remove(1);
    await until("1 knows it was removed", () => seen.length === 1, 15_000);
    assert.equal(members[0].driver.status().removed, true);
    assert.equal(seen[0].by === 1 ? seen[0].index > 0 : [2, 3].includes(seen[0].by), true);
    // Told once, however often it hears it.
    await sleep(300);
    assert.equal(seen.length, 1);
    // A restart remembers it (the node stops and says why instead of trying to rejoin).
    await members[0].driver.stop();
    const again = await startMember(1, members[0].path, [1, 2, 3], { port: members[0].port });
    members[0] = again;
    assert.equal(again.driver.status().removed, true);
    const info = await new Promise<RemovedInfo>((resolve) => again.driver.onRemoved(resolve));
    assert.match(info.message, /raft node 1 was removed/);
    // The others still work, and remember whom they removed.
    await members[1].driver.propose(utf8.encode("still here"));
    assert.deepEqual(members[2].driver.status().members.map((m) => m.id), [2, 3]);
  } finally {
    await stopAll(members);
  }
});

Deno.test("driver: a member removed while it was down is told once it is back", async () => {
  const members = await cluster(3);
  try {
    const third = members[2];
    await third.driver.stop();
    await members[0].driver.remove(3);
    await sleep(200); // the members try to tell it, and fail: it is down
    const back = await startMember(3, third.path, [1, 2, 3], { port: third.port });
    members[2] = back;
    const info = await new Promise<RemovedInfo>((resolve) => back.driver.onRemoved(resolve));
    assert.ok([1, 2].includes(info.by));
    assert.equal(back.driver.status().removed, true);
    // Nodes that were never removed are not told anything.
    assert.equal(members[0].driver.status().removed, false);
    assert.equal(members[1].driver.status().removed, false);
  } finally {
    await stopAll(members);
  }
});

Deno.test("coalesce merges consecutive appends to a follower, and nothing else", () => {
  const e = (index: number, term = 2) => ({
    index,
    term,
    type: "normal" as const,
    data: new Uint8Array(),
  });
  const app = (
    to: NodeId,
    index: number,
    logTerm: number,
    entries: number[],
    commit = 1,
  ): MsgApp => ({
    type: "MsgApp",
    from: 1,
    to,
    term: 2,
    index,
    logTerm,
    commit,
    entries: entries.map((i) => e(i)),
  });
  const hb: PeerMessage = { type: "MsgHeartbeat", from: 1, to: 2, term: 2, commit: 1 };
  const out = coalesce([
    app(2, 4, 1, [5]),
    app(3, 4, 1, [5]),
    app(2, 5, 2, [6, 7], 3),
    app(3, 5, 2, [6]),
    hb,
    app(2, 7, 2, [8]), // after a heartbeat: not merged across it
    app(3, 9, 2, [10]), // not contiguous with 3's last: kept apart
    { ...app(2, 8, 2, [9]), term: 3 }, // another term: kept apart
  ], 1);
  const show = (m: PeerMessage) =>
    m.type === "MsgApp"
      ? `${m.to}:${m.index}/${m.logTerm}[${m.entries.map((x) => x.index)}]c${m.commit}t${m.term}`
      : `${m.to}:${m.type}`;
  assert.deepEqual(out.map(show), [
    "2:4/1[5,6,7]c3t2",
    "3:4/1[5,6]c1t2",
    "2:MsgHeartbeat",
    "2:7/2[8]c1t2",
    "3:9/2[10]c1t2",
    "2:8/2[9]c1t3",
  ]);
});
