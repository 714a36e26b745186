/**
 * Terse builders of valid events and batches for tests, filled with the schema's defaults.
 *
 * @module
 */
import {
  type Batch,
  ClusterSpec,
  type EventMeta,
  NodeDescription,
  ServiceSpec,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
} from "../../events/schema.ts";
import { applyBatch, type ApplyResult, ClusterState } from "../../actors/state.ts";

/** Provenance for a test event. */
export function meta(by = "test", expect?: number): EventMeta {
  return expect === undefined ? { by, reason: "test" } : { by, reason: "test", expect };
}

/** A complete service spec from a few fields. */
export function serviceSpec(name: string, replicas = 1, extra: Record<string, unknown> = {}) {
  return ServiceSpec.parse({
    name,
    task: { runtime: { kind: "process", command: "/bin/sleep", args: ["1000"] } },
    mode: { kind: "replicated", replicas },
    ...extra,
  });
}

/** A node description for tests. */
export function nodeDescription(hostname: string) {
  return NodeDescription.parse({
    hostname,
    platform: { os: "linux", architecture: "x86_64" },
    resources: { nanoCPUs: 2e9, memoryBytes: 2 ** 30 },
    engine: {},
    runtimes: ["process"],
  });
}

/** Builders for each event, with sensible defaults. */
export const ev = {
  clusterCreated(id = "c1"): ShoalEvent {
    return {
      type: "ClusterCreated",
      v: 1,
      data: {
        id,
        spec: ClusterSpec.parse({}),
        rootCA: { certPem: "cert", keyPem: "key", digest: "00" },
        joinTokens: { worker: "w", manager: "m" },
      },
      meta: meta("user:swarm.init"),
    };
  },
  nodeRegistered(id: string, hostname = id, role: "worker" | "manager" = "worker"): ShoalEvent {
    return {
      type: "NodeRegistered",
      v: 1,
      data: {
        id,
        description: nodeDescription(hostname),
        spec: { name: "", labels: {}, desiredRole: role, availability: "active" },
        role,
        addr: "127.0.0.1",
      },
      meta: meta("user:swarm.join"),
    };
  },
  serviceCreated(id: string, name = id, replicas = 1, extra = {}): ShoalEvent {
    return {
      type: "ServiceCreated",
      v: 1,
      data: { id, spec: serviceSpec(name, replicas, extra) },
      meta: meta("user:service.create"),
    };
  },
  taskCreated(
    id: string,
    serviceId: string,
    specVersion: number,
    slot = 1,
    nodeId = "",
  ): ShoalEvent {
    return {
      type: "TaskCreated",
      v: 1,
      data: {
        id,
        serviceId,
        slot,
        nodeId,
        specVersion,
        desiredState: TaskState.running,
        attempt: 0,
        startAfter: 0,
      },
      meta: meta("orchestrator"),
    };
  },
  taskAllocated(id: string): ShoalEvent {
    return { type: "TaskAllocated", v: 1, data: { id, ports: [], addresses: [] }, meta: meta() };
  },
  taskAssigned(id: string, nodeId: string): ShoalEvent {
    return {
      type: "TaskAssigned",
      v: 1,
      data: {
        id,
        nodeId,
        decision: {
          nodesConsidered: 1,
          passed: [nodeId],
          rejected: [],
          rejectedCounts: {},
          reason: "only node",
        },
      },
      meta: meta("scheduler"),
    };
  },
  taskReported(id: string, state: TaskStateValue, by = "test", expect?: number): ShoalEvent {
    return {
      type: "TaskStatusReported",
      v: 1,
      data: { id, status: { state, timestamp: 1, message: "m", err: "" } },
      meta: meta(by, expect),
    };
  },
  taskDesired(id: string, desiredState: TaskStateValue): ShoalEvent {
    return { type: "TaskDesiredStateChanged", v: 1, data: { id, desiredState }, meta: meta() };
  },
  taskRemoved(id: string): ShoalEvent {
    return { type: "TaskRemoved", v: 1, data: { id }, meta: meta() };
  },
};

/** A batch of events at a fixed time. */
export function batch(...events: ShoalEvent[]): Batch {
  return { at: 1000, by: "test", events };
}

/** A state and a log index that moves forward with every `apply`. */
export class Folder {
  /** The state being folded. */
  readonly state: ClusterState = new ClusterState();
  /** Applies events as one batch at the next index. */
  apply(...events: ShoalEvent[]): ApplyResult {
    return applyBatch(this.state, batch(...events), this.state.index + 1);
  }
  /** Applies events as one batch and fails unless they were accepted. */
  ok(...events: ShoalEvent[]): number {
    const r = this.apply(...events);
    if (!r.applied) throw new Error(`batch rejected: ${r.rejection.reason}`);
    return this.state.index;
  }
}
