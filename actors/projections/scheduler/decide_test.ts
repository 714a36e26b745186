import assert from "node:assert/strict";
import {
  type EventOf,
  MAX_BATCH_BYTES,
  MAX_BATCH_EVENTS,
  NodeDescription,
  type NodeSpec,
  type PortConfig,
  type ShoalEvent,
  TaskState,
} from "../../../events/schema.ts";
import { EventCodec } from "../../../events/codec.ts";
import type { Projection } from "../../manager.ts";
import { ev, Folder, meta, nodeDescription, serviceSpec } from "../../../tests/_harness/events.ts";
import { checkInvariants } from "../../../tests/_harness/invariants.ts";
import { createScheduler, DECISION_SAMPLE, scheduler } from "./decide.ts";

interface NodeOptions {
  ready?: boolean;
  availability?: NodeSpec["availability"];
  labels?: Record<string, string>;
  engineLabels?: Record<string, string>;
  runtimes?: ("process" | "container")[];
  os?: string;
  arch?: string;
  cpus?: number;
  memory?: number;
  role?: "worker" | "manager";
}

interface TaskOptions {
  ports?: Partial<PortConfig>[];
  nodeId?: string;
}

/** A cluster folded event by event, with the scheduler run against it. */
class Cluster {
  readonly f = new Folder();
  readonly sched: Projection;
  #next = 0;

  constructor(sched: Projection = createScheduler()) {
    this.sched = sched;
    this.f.ok(ev.clusterCreated());
  }

  get state() {
    return this.f.state;
  }

  node(id: string, o: NodeOptions = {}): void {
    const base = nodeDescription(id);
    const description = NodeDescription.parse({
      ...base,
      platform: { os: o.os ?? "linux", architecture: o.arch ?? "x86_64" },
      resources: { nanoCPUs: (o.cpus ?? 4) * 1e9, memoryBytes: o.memory ?? 8 * 2 ** 30 },
      engine: { engineVersion: "", labels: o.engineLabels ?? {} },
      runtimes: o.runtimes ?? ["process", "container"],
    });
    const role = o.role ?? "worker";
    this.f.ok({
      type: "NodeRegistered",
      v: 1,
      data: {
        id,
        description,
        spec: {
          name: "",
          labels: o.labels ?? {},
          desiredRole: role,
          availability: o.availability ?? "active",
        },
        role,
        addr: "10.0.0.1",
      },
      meta: meta("user:swarm.join"),
    });
    if (o.ready ?? true) this.setStatus(id, "ready");
  }

  setStatus(id: string, state: "ready" | "down" | "unknown"): void {
    this.f.ok({
      type: "NodeStatusChanged",
      v: 1,
      data: { id, status: { state, message: "", addr: "10.0.0.1" } },
      meta: meta("dispatcher"),
    });
  }

  setAvailability(id: string, availability: NodeSpec["availability"]): void {
    const node = this.state.nodes.get(id)!;
    this.f.ok({
      type: "NodeSpecUpdated",
      v: 1,
      data: { id, spec: { ...node.spec, availability } },
      meta: meta("user:node.update"),
    });
  }

  /** Creates a service; `task` is merged into a process task spec. Returns its spec version. */
  service(id: string, task: Record<string, unknown> = {}, mode?: Record<string, unknown>): number {
    return this.f.ok(ev.serviceCreated(id, id, 1, {
      task: { runtime: { kind: "process", command: "/bin/sleep" }, ...task },
      ...(mode ? { mode } : {}),
    }));
  }

  /** Creates and allocates `n` pending tasks of a service; returns their ids. */
  tasks(serviceId: string, n: number, o: TaskOptions = {}): string[] {
    const version = this.state.services.get(serviceId)!.specVersion;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(`t${++this.#next}`);
    this.f.ok(
      ...ids.map((id, i) => ev.taskCreated(id, serviceId, version, o.nodeId ? 0 : i + 1, o.nodeId)),
    );
    const ports = (o.ports ?? []).map((p) => ({
      name: "",
      protocol: "tcp" as const,
      targetPort: 80,
      publishedPort: 0,
      publishMode: "ingress" as const,
      ...p,
    }));
    this.f.ok(...ids.map((id): ShoalEvent => ({
      type: "TaskAllocated",
      v: 1,
      data: { id, ports, addresses: [] },
      meta: meta("allocator"),
    })));
    return ids;
  }

