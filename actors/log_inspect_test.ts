import assert from "node:assert/strict";
import { MemoryLog } from "../events/log.ts";
import { ClusterSpec, SecretSpec } from "../events/schema.ts";
import { nodeDescription, serviceSpec } from "../tests/_harness/events.ts";
import { Manager } from "./manager.ts";
import { orchestrator } from "./projections/orchestrator/decide.ts";
import { restore, restoreData, snapshot, snapshotData } from "./snapshot.ts";
import { stateAt } from "./history.ts";
import {
  describeSnapshots,
  dumpObjects,
  formatSnapshots,
  parseKind,
  REDACTED,
  type SnapshotInput,
  stateJson,
  verifyLog,
} from "./log_inspect.ts";
import type { ClusterState } from "./state.ts";

/** A swarm with a secret and a service scaled from 1 to 3, over a memory log. */
async function swarm(): Promise<{ log: MemoryLog; manager: Manager; before: number }> {
  const log = new MemoryLog();
  const manager = new Manager({ log, projections: [orchestrator] });
  await manager.start();
  await manager.setLeader(true);
  const by = { by: "user:test" };
  await manager.execute({
    kind: "InitCluster",
    clusterId: "swarm1",
    spec: ClusterSpec.parse({}),
    rootCA: { certPem: "CERT", keyPem: "PRIVATE-CA-KEY", digest: "d" },
    joinTokens: { worker: "SWMTKN-worker", manager: "SWMTKN-manager" },
    node: { id: "mgr1", description: nodeDescription("manager-1"), addr: "127.0.0.1" },
  }, by);
  await manager.execute({
    kind: "CreateFileObject",
    object: "secret",
    spec: SecretSpec.parse({ name: "pw", data: btoa("s3cret-bytes") }),
  }, by);
  await manager.execute({ kind: "CreateService", spec: serviceSpec("web", 1) }, by);
  await until(() => manager.state.tasks.size === 1);
  const before = manager.state.index;
  await manager.execute({ kind: "ScaleService", service: "web", replicas: 3 }, by);
  await until(() => manager.state.tasks.size === 3);
  return { log, manager, before };
}

