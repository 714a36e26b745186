import assert from "node:assert/strict";
import { ClusterSpec, TaskState } from "../events/schema.ts";
import { type Command, decide, type DecideContext } from "./commands.ts";
import { EventRejected } from "./entities/rejection.ts";
import { ev, Folder, nodeDescription, serviceSpec } from "../tests/_harness/events.ts";
import { checkInvariants } from "../tests/_harness/invariants.ts";

let n = 0;
function context(): DecideContext {
  return { by: "user:test", now: 5000, newId: () => `id${++n}` };
}

/** Decides a command and folds its events as one batch. */
function run(f: Folder, command: Command, ctx = context()) {
  const events = decide(f.state, command, ctx);
  const index = f.ok(...events);
  checkInvariants(f.state);
  return { events, index };
}

function refused(f: Folder, command: Command, code: string, message?: RegExp) {
  assert.throws(() => decide(f.state, command, context()), (err) => {
    assert.ok(err instanceof EventRejected, String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function swarm(): Folder {
  const f = new Folder();
  run(f, {
    kind: "InitCluster",
    clusterId: "swarm1",
    spec: ClusterSpec.parse({}),
    rootCA: { certPem: "c", keyPem: "k", digest: "d" },
    joinTokens: { worker: "w", manager: "m" },
    node: {
      id: "mgr1",
      description: nodeDescription("manager-1"),
      addr: "127.0.0.1:4242",
    },
  });
  return f;
}

Deno.test("decide InitCluster creates the swarm and its first manager, once", () => {
  const f = swarm();
  assert.equal(f.state.cluster!.id, "swarm1");
  assert.equal(f.state.nodes.get("mgr1")?.role, "manager");
  refused(
    f,
    {
      kind: "InitCluster",
      clusterId: "swarm2",
      spec: ClusterSpec.parse({}),
      rootCA: { certPem: "", keyPem: "", digest: "" },
      joinTokens: { worker: "", manager: "" },
      node: { id: "x", description: {} as never, addr: "" },
    },
    "already_exists",
    /already part of a swarm/,
  );
});

Deno.test("decide service commands: create, scale, update, rollback, remove by name or prefix", () => {
  const f = swarm();
  const { events } = run(f, { kind: "CreateService", spec: serviceSpec("web", 1) }, {
    ...context(),
    newId: () => "abc123service",
  });
  assert.equal(events[0].type, "ServiceCreated");
  refused(
    f,
    { kind: "CreateService", spec: serviceSpec("web") },
    "name_conflict",
    /service web already exists/,
  );
  run(f, { kind: "ScaleService", service: "web", replicas: 4 });
  assert.deepEqual(f.state.serviceByName("web")?.spec.mode, { kind: "replicated", replicas: 4 });
  run(f, { kind: "UpdateService", service: "abc1", spec: serviceSpec("web", 7) });
  assert.deepEqual(f.state.serviceByName("web")?.spec.mode, { kind: "replicated", replicas: 7 });
  run(f, { kind: "RollbackService", service: "web" });
  assert.deepEqual(f.state.serviceByName("web")?.spec.mode, { kind: "replicated", replicas: 4 });
  refused(f, { kind: "RollbackService", service: "web" }, "invalid_transition");
  refused(
    f,
    { kind: "ScaleService", service: "nope", replicas: 1 },
    "not_found",
    /service nope not found/,
  );
  run(f, { kind: "RemoveService", service: "web" });
  assert.equal(f.state.services.size, 0);
});

Deno.test("decide refuses stale versions through the fold, and mode changes up front", () => {
  const f = swarm();
  run(f, { kind: "CreateService", spec: serviceSpec("web", 1) });
  const v = f.state.serviceByName("web")!.version;
  run(f, { kind: "ScaleService", service: "web", replicas: 2 });
  const stale = decide(f.state, {
    kind: "UpdateService",
    service: "web",
    spec: serviceSpec("web", 9),
    version: v,
  }, context());
  const r = f.apply(...stale);
  assert.equal(r.applied, false);
  refused(
    f,
    {
      kind: "UpdateService",
      service: "web",
      spec: serviceSpec("web", 1, { mode: { kind: "global" } }),
    },
    "invalid_argument",
    /mode change is not allowed/,
  );
  run(f, { kind: "CreateService", spec: serviceSpec("g", 0, { mode: { kind: "global" } }) });
  refused(
    f,
    { kind: "ScaleService", service: "g", replicas: 3 },
    "invalid_argument",
    /replicated mode/,
  );
});

Deno.test("decide RemoveNode: managers and live nodes need demotion or --force; tasks are orphaned", () => {
  const f = swarm();
  f.ok(ev.nodeRegistered("w1", "worker-1"));
  const v = run(f, { kind: "CreateService", spec: serviceSpec("web", 1) }).index;
  const svc = f.state.serviceByName("web")!;
  f.ok(ev.taskCreated("t1", svc.id, v));
  f.ok(ev.taskAllocated("t1"), ev.taskAssigned("t1", "w1"));
  f.ok(ev.taskReported("t1", TaskState.running, "agent:w1"));
  refused(f, { kind: "RemoveNode", node: "mgr1", force: true }, "in_use", /must be demoted/);
  f.ok({
    type: "NodeStatusChanged",
    v: 1,
    data: { id: "w1", status: { state: "ready", message: "", addr: "" } },
    meta: { by: "dispatcher", reason: "" },
  });
  refused(f, { kind: "RemoveNode", node: "worker-1", force: false }, "in_use", /is not down/);
  run(f, { kind: "RemoveNode", node: "worker-1", force: true });
  assert.equal(f.state.nodes.has("w1"), false);
  assert.equal(f.state.tasks.get("t1")?.status.state, TaskState.orphaned);
});

Deno.test("decide resolves ambiguous id prefixes and duplicate hostnames with clear errors", () => {
  const f = swarm();
  f.ok(ev.nodeRegistered("aa1", "twin"), ev.nodeRegistered("aa2", "twin"));
  refused(
    f,
    { kind: "UpdateNode", node: "twin", spec: f.state.nodes.get("aa1")!.spec },
    "invalid_argument",
    /ambiguous/,
  );
  refused(
    f,
    { kind: "UpdateNode", node: "aa", spec: f.state.nodes.get("aa1")!.spec },
    "invalid_argument",
    /ambiguous/,
  );
  run(f, {
    kind: "UpdateNode",
    node: "aa2",
    spec: { ...f.state.nodes.get("aa2")!.spec, availability: "drain" },
  });
  assert.equal(f.state.nodes.get("aa2")?.spec.availability, "drain");
  assert.deepEqual([...f.state.nodesByAvailability.get("drain")], ["aa2"]);
});

Deno.test("decide secrets and networks: unique names, removal by name", () => {
  const f = swarm();
  const spec = { name: "pw", labels: {}, data: "eA==" };
  run(f, { kind: "CreateFileObject", object: "secret", spec });
  refused(f, { kind: "CreateFileObject", object: "secret", spec }, "name_conflict");
  run(f, { kind: "CreateFileObject", object: "config", spec }); // configs are a separate namespace
  run(f, { kind: "UpdateFileObject", object: "config", ref: "pw", labels: { a: "b" } });
  assert.deepEqual(f.state.configs.get(f.state.configNames.get("pw")!)?.spec.labels, { a: "b" });
  run(f, { kind: "RemoveFileObject", object: "secret", ref: "pw" });
  assert.equal(f.state.secrets.size, 0);
  const net = {
    name: "backend",
    labels: {},
    driver: "overlay",
    scope: "swarm" as const,
    attachable: false,
    internal: false,
    ingress: false,
    subnet: "",
    options: {},
  };
  run(f, { kind: "CreateNetwork", spec: net });
  refused(f, { kind: "CreateNetwork", spec: net }, "name_conflict");
  run(f, { kind: "RemoveNetwork", ref: "backend" });
  refused(f, { kind: "RemoveNetwork", ref: "backend" }, "not_found", /network backend not found/);
});

Deno.test("decide UpdateNode refuses to demote the last manager", () => {
  const f = swarm();
  const spec = f.state.nodes.get("mgr1")!.spec;
  refused(
    f,
    { kind: "UpdateNode", node: "mgr1", spec: { ...spec, desiredRole: "worker" } },
    "invalid_argument",
    /attempting to demote the last manager of the swarm/,
  );
});
