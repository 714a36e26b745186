import assert from "node:assert/strict";
import fc from "fast-check";
import {
  arraySource,
  bisect,
  diff,
  findObject,
  formatDiff,
  formatReplay,
  formatWhy,
  HistoryError,
  HistoryIndex,
  type HistorySource,
  indexAtTime,
  replay,
  type SnapshotRef,
  stateAt,
  stateAtTime,
  TimeCursor,
  why,
} from "./history.ts";
import { applyBatch, ClusterState } from "./state.ts";
import { snapshot, snapshotData } from "./snapshot.ts";
import {
  type Batch,
  type EventMeta,
  SecretSpec,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
} from "../events/schema.ts";
import { MemoryLog } from "../events/log.ts";
import { ClusterHistory } from "../tests/_harness/cluster_history.ts";
import { ev, serviceSpec } from "../tests/_harness/events.ts";

// ---------------------------------------------------------------------------------------------
// A small, hand-written history with provenance links

function m(by: string, reason: string, cause?: number, expect?: number): EventMeta {
  return {
    by,
    reason,
    ...(cause === undefined ? {} : { cause }),
    ...(expect === undefined ? {} : { expect }),
  };
}

function report(
  id: string,
  state: TaskStateValue,
  message: string,
  meta: EventMeta,
  extra: { err?: string; exitCode?: number } = {},
): ShoalEvent {
  return {
    type: "TaskStatusReported",
    v: 1,
    data: { id, status: { state, timestamp: 0, message, err: extra.err ?? "", ...extra } },
    meta,
  };
}

function created(
  id: string,
  slot: number,
  specVersion: number,
  meta: EventMeta,
  attempt = 0,
): ShoalEvent {
  return {
    type: "TaskCreated",
    v: 1,
    data: {
      id,
      serviceId: "s1",
      slot,
      nodeId: "",
      specVersion,
      desiredState: TaskState.running,
      attempt,
      startAfter: 0,
    },
    meta,
  };
}

const DECISION = {
  nodesConsidered: 2,
  passed: ["n1"],
  rejected: [{ node: "n2", filter: "constraint", reason: "node.labels.zone==a is not met" }],
  rejectedCounts: { constraint: 1 },
  reason: "fewest tasks of this service",
};

/** The batches of the scenario; entry i is `SCENARIO[i - 1]`. */
function scenarioBatches(): Batch[] {
  const b = (at: number, by: string, ...events: ShoalEvent[]): Batch => ({ at, by, events });
  return [
    /* 1 */ b(
      1_000,
      "user:swarm.init",
      ev.clusterCreated("c1"),
      ev.nodeRegistered("n1", "worker-1"),
      ev.nodeRegistered("n2", "worker-2"),
    ),
    /* 2 */ b(
      1_010,
      "dispatcher",
      ...["n1", "n2"].map((id): ShoalEvent => ({
        type: "NodeStatusChanged",
        v: 1,
        data: { id, status: { state: "ready", message: "", addr: "" } },
        meta: m("dispatcher", "agent session started"),
      })),
    ),
    /* 3 */ b(2_000, "user:service.create", {
      type: "ServiceCreated",
      v: 1,
      data: { id: "s1", spec: serviceSpec("web", 1) },
      meta: m("user:service.create", "service create"),
    }),
    /* 4 */ b(
      2_001,
      "orchestrator",
      created("t1", 1, 3, m("orchestrator", "slot 1 has no task", 3)),
    ),
    /* 5 */ b(2_002, "allocator", {
      type: "TaskAllocated",
      v: 1,
      data: { id: "t1", ports: [], addresses: [] },
      meta: m("allocator", "resources allocated", 4, 4),
    }),
    /* 6 */ b(2_003, "scheduler", {
      type: "TaskAssigned",
      v: 1,
      data: { id: "t1", nodeId: "n1", decision: DECISION },
      meta: m("scheduler", "scheduled", 5, 5),
    }),
    /* 7 */ b(
      2_004,
      "dispatcher",
      report("t1", TaskState.accepted, "accepted", m("agent:n1", "accepted", undefined, 6)),
    ),
    /* 8 */ b(
      2_005,
      "dispatcher",
      report("t1", TaskState.running, "started", m("agent:n1", "started", undefined, 7)),
    ),
    // Refused: the agent read version 5, the task is at 8.
    /* 9 */ b(
      2_006,
      "dispatcher",
      report("t1", TaskState.failed, "stale", m("agent:n1", "stale report", undefined, 5)),
    ),
    /* 10 */ b(3_000, "user:service.scale", {
      type: "ServiceUpdated",
      v: 1,
      data: { id: "s1", spec: serviceSpec("web", 2) },
      meta: m("user:service.scale", "scale to 2", undefined, 3),
    }),
    /* 11 */ b(
      3_001,
      "orchestrator",
      created("t2", 2, 3, m("orchestrator", "slot 2 has no task", 10)),
    ),
    /* 12 */ b(
      5_000,
      "dispatcher",
      report("t1", TaskState.failed, "task exited", m("agent:n1", "task exited", undefined, 8), {
        err: "task: non-zero exit (1)",
        exitCode: 1,
      }),
    ),
    /* 13 */ b(
      5_001,
      "orchestrator",
      {
        type: "TaskDesiredStateChanged",
        v: 1,
        data: { id: "t1", desiredState: TaskState.shutdown },
        meta: m("orchestrator", "task failed: restart", 12, 12),
      },
      created("t3", 1, 3, m("orchestrator", "restart after failure", 12), 1),
    ),
  ];
}

