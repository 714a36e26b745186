/**
 * Properties of the scheduler over random clusters and random histories, folded for real:
 * - it never overcommits a node (reservations), never breaks `maxReplicas`, never puts two live
 *   tasks publishing the same host port on one node, never ignores a constraint;
 * - it is work-conserving: once it has nothing more to say, no pending task fits any node, and
 *   every pending task says why;
 * - its cache is only memoisation: every call returns what a scheduler without cache returns.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { NodeDescription, type ShoalEvent, TaskState } from "../../../events/schema.ts";
import { ev, Folder, meta, serviceSpec } from "../../../tests/_harness/events.ts";
import { checkInvariants } from "../../../tests/_harness/invariants.ts";
import { createScheduler } from "./decide.ts";
import { PASSED, Pipeline, taskRequirements } from "./filters.ts";
import { firstUnmet, parseConstraints } from "./constraints.ts";
import { isActive, isLive, NodeView, taskHostPorts } from "./view.ts";

type Op =
  | { kind: "node"; zone: number; cpus: number; ready: boolean; drain: boolean }
  | {
    kind: "service";
    tasks: number;
    cpus: number;
    zone: number;
    maxReplicas: number;
    spread: boolean;
    port: boolean;
    global: boolean;
  }
  | { kind: "ready"; pick: number; ready: boolean }
  | { kind: "drain"; pick: number; drain: boolean }
  | { kind: "finish"; pick: number }
  | { kind: "stop"; pick: number }
  | { kind: "schedule"; steps: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("node" as const),
    zone: fc.nat(2),
    cpus: fc.integer({ min: 1, max: 4 }),
    ready: fc.boolean(),
    drain: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("service" as const),
    tasks: fc.integer({ min: 1, max: 9 }),
    cpus: fc.nat(2),
    zone: fc.nat(3),
    maxReplicas: fc.nat(3),
    spread: fc.boolean(),
    port: fc.boolean(),
    global: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("ready" as const), pick: fc.nat(), ready: fc.boolean() }),
  fc.record({ kind: fc.constant("drain" as const), pick: fc.nat(), drain: fc.boolean() }),
  fc.record({ kind: fc.constant("finish" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("stop" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("schedule" as const), steps: fc.integer({ min: 1, max: 4 }) }),
);

const ZONES = ["a", "b", ""];

class World {
  readonly f = new Folder();
  readonly cached = createScheduler({ maxEvents: 5 });
  readonly fresh = createScheduler({ maxEvents: 5, cache: false });
  nodes: string[] = [];
  services = 0;
  tasks = 0;

  constructor() {
    this.f.ok(ev.clusterCreated());
  }

  get state() {
    return this.f.state;
  }

  apply(op: Op): void {
    switch (op.kind) {
      case "node":
        return this.addNode(op);
      case "service":
        return this.addService(op);
      case "ready":
        if (this.nodes.length === 0) return;
        return this.setReady(this.nodes[op.pick % this.nodes.length], op.ready);
      case "drain": {
        if (this.nodes.length === 0) return;
        const node = this.state.nodes.get(this.nodes[op.pick % this.nodes.length])!;
        this.f.ok({
          type: "NodeSpecUpdated",
          v: 1,
          data: {
            id: node.id,
            spec: { ...node.spec, availability: op.drain ? "drain" : "active" },
          },
          meta: meta(),
        });
        return;
      }
      case "finish": {
        const live = [...this.state.tasks.values()].filter(isLive);
        if (live.length === 0) return;
        const t = live[op.pick % live.length];
        this.f.ok(ev.taskReported(t.id, TaskState.complete, `agent:${t.nodeId}`));
        return;
      }
      case "stop": {
        const pending = [...this.state.tasksByState.get(TaskState.pending)];
        if (pending.length === 0) return;
        this.f.ok(ev.taskDesired(pending[op.pick % pending.length], TaskState.shutdown));
        return;
      }
      case "schedule":
        for (let i = 0; i < op.steps; i++) if (!this.step()) return;
    }
  }

  addNode(op: Extract<Op, { kind: "node" }>): void {
    const id = `n${this.nodes.length}`;
    this.nodes.push(id);
    const zone = ZONES[op.zone];
    this.f.ok({
      type: "NodeRegistered",
      v: 1,
      data: {
        id,
        description: NodeDescription.parse({
          hostname: id,
          platform: { os: "linux", architecture: "x86_64" },
          resources: { nanoCPUs: op.cpus * 1e9, memoryBytes: 2 ** 30 },
          engine: {},
          runtimes: ["process"],
        }),
        spec: {
          name: "",
          labels: zone ? { zone } : {},
          desiredRole: "worker",
          availability: op.drain ? "drain" : "active",
        },
        role: "worker",
        addr: "10.0.0.1",
      },
      meta: meta(),
    });
    if (op.ready) this.setReady(id, true);
  }

  setReady(id: string, ready: boolean): void {
    this.f.ok({
      type: "NodeStatusChanged",
      v: 1,
      data: { id, status: { state: ready ? "ready" : "down", message: "", addr: "10.0.0.1" } },
      meta: meta(),
    });
  }

  addService(op: Extract<Op, { kind: "service" }>): void {
    const id = `s${this.services++}`;
    const zone = ZONES[op.zone];
    const spec = serviceSpec(id, op.tasks, {
      mode: op.global ? { kind: "global" } : { kind: "replicated", replicas: op.tasks },
      task: {
        runtime: { kind: "process", command: "/bin/true" },
        resources: { reservations: { nanoCPUs: op.cpus * 1e9, memoryBytes: 0 } },
        placement: {
          constraints: zone ? [`node.labels.zone==${zone}`] : [],
          preferences: op.spread ? [{ spread: "node.labels.zone" }] : [],
          maxReplicas: op.maxReplicas,
        },
      },
    });
    const version = this.f.ok({ type: "ServiceCreated", v: 1, data: { id, spec }, meta: meta() });
    const created: ShoalEvent[] = [];
    const ids: string[] = [];
    if (op.global) {
      for (const n of this.nodes) {
        const t = `t${this.tasks++}`;
        ids.push(t);
        created.push(ev.taskCreated(t, id, version, 0, n));
      }
    } else {
      for (let i = 0; i < op.tasks; i++) {
        const t = `t${this.tasks++}`;
        ids.push(t);
        created.push(ev.taskCreated(t, id, version, i + 1));
      }
    }
    if (created.length === 0) return;
    this.f.ok(...created);
    const ports = op.port
      ? [{
        name: "",
        protocol: "tcp" as const,
        targetPort: 80,
        publishedPort: 8000,
        publishMode: "host" as const,
      }]
      : [];
    this.f.ok(...ids.map((t): ShoalEvent => ({
      type: "TaskAllocated",
      v: 1,
      data: { id: t, ports, addresses: [] },
      meta: meta(),
    })));
  }

  /** One scheduler call, compared with an uncached one, folded; false when it had nothing. */
  step(): boolean {
    const ctx = { now: 7, newId: () => "x", cause: this.state.index };
    const expected = this.fresh.reconcile(this.state, ctx);
    const events = this.cached.reconcile(this.state, ctx);
    assert.deepEqual(events, expected);
    if (events.length === 0) return false;
    this.f.ok(...events);
    checkInvariants(this.state);
    this.checkSafety();
    return true;
  }

  settle(): void {
    for (let i = 0; i < 200; i++) if (!this.step()) return;
    throw new Error("scheduler does not settle");
  }

  checkSafety(): void {
    const state = this.state;
    for (const node of state.nodes.values()) {
      let cpus = 0;
      const ports = new Set<number>();
      const perService = new Map<string, number>();
      for (const t of state.tasksOn(node.id)) {
        if (!isLive(t)) continue;
        const spec = state.taskSpec(t);
        cpus += spec.resources.reservations.nanoCPUs;
        for (const p of taskHostPorts(t.ports)) {
          assert.ok(!ports.has(p), `two tasks publish host port ${p} on ${node.id}`);
          ports.add(p);
        }
        if (isActive(t)) perService.set(t.serviceId, (perService.get(t.serviceId) ?? 0) + 1);
        // Only placements the scheduler made are checked for constraints; a node's labels never
        // change here, so they still hold.
        assert.equal(firstUnmet(parseConstraints(spec.placement.constraints), node), undefined);
      }
      assert.ok(cpus <= node.description.resources.nanoCPUs, `${node.id} overcommitted`);
      for (const [svc, n] of perService) {
        const max = state.services.get(svc)!.spec.task.placement.maxReplicas;
        assert.ok(max === 0 || n <= max, `${node.id} runs ${n} tasks of ${svc} (max ${max})`);
      }
    }
  }

  /** Once quiet: no pending task fits anywhere, and each says why. */
  checkQuiet(): void {
    const state = this.state;
    const view = NodeView.build(state);
    for (const id of state.tasksByState.get(TaskState.pending)) {
      const t = state.tasks.get(id)!;
      assert.ok(t.desiredState <= TaskState.complete, `${id} should have been shut down`);
      assert.notEqual(t.status.err, "", `${id} pending without a reason`);
      const pipeline = new Pipeline(taskRequirements(t, state.taskSpec(t)));
      const candidates = t.nodeId ? [view.byId.get(t.nodeId)!] : view.nodes;
      for (const info of candidates) {
        assert.notEqual(pipeline.firstFailure(info), PASSED, `${id} fits ${info.node.id}`);
      }
    }
  }
}

Deno.test("scheduler properties over random clusters and histories", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const w = new World();
      for (const op of ops) w.apply(op);
      w.settle();
      w.checkQuiet();
    }),
    { numRuns: 150 },
  );
});