  /** Puts a task straight onto a node and runs it (not through the scheduler). */
  run(taskId: string, nodeId: string): void {
    this.f.ok(ev.taskAssigned(taskId, nodeId));
    this.f.ok(ev.taskReported(taskId, TaskState.accepted, `agent:${nodeId}`));
    this.f.ok(ev.taskReported(taskId, TaskState.running, `agent:${nodeId}`));
  }

  reconcile(): ShoalEvent[] {
    return this.sched.reconcile(this.state, {
      now: 5_000,
      newId: () => "unused",
      cause: this.state.index,
    });
  }

  /** One scheduler call, folded; returns its events. */
  step(): ShoalEvent[] {
    const events = this.reconcile();
    if (events.length > 0) {
      assert.ok(events.length <= MAX_BATCH_EVENTS);
      this.f.ok(...events);
      checkInvariants(this.state);
    }
    return events;
  }

  /** Calls the scheduler until it has nothing more to say; returns every event. */
  settle(): ShoalEvent[] {
    const all: ShoalEvent[] = [];
    for (let i = 0; i < 1000; i++) {
      const events = this.step();
      if (events.length === 0) return all;
      all.push(...events);
    }
    throw new Error("scheduler does not settle");
  }

  /** Assigned (or later) tasks per node id. */
  perNode(serviceId?: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of this.state.tasks.values()) {
      if (serviceId !== undefined && t.serviceId !== serviceId) continue;
      if (t.status.state < TaskState.assigned) continue;
      out[t.nodeId] = (out[t.nodeId] ?? 0) + 1;
    }
    return out;
  }

  task(id: string) {
    return this.state.tasks.get(id)!;
  }
}

function assignments(events: ShoalEvent[]): EventOf<"TaskAssigned">[] {
  return events.filter((e): e is EventOf<"TaskAssigned"> => e.type === "TaskAssigned");
}

function unschedulable(events: ShoalEvent[]): EventOf<"TaskUnschedulable">[] {
  return events.filter((e): e is EventOf<"TaskUnschedulable"> => e.type === "TaskUnschedulable");
}

/** One task of a service against two nodes, the second of which `bad` makes fail. */
function oneGoodOneBad(
  filter: string,
  task: Record<string, unknown>,
  bad: NodeOptions,
  good: NodeOptions = {},
  taskOptions: TaskOptions = {},
  before?: (c: Cluster) => void,
) {
  const c = new Cluster();
  c.node("bad", bad);
  c.node("good", good);
  c.service("s", task);
  before?.(c);
  const [id] = c.tasks("s", 1, taskOptions);
  const events = c.step();
  const [assigned] = assignments(events);
  assert.ok(assigned, `${filter}: expected an assignment, got ${JSON.stringify(events)}`);
  assert.equal(assigned.data.id, id);
  assert.equal(assigned.data.nodeId, "good", `${filter}: should avoid the bad node`);
  const rejected = assigned.data.decision.rejected.find((r) => r.node === "bad");
  assert.equal(rejected?.filter, filter, JSON.stringify(assigned.data.decision));
  assert.equal(assigned.data.decision.rejectedCounts[filter], 1);
  assert.equal(c.task(id).status.state, TaskState.assigned);
  return { c, assigned, rejected: rejected! };
}

// ---------------------------------------------------------------------------------------------
// Filters, one by one

Deno.test("ready filter: only nodes whose status is ready take tasks", () => {
  const { rejected } = oneGoodOneBad("ready", {}, { ready: false });
  assert.equal(rejected.reason, "node is unknown");
});

Deno.test("availability filter: paused and drained nodes take no new tasks", () => {
  for (const availability of ["pause", "drain"] as const) {
    const { rejected } = oneGoodOneBad("availability", {}, { availability });
    assert.equal(rejected.reason, `node availability is ${availability}`);
  }
});

Deno.test("runtime filter: the node must run the task's runtime kind", () => {
  oneGoodOneBad("runtime", {}, { runtimes: ["container"] }, { runtimes: ["process"] });
  const { rejected } = oneGoodOneBad(
    "runtime",
    { runtime: { kind: "container", image: "busybox" } },
    { runtimes: ["process"] },
    { runtimes: ["container"] },
  );
  assert.match(rejected.reason, /not container/);
});

