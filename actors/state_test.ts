import assert from "node:assert/strict";
import { TaskState } from "../events/schema.ts";
import { applyBatch, ClusterState, REJECTIONS_KEPT, specKey } from "./state.ts";
import { batch, ev, Folder, meta, serviceSpec } from "../tests/_harness/events.ts";
import { checkInvariants } from "../tests/_harness/invariants.ts";

function rejected(f: Folder, code: string, ...events: Parameters<Folder["apply"]>) {
  const before = f.state.index;
  const r = f.apply(...events);
  assert.equal(r.applied, false, "batch should have been rejected");
  if (r.applied) return;
  assert.equal(r.rejection.code, code, r.rejection.reason);
  assert.equal(r.rejection.index, before + 1);
  checkInvariants(f.state);
  return r.rejection;
}

/** A cluster with one node and one service, and a task of it running on the node. */
function runningTask(): { f: Folder; svcVersion: number } {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"));
  const svcVersion = f.ok(ev.serviceCreated("s1", "web"));
  f.ok(ev.taskCreated("t1", "s1", svcVersion));
  f.ok(ev.taskAllocated("t1"));
  f.ok(ev.taskAssigned("t1", "n1"));
  for (
    const s of [
      TaskState.accepted,
      TaskState.preparing,
      TaskState.ready,
      TaskState.starting,
      TaskState.running,
    ] as const
  ) {
    f.ok(ev.taskReported("t1", s, "agent:n1"));
  }
  return { f, svcVersion };
}

Deno.test("applyBatch creates the swarm once", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated("c1"));
  assert.equal(f.state.cluster?.id, "c1");
  assert.equal(f.state.cluster?.version, 1);
  assert.equal(f.state.cluster?.createdAt, 1000);
  rejected(f, "already_exists", ev.clusterCreated("c2"));
  assert.equal(f.state.cluster?.id, "c1");
});

Deno.test("applyBatch moves a task through SwarmKit's states and keeps its indexes", () => {
  const { f, svcVersion } = runningTask();
  const t = f.state.tasks.get("t1")!;
  assert.equal(t.status.state, TaskState.running);
  assert.equal(t.nodeId, "n1");
  assert.equal(t.specVersion, svcVersion);
  assert.equal(f.state.taskSpec(t).runtime.kind, "process");
  assert.deepEqual([...f.state.tasksByNode.get("n1")], ["t1"]);
  assert.deepEqual([...f.state.tasksByState.get(TaskState.running)], ["t1"]);
  f.ok(ev.taskDesired("t1", TaskState.shutdown));
  f.ok(ev.taskReported("t1", TaskState.shutdown, "agent:n1"));
  f.ok(ev.taskDesired("t1", TaskState.remove));
  f.ok(ev.taskRemoved("t1"));
  assert.equal(f.state.tasks.size, 0);
  assert.equal(f.state.tasksByNode.get("n1").size, 0);
  checkInvariants(f.state);
});

Deno.test("applyBatch refuses task moves SwarmKit's state machine forbids", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"), ev.nodeRegistered("n2"));
  const v = f.ok(ev.serviceCreated("s1"));
  f.ok(ev.taskCreated("t1", "s1", v));
  rejected(f, "invalid_transition", ev.taskAssigned("t1", "n1")); // not allocated yet
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.accepted)); // not assigned
  f.ok(ev.taskAllocated("t1"));
  rejected(f, "invalid_transition", ev.taskAllocated("t1")); // twice
  rejected(f, "invalid_reference", ev.taskAssigned("t1", "nope"));
  f.ok(ev.taskAssigned("t1", "n1"));
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.pending));
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.remove));
  rejected(f, "invalid_reference", ev.taskReported("t1", TaskState.accepted, "agent:n2"));
  f.ok(ev.taskReported("t1", TaskState.running, "agent:n1")); // agents may skip steps
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.starting, "agent:n1"));
  rejected(f, "invalid_transition", ev.taskDesired("t1", TaskState.ready)); // desired goes back
  rejected(f, "invalid_transition", ev.taskDesired("t1", TaskState.pending));
  rejected(f, "in_use", ev.taskRemoved("t1")); // still running
  f.ok(ev.taskReported("t1", TaskState.failed, "agent:n1"));
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.shutdown, "agent:n1"));
  f.ok(ev.taskReported("t1", TaskState.failed, "agent:n1")); // same state: message update
  f.ok(ev.taskRemoved("t1"));
});

