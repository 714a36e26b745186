/**
 * Synthetic cluster histories: a seeded generator of realistic batches (users creating, scaling,
 * updating and removing services; the orchestrator, allocator and scheduler doing their part;
 * agents reporting task states; tasks failing; nodes joining and draining), plus a few invalid
 * batches that the fold must reject. Deterministic for a seed. Used by property tests and
 * benchmarks.
 *
 * @module
 */
import {
  type Batch,
  type EventMeta,
  isTerminalTaskState,
  type ServiceSpec,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
} from "../../events/schema.ts";
import { applyBatch, ClusterState, type TaskRecord } from "../../actors/state.ts";

/** A small, fast, seeded random source (mulberry32). */
export class SeededRandom {
  #s: number;
  /** Seeds the source. */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** A 25-character base-36 id. */
  id(): string {
    let s = "";
    for (let i = 0; i < 25; i++) s += ALPHABET[this.int(36)];
    return s;
  }
}

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/** Knobs of a generated history. */
export interface HistoryOptions {
  seed: number;
  /** Nodes registered at the start (more may join later). Default 5. */
  nodes?: number;
  /** Most services alive at once. Default 8. */
  maxServices?: number;
  /** Most replicas a service asks for. Default 12. */
  maxReplicas?: number;
  /** Most events in one pipeline batch. Default 100. */
  batchSize?: number;
  /** Chance that a user action is deliberately invalid. Default 0.05. */
  invalidRate?: number;
  /** Chance of a user action while projections still have work. Default 0.15. */
  userRate?: number;
}

const SERVICE_REASON = "synthetic history";

/**
 * Generates a cluster's log, batch by batch, folding each into its own state so the next batch
 * is decided against what the cluster really is.
 */
export class ClusterHistory {
  /** The state after every batch returned so far. */
  readonly state: ClusterState = new ClusterState();
  #rnd: SeededRandom;
  #opts: Required<HistoryOptions>;
  #index = 0;
  #at = 1_700_000_000_000;
  #started = false;
  #serial = 0;