Deno.test("resources filter: reservations must fit what live tasks leave free", () => {
  const reserve = { resources: { reservations: { nanoCPUs: 2e9, memoryBytes: 2 ** 30 } } };
  // A small node.
  oneGoodOneBad("resources", reserve, { cpus: 1 });
  // A big node mostly used by a running task of another service.
  const { rejected } = oneGoodOneBad("resources", reserve, { cpus: 4 }, { cpus: 4 }, {}, (c) => {
    c.service("hog", { resources: { reservations: { nanoCPUs: 3e9, memoryBytes: 0 } } });
    const [hog] = c.tasks("hog", 1);
    c.run(hog, "bad");
  });
  assert.equal(rejected.reason, "needs 2 CPU, 1 CPU free");
});

Deno.test("resources filter: finished tasks no longer hold their reservations", () => {
  const c = new Cluster();
  c.node("n1", { cpus: 2 });
  c.service("hog", { resources: { reservations: { nanoCPUs: 2e9, memoryBytes: 0 } } });
  const [hog] = c.tasks("hog", 1);
  c.run(hog, "n1");
  c.service("s", { resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } } });
  const [t] = c.tasks("s", 1);
  assert.equal(unschedulable(c.step()).length, 1);
  c.f.ok(ev.taskReported(hog, TaskState.complete, "agent:n1"));
  assert.equal(assignments(c.step())[0]?.data.id, t);
});

Deno.test("platform filter: os/arch must match, with x86_64=amd64 and aarch64=arm64", () => {
  oneGoodOneBad(
    "platform",
    { placement: { platforms: [{ os: "linux", architecture: "amd64" }] } },
    { arch: "aarch64" },
    { arch: "x86_64" },
  );
  const { rejected } = oneGoodOneBad(
    "platform",
    { placement: { platforms: [{ os: "linux", architecture: "arm64" }] } },
    { os: "windows", arch: "aarch64" },
    { arch: "aarch64" },
  );
  assert.equal(rejected.reason, "node is windows/aarch64, task runs on linux/arm64");
  // An empty field matches anything.
  oneGoodOneBad(
    "platform",
    { placement: { platforms: [{ os: "linux", architecture: "" }] } },
    { os: "windows" },
  );
});

Deno.test("constraints filter: every key, == and !=", () => {
  const cases: [string, NodeOptions, NodeOptions][] = [
    ["node.id==good", {}, {}],
    ["node.id!=bad", {}, {}],
    ["node.hostname==good", {}, {}],
    ["node.role==manager", { role: "worker" }, { role: "manager" }],
    ["node.role!=manager", { role: "manager" }, {}],
    ["node.platform.os==linux", { os: "windows" }, {}],
    ["node.platform.arch==x86_64", { arch: "aarch64" }, {}],
    ["node.labels.zone==east", { labels: { zone: "west" } }, { labels: { zone: "east" } }],
    ["node.labels.zone!=west", { labels: { zone: "west" } }, {}],
    ["node.labels.ZONE==x", { labels: { zone: "x" } }, { labels: { ZONE: "x" } }],
    ["node.labels.zone==EAST", { labels: { zone: "west" } }, { labels: { zone: "east" } }],
    ["engine.labels.disk==ssd", { engineLabels: { disk: "hdd" } }, {
      engineLabels: { disk: "ssd" },
    }],
    ["node.ip==10.0.0.0/8", {}, {}],
  ];
  for (const [constraint, bad, good] of cases) {
    if (constraint.startsWith("node.ip")) continue; // both nodes share 10.0.0.1: see below
    oneGoodOneBad("constraints", { placement: { constraints: [constraint] } }, bad, good);
  }
  const { rejected } = oneGoodOneBad(
    "constraints",
    { placement: { constraints: ["node.labels.zone==east", "node.role==worker"] } },
    { labels: { zone: "west" } },
    { labels: { zone: "east" } },
  );
  assert.equal(
    rejected.reason,
    'node.labels.zone==east not satisfied (node.labels.zone is "west")',
  );
});

Deno.test("constraints filter: node.ip matches addresses and subnets", () => {
  const c = new Cluster();
  c.node("n1");
  for (
    const [constraint, placed] of [
      ["node.ip==10.0.0.1", true],
      ["node.ip==10.0.0.0/24", true],
      ["node.ip!=10.0.0.0/24", false],
      ["node.ip==192.168.0.0/16", false],
      ["node.ip==::ffff:10.0.0.1", true],
    ] as const
  ) {
    const id = `s${c.state.index}`;
    c.service(id, { placement: { constraints: [constraint] } });
    c.tasks(id, 1);
    const events = c.step();
    assert.equal(assignments(events).length, placed ? 1 : 0, constraint);
  }
});