async function scenario(): Promise<MemoryLog> {
  const log = new MemoryLog();
  for (const batch of scenarioBatches()) await log.append(batch);
  return log;
}

function fold(entries: readonly { index: number; batch: Batch }[], to: number): ClusterState {
  const state = new ClusterState();
  for (const e of entries) {
    if (e.index > to) break;
    applyBatch(state, e.batch, e.index);
  }
  return state;
}

/** Snapshots of a fold every `every` entries. */
function snapshotsOf(entries: readonly { index: number; batch: Batch }[], every: number) {
  const state = new ClusterState();
  const out: SnapshotRef[] = [];
  for (const e of entries) {
    applyBatch(state, e.batch, e.index);
    if (e.index % every === 0) out.push({ index: e.index, bytes: snapshot(state) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// stateAt

Deno.test("stateAt with and without snapshots equals a direct fold", () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        length: fc.integer({ min: 1, max: 300 }),
        every: fc.integer({ min: 1, max: 60 }),
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        compactAt: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
      ({ seed, length, every, at, compactAt }) => {
        const entries = new ClusterHistory({ seed, batchSize: 30 }).take(length);
        const source = arraySource(entries);
        const snaps = snapshotsOf(entries, every);
        const index = Math.min(length, Math.floor(at * (length + 1))); // 0..length
        const expected = snapshotData(fold(entries, index));
        assert.deepEqual(snapshotData(stateAt(source, index)), expected);
        assert.deepEqual(snapshotData(stateAt(source, index, snaps)), expected);
        // A compacted log: entries after a snapshot only.
        const kept = snaps[Math.floor(compactAt * snaps.length)];
        if (kept !== undefined && index >= kept.index) {
          const tail = arraySource(entries.slice(kept.index), kept.index + 1);
          assert.deepEqual(snapshotData(stateAt(tail, index, snaps)), expected);
        }
      },
    ),
    { numRuns: 80 },
  );
});

Deno.test("stateAt explains what it cannot answer", () => {
  const entries = new ClusterHistory({ seed: 3 }).take(50);
  const snaps = snapshotsOf(entries, 20);
  const tail = arraySource(entries.slice(25)); // entries 26..50
  assert.throws(() => stateAt(tail, 30), (e: unknown) => {
    assert.ok(e instanceof HistoryError);
    assert.equal(e.code, "compacted");
    assert.match(e.message, /entries 1\.\.25 were compacted away/);
    return true;
  });
  // The snapshot at 20 is older than the log's first entry 26: 21..25 are missing.
  assert.throws(() => stateAt(tail, 30, snaps), /compacted/);
  assert.throws(() => stateAt(arraySource(entries), 51), (e: unknown) => {
    assert.ok(e instanceof HistoryError);
    assert.equal(e.code, "out_of_range");
    return true;
  });
  assert.throws(() => stateAt(arraySource(entries), 1.5), /out_of_range|No index/);
  assert.equal(stateAt(arraySource(entries), 0).index, 0);
});

Deno.test("stateAtTime takes every entry stamped at or before the time", () => {
  const b = (at: number): Batch => ({ at, by: "test", events: [ev.clusterCreated(`c${at}`)] });
  const entries = [10, 20, 20, 30].map((at, i) => ({ index: i + 1, batch: b(at) }));
  const source = arraySource(entries);
  assert.equal(indexAtTime(source, 5), 0);
  assert.equal(indexAtTime(source, 10), 1);
  assert.equal(indexAtTime(source, 19), 1);
  assert.equal(indexAtTime(source, 20), 3, "ties: both entries at 20 are included");
  assert.equal(indexAtTime(source, 29), 3);
  assert.equal(indexAtTime(source, 30), 4);
  assert.equal(indexAtTime(source, 1e15), 4);
  assert.equal(stateAtTime(source, 25).index, 3);
  assert.throws(() => indexAtTime(arraySource(entries.slice(1)), 5), /compacted|oldest entry/);
});

Deno.test("a time cursor folds forward and jumps back through snapshots", () => {
  const entries = new ClusterHistory({ seed: 11 }).take(120);
  const source = arraySource(entries);
  const cursor = new TimeCursor(source, snapshotsOf(entries, 25));
  for (const i of [10, 40, 41, 90, 30, 120, 0, 77]) {
    assert.deepEqual(snapshotData(cursor.seek(i)), snapshotData(fold(entries, i)), `at ${i}`);
  }
});

// ---------------------------------------------------------------------------------------------
// diff

Deno.test("diff of two known states lists exactly the expected changes", async () => {
  const log = await scenario();
  const d = diff(stateAt(log, 8), stateAt(log, 13));
  assert.equal(d.from, 8);
  assert.equal(d.to, 13);
  const summary = d.changes.map((c) => ({
    what: `${c.change} ${c.kind} ${c.name}`,
    fields: Object.fromEntries(c.fields.map((f) => [f.path, [f.from, f.to]])),
  }));
  const spec1 = serviceSpec("web", 1);
  assert.deepEqual(summary, [
    {
      what: "changed service web",
      fields: {
        "spec.mode.replicas": [1, 2],
        previousSpec: [undefined, spec1],
        previousSpecVersion: [undefined, 3],
      },
    },
    {
      what: "changed task web.1",
      fields: {
        desiredState: ["running", "shutdown"],
        "status.message": ["started", "task exited"],
        "status.err": ["", "task: non-zero exit (1)"],
        "status.exitCode": [undefined, 1],
        "status.state": ["running", "failed"],
      },
    },
    { what: "created task web.2", fields: {} },
    { what: "created task web.1", fields: {} },
  ]);
  assert.equal(d.created, 2);
  assert.equal(d.changed, 2);
  assert.equal(d.removed, 0);
  const text = formatDiff(d);
  assert.match(text, /index 8 → 13: 2 created, 2 changed, 0 removed/);
  assert.match(text, /~ service web \(s1\)\n {4}spec\.mode\.replicas: 1 → 2/);
  assert.match(text, /status\.state: running → failed/);
  assert.match(text, /\+ task web\.2 \(t2\): new, desired running/);
  // The other way round: created objects are removed.
  const back = diff(stateAt(log, 13), stateAt(log, 8));
  assert.deepEqual(back.changes.filter((c) => c.change === "removed").map((c) => c.id), [
    "t2",
    "t3",
  ]);
  // Comparing field by field (states from different logs) finds the same.
  assert.deepEqual(diff(stateAt(log, 8), stateAt(log, 13), { sameLog: false }), d);
  assert.equal(diff(stateAt(log, 13), stateAt(log, 13)).changes.length, 0);
});

Deno.test("diff never shows secret data, the CA key or join tokens", async () => {
  const log = new MemoryLog();
  await log.append({ at: 1, by: "t", events: [ev.clusterCreated("c1")] });
  await log.append({
    at: 2,
    by: "user:secret.create",
    events: [{
      type: "SecretCreated",
      v: 1,
      data: { id: "x1", spec: SecretSpec.parse({ name: "db-password", data: "aHVudGVyMg==" }) },
      meta: m("user:secret.create", "secret create"),
    }],
  });
  await log.append({
    at: 3,
    by: "user:swarm.join-token",
    events: [
      {
        type: "ClusterJoinTokenRotated",
        v: 1,
        data: { id: "c1", role: "worker", token: "SWMTKN-1-new-secret" },
        meta: m("user:swarm.join-token", "rotate"),
      },
      {
        type: "SecretUpdated",
        v: 1,
        data: { id: "x1", labels: { tier: "db" } },
        meta: m("user:secret.update", "label"),
      },
    ],
  });
  const d = diff(stateAt(log, 1), stateAt(log, 3));
  const json = JSON.stringify(d);
  assert.ok(!json.includes("aHVudGVyMg=="), "secret data leaked");
  assert.ok(!json.includes("SWMTKN-1-new-secret"), "join token leaked");
  const text = formatDiff(d);
  assert.match(text, /joinTokens\.worker: \(changed\)/);
  assert.match(text, /\+ secret db-password \(x1\): secret \(data hidden\)/);
  const later = diff(stateAt(log, 2), stateAt(log, 3));
  assert.deepEqual(later.changes.find((c) => c.kind === "secret")?.fields, [
    { path: "spec.labels.tier", to: "db" },
  ]);
});

// ---------------------------------------------------------------------------------------------
// why

Deno.test("why of a task walks its events and their causes back to the user's command", async () => {
  const log = await scenario();
  const r = why(log, "task", "t1");
  assert.equal(r.name, "web.1");
  assert.equal(r.atIndex, 13);
  assert.equal(r.summary, "failed on worker-1, desired shutdown");
  assert.deepEqual(
    r.steps.map((s) => [s.index, s.type, s.by, s.reason]),
    [
      [13, "TaskDesiredStateChanged", "orchestrator", "task failed: restart"],
      [12, "TaskStatusReported", "agent:n1", "task exited"],
      [8, "TaskStatusReported", "agent:n1", "started"],
      [7, "TaskStatusReported", "agent:n1", "accepted"],
      [6, "TaskAssigned", "scheduler", "scheduled"],
      [5, "TaskAllocated", "allocator", "resources allocated"],
      [4, "TaskCreated", "orchestrator", "slot 1 has no task"],
    ],
  );
  const byIndex = new Map(r.steps.map((s) => [s.index, s]));
  // Status reports come from its agent, batched by the dispatcher.
  assert.equal(byIndex.get(12)!.batchBy, "dispatcher");
  assert.deepEqual(byIndex.get(12)!.changes, [
    "status.state: running → failed",
    "message: task exited",
    "error: task: non-zero exit (1)",
    "exit code 1",
  ]);
  // The scheduler's decision, with node names.
  const assigned = byIndex.get(6)!;
  assert.deepEqual(assigned.changes, [
    "assigned to node worker-1",
    "status.state: pending → assigned",
  ]);
  assert.deepEqual(assigned.decision, {
    nodesConsidered: 2,
    chosen: { id: "n1", name: "worker-1" },
    passed: [{ id: "n1", name: "worker-1" }],
    rejected: [{
      id: "n2",
      name: "worker-2",
      filter: "constraint",
      reason: "node.labels.zone==a is not met",
    }],
    rejectedCounts: { constraint: 1 },
    reason: "fewest tasks of this service",
  });
  // Causes, transitively, back to the user's ServiceCreated.
  assert.deepEqual(
    assigned.causes.map((h) => [h.index, h.event?.type, h.event?.user]),
    [[5, "TaskAllocated", false], [4, "TaskCreated", false], [3, "ServiceCreated", true]],
  );
  const createdStep = byIndex.get(4)!;
  assert.equal(createdStep.causes.length, 1);
  assert.equal(createdStep.causes[0].event?.by, "user:service.create");
  assert.equal(createdStep.causes[0].event?.name, "web");
  assert.deepEqual(r.origin.map((o) => [o.index, o.event?.type]), [[3, "ServiceCreated"]]);
  // The refused stale report changed nothing and is listed apart.
  assert.deepEqual(r.refused.map((f) => [f.index, f.code]), [[9, "version_conflict"]]);

  const text = formatWhy(r);
  assert.match(text, /^task web\.1 \(t1\) as of index 13: failed on worker-1, desired shutdown/);
  assert.match(text, /#6 \S+ TaskAssigned by scheduler: scheduled/);
  assert.match(text, /decision: 2 nodes considered; chose worker-1: fewest tasks of this service/);
  assert.match(text, /rejected worker-2 by constraint: node\.labels\.zone==a is not met/);
  assert.match(
    text,
    /← caused by #3 ServiceCreated service web by user:service\.create: service create {2}\[user command\]/,
  );
  assert.match(text, /refused #9 TaskStatusReported by agent:n1 \(version_conflict\)/);
});

Deno.test("why of a scaled-up or restarted task names what caused it", async () => {
  const log = await scenario();
  const index = HistoryIndex.build(log);
  const t2 = why(log, "task", "t2", undefined, { index });
  assert.equal(t2.name, "web.2");
  assert.deepEqual(t2.steps[0].causes.map((h) => [h.index, h.event?.type, h.event?.reason]), [
    [10, "ServiceUpdated", "scale to 2"],
  ]);
  assert.deepEqual(t2.origin.map((o) => [o.index, o.event?.type, o.note]), [
    [3, "ServiceCreated", "wrote the spec this task runs"],
    [10, "ServiceUpdated", "last user change to the service before this task was created"],
  ]);
  const t3 = why(log, "task", "t3", undefined, { index });
  assert.deepEqual(t3.steps[0].changes, [
    "created for slot 1 of service web, spec version 3, desired running",
    "restart attempt 1",
  ]);
  // The restart was caused by the failure of the slot's previous task.
  const hop = t3.steps[0].causes[0];
  assert.equal(hop.index, 12);
  assert.equal(hop.event?.id, "t1");
  assert.equal(hop.event?.reason, "task exited");
  assert.equal(hop.event?.by, "agent:n1");
});

Deno.test("why as of an earlier index, of a service and a node, and of nothing", async () => {
  const log = await scenario();
  const early = why(log, "task", "t1", 6);
  assert.equal(early.summary, "assigned on worker-1, desired running");
  assert.deepEqual(early.steps.map((s) => s.index), [6, 5, 4]);
  const svc = why(log, "service", "s1");
  assert.deepEqual(svc.steps.map((s) => [s.index, s.changes]), [
    [10, ["spec.mode.replicas: 1 → 2"]],
    [3, ["created service web (replicated, 1 replicas)"]],
  ]);
  assert.equal(svc.summary, "replicated, 2 replicas");
  const node = why(log, "node", "n1");
  assert.equal(node.name, "worker-1");
  assert.deepEqual(node.steps.map((s) => s.changes[0]), [
    "status.state: unknown → ready",
    "joined as worker (worker-1, 127.0.0.1)",
  ]);
  assert.throws(() => why(log, "task", "nope"), (e: unknown) => {
    assert.ok(e instanceof HistoryError);
    assert.equal(e.code, "not_found");
    return true;
  });
  assert.throws(() => why(log, "service", "t1"), /No service t1/);
  // An index kept up to date entry by entry answers the same as one built at once.
  const live = new HistoryIndex();
  const state = new ClusterState();
  for (const entry of log.read(1)) live.add(entry, applyBatch(state, entry.batch, entry.index));
  assert.deepEqual(why(log, "task", "t1", 13, { index: live }), why(log, "task", "t1"));
  assert.equal(findObject(state, "task", "web.1").id, "t3", "newest task of the slot");
  assert.equal(findObject(state, "node", "worker-2").id, "n2");
  assert.equal(findObject(state, "service", "s").id, "s1", "unique id prefix");
});

// ---------------------------------------------------------------------------------------------
// replay

Deno.test("replay lists each entry's events and the changes they made", async () => {
  const log = await scenario();
  const steps = replay(log, 5, 9);
  assert.deepEqual(steps.map((s) => [s.index, s.applied, s.events.map((e) => e.type)]), [
    [5, true, ["TaskAllocated"]],
    [6, true, ["TaskAssigned"]],
    [7, true, ["TaskStatusReported"]],
    [8, true, ["TaskStatusReported"]],
    [9, false, ["TaskStatusReported"]],
  ]);
  assert.deepEqual(
    steps[1].changes.map((c) => [c.kind, c.id, c.events, c.fields.map((f) => f.path)]),
    [["task", "t1", [0], ["nodeId", "status.state", "status.timestamp", "status.message"]]],
  );
  assert.deepEqual(steps[1].changes[0].fields[1], {
    path: "status.state",
    from: "pending",
    to: "assigned",
  });
  assert.equal(steps[4].rejection?.code, "version_conflict");
  assert.deepEqual(steps[4].changes, []);
  const text = formatReplay(steps);
  assert.match(
    text,
    /#6 \S+ by scheduler, 1 event\n {2}TaskAssigned task t1 by scheduler: scheduled \(cause #5\)\n {4}~ task web\.1 \(t1\)\n {8}nodeId: "" → n1/,
  );
  assert.match(text, /#9 .* REJECTED \(version_conflict\)/);
  assert.throws(() => replay(log, 0, 3), /from 1/);
  assert.throws(() => replay(log, 5, 99), /out_of_range|No index/);
  const first = replay(log, 1, 1)[0];
  assert.deepEqual(first.changes.map((c) => `${c.change} ${c.kind} ${c.name}`), [
    "created cluster default",
    "created node worker-1",
    "created node worker-2",
  ]);
});

// ---------------------------------------------------------------------------------------------
// bisect

/** The first index in [from, to] at which `p` holds, by folding and testing every state. */
function bruteForce(
  entries: readonly { index: number; batch: Batch }[],
  p: (s: ClusterState) => boolean,
  from: number,
  to: number,
): number | undefined {
  const state = new ClusterState();
  for (const e of entries) {
    if (e.index > to) break;
    applyBatch(state, e.batch, e.index);
    if (e.index >= from && p(state)) return e.index;
  }
  return undefined;
}

Deno.test("bisect finds the exact first index, linearly for any predicate", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.integer({ min: 0, max: 6 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (seed, failed, cut) => {
        const entries = new ClusterHistory({ seed, batchSize: 30 }).take(250);
        const source: HistorySource = arraySource(entries);
        const snapshots = snapshotsOf(entries, 40);
        // Not monotonic: failed tasks are reaped.
        const p = (s: ClusterState) => s.tasksByState.get(TaskState.failed).size >= failed;
        const from = 1 + Math.floor(cut * 200);
        const expected = bruteForce(entries, p, from, 250);
        const r = bisect(source, p, { from, snapshots });
        assert.equal(r.found ? r.index : undefined, expected);
        if (r.found) {
          assert.equal(r.state.index, r.index);
          assert.ok(p(r.state));
          assert.equal(r.tested, r.index - from + 1);
        }
      },
    ),
    { numRuns: 40 },
  );
});

Deno.test("bisect in binary mode finds the first index of a monotonic predicate", () => {
  const entries = new ClusterHistory({ seed: 5, nodes: 1 }).take(3000);
  const source = arraySource(entries);
  const snapshots = snapshotsOf(entries, 100);
  const final = fold(entries, 3000).nodes.size;
  assert.ok(final >= 3, `the history should add nodes (has ${final})`);
  for (let k = 1; k <= final + 1; k++) {
    const p = (s: ClusterState) => s.nodes.size >= k; // nodes only join in these histories
    const expected = bruteForce(entries, p, 1, 3000);
    const binary = bisect(source, p, { mode: "binary", snapshots });
    const linear = bisect(source, p, { snapshots });
    assert.equal(binary.found ? binary.index : undefined, expected, `k=${k}`);
    assert.equal(linear.found ? linear.index : undefined, expected, `k=${k}`);
    if (binary.found) {
      assert.ok(binary.tested <= 14, `binary search tested ${binary.tested} states`);
      assert.equal(binary.state.index, binary.index);
    }
  }
  assert.deepEqual(bisect(source, () => true, { from: 10, to: 9 }), { found: false, tested: 0 });
});