  /** Starts a history for a seed. */
  constructor(options: HistoryOptions) {
    this.#opts = {
      nodes: 5,
      maxServices: 8,
      maxReplicas: 12,
      batchSize: 100,
      invalidRate: 0.05,
      userRate: 0.15,
      ...options,
    };
    this.#rnd = new SeededRandom(options.seed);
  }

  /** The next batch, already folded into `state`; its log index is `state.index`. */
  next(): Batch {
    const batch = this.#decide();
    this.#index++;
    applyBatch(this.state, batch, this.#index);
    return batch;
  }

  /** `count` batches in order, each with its index. */
  take(count: number): { index: number; batch: Batch }[] {
    const out = [];
    for (let i = 0; i < count; i++) {
      const batch = this.next();
      out.push({ index: this.#index, batch });
    }
    return out;
  }

  #decide(): Batch {
    this.#at += 1 + this.#rnd.int(50);
    if (!this.#started) {
      this.#started = true;
      return this.#bootstrap();
    }
    const work = this.#rnd.chance(this.#opts.userRate) ? [] : this.#pipeline();
    if (work.length > 0) {
      // The dispatcher batches many agents' reports into one entry; each event keeps its author.
      const by = work[0].meta.by.startsWith("agent:") ? "dispatcher" : work[0].meta.by;
      return { at: this.#at, by, events: work };
    }
    return this.#userAction();
  }

  #meta(by: string, reason: string, expect?: number): EventMeta {
    return expect === undefined ? { by, reason } : { by, reason, expect };
  }

  #bootstrap(): Batch {
    const events: ShoalEvent[] = [{
      type: "ClusterCreated",
      v: 1,
      data: {
        id: this.#rnd.id(),
        spec: {
          name: "default",
          labels: {},
          orchestration: { taskHistoryRetentionLimit: 5 },
          raft: {
            snapshotInterval: 10_000,
            keepOldSnapshots: 0,
            logEntriesForSlowFollowers: 500,
            heartbeatTick: 1,
            electionTick: 10,
          },
          dispatcher: { heartbeatPeriod: 5_000 },
          caConfig: { nodeCertExpiry: 7_776_000_000 },
          encryption: { autoLockManagers: false },
        },
        rootCA: { certPem: "-----BEGIN CERTIFICATE-----", keyPem: "", digest: "ab".repeat(32) },
        joinTokens: { worker: this.#rnd.id(), manager: this.#rnd.id() },
      },
      meta: this.#meta("user:swarm.init", "swarm init"),
    }];
    for (let i = 0; i < this.#opts.nodes; i++) events.push(...this.#nodeJoin(i === 0));
    return { at: this.#at, by: "user:swarm.init", events };
  }

  #nodeJoin(manager: boolean): ShoalEvent[] {
    const id = this.#rnd.id();
    const n = ++this.#serial;
    return [{
      type: "NodeRegistered",
      v: 1,
      data: {
        id,
        description: {
          hostname: `node-${n}`,
          platform: { os: "linux", architecture: "x86_64" },
          resources: { nanoCPUs: 2e9, memoryBytes: 4 * 2 ** 30 },
          engine: { engineVersion: "", labels: {} },
          runtimes: ["process"],
        },
        spec: {
          name: "",
          labels: { zone: this.#rnd.pick(["a", "b", "c"]) },
          desiredRole: manager ? "manager" : "worker",
          availability: "active",
        },
        role: manager ? "manager" : "worker",
        addr: `127.0.0.${n}`,
      },
      meta: this.#meta("user:swarm.join", "node joined"),
    }, {
      type: "NodeStatusChanged",
      v: 1,
      data: { id, status: { state: "ready", message: "", addr: `127.0.0.${n}` } },
      meta: this.#meta("dispatcher", "agent session started"),
    }];
  }

  /** Work the projections and agents would do now, at most one batch of it. */
  #pipeline(): ShoalEvent[] {
    const s = this.state;
    const max = this.#opts.batchSize;
    const out: ShoalEvent[] = [];
    const seen = new Set<string>();
    const push = (e: ShoalEvent) => {
      if (out.length < max && !seen.has(e.data.id)) {
        seen.add(e.data.id);
        out.push(e);
      }
    };

    // Orchestrator: slots to fill, extra slots to remove, outdated or failed tasks to stop.
    for (const svc of s.services.values()) {
      if (out.length >= max) break;
      const runnable = new Map<number, TaskRecord>();
      for (const t of s.tasksOf(svc.id)) {
        const live = t.desiredState <= TaskState.running;
        if (!live) continue;
        if (isTerminalTaskState(t.status.state) || t.specVersion !== svc.specVersion) {
          push(this.#desired(t, TaskState.shutdown, "orchestrator", "task replaced"));
        } else if (svc.spec.mode.kind === "replicated" && t.slot > svc.spec.mode.replicas) {
          push(this.#desired(t, TaskState.remove, "orchestrator", "scaled down"));
        } else runnable.set(t.slot || -1, t);
      }
      if (svc.spec.mode.kind === "replicated") {
        for (let slot = 1; slot <= svc.spec.mode.replicas && out.length < max; slot++) {
          if (!runnable.has(slot)) push(this.#newTask(svc.id, svc.specVersion, slot, ""));
        }
      }
    }
    if (out.length > 0) return out;

    // Reaper: stopped tasks asked to go, and history beyond two per slot.
    for (const id of s.tasksByDesiredState.get(TaskState.remove)) {
      const t = s.tasks.get(id)!;
      if (isTerminalTaskState(t.status.state) || t.status.state < TaskState.assigned) {
        push({
          type: "TaskRemoved",
          v: 1,
          data: { id },
          meta: this.#meta("orchestrator", "reaped", t.version),
        });
      }
    }
    for (const svc of s.services.values()) {
      if (out.length >= max) break;
      const bySlot = new Map<number, TaskRecord[]>();
      for (const t of s.tasksOf(svc.id)) {
        if (!isTerminalTaskState(t.status.state)) continue;
        const list = bySlot.get(t.slot) ?? [];
        list.push(t);
        bySlot.set(t.slot, list);
      }
      for (const list of bySlot.values()) {
        for (const t of list.slice(0, Math.max(0, list.length - 2))) {
          push({
            type: "TaskRemoved",
            v: 1,
            data: { id: t.id },
            meta: this.#meta("orchestrator", "task history retention", t.version),
          });
        }
      }
    }
    // Tasks of removed services.
    for (const t of s.tasks.values()) {
      if (out.length >= max) break;
      if (!s.services.has(t.serviceId) && t.desiredState < TaskState.remove) {
        push(this.#desired(t, TaskState.remove, "orchestrator", "service removed"));
      }
    }
    if (out.length > 0) return out;

    // Allocator, then scheduler, then agents: each a batch of its own, as the real ones propose.
    for (const id of s.tasksByState.get(TaskState.new)) {
      const t = s.tasks.get(id)!;
      push({
        type: "TaskAllocated",
        v: 1,
        data: { id, ports: [], addresses: [] },
        meta: this.#meta("allocator", "resources allocated", t.version),
      });
    }
    if (out.length > 0) return out;

    const ready = [...s.nodes.values()].filter((n) =>
      n.status.state === "ready" && n.spec.availability === "active"
    );
    for (const id of s.tasksByState.get(TaskState.pending)) {
      const t = s.tasks.get(id)!;
      if (t.desiredState > TaskState.running) {
        push(this.#report(t, TaskState.shutdown, "scheduler", "shutdown before scheduling"));
      } else if (ready.length === 0) {
        if (t.status.err === "") {
          push({
            type: "TaskUnschedulable",
            v: 1,
            data: {
              id,
              message: "no suitable node (0 nodes available)",
              decision: {
                nodesConsidered: 0,
                passed: [],
                rejected: [],
                rejectedCounts: {},
                reason: "no nodes",
              },
            },
            meta: this.#meta("scheduler", "no suitable node", t.version),
          });
        }
      } else {
        const node = this.#rnd.pick(ready);
        push({
          type: "TaskAssigned",
          v: 1,
          data: {
            id,
            nodeId: node.id,
            decision: {
              nodesConsidered: s.nodes.size,
              passed: [node.id],
              rejected: [],
              rejectedCounts: {},
              reason: "fewest tasks of this service",
            },
          },
          meta: this.#meta("scheduler", "scheduled", t.version),
        });
      }
    }
    if (out.length > 0) return out;

    // Agents: advance assigned tasks one step; stop tasks asked to stop; report.
    for (let st = TaskState.assigned as number; st < TaskState.complete; st += 64) {
      for (const id of s.tasksByState.get(st)) {
        if (out.length >= max) break;
        const t = s.tasks.get(id)!;
        const by = `agent:${t.nodeId}`;
        if (t.desiredState > TaskState.running) {
          push(this.#report(t, TaskState.shutdown, by, "shutdown"));
        } else if (t.status.state < t.desiredState) {
          const to = nextAgentState(t.status.state);
          push(this.#report(t, to, by, AGENT_MESSAGES[to] ?? "progress"));
        }
      }
    }
    if (out.length > 0) return out;

    return out;
  }

  #desired(t: TaskRecord, state: TaskStateValue, by: string, reason: string): ShoalEvent {
    return {
      type: "TaskDesiredStateChanged",
      v: 1,
      data: { id: t.id, desiredState: state },
      meta: this.#meta(by, reason, t.version),
    };
  }

  #report(t: TaskRecord, state: TaskStateValue, by: string, message: string): ShoalEvent {
    return {
      type: "TaskStatusReported",
      v: 1,
      data: { id: t.id, status: { state, timestamp: this.#at, message, err: "" } },
      meta: this.#meta(by, message, t.version),
    };
  }

  #newTask(serviceId: string, specVersion: number, slot: number, nodeId: string): ShoalEvent {
    return {
      type: "TaskCreated",
      v: 1,
      data: {
        id: this.#rnd.id(),
        serviceId,
        slot,
        nodeId,
        specVersion,
        desiredState: TaskState.running,
        attempt: 0,
        startAfter: 0,
      },
      meta: this.#meta("orchestrator", slot ? `slot ${slot} has no task` : "node has no task"),
    };
  }

  #userAction(): Batch {
    const s = this.state;
    const r = this.#rnd;
    const services = [...s.services.values()];
    const invalid = r.chance(this.#opts.invalidRate);
    const one = (by: string, event: ShoalEvent): Batch => ({
      at: this.#at,
      by,
      events: [event],
    });
    const roll = r.int(100);
    if (services.length === 0 || (roll < 20 && services.length < this.#opts.maxServices)) {
      const name = invalid && services.length > 0 ? services[0].spec.name : `svc${++this.#serial}`;
      return one("user:service.create", {
        type: "ServiceCreated",
        v: 1,
        data: { id: r.id(), spec: this.#serviceSpec(name) },
        meta: this.#meta("user:service.create", "service create"),
      });
    }
    const svc = r.pick(services);
    if (roll < 45) {
      const spec = svc.spec;
      const replicas = spec.mode.kind === "replicated" ? r.int(this.#opts.maxReplicas + 1) : 0;
      return one("user:service.scale", {
        type: "ServiceUpdated",
        v: 1,
        data: { id: svc.id, spec: { ...spec, mode: { kind: "replicated", replicas } } },
        meta: this.#meta(
          "user:service.scale",
          `scale to ${replicas}`,
          invalid ? svc.version - 1 : svc.version,
        ),
      });
    }
    if (roll < 60) {
      const spec = svc.spec;
      const runtime = spec.task.runtime;
      const env = [...runtime.env, `N=${r.int(1000)}`];
      return one("user:service.update", {
        type: "ServiceUpdated",
        v: 1,
        data: {
          id: svc.id,
          spec: { ...spec, task: { ...spec.task, runtime: { ...runtime, env } } },
        },
        meta: this.#meta("user:service.update", "env-add", svc.version),
      });
    }
    if (roll < 65 && svc.previousSpec !== undefined) {
      return one("user:service.rollback", {
        type: "ServiceRolledBack",
        v: 1,
        data: { id: svc.id },
        meta: this.#meta("user:service.rollback", "rollback", svc.version),
      });
    }
    if (roll < 72) {
      return one("user:service.rm", {
        type: "ServiceRemoved",
        v: 1,
        data: { id: svc.id },
        meta: this.#meta("user:service.rm", "service rm", svc.version),
      });
    }
    if (roll < 85) {
      const running = [...s.tasksByState.get(TaskState.running)];
      if (running.length > 0) {
        const t = s.tasks.get(r.pick(running))!;
        const state = invalid ? TaskState.assigned : TaskState.failed;
        return one(`agent:${t.nodeId}`, {
          type: "TaskStatusReported",
          v: 1,
          data: {
            id: t.id,
            status: {
              state,
              timestamp: this.#at,
              message: "started",
              err: "task: non-zero exit (1)",
              exitCode: 1,
            },
          },
          meta: this.#meta(`agent:${t.nodeId}`, "task exited", t.version),
        });
      }
    }
    if (roll < 90 || s.nodes.size === 0) {
      return { at: this.#at, by: "user:swarm.join", events: this.#nodeJoin(false) };
    }
    const nodes = [...s.nodes.values()];
    const node = r.pick(nodes);
    const availability = r.pick(["active", "active", "pause", "drain"] as const);
    return one("user:node.update", {
      type: "NodeSpecUpdated",
      v: 1,
      data: { id: node.id, spec: { ...node.spec, availability } },
      meta: this.#meta("user:node.update", `availability ${availability}`, node.version),
    });
  }

  #serviceSpec(name: string): ServiceSpec {
    const r = this.#rnd;
    const update = {
      parallelism: 1,
      delay: 0,
      failureAction: "pause",
      monitor: 5_000,
      maxFailureRatio: 0,
      order: "stop-first",
    } as const;
    return {
      name,
      labels: {},
      task: {
        runtime: {
          kind: "process",
          command: "/bin/sleep",
          args: ["1000"],
          env: [],
          dir: "",
          stopSignal: "",
          stopGracePeriod: 10_000,
        },
        secrets: [],
        configs: [],
        resources: {
          limits: { nanoCPUs: 0, memoryBytes: 0 },
          reservations: { nanoCPUs: 0, memoryBytes: 0 },
        },
        restart: { condition: "any", delay: 5_000, maxAttempts: 0, window: 0 },
        placement: { constraints: [], preferences: [], maxReplicas: 0, platforms: [] },
        networks: [],
        forceUpdate: 0,
      },
      mode: { kind: "replicated", replicas: 1 + r.int(this.#opts.maxReplicas) },
      update,
      rollback: update,
      endpoint: { mode: "vip", ports: [] },
    };
  }
}

const AGENT_MESSAGES: Record<number, string> = {
  [TaskState.accepted]: "accepted",
  [TaskState.preparing]: "preparing",
  [TaskState.ready]: "prepared",
  [TaskState.starting]: "starting",
  [TaskState.running]: "started",
};

function nextAgentState(state: number): TaskStateValue {
  return (state === TaskState.assigned ? TaskState.accepted : state + 64) as TaskStateValue;
}

export { SERVICE_REASON };