Deno.test("constraints filter: a malformed constraint gives a clear message", () => {
  for (
    const [constraint, why] of [
      ["node.labels.zone=east", "expected one operator from ==, !="],
      ["node.colour==red", "unknown key 'node.colour'"],
      ["node.labels.zone==", "the value is missing"],
      ["==east", "the key is missing"],
      ["node.ip==not-an-ip", "'not-an-ip' is not an IP address or a CIDR subnet"],
      ["node.labels.zone==a<b", "value 'a<b' is invalid"],
    ]
  ) {
    const c = new Cluster();
    c.node("n1");
    // Bypass the schema's own check, as a log written by an older version could.
    const base = serviceSpec("s", 1);
    const placement = { ...base.task.placement, constraints: [constraint] };
    const spec = { ...base, task: { ...base.task, placement } };
    c.f.ok({ type: "ServiceCreated", v: 1, data: { id: "s", spec }, meta: meta() });
    const [t] = c.tasks("s", 1);
    const [u] = unschedulable(c.step());
    assert.ok(u, constraint);
    assert.equal(u.data.id, t);
    assert.ok(u.data.message.includes(`invalid constraint "${constraint}"`), u.data.message);
    assert.ok(u.data.message.includes(why), `${constraint}: ${u.data.message}`);
    assert.equal(u.data.decision.rejected[0].filter, "constraints");
  }
});

Deno.test("host port filter: a host-mode port in use on a node keeps new tasks away", () => {
  const port = { publishedPort: 8080, publishMode: "host" as const };
  const { c } = oneGoodOneBad("hostPort", {}, {}, {}, { ports: [port] }, (c) => {
    c.service("other");
    const [other] = c.tasks("other", 1, { ports: [port] });
    c.run(other, "bad");
  });
  // Another task with the same port: both nodes now hold 8080.
  const [t] = c.tasks("s", 1, { ports: [port] });
  const [u] = unschedulable(c.step());
  assert.equal(u.data.id, t);
  assert.equal(u.data.message, "no suitable node (host-mode port already in use on 2 nodes)");
  assert.match(u.data.decision.rejected[0].reason, /host port 8080\/tcp in use/);
  // Another protocol, or ingress mode, does not conflict.
  const [udp] = c.tasks("s", 1, { ports: [{ ...port, protocol: "udp" }] });
  const [ingress] = c.tasks("s", 1, { ports: [{ publishedPort: 8080 }] });
  const placed = assignments(c.step()).map((e) => e.data.id).sort();
  assert.deepEqual(placed, [ingress, udp].sort());
});

Deno.test("max replicas filter: at most maxReplicas active tasks of the service per node", () => {
  const c = new Cluster();
  c.node("n1");
  c.node("n2");
  c.service("s", { placement: { maxReplicas: 2 } });
  const ids = c.tasks("s", 5);
  const events = c.settle();
  assert.equal(assignments(events).length, 4);
  assert.deepEqual(c.perNode("s"), { n1: 2, n2: 2 });
  const [u] = unschedulable(events);
  assert.equal(u.data.id, ids[4]);
  assert.equal(u.data.message, "no suitable node (max replicas per node limit exceed)");
  assert.deepEqual(u.data.decision.rejectedCounts, { maxReplicas: 2 });
  assert.equal(c.task(ids[4]).status.state, TaskState.pending);
  assert.equal(c.task(ids[4]).status.err, u.data.message);
  // A task being shut down no longer counts as a replica: room for the last one.
  c.f.ok(ev.taskDesired(ids[0], TaskState.shutdown));
  assert.equal(assignments(c.step())[0]?.data.id, ids[4]);
});

// ---------------------------------------------------------------------------------------------
// Placement

Deno.test("fewest tasks: 9 tasks on 3 nodes land 3 on each", () => {
  const c = new Cluster();
  for (const n of ["n1", "n2", "n3"]) c.node(n);
  c.service("s");
  c.tasks("s", 9);
  const events = c.settle();
  assert.equal(assignments(events).length, 9);
  assert.deepEqual(c.perNode("s"), { n1: 3, n2: 3, n3: 3 });
});