Deno.test("applyBatch keeps an agent at or below the desired state", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"));
  const v = f.ok(ev.serviceCreated("s1"));
  f.ok({
    type: "TaskCreated",
    v: 1,
    data: {
      id: "t1",
      serviceId: "s1",
      slot: 1,
      nodeId: "",
      specVersion: v,
      desiredState: TaskState.ready,
      attempt: 0,
      startAfter: 0,
    },
    meta: meta(),
  });
  f.ok(ev.taskAllocated("t1"), ev.taskAssigned("t1", "n1"));
  f.ok(ev.taskReported("t1", TaskState.ready));
  rejected(f, "invalid_transition", ev.taskReported("t1", TaskState.starting));
  f.ok(ev.taskDesired("t1", TaskState.running));
  f.ok(ev.taskReported("t1", TaskState.starting));
});

Deno.test("applyBatch is atomic: one bad event undoes the whole batch", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"));
  const v = f.ok(ev.serviceCreated("s1"));
  const before = f.state.specs.get(specKey("s1", v))!.refs;
  const r = rejected(
    f,
    "invalid_reference",
    ev.taskCreated("t1", "s1", v),
    ev.taskCreated("t2", "s1", v),
    ev.serviceCreated("s2", "other"),
    ev.taskCreated("t3", "missing", v),
  );
  assert.equal(r?.event, 3);
  assert.equal(r?.type, "TaskCreated");
  assert.equal(f.state.tasks.size, 0);
  assert.equal(f.state.tasksByService.get("s1").size, 0);
  assert.equal(f.state.services.size, 1);
  assert.equal(f.state.serviceByName("other"), undefined);
  assert.equal(f.state.specs.get(specKey("s1", v))!.refs, before);
  assert.equal(f.state.rejections.length, 1);
  assert.equal(f.state.index, v + 1, "a rejected entry still moves the index");
});

Deno.test("applyBatch checks expected versions against the version before the batch", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  const v = f.ok(ev.serviceCreated("s1", "web", 1));
  const update = (replicas: number, expect: number) => ({
    type: "ServiceUpdated" as const,
    v: 1 as const,
    data: { id: "s1", spec: serviceSpec("web", replicas) },
    meta: meta("user:service.scale", expect),
  });
  // Two changes in one batch, both decided against version v.
  const v2 = f.ok(update(2, v), update(3, v));
  const svc = f.state.services.get("s1")!;
  assert.equal(svc.version, v2);
  assert.deepEqual(svc.spec.mode, { kind: "replicated", replicas: 3 });
  const r = rejected(f, "version_conflict", update(4, v));
  assert.match(r!.reason, new RegExp(`expected version ${v}, current version is ${v2}`));
  assert.deepEqual(f.state.services.get("s1")!.spec.mode, { kind: "replicated", replicas: 3 });
});

Deno.test("applyBatch keeps names unique and references valid", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  f.ok(ev.serviceCreated("s1", "web"));
  const r = rejected(f, "name_conflict", ev.serviceCreated("s2", "web"));
  assert.equal(r!.reason, "name conflicts with an existing object: service web already exists");
  f.ok({
    type: "SecretCreated",
    v: 1,
    data: { id: "x1", spec: { name: "pw", labels: {}, data: "c2VjcmV0" } },
    meta: meta(),
  });
  rejected(f, "name_conflict", {
    type: "SecretCreated",
    v: 1,
    data: { id: "x2", spec: { name: "pw", labels: {}, data: "" } },
    meta: meta(),
  });
  const withSecret = {
    task: {
      runtime: { kind: "process", command: "/bin/true" },
      secrets: [{ id: "x1", name: "pw" }],
    },
  };
  rejected(
    f,
    "invalid_reference",
    ev.serviceCreated("s3", "api", 1, {
      task: {
        runtime: { kind: "process", command: "/bin/true" },
        secrets: [{ id: "zz", name: "no" }],
      },
    }),
  );
  f.ok(ev.serviceCreated("s3", "api", 1, withSecret));
  const inUse = rejected(f, "in_use", {
    type: "SecretRemoved",
    v: 1,
    data: { id: "x1" },
    meta: meta(),
  });
  assert.equal(inUse!.reason, "secret 'pw' is in use by the following service: api");
  f.ok({ type: "ServiceRemoved", v: 1, data: { id: "s3" }, meta: meta() });
  f.ok({ type: "SecretRemoved", v: 1, data: { id: "x1" }, meta: meta() });
  assert.equal(f.state.secrets.size, 0);
  assert.equal(f.state.secretNames.size, 0);
  checkInvariants(f.state);
});

