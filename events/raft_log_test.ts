/**
 * The EventLog contract on the Raft log: a one-voter cluster (a single manager is simply a
 * one-voter Raft group) and a three-member cluster over real loopback TCP, both on SQLite.
 */
import assert from "node:assert/strict";
import { sampleBatch, testEventLog } from "./_log_contract.ts";
import { EventCodec } from "./codec.ts";
import { LogClosedError } from "./log.ts";
import { NotLeaderError, RaftDriver } from "./raft/driver.ts";
import { SqliteStorage } from "./raft/sqlite_storage.ts";
import { RaftLog } from "./raft_log.ts";

const dir = Deno.makeTempDirSync({ prefix: "shoal-raft-log-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let n = 0;
const freshPath = () => `${dir}/raft-${++n}.db`;
const inline = new EventCodec();

async function singleVoter(path = freshPath()): Promise<RaftLog> {
  const storage = new SqliteStorage({ path, confState: { voters: [1], learners: [] } });
  const driver = await RaftDriver.start({ id: 1, clusterId: "test", storage, tickMs: 20 });
  return new RaftLog(driver);
}

/** Three members on loopback; the log is the leader's, and closing it stops all three. */
async function threeMembers(): Promise<{ log: RaftLog; drivers: RaftDriver[] }> {
  const ids = [1, 2, 3];
  const drivers = await Promise.all(ids.map((id) =>
    RaftDriver.start({
      id,
      clusterId: "test",
      storage: new SqliteStorage({ path: freshPath(), confState: { voters: ids, learners: [] } }),
      tickMs: 20,
    })
  ));
  for (const d of drivers) for (const o of drivers) if (d !== o) d.setPeerAddress(o.id, o.address);
  // Campaign once connected (messages to a peer not yet connected are dropped).
  while (!drivers.every((d) => d.status().members.every((m) => m.connected))) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  drivers[0].campaign();
  const leader = await drivers[0].waitForLeader(10_000);
  const leaderDriver = drivers.find((d) => d.id === leader)!;
  await Promise.all(drivers.map((d) => d.waitForLeader(10_000)));
  const log = new RaftLog(leaderDriver);
  const close = log.close.bind(log);
  log.close = async () => {
    await close();
    await Promise.all(drivers.map((d) => d.stop()));
  };
  return { log, drivers };
}

testEventLog("RaftLog (one voter, SQLite)", () => singleVoter(), {
  decode: (bytes) => inline.decodeBatch(bytes),
});

testEventLog("RaftLog (three members, loopback TCP)", async () => (await threeMembers()).log, {
  decode: (bytes) => inline.decodeBatch(bytes),
});

Deno.test("RaftLog: a one-voter log survives a restart, numbered without gaps", async () => {
  const path = freshPath();
  const a = await singleVoter(path);
  for (let i = 1; i <= 5; i++) assert.equal(await a.append(sampleBatch(i)), i);
  await a.close();
  // The restart elects a new term: its empty entry takes a Raft index but no log index.
  const b = await singleVoter(path);
  try {
    assert.equal(b.lastIndex(), 5);
    assert.deepEqual(b.read(1).map((e) => e.batch), [1, 2, 3, 4, 5].map((i) => sampleBatch(i)));
    assert.equal(await b.append(sampleBatch(6)), 6);
    const terms = b.read(1).map((e) => e.term);
    assert.ok(terms[5] > terms[4], "the restart's entry is of a later term");
    assert.ok(b.driver.status().lastIndex >= 8, "raft indexes include the leaders' empty entries");
  } finally {
    await b.close();
  }
});

Deno.test("RaftLog: followers refuse appends naming the leader, and see every entry", async () => {
  const { log, drivers } = await threeMembers();
  try {
    const follower = drivers.find((d) => !d.isLeader)!;
    const followerLog = new RaftLog(follower, { ownsDriver: false });
    await assert.rejects(followerLog.append(sampleBatch(1)), (err) => {
      assert.ok(err instanceof NotLeaderError);
      assert.equal(err.leaderId, log.driver.id);
      assert.equal(err.leaderAddress, log.driver.address);
      return true;
    });
    for (let i = 1; i <= 20; i++) await log.append(sampleBatch(i));
    const seen = [];
    for await (const e of followerLog.entries(1)) {
      seen.push(e.batch);
      if (e.index === 20) break;
    }
    assert.deepEqual(seen, log.read(1).map((e) => e.batch));
    await followerLog.close();
    await assert.rejects(followerLog.append(sampleBatch(2)), LogClosedError);
  } finally {
    await log.close();
  }
});