Deno.test("fewest tasks: the service's own count first, then tasks of every service", () => {
  const c = new Cluster();
  for (const n of ["n1", "n2", "n3"]) c.node(n);
  c.service("other");
  // n1 runs 2 tasks of another service, n2 runs 1.
  const other = c.tasks("other", 3);
  c.run(other[0], "n1");
  c.run(other[1], "n1");
  c.run(other[2], "n2");
  c.service("s");
  c.tasks("s", 1);
  const [first] = assignments(c.step());
  assert.equal(first.data.nodeId, "n3");
  assert.match(
    first.data.decision.reason,
    /n3 had the fewest tasks of the service \(0\), then in all \(0\)/,
  );
  c.tasks("s", 2);
  c.settle();
  // Each node ends with one task of s: the service's count wins over the total.
  assert.deepEqual(c.perNode("s"), { n1: 1, n2: 1, n3: 1 });
});

Deno.test("spread: tasks are spread over the values of a node label first", () => {
  const c = new Cluster();
  c.node("a1", { labels: { zone: "a" } });
  c.node("a2", { labels: { zone: "a" } });
  c.node("b1", { labels: { zone: "b" } });
  c.node("x1"); // no zone label: a branch of its own
  c.service("s", { placement: { preferences: [{ spread: "node.labels.zone" }] } });
  c.tasks("s", 6);
  const events = c.settle();
  assert.equal(assignments(events).length, 6);
  // Two tasks per zone value (a, b, none); zone a splits its two over its two nodes.
  assert.deepEqual(c.perNode("s"), { a1: 1, a2: 1, b1: 2, x1: 2 });
  const reason = assignments(events)[0].data.decision.reason;
  assert.match(
    reason,
    /spread over node.labels.zone: nodes without it had the fewest tasks/,
    reason,
  );
});

Deno.test("spread: nested preferences, highest precedence first", () => {
  const c = new Cluster();
  const nodes: [string, string, string][] = [
    ["n1", "dc1", "r1"],
    ["n2", "dc1", "r1"],
    ["n3", "dc1", "r2"],
    ["n4", "dc2", "r3"],
  ];
  for (const [id, dc, rack] of nodes) c.node(id, { labels: { dc, rack } });
  c.service("s", {
    placement: { preferences: [{ spread: "node.labels.dc" }, { spread: "node.labels.rack" }] },
  });
  c.tasks("s", 8);
  c.settle();
  // dc1 and dc2 get 4 each; within dc1, racks r1 and r2 get 2 each.
  assert.deepEqual(c.perNode("s"), { n1: 1, n2: 1, n3: 2, n4: 4 });
});

Deno.test("spread: a branch whose nodes cannot take more leaves the rest to the others", () => {
  const c = new Cluster();
  c.node("a1", { labels: { zone: "a" }, cpus: 1 });
  c.node("b1", { labels: { zone: "b" }, cpus: 8 });
  c.service("s", {
    placement: { preferences: [{ spread: "node.labels.zone" }] },
    resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } },
  });
  c.tasks("s", 4);
  c.settle();
  assert.deepEqual(c.perNode("s"), { a1: 1, b1: 3 });
});

Deno.test("identical tasks scheduled together spread as they are placed, across calls", () => {
  const c = new Cluster(createScheduler({ maxEvents: 4 }));
  for (const n of ["n1", "n2", "n3"]) c.node(n);
  c.service("s");
  c.tasks("s", 10);
  const first = c.step();
  assert.equal(first.length, 4);
  assert.deepEqual(assignments(first).map((e) => e.data.nodeId), ["n1", "n2", "n3", "n1"]);
  c.settle();
  assert.deepEqual(c.perNode("s"), { n1: 4, n2: 3, n3: 3 });
});

// ---------------------------------------------------------------------------------------------
// No suitable node

