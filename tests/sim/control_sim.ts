/**
 * The control loop under simulation: one seed drives users (create, scale, update, roll back and
 * remove services), nodes (join, drain, pause, go down, come back) and tasks (exit with a code),
 * while the real projections and fake agents run on a virtual clock. After every settled step it
 * checks:
 *
 * - the fold's invariants (indexes, spec references, live tasks on existing nodes);
 * - no slot (or global node) has two tasks running at once once the loop has settled;
 * - converged services match their spec: a replicated service runs one task per slot on nodes
 *   that can take it, a global service one per eligible node (slots whose restart policy gave up
 *   excepted);
 * - jobs: a replicated job never has more than max-concurrent tasks of its current run under way,
 *   nor more completions than its total, nor two completions in one slot; a global job completes
 *   at most once per node and run;
 * - replaying the log from scratch gives the same state, byte for byte.
 *
 * @module
 */
import { NetworkSpec, type ShoalEvent, TaskState } from "../../events/schema.ts";
import { applyBatch, ClusterState } from "../../actors/state.ts";
import { snapshot } from "../../actors/snapshot.ts";
import { ControlLoop } from "../_harness/control_loop.ts";
import { SeededRandom } from "../_harness/cluster_history.ts";
import { checkInvariants } from "../_harness/invariants.ts";
import { ev, meta, serviceSpec } from "../_harness/events.ts";
import type { Projection } from "../../actors/manager.ts";
import type { ServiceRecord } from "../../actors/state.ts";

/** The networks every run has: one with an automatic subnet, one with a small asked-for one. */
const NETWORKS: readonly (readonly [string, string])[] = [
  ["net-a", ""],
  ["net-b", "127.200.0.0/24"],
];

/** What one seed's run found. */
export interface ControlSeedResult {
  seed: number;
  steps: number;
  entries: number;
  violation?: string;
}

/** Runs one seed of `steps` random actions; `trace` receives a line per action. */
export function runControlSeed(
  seed: number,
  steps: number,
  options: { scheduler?: Projection; trace?: (line: string) => void } = {},
): ControlSeedResult {
  const rnd = new SeededRandom(seed);
  const c = new ControlLoop();
  if (options.scheduler) c.projections = [c.projections[0], c.projections[1], options.scheduler];
  const trace = options.trace;
  let step = 0;
  try {
    const nodeCount = 2 + rnd.int(4);
    const nodes: string[] = [];
    const boot: ShoalEvent[] = [ev.clusterCreated()];
    for (let i = 0; i < nodeCount; i++) {
      const id = `node${i}`;
      nodes.push(id);
      boot.push(ev.nodeRegistered(id, id), status(id, "ready"));
    }
    // Two networks for the allocator's IPAM (every settled state is checked for an address held
    // twice); services join them by their serial, so the random stream is unchanged.
    for (const [id, subnet] of NETWORKS) {
      boot.push({
        type: "NetworkCreated",
        v: 1,
        data: { id, spec: NetworkSpec.parse({ name: id, subnet }) },
        meta: meta("user"),
      });
    }
    c.apply(boot, "test");
    c.settle();
    let serial = 0;
    for (step = 0; step < steps; step++) {
      const action = act(c, rnd, nodes, () => ++serial);
      trace?.(`${String(step).padStart(4)} ${action}`);
      c.settle(400);
      check(c);
    }
    const again = new ClusterState();
    for (const { index, batch } of c.log) applyBatch(again, batch, index);
    if (!sameBytes(snapshot(again), snapshot(c.state))) {
      throw new Error("replaying the log gives a different state");
    }
  } catch (err) {
    return {
      seed,
      steps: step,
      entries: c.log.length,
      violation: `${(err as Error).message} (at step ${step})`,
    };
  }
  return { seed, steps, entries: c.log.length };
}

function status(id: string, state: "ready" | "down") {
  return {
    type: "NodeStatusChanged" as const,
    v: 1 as const,
    data: { id, status: { state, message: "", addr: "" } },
    meta: meta("dispatcher"),
  };
}

