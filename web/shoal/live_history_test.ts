/**
 * LiveHistory: built in the background from a log that is already long, then kept current from
 * `onApplied`; its checkpoints give the same states as a fold from the start, and stay bounded.
 */
import assert from "node:assert/strict";
import { SecretSpec, ServiceSpec } from "../../events/schema.ts";
import { Manager } from "../../actors/manager.ts";
import { ClusterStateMachine } from "../../actors/state_machine.ts";
import { RaftDriver } from "../../events/raft/driver.ts";
import { SqliteStorage } from "../../events/raft/sqlite_storage.ts";
import { RaftLog } from "../../events/raft_log.ts";
import type { EventLog } from "../../events/log.ts";
import { diff, HistoryError, HistoryIndex, stateAt } from "../../actors/history.ts";
import { snapshot } from "../../actors/snapshot.ts";
import { until, withApi } from "../../tests/api/_harness.ts";
import { LiveHistory } from "./live_history.ts";

async function scale(m: Manager, replicas: number): Promise<void> {
  await m.execute({ kind: "ScaleService", service: "web", replicas }, { by: "user:service.scale" });
  await until(`${replicas} tasks meant to run`, () => {
    const svc = m.state.serviceByName("web")!;
    return [...m.state.tasksOf(svc.id)].filter((t) => t.desiredState <= 512 && t.nodeId !== "")
      .length === replicas;
  });
}

async function populate(m: Manager): Promise<void> {
  await m.execute({
    kind: "CreateService",
    spec: ServiceSpec.parse({
      name: "web",
      task: { runtime: { kind: "process", command: "/bin/sleep", args: ["600"] } },
      mode: { kind: "replicated", replicas: 1 },
    }),
  }, { by: "user:service.create" });
  for (const n of [3, 2, 4]) await scale(m, n);
}

Deno.test("LiveHistory: built from an existing log, then kept current; states equal a fold", async () => {
  await withApi(async (api) => {
    const m = api.manager;
    await populate(m);
    const history = new LiveHistory(m, { checkpointEntries: 4, maxCheckpoints: 3 });
    try {
      await history.ready();
      assert.equal(history.index.lastIndex, m.state.index);
      await scale(m, 1);
      await until("the index to catch up", () => history.index.lastIndex === m.state.index);
      const last = m.state.index;

      // Bounded, thinned, ordered checkpoints, each the state at its index.
      const cps = history.checkpoints;
      assert.ok(cps.length > 0 && cps.length <= 3, `${cps.length} checkpoints`);
      for (let i = 1; i < cps.length; i++) assert.ok(cps[i].index > cps[i - 1].index);
      for (const cp of cps) {
        assert.deepEqual(cp.bytes, snapshot(stateAt(history.source, cp.index)));
      }

      // Every state it gives is the fold's, whether copied or viewed (scrubbing either way).
      const order = [...Array(last + 1).keys()];
      for (const i of [...order, ...order.reverse()]) {
        const fold = stateAt(history.source, i);
        const mine = i % 2 === 0 ? history.stateCopy(i) : history.view(i);
        const d = diff(fold, mine, { sameLog: false });
        assert.equal(d.changes.length, 0, `state at ${i}: ${JSON.stringify(d.changes[0])}`);
        assert.equal(mine.index, i);
      }

      // The index it kept is the one a single fold builds.
      const built = HistoryIndex.build(history.source);
      for (const t of m.state.tasks.values()) {
        assert.deepEqual(history.index.entriesOf(t.id), built.entriesOf(t.id));
      }
      assert.deepEqual(
        history.marks.map((mk) => mk.by),
        ["user:swarm.init", "user:service.create", ...Array(4).fill("user:service.scale")],
      );
      assert.equal(history.timeOf(0), 0);
      assert.ok(history.timeOf(last) >= history.timeOf(1));
    } finally {
      history.close();
    }
  });
});