Deno.test("no suitable node: SwarmKit's message, with counts, most first", () => {
  const c = new Cluster();
  c.node("n1", { labels: { zone: "west" } });
  c.node("n2", { labels: { zone: "west" } });
  c.node("n3");
  c.node("n4", { labels: { zone: "east" }, cpus: 1 });
  c.service("s", {
    placement: { constraints: ["node.labels.zone==east"] },
    resources: { reservations: { nanoCPUs: 2e9, memoryBytes: 0 } },
  });
  const [t] = c.tasks("s", 1);
  const version = c.task(t).version;
  const events = c.step();
  const [u] = unschedulable(events);
  assert.equal(events.length, 1);
  assert.equal(
    u.data.message,
    "no suitable node (scheduling constraints not satisfied on 3 nodes; insufficient resources on 1 node)",
  );
  assert.deepEqual(u.data.decision.rejectedCounts, { resources: 1, constraints: 3 });
  assert.equal(u.data.decision.nodesConsidered, 4);
  assert.deepEqual(u.data.decision.passed, []);
  assert.deepEqual(u.data.decision.rejected.map((r) => [r.node, r.filter]), [
    ["n1", "constraints"],
    ["n2", "constraints"],
    ["n3", "constraints"],
    ["n4", "resources"],
  ]);
  assert.equal(u.meta.by, "scheduler");
  assert.equal(u.meta.expect, version);
  // The fold keeps the task pending with the message.
  assert.equal(c.task(t).status.state, TaskState.pending);
  assert.equal(c.task(t).status.err, u.data.message);
});

Deno.test("no suitable node: down and drained nodes are 'not available for new tasks'", () => {
  const c = new Cluster();
  c.node("n1", { ready: false });
  c.node("n2", { availability: "drain" });
  c.node("n3", { availability: "pause" });
  c.service("s");
  c.tasks("s", 1);
  const [u] = unschedulable(c.step());
  assert.equal(u.data.message, "no suitable node (3 nodes not available for new tasks)");
  assert.deepEqual(u.data.decision.rejectedCounts, { ready: 1, availability: 2 });
});

Deno.test("no suitable node: without any node the message is bare", () => {
  const c = new Cluster();
  c.service("s");
  c.tasks("s", 1);
  const [u] = unschedulable(c.step());
  assert.equal(u.data.message, "no suitable node");
});

Deno.test("the message is not emitted again while it is unchanged", () => {
  const c = new Cluster();
  c.node("n1", { ready: false });
  c.service("s");
  const ids = c.tasks("s", 3);
  assert.equal(unschedulable(c.step()).length, 3);
  assert.deepEqual(c.step(), []);
  assert.deepEqual(c.reconcile(), []);
  // A second node, also down: the message changes, so it is recorded again.
  c.node("n2", { ready: false });
  const again = unschedulable(c.step());
  assert.deepEqual(again.map((e) => e.data.id), ids);
  assert.equal(again[0].data.message, "no suitable node (2 nodes not available for new tasks)");
  assert.deepEqual(c.step(), []);
});

Deno.test("resources exhausted part way: the rest of the group is unschedulable", () => {
  const c = new Cluster();
  c.node("n1", { cpus: 2 });
  c.node("n2", { cpus: 1 });
  c.service("s", { resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } } });
  const ids = c.tasks("s", 5);
  const events = c.step();
  assert.equal(assignments(events).length, 3);
  const u = unschedulable(events);
  assert.deepEqual(u.map((e) => e.data.id), ids.slice(3));
  assert.equal(u[0].data.message, "no suitable node (insufficient resources on 2 nodes)");
  assert.deepEqual(c.perNode("s"), { n1: 2, n2: 1 });
  // Decisions list what was rejected as capacity ran out.
  assert.deepEqual(u[0].data.decision.rejected.map((r) => r.node).sort(), ["n1", "n2"]);
});

Deno.test("new messages for waiting tasks never hold up tasks that can be placed", () => {
  const c = new Cluster(createScheduler({ maxEvents: 3 }));
  c.node("n1");
  c.service("stuck", { placement: { constraints: ["node.labels.gpu==yes"] } });
  const stuck = c.tasks("stuck", 5);
  c.service("s");
  const placeable = c.tasks("s", 2);
  const first = c.step();
  assert.deepEqual(first.map((e) => [e.type, e.data.id]), [
    ["TaskAssigned", placeable[0]],
    ["TaskAssigned", placeable[1]],
    ["TaskUnschedulable", stuck[0]],
  ]);
  assert.deepEqual(unschedulable(c.settle()).map((e) => e.data.id), stuck.slice(1));
});

Deno.test("a node that becomes ready later lets the pending task be placed", () => {
  const c = new Cluster();
  c.node("n1", { ready: false });
  c.service("s");
  const [t] = c.tasks("s", 1);
  const [u] = unschedulable(c.step());
  assert.equal(u.data.message, "no suitable node (1 node not available for new tasks)");
  c.setStatus("n1", "ready");
  const [a] = assignments(c.step());
  assert.equal(a.data.id, t);
  assert.equal(a.data.nodeId, "n1");
  assert.equal(c.task(t).status.state, TaskState.assigned);
  assert.equal(c.task(t).status.err, "");
});

