/**
 * The manager's state as the Raft driver's state machine, on a real `RaftLog` with a small
 * snapshot interval: the log is compacted, the state equals a full replay, a restart starts from
 * the snapshot, a member that joins a compacted log catches up from one, and the driver never
 * compacts past what the manager has folded.
 */
import assert from "node:assert/strict";
import { RaftDriver, type RaftDriverOptions } from "../events/raft/driver.ts";
import { SqliteStorage } from "../events/raft/sqlite_storage.ts";
import { RaftLog } from "../events/raft_log.ts";
import { SecretSpec } from "../events/schema.ts";
import type { LogEntry } from "../events/log.ts";
import { HistoryError, stateAt } from "./history.ts";
import { Manager } from "./manager.ts";
import { snapshot, snapshotData } from "./snapshot.ts";
import { applyBatch, ClusterState } from "./state.ts";
import { ClusterStateMachine } from "./state_machine.ts";
import { checkInvariants } from "../tests/_harness/invariants.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-state-machine-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/raft-${++n}.db`;

const SNAPSHOT_ENTRIES = 20;
const KEEP_ENTRIES = 5;

interface Member {
  driver: RaftDriver;
  log: RaftLog;
  fold: ClusterStateMachine;
  manager: Manager;
}

/** A driver, its log, and a manager folding into the driver's state machine (not started). */
async function member(
  path: string,
  options: Partial<RaftDriverOptions> = {},
  voters: number[] = [1],
): Promise<Member> {
  const fold = new ClusterStateMachine();
  const storage = new SqliteStorage({
    path,
    synchronous: "off",
    confState: { voters, learners: [] },
  });
  const driver = await RaftDriver.start({
    id: 1,
    clusterId: "state-machine-test",
    storage,
    tickMs: 10,
    stateMachine: fold,
    snapshotEntries: SNAPSHOT_ENTRIES,
    keepEntries: KEEP_ENTRIES,
    ...options,
  });
  const log = new RaftLog(driver);
  return { driver, log, fold, manager: new Manager({ log, stateMachine: fold }) };
}

async function stop(m: Member): Promise<void> {
  await m.manager.stop();
  await m.log.close();
}

/** `count` secrets, one entry each. */
async function writeSecrets(manager: Manager, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    await manager.execute({
      kind: "CreateFileObject",
      object: "secret",
      spec: SecretSpec.parse({ name: `s${i}`, data: btoa(`secret ${i}`) }),
    }, { by: "user:secret.create" });
  }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every entry the manager applies, to replay elsewhere. */
function record(manager: Manager): LogEntry[] {
  const entries: LogEntry[] = [];
  manager.onApplied((entry) => entries.push(entry));
  return entries;
}

function replay(entries: readonly LogEntry[]): ClusterState {
  const state = new ClusterState();
  for (const e of entries) applyBatch(state, e.batch, e.index);
  return state;
}

Deno.test("state machine: the log is compacted and the state equals a full replay", async () => {
  const m = await member(freshPath());
  try {
    const applied = record(m.manager);
    await m.manager.start();
    await m.manager.setLeader(true);
    // A rejected batch too: the snapshot keeps the fold's rejections.
    await writeSecrets(m.manager, 0, 30);
    const missing = "x".repeat(25);
    await assert.rejects(
      m.manager.propose([{
        type: "SecretRemoved",
        v: 1,
        data: { id: missing },
        meta: { by: "user:secret.rm", reason: "test" },
      }], "user:secret.rm"),
      /no such secret/,
    );
    await writeSecrets(m.manager, 30, 30);
    const st = m.driver.status();
    assert.ok(st.snapshotIndex >= 40, `snapshots were taken (at ${st.snapshotIndex})`);
    assert.ok(m.log.firstIndex() > 1, "the log was compacted");
    assert.equal(st.firstIndex, st.snapshotIndex - KEEP_ENTRIES + 1);
    // The snapshot is the manager's state as actors/snapshot.ts encodes it.
    assert.equal(m.manager.state.index, 61);
    assert.deepEqual(snapshot(m.manager.state), snapshot(replay(applied)));
    checkInvariants(m.manager.state);
    assert.equal(m.fold.restores, 0);
  } finally {
    await stop(m);
  }
});