Deno.test("applyBatch keeps the previous spec for rollback and shares task specs", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated());
  const v1 = f.ok(ev.serviceCreated("s1", "web", 1));
  f.ok(ev.taskCreated("t1", "s1", v1));
  const update = (args: string[]) => ({
    type: "ServiceUpdated" as const,
    v: 1 as const,
    data: {
      id: "s1",
      spec: serviceSpec("web", 5, {
        task: { runtime: { kind: "process", command: "/bin/sleep", args } },
      }),
    },
    meta: meta(),
  });
  const v2 = f.ok(update(["1"]));
  let svc = f.state.services.get("s1")!;
  assert.equal(svc.specVersion, v2);
  assert.equal(svc.previousSpecVersion, v1);
  assert.equal(svc.updateStatus?.state, "updating");
  assert.deepEqual(svc.previousSpec?.mode, { kind: "replicated", replicas: 1 });
  assert.equal(f.state.specs.get(specKey("s1", v1))!.refs, 2, "previous spec + task t1");
  const v3 = f.ok(update(["2"]));
  assert.equal(f.state.specs.get(specKey("s1", v1))!.refs, 1, "only t1 still runs v1");
  f.ok({ type: "ServiceRolledBack", v: 1, data: { id: "s1" }, meta: meta() });
  svc = f.state.services.get("s1")!;
  assert.equal(svc.specVersion, v2);
  assert.equal(svc.previousSpec, undefined);
  assert.equal(svc.updateStatus?.state, "rollback_started");
  assert.equal(f.state.specs.has(specKey("s1", v3)), false, "v3 has no holder left");
  rejected(f, "invalid_transition", {
    type: "ServiceRolledBack",
    v: 1,
    data: { id: "s1" },
    meta: meta(),
  });
  rejected(f, "invalid_argument", {
    type: "ServiceUpdated",
    v: 1,
    data: { id: "s1", spec: { ...serviceSpec("web"), mode: { kind: "global" } } },
    meta: meta(),
  });
  // Scaling is not a new spec version: tasks keep running what they run.
  f.ok({
    type: "ServiceUpdated",
    v: 1,
    data: { id: "s1", spec: { ...svc.spec, mode: { kind: "replicated", replicas: 9 } } },
    meta: meta(),
  });
  assert.equal(f.state.services.get("s1")!.specVersion, v2);
  assert.equal(f.state.services.get("s1")!.updateStatus?.state, "rollback_started");
  checkInvariants(f.state);
});

Deno.test("applyBatch validates global tasks and node removal", () => {
  const f = new Folder();
  f.ok(ev.clusterCreated(), ev.nodeRegistered("n1"));
  const v = f.ok(ev.serviceCreated("g", "agent", 0, { mode: { kind: "global" } }));
  rejected(f, "invalid_argument", ev.taskCreated("t1", "g", v, 1));
  rejected(f, "invalid_reference", ev.taskCreated("t1", "g", v, 0, "n9"));
  f.ok(ev.taskCreated("t1", "g", v, 0, "n1"));
  f.ok(ev.taskAllocated("t1"));
  f.ok(ev.nodeRegistered("n2"));
  rejected(f, "invalid_transition", ev.taskAssigned("t1", "n2"));
  f.ok(ev.taskAssigned("t1", "n1"));
  rejected(f, "in_use", { type: "NodeRemoved", v: 1, data: { id: "n1" }, meta: meta() });
  f.ok(
    ev.taskReported("t1", TaskState.orphaned),
    { type: "NodeRemoved", v: 1, data: { id: "n1" }, meta: meta() },
  );
  assert.equal(f.state.nodes.has("n1"), false);
  assert.equal(f.state.nodesByRole.get("worker").size, 1);
});

Deno.test("applyBatch refuses an index that does not move forward", () => {
  const s = new ClusterState();
  applyBatch(s, batch(ev.clusterCreated()), 5);
  assert.throws(() => applyBatch(s, batch(ev.nodeRegistered("n1")), 5), RangeError);
  applyBatch(s, batch(ev.nodeRegistered("n1")), 9); // gaps are fine: raft has non-batch entries
  assert.equal(s.nodes.get("n1")!.version, 9);
});

Deno.test("applyBatch remembers a bounded number of rejections", () => {
  const f = new Folder();
  for (let i = 0; i < REJECTIONS_KEPT + 10; i++) f.apply(ev.taskRemoved("ghost"));
  assert.equal(f.state.rejections.length, REJECTIONS_KEPT);
  assert.equal(f.state.rejections.at(-1)!.index, f.state.index);
  assert.equal(f.state.rejections[0].code, "not_found");
});