async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; !ok(); i++) {
    if (i > 200) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `state` with service `name` claiming `replicas` replicas: a snapshot that lies. */
function tampered(state: ClusterState, name: string, replicas: number): Uint8Array {
  const data = structuredClone(snapshotData(state));
  const i = data.services.findIndex((s) => s.spec.name === name);
  data.services[i] = {
    ...data.services[i],
    spec: { ...data.services[i].spec, mode: { kind: "replicated", replicas } },
  };
  return snapshot(restoreData(data));
}

Deno.test("parseKind takes rafttool's singulars and plurals, and names the choices", () => {
  assert.equal(parseKind("services"), "service");
  assert.equal(parseKind("task"), "task");
  assert.equal(parseKind("cluster"), "cluster");
  assert.throws(() => parseKind("volumes"), /unknown kind "volumes": use one of nodes, services/);
});

Deno.test("dumpObjects: one by name, all of a kind, as of an index; secrets never shown", async () => {
  const { log, manager, before } = await swarm();
  try {
    const [web] = dumpObjects(manager.state, "service", "web");
    assert.equal(web.name, "web");
    assert.equal((web.spec as { mode: { replicas: number } }).mode.replicas, 3);
    const then = stateAt(log, before);
    assert.equal(dumpObjects(then, "task").length, 1);
    const [task] = dumpObjects(manager.state, "task", "web.2");
    assert.equal(task.name, "web.2");
    assert.equal(task.desiredState, "running");
    assert.equal(typeof (task.status as { state: unknown }).state, "string");
    assert.ok((task.spec as { runtime: unknown }).runtime, "a task shows its task spec");

    const [secret] = dumpObjects(manager.state, "secret", "pw");
    assert.equal((secret.spec as { data: string }).data, REDACTED);
    const [cluster] = dumpObjects(manager.state, "cluster");
    const text = JSON.stringify([cluster, stateJson(manager.state)]);
    for (const hidden of ["PRIVATE-CA-KEY", "SWMTKN-worker", btoa("s3cret-bytes")]) {
      assert.ok(!text.includes(hidden), `${hidden} is shown`);
    }
    assert.throws(() => dumpObjects(manager.state, "network"), /no matching objects found/);
    assert.throws(() => dumpObjects(manager.state, "service", "nope"), /No service nope/);
  } finally {
    await manager.stop();
  }
});

Deno.test("verifyLog: snapshots equal to the fold pass; a lying one is named with how it differs", async () => {
  const { log, manager, before } = await swarm();
  try {
    const good: SnapshotInput[] = [
      { index: before, bytes: snapshot(stateAt(log, before)) },
      { index: log.lastIndex(), bytes: snapshot(manager.state) },
    ];
    const ok = verifyLog(log, good, { live: manager.state });
    assert.deepEqual(ok.problems, []);
    assert.equal(ok.entries, log.lastIndex());
    assert.deepEqual(ok.snapshots.map((s) => s.result), ["ok", "ok"]);
    assert.equal(ok.live, "ok");

    const bad = verifyLog(log, [
      good[0],
      { index: log.lastIndex(), bytes: tampered(manager.state, "web", 7) },
    ]);
    assert.deepEqual(bad.snapshots.map((s) => s.result), ["ok", "differs"]);
    assert.equal(bad.problems.length, 1);
    assert.equal(bad.problems[0].index, log.lastIndex());
    assert.match(
      bad.problems[0].message,
      new RegExp(
        `snapshot at index ${log.lastIndex()} differs from the fold of the log up to ${log.lastIndex()}: ` +
          `service web \\(\\w+\\): spec\\.mode\\.replicas: 3 → 7 \\(values are log → snapshot\\)`,
      ),
    );

    // A snapshot holding another index's state.
    const shifted = verifyLog(log, [{ index: before, bytes: snapshot(manager.state) }]);
    assert.match(shifted.problems[0].message, /holds the state at index \d+, not \d+/);
  } finally {
    await manager.stop();
  }
});

Deno.test("verifyLog on a compacted log folds from its oldest usable snapshot", async () => {
  const { log, manager, before } = await swarm();
  try {
    const entries = log.read(1);
    const compacted = {
      firstIndex: () => before + 1,
      lastIndex: () => log.lastIndex(),
      read: (from: number, to = log.lastIndex()) =>
        entries.slice(Math.max(from, before + 1) - 1, to),
    };
    const base = { index: before, bytes: snapshot(stateAt(log, before)) };
    const last = { index: log.lastIndex(), bytes: tampered(manager.state, "web", 9) };
    const r = verifyLog(compacted, [base, last]);
    assert.deepEqual(r.snapshots.map((s) => s.result), ["unchecked", "differs"]);
    assert.match(r.snapshots[0].detail!, /compacted away: the log is folded from it/);
    assert.equal(r.problems[0].index, log.lastIndex());

    // A gap in the entries is the first problem, at its index.
    const gappy = {
      ...compacted,
      read: (f: number, t?: number) => compacted.read(f, t).filter((e) => e.index !== before + 2),
    };
    const g = verifyLog(gappy, [base]);
    assert.equal(g.problems[0].index, before + 2);
    assert.match(g.problems[0].message, /index \d+: missing/);
  } finally {
    await manager.stop();
  }
});

Deno.test("describeSnapshots summarises each state and says when one cannot be read", async () => {
  const { manager } = await swarm();
  try {
    const bytes = snapshot(manager.state);
    const dumps = describeSnapshots([
      {
        index: manager.state.index,
        term: 3,
        size: bytes.length,
        bytes,
        raftIndex: 40,
        members: [{ id: 1, address: "h:1", voter: true }],
      },
      { index: 2, term: 1, size: 3, bytes: new Uint8Array([1, 2, 3]) },
    ], false);
    assert.equal(dumps[0].summary?.tasks, 3);
    assert.equal(dumps[0].state, undefined);
    assert.match(dumps[1].error ?? "", /Cannot read snapshot/);
    const text = formatSnapshots(dumps);
    assert.match(
      text,
      /snapshot at index \d+ \(raft index 40\), term 3, \d+ bytes\n {2}members: 1=h:1\n {2}state: 1 cluster, 1 node, 1 service, 3 tasks, 1 secret/,
    );
    assert.equal(restore(bytes).index, manager.state.index);
    const full = describeSnapshots([{ index: 1, term: 1, size: bytes.length, bytes }], true);
    assert.equal((full[0].state!.services as unknown[]).length, 1);
  } finally {
    await manager.stop();
  }
});