Deno.test("state machine: a restart starts from the snapshot plus the entries after it", async () => {
  const path = freshPath();
  const first = await member(path);
  let before: Uint8Array;
  let firstIndex: number;
  try {
    await first.manager.start();
    await first.manager.setLeader(true);
    await writeSecrets(first.manager, 0, 47);
    before = snapshot(first.manager.state);
    firstIndex = first.log.firstIndex();
    assert.ok(firstIndex > 1);
  } finally {
    await stop(first);
  }
  const again = await member(path);
  try {
    // The driver restored the snapshot into the state before the manager existed (the one
    // taken after 40 raft entries; the manager was folding an entry or two behind)...
    assert.equal(again.fold.restores, 1);
    const snapshotSeq = again.fold.state.index;
    assert.ok(snapshotSeq >= 30 && snapshotSeq < 47, `restored at ${snapshotSeq}`);
    const applied = record(again.manager);
    await again.manager.start();
    // ...and the manager folded only the entries after it.
    assert.deepEqual(applied.map((e) => e.index), range(snapshotSeq + 1, 47));
    assert.deepEqual(snapshot(again.manager.state), before);
    assert.equal(again.log.firstIndex(), firstIndex);
    await again.manager.setLeader(true);
    await writeSecrets(again.manager, 47, 3);
    assert.equal(again.manager.state.secrets.size, 50);
    checkInvariants(again.manager.state);
  } finally {
    await stop(again);
  }
});

Deno.test("state machine: the driver never compacts past what the manager has folded", async () => {
  const m = await member(freshPath());
  try {
    // The manager does not follow yet: its state stays at 0 while the log grows.
    const writer = new Manager({ log: m.log });
    await writer.start();
    await writer.setLeader(true);
    await writeSecrets(writer, 0, 45);
    await writer.stop();
    assert.equal(m.fold.state.index, 0);
    // At most one of the empty state, at the raft index before the first data entry.
    const firstData = m.log.read(1, 1)[0];
    assert.ok(m.driver.status().snapshotIndex < m.driver.readSeq(1)[0].index);
    assert.equal(firstData.index, 1);
    assert.equal(m.log.firstIndex(), 1, "nothing the manager has not folded is compacted");
    // Once it has folded, the next entries snapshot its state, at its index.
    await m.manager.start();
    assert.equal(m.manager.state.index, 45);
    await m.manager.setLeader(true);
    await writeSecrets(m.manager, 45, 1);
    const st = m.driver.status();
    assert.ok(st.snapshotIndex > 0);
    assert.equal(st.appliedSeq, 46);
    assert.ok(m.log.firstIndex() > 1);
  } finally {
    await stop(m);
  }
});

Deno.test("state machine: a member joining a compacted log catches up from a snapshot", async () => {
  const leader = await member(freshPath());
  let joiner: Member | undefined;
  try {
    await leader.manager.start();
    await leader.manager.setLeader(true);
    await writeSecrets(leader.manager, 0, 50);
    assert.ok(leader.log.firstIndex() > 1);
    // A new member, empty, its manager already following (as a joining manager's is).
    joiner = await member(freshPath(), {
      id: 2,
      peers: [[1, leader.driver.address]],
    }, []);
    const j = joiner;
    const restored: number[] = [];
    j.manager.onRestored((index) => restored.push(index));
    const applied = record(j.manager);
    await j.manager.start();
    assert.equal(j.manager.state.index, 0);
    await leader.driver.addLearner(2, j.driver.address);
    await until("the new member caught up", () => j.manager.state.index === 50);
    assert.equal(j.fold.restores, 1);
    assert.equal(restored.length, 1);
    assert.ok(restored[0] >= 40, `restored at ${restored[0]}`);
    assert.deepEqual(applied.map((e) => e.index), range(restored[0] + 1, 50));
    assert.deepEqual(snapshot(j.manager.state), snapshot(leader.manager.state));
    checkInvariants(j.manager.state);
    // Live entries are folded on top of the snapshot.
    await writeSecrets(leader.manager, 50, 2);
    await until("live entries", () => j.manager.state.index === 52);
    assert.deepEqual(snapshotData(j.manager.state), snapshotData(leader.manager.state));
    // Time travel before the snapshot says it is compacted.
    const source = {
      read: (from: number, to?: number) => j.log.read(from, to),
      firstIndex: () => j.log.firstIndex(),
      lastIndex: () => j.manager.state.index,
    };
    assert.throws(
      () => stateAt(source, 3, []),
      (err) => err instanceof HistoryError && err.code === "compacted",
    );
    assert.throws(() => stateAt(source, 3, []), /compacted/);
    const now = [{ index: 52, bytes: snapshot(j.manager.state) }];
    assert.equal(stateAt(source, 52, now).secrets.size, 52);
  } finally {
    if (joiner) await stop(joiner);
    await stop(leader);
  }
});

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}