Deno.test("LiveHistory: on a compacted log, history starts at the manager's state", async () => {
  await withApi(async (api) => {
    const m = api.manager;
    await populate(m);
    const first = m.state.index - 2;
    const log: Pick<EventLog, "read" | "firstIndex" | "lastIndex"> = {
      firstIndex: () => first,
      lastIndex: () => m.log.lastIndex(),
      read: (from, to) => m.log.read(Math.max(from, first), to),
    };
    // The parts of a manager LiveHistory uses, over a log that starts at `first`.
    const compacted = {
      state: m.state,
      log,
      onApplied: (l: Parameters<Manager["onApplied"]>[0]) => m.onApplied(l),
      onRestored: (l: Parameters<Manager["onRestored"]>[0]) => m.onRestored(l),
    } as unknown as Manager;
    const history = new LiveHistory(compacted);
    try {
      await history.ready();
      const at = m.state.index;
      assert.deepEqual(history.checkpoints.map((c) => c.index), [at]);
      assert.equal(history.view(at), m.state);
      assert.equal(history.stateCopy(at).index, at);
      assert.throws(
        () => history.stateCopy(first - 2),
        (err) => err instanceof HistoryError && err.code === "compacted",
      );
      await scale(m, 2);
      await until("the index to follow", () => history.index.lastIndex === m.state.index);
      assert.equal(history.index.firstIndex, at + 1);
      assert.equal(history.stateCopy(m.state.index).tasks.size, m.state.tasks.size);
    } finally {
      history.close();
    }
  });
});

Deno.test("LiveHistory: when a snapshot replaces the manager's state, history starts at it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-live-history-" });
  const member = async (id: number, voters: number[], peers: [number, string][] = []) => {
    const fold = new ClusterStateMachine();
    const driver = await RaftDriver.start({
      id,
      clusterId: "live-history-test",
      storage: new SqliteStorage({
        path: `${dir}/${id}.db`,
        synchronous: "off",
        confState: { voters, learners: [] },
      }),
      tickMs: 10,
      peers,
      stateMachine: fold,
      snapshotEntries: 10,
      keepEntries: 2,
    });
    const log = new RaftLog(driver);
    const manager = new Manager({ log, stateMachine: fold });
    await manager.start();
    return { driver, log, manager };
  };
  const secret = (i: number) => ({
    kind: "CreateFileObject" as const,
    object: "secret" as const,
    spec: SecretSpec.parse({ name: `s${i}`, data: btoa(`${i}`) }),
  });
  const leader = await member(1, [1]);
  const joiner = await member(2, [], [[1, leader.driver.address]]);
  const history = new LiveHistory(joiner.manager, { checkpointEntries: 4 });
  try {
    await leader.manager.setLeader(true);
    for (let i = 0; i < 30; i++) {
      await leader.manager.execute(secret(i), { by: "user:secret.create" });
    }
    await history.ready();
    await leader.driver.addLearner(2, joiner.driver.address);
    await until("the joiner caught up", () => joiner.manager.state.index === 30);
    const first = joiner.log.firstIndex();
    assert.ok(first > 1, "the joiner's log starts after a snapshot");
    const at = history.checkpoints[0].index;
    assert.deepEqual(history.checkpoints.map((c) => c.index), [at]);
    assert.ok(at >= first - 1 && at <= 30, `history starts at the snapshot (${at})`);
    assert.equal(history.timeOf(1), 0, "no time for an entry no longer held");
    assert.throws(
      () => history.stateCopy(1),
      (err) => err instanceof HistoryError && err.code === "compacted",
    );
    assert.equal(history.stateCopy(30).secrets.size, 30);
    // And it follows on from there.
    await leader.manager.execute(secret(30), { by: "user:secret.create" });
    await until("the index to follow", () => history.index.lastIndex === 31);
    assert.equal(history.index.firstIndex, at + 1);
    assert.equal(history.stateCopy(31).secrets.size, 31);
  } finally {
    history.close();
    for (const m of [joiner, leader]) {
      await m.manager.stop();
      await m.log.close();
    }
    await Deno.remove(dir, { recursive: true });
  }
});