Deno.test("a pending task no longer wanted is shut down by the scheduler", () => {
  const c = new Cluster();
  c.node("n1");
  c.service("s");
  const [keep, stop, remove] = c.tasks("s", 3);
  c.f.ok(ev.taskDesired(stop, TaskState.shutdown), ev.taskDesired(remove, TaskState.remove));
  const events = c.step();
  const reports = events.filter((e) => e.type === "TaskStatusReported");
  assert.deepEqual(reports.map((e) => e.data.id).sort(), [remove, stop].sort());
  for (const r of reports) assert.equal(r.meta.by, "scheduler");
  assert.equal(c.task(stop).status.state, TaskState.shutdown);
  assert.equal(c.task(remove).status.state, TaskState.shutdown);
  assert.equal(assignments(events)[0].data.id, keep);
});

Deno.test("a job task (desired complete) is scheduled", () => {
  const c = new Cluster();
  c.node("n1");
  c.service("s");
  const [t] = c.tasks("s", 1);
  c.f.ok(ev.taskDesired(t, TaskState.complete));
  assert.equal(assignments(c.step())[0]?.data.id, t);
});

// ---------------------------------------------------------------------------------------------
// Global services

Deno.test("a global task is checked against its own node only", () => {
  const c = new Cluster();
  c.node("n1");
  c.node("n2", { availability: "drain" });
  c.service("g", {}, { kind: "global" });
  const [t2] = c.tasks("g", 1, { nodeId: "n2" });
  const [u] = unschedulable(c.step());
  assert.equal(u.data.id, t2);
  // SwarmKit's taskFitNode: the bare explanation.
  assert.equal(u.data.message, "1 node not available for new tasks");
  assert.equal(u.data.decision.nodesConsidered, 1);
  assert.deepEqual(u.data.decision.rejected, [{
    node: "n2",
    filter: "availability",
    reason: "node availability is drain",
  }]);
  assert.deepEqual(c.step(), []);
  c.setAvailability("n2", "active");
  const [a] = assignments(c.step());
  assert.equal(a.data.id, t2);
  assert.equal(a.data.nodeId, "n2");
  assert.deepEqual(a.data.decision.passed, ["n2"]);
});

Deno.test("a global task's placement counts for the replicated tasks after it", () => {
  const c = new Cluster();
  c.node("n1", { cpus: 1 });
  c.node("n2", { cpus: 1 });
  const reserve = { resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } } };
  c.service("g", reserve, { kind: "global" });
  c.service("s", reserve);
  c.tasks("g", 1, { nodeId: "n1" });
  const [r] = c.tasks("s", 1);
  const events = c.step();
  assert.equal(assignments(events).length, 2);
  assert.equal(c.task(r).nodeId, "n2");
});

// ---------------------------------------------------------------------------------------------
// Decisions, batches, and the cache

Deno.test("decisions name the passed and rejected nodes, capped at 20 each", () => {
  const c = new Cluster();
  for (let i = 0; i < 30; i++) c.node(`ok${i}`);
  for (let i = 0; i < 25; i++) c.node(`down${i}`, { ready: false });
  c.service("s");
  c.tasks("s", 1);
  const [a] = assignments(c.step());
  const d = a.data.decision;
  assert.equal(d.nodesConsidered, 55);
  assert.equal(d.passed.length, DECISION_SAMPLE);
  assert.equal(d.passed[0], a.data.nodeId);
  assert.ok(d.passed.every((id) => id.startsWith("ok")));
  assert.equal(d.rejected.length, DECISION_SAMPLE);
  assert.ok(d.rejected.every((r) => r.filter === "ready" && r.reason === "node is unknown"));
  assert.deepEqual(d.rejectedCounts, { ready: 25 });
  assert.match(d.reason, /^30 of 55 nodes passed every filter; ok0 had the fewest tasks/);
  assert.equal(a.meta.by, "scheduler");
  assert.equal(a.meta.reason, "assigned to node ok0");
});