/** Does one random thing; returns what, for the trace. */
function act(c: ControlLoop, rnd: SeededRandom, nodes: string[], next: () => number): string {
  const s = c.state;
  const services = [...s.services.values()];
  const roll = rnd.int(100);
  if (services.length === 0 || roll < 15) {
    const serial = next();
    const name = `svc${serial}`;
    const kind = rnd.pick(["global", "global", "replicated-job", "global-job"]);
    const global = rnd.chance(0.3) ? kind : undefined;
    const mode = global === "replicated-job"
      ? { kind: global, maxConcurrent: 1 + rnd.int(3), totalCompletions: 1 + rnd.int(6) }
      : global === undefined
      ? undefined
      : { kind: global };
    const spec = serviceSpec(name, global ? 0 : 1 + rnd.int(6), {
      ...(mode ? { mode } : {}),
      task: {
        runtime: { kind: "process", command: "/bin/app" },
        networks: NETWORKS.slice(0, serial % 3).map(([target]) => ({ target })),
        restart: {
          condition: rnd.pick(["any", "on-failure", "none"]),
          delay: rnd.pick([0, 0, 2_000]),
          maxAttempts: rnd.pick([0, 0, 2]),
        },
      },
      update: {
        parallelism: rnd.int(3),
        delay: rnd.pick([0, 1_000]),
        order: rnd.pick(["stop-first", "start-first"]),
      },
    });
    c.apply([{
      type: "ServiceCreated",
      v: 1,
      data: { id: `id-${name}`, spec },
      meta: meta("user"),
    }], "user");
    return `create ${name} ${spec.mode.kind}`;
  }
  const svc = rnd.pick(services);
  if (roll < 30 && svc.spec.mode.kind === "replicated") {
    const replicas = rnd.int(8);
    c.apply([{
      type: "ServiceUpdated",
      v: 1,
      data: { id: svc.id, spec: { ...svc.spec, mode: { kind: "replicated", replicas } } },
      meta: meta("user", svc.version),
    }], "user");
    return `scale ${svc.spec.name}=${replicas}`;
  }
  if (roll < 40) {
    const spec = structuredClone(svc.spec);
    spec.task.forceUpdate++;
    c.apply([{
      type: "ServiceUpdated",
      v: 1,
      data: { id: svc.id, spec },
      meta: meta("user", svc.version),
    }], "user");
    return `update ${svc.spec.name}`;
  }
  if (roll < 44 && svc.previousSpec !== undefined) {
    c.apply([{
      type: "ServiceRolledBack",
      v: 1,
      data: { id: svc.id },
      meta: meta("user", svc.version),
    }], "user");
    return `rollback ${svc.spec.name}`;
  }
  if (roll < 50) {
    c.apply([{
      type: "ServiceRemoved",
      v: 1,
      data: { id: svc.id },
      meta: meta("user", svc.version),
    }], "user");
    return `remove ${svc.spec.name}`;
  }
  if (roll < 70) {
    const running = [...s.tasksByState.get(TaskState.running)].map((id) => s.tasks.get(id)!)
      .filter((t) => !c.silent.has(t.nodeId));
    if (running.length > 0) {
      const t = rnd.pick(running);
      const code = rnd.pick([0, 1, 137]);
      c.exit(t.id, code);
      return `exit ${t.id} code ${code}`;
    }
  }
  if (roll < 80) {
    c.advance(1_000 + rnd.int(5_000));
    return "time passes";
  }
  const id = rnd.pick(nodes);
  const node = s.nodes.get(id)!;
  const choice = rnd.int(4);
  if (choice === 0) {
    const availability = rnd.pick(["active", "pause", "drain"] as const);
    c.apply([{
      type: "NodeSpecUpdated",
      v: 1,
      data: { id, spec: { ...node.spec, availability } },
      meta: meta("user", node.version),
    }], "user");
    return `node ${id} ${availability}`;
  }
  if (node.status.state === "ready" && choice === 1) {
    c.silent.add(id);
    c.apply([status(id, "down")], "dispatcher");
    return `node ${id} down`;
  }
  if (node.status.state === "down") {
    c.silent.delete(id);
    c.apply([status(id, "ready")], "dispatcher");
    return `node ${id} back`;
  }
  c.advance(500);
  return "time passes";
}

function check(c: ControlLoop): void {
  const s = c.state;
  checkInvariants(s);
  for (const svc of s.services.values()) {
    const bySlot = new Map<string, number>();
    for (const t of s.tasksOf(svc.id)) {
      if (t.status.state !== TaskState.running || t.desiredState !== TaskState.running) continue;
      const key = t.slot > 0 ? `slot ${t.slot}` : `node ${t.nodeId}`;
      bySlot.set(key, (bySlot.get(key) ?? 0) + 1);
      if (bySlot.get(key)! > 1) {
        throw new Error(`${svc.spec.name}: two tasks run in ${key} after settling`);
      }
    }
    // Convergence, when the service can converge: some node takes new tasks and runs the agent.
    const usable = [...s.nodes.values()].filter((n) =>
      n.status.state === "ready" && n.spec.availability === "active" && !c.silent.has(n.id)
    );
    checkJob(c, svc);
    if (usable.length === 0 || svc.updateStatus?.state === "updating") continue;
    const mode = svc.spec.mode;
    if (mode.kind === "replicated") {
      const finished = new Set<number>();
      const live = new Set<number>();
      for (const t of s.tasksOf(svc.id)) {
        if (t.desiredState === TaskState.remove) continue;
        if (t.desiredState <= TaskState.running) live.add(t.slot);
        else finished.add(t.slot);
      }
      const slots = new Set([...live, ...finished]);
      if (slots.size !== mode.replicas) {
        throw new Error(`${svc.spec.name}: ${slots.size} slots, want ${mode.replicas}`);
      }
    }
  }
}

/** The limits a job keeps in every settled state, whatever happened to its nodes. */
function checkJob(c: ControlLoop, svc: ServiceRecord): void {
  const mode = svc.spec.mode;
  if (mode.kind !== "replicated-job" && mode.kind !== "global-job") return;
  let underWay = 0;
  const completed = new Map<string, number>();
  for (const t of c.state.tasksOf(svc.id)) {
    if ((t.jobIteration ?? 0) !== (svc.jobIteration ?? 0)) continue;
    const key = t.slot > 0 ? `slot ${t.slot}` : `node ${t.nodeId}`;
    if (t.status.state === TaskState.complete) {
      completed.set(key, (completed.get(key) ?? 0) + 1);
      if (completed.get(key)! > 1) throw new Error(`${svc.spec.name}: ${key} completed twice`);
    } else if (t.desiredState <= TaskState.complete && t.status.state <= TaskState.running) {
      underWay++;
    }
  }
  if (mode.kind === "replicated-job") {
    if (underWay > mode.maxConcurrent) {
      throw new Error(`${svc.spec.name}: ${underWay} tasks under way, max ${mode.maxConcurrent}`);
    }
    if (completed.size > mode.totalCompletions) {
      throw new Error(
        `${svc.spec.name}: ${completed.size} completions, total ${mode.totalCompletions}`,
      );
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