Deno.test("every event carries provenance and the version it was decided on", () => {
  const c = new Cluster();
  c.node("n1");
  c.service("s");
  const [t] = c.tasks("s", 1);
  const version = c.task(t).version;
  const cause = c.state.index;
  const [e] = c.reconcile();
  assert.deepEqual({ ...e.meta, reason: "" }, {
    by: "scheduler",
    reason: "",
    cause,
    expect: version,
  });
  // A stale decision is refused by the fold.
  c.f.ok(ev.taskDesired(t, TaskState.running));
  assert.equal(c.f.apply(e).applied, false);
});

Deno.test("at most 500 events a call, oldest pending first; the rest follow", () => {
  const c = new Cluster();
  for (let i = 0; i < 7; i++) c.node(`n${i}`);
  c.service("s");
  const ids = c.tasks("s", 1234);
  const first = c.step();
  assert.equal(first.length, MAX_BATCH_EVENTS);
  assert.deepEqual(first.map((e) => e.data.id), ids.slice(0, MAX_BATCH_EVENTS));
  c.settle();
  const counts = Object.values(c.perNode("s"));
  assert.equal(counts.reduce((a, b) => a + b), 1234);
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, JSON.stringify(counts));
});

Deno.test("the cache gives the same decisions as a rebuild, with other entries in between", () => {
  const cached = new Cluster(createScheduler({ maxEvents: 7 }));
  const fresh = createScheduler({ maxEvents: 7, cache: false });
  for (let i = 0; i < 5; i++) cached.node(`n${i}`, { cpus: 3, labels: { zone: `z${i % 2}` } });
  const reserve = { resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } } };
  cached.service("a", { ...reserve, placement: { preferences: [{ spread: "node.labels.zone" }] } });
  cached.service("b", { placement: { maxReplicas: 3 } });
  cached.service("g", reserve, { kind: "global" });
  cached.tasks("a", 9);
  cached.tasks("b", 14);
  cached.tasks("g", 1, { nodeId: "n3" });
  cached.tasks("a", 12);
  let round = 0;
  for (;;) {
    const ctx = { now: 1, newId: () => "x", cause: cached.state.index };
    const expected = fresh.reconcile(cached.state, ctx);
    const events = cached.sched.reconcile(cached.state, ctx);
    assert.deepEqual(events, expected, `round ${round}`);
    if (events.length === 0) break;
    cached.f.ok(...events);
    // Now and then someone else changes the state: a task finishes, a node drains.
    if (round === 2) {
      const running = [...cached.state.tasksByState.get(TaskState.assigned)][0];
      const t = cached.task(running);
      cached.f.ok(ev.taskReported(running, TaskState.complete, `agent:${t.nodeId}`));
    }
    if (round === 4) cached.setAvailability("n1", "drain");
    round++;
  }
  assert.ok(round > 5);
});

Deno.test("a rejected batch is not counted: the next call rebuilds from the state", () => {
  const c = new Cluster();
  c.node("n1", { cpus: 1 });
  c.service("s", { resources: { reservations: { nanoCPUs: 1e9, memoryBytes: 0 } } });
  const [t1] = c.tasks("s", 1);
  const first = c.reconcile();
  // Someone changes the task first: the scheduler's batch is refused.
  c.f.ok(ev.taskDesired(t1, TaskState.running));
  assert.equal(c.f.apply(...first).applied, false);
  const again = c.step();
  assert.equal(assignments(again)[0]?.data.id, t1);
});

Deno.test("a batch of the largest decisions still encodes under MAX_BATCH_BYTES", () => {
  const c = new Cluster();
  for (let i = 0; i < 25; i++) {
    c.node(`node${"x".repeat(40)}${i}`, { labels: { zone: "y".repeat(50) } });
  }
  for (let i = 0; i < 25; i++) c.node(`ok${"z".repeat(50)}${i}`);
  c.service("s", {
    placement: {
      constraints: [`node.labels.zone!=${"y".repeat(50)}`, `node.hostname!=${"w".repeat(50)}`],
    },
  });
  c.tasks("s", 600);
  const events = c.reconcile();
  assert.ok(events.length > 100);
  const bytes = new EventCodec().encodeBatch({ at: 1, by: "scheduler", events }).length;
  assert.ok(bytes <= MAX_BATCH_BYTES, `${events.length} events, ${bytes} bytes`);
});

Deno.test("the shared scheduler is a projection named scheduler", () => {
  assert.equal(scheduler.name, "scheduler");
  assert.deepEqual(
    scheduler.reconcile(new Folder().state, { now: 0, newId: () => "x", cause: 0 }),
    [],
  );
});
