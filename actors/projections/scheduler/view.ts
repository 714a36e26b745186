/**
 * The scheduler's view of each node: the node record plus tallies of the tasks that live on it
 * (SwarmKit's `NodeInfo`): resources reserved, host-mode ports in use, tasks that count for
 * balancing in all and per service.
 *
 * Which tasks count (as SwarmKit's `nodeinfo.go` and `scheduler.go`):
 * - a task is **live** on its node from `assigned` until it reaches a terminal state (complete or
 *   beyond); live tasks hold their reservations and host ports. A pending task already bound to a
 *   node (a global service's) holds nothing until the scheduler has confirmed it fits;
 * - a live task is **active** when its desired state is at most `complete`: active tasks are what
 *   "fewest tasks" and `maxReplicas` count. A task being stopped still holds its resources, but no
 *   longer counts as a replica.
 *
 * Pure: the fold's state in, tallies out.
 *
 * @module
 */
import {
  isTerminalTaskState,
  type PortConfig,
  type Resources,
  TaskState,
} from "../../../events/schema.ts";
import type { ClusterState, NodeRecord, TaskRecord } from "../../state.ts";

/** One node as the scheduler sees it. */
export interface NodeInfo {
  /** Position in node order (the order nodes joined), the last tie-breaker. */
  readonly index: number;
  readonly node: NodeRecord;
  /** CPU reserved by the live tasks on the node, in billionths of a CPU. */
  reservedCPUs: number;
  /** Memory reserved by the live tasks on the node, in bytes. */
  reservedMemory: number;
  /** Host-mode published ports in use, as {@linkcode hostPortKey}s. */
  readonly hostPorts: Set<number>;
  /** Active tasks on the node, of every service. */
  activeTasks: number;
  /** Active tasks on the node, by service id. */
  readonly activeByService: Map<string, number>;
}

/** Live states: a task in one of these holds resources on its node. */
export const LIVE_STATES: readonly number[] = [
  TaskState.assigned,
  TaskState.accepted,
  TaskState.preparing,
  TaskState.ready,
  TaskState.starting,
  TaskState.running,
];

/** Whether a task holds resources on its node (assigned, not yet terminal). */
export function isLive(task: TaskRecord): boolean {
  return task.status.state >= TaskState.assigned && !isTerminalTaskState(task.status.state);
}

/** Whether a live task counts as a replica on its node (desired state at most complete). */
export function isActive(task: TaskRecord): boolean {
  return isLive(task) && task.desiredState <= TaskState.complete;
}

const PROTOCOLS = ["tcp", "udp", "sctp"] as const;

/** A number naming a published port and protocol (`8080/tcp`). */
export function hostPortKey(protocol: PortConfig["protocol"], port: number): number {
  return PROTOCOLS.indexOf(protocol) * 65536 + port;
}

/** `8080/tcp` from a {@linkcode hostPortKey}. */
export function hostPortText(key: number): string {
  return `${key % 65536}/${PROTOCOLS[Math.floor(key / 65536)]}`;
}

/** The host-mode published ports of a task, as {@linkcode hostPortKey}s. */
export function taskHostPorts(ports: readonly PortConfig[]): number[] {
  const out: number[] = [];
  for (const p of ports) {
    if (p.publishMode === "host" && p.publishedPort !== 0) {
      out.push(hostPortKey(p.protocol, p.publishedPort));
    }
  }
  return out;
}

/** CPU and memory a node has left for new tasks. */
export function available(info: NodeInfo): Resources {
  const total = info.node.description.resources;
  return {
    nanoCPUs: total.nanoCPUs - info.reservedCPUs,
    memoryBytes: total.memoryBytes - info.reservedMemory,
  };
}

/** Counts a live task on its node. */
export function addTask(info: NodeInfo, task: TaskRecord, reservations: Resources): void {
  info.reservedCPUs += reservations.nanoCPUs;
  info.reservedMemory += reservations.memoryBytes;
  for (let i = 0; i < task.ports.length; i++) {
    const p = task.ports[i];
    if (p.publishMode === "host" && p.publishedPort !== 0) {
      info.hostPorts.add(hostPortKey(p.protocol, p.publishedPort));
    }
  }
  if (task.desiredState <= TaskState.complete) {
    info.activeTasks++;
    info.activeByService.set(task.serviceId, (info.activeByService.get(task.serviceId) ?? 0) + 1);
  }
}

/** A node with nothing counted yet. */
export function emptyNodeInfo(node: NodeRecord, index: number): NodeInfo {
  return {
    index,
    node,
    reservedCPUs: 0,
    reservedMemory: 0,
    hostPorts: new Set(),
    activeTasks: 0,
    activeByService: new Map(),
  };
}

/** Every node of the state, in join order, with its tallies. */
export class NodeView {
  /** Nodes in join order (`nodes[i].index === i`). */
  readonly nodes: NodeInfo[] = [];
  /** Nodes by id. */
  readonly byId: Map<string, NodeInfo> = new Map();

  /** Builds the view from the state: O(nodes + live tasks). */
  static build(state: ClusterState): NodeView {
    const view = new NodeView();
    for (const node of state.nodes.values()) {
      const info = emptyNodeInfo(node, view.nodes.length);
      view.nodes.push(info);
      view.byId.set(node.id, info);
    }
    const reservations = new ReservationCache(state);
    for (const live of LIVE_STATES) {
      for (const id of state.tasksByState.get(live)) {
        const task = state.tasks.get(id)!;
        const info = view.byId.get(task.nodeId);
        if (info !== undefined) addTask(info, task, reservations.of(task));
      }
    }
    return view;
  }
}

/** Task reservations by service and spec version, looked up once each. */
export class ReservationCache {
  #state: ClusterState;
  #byService = new Map<string, Map<number, Resources>>();
  constructor(state: ClusterState) {
    this.#state = state;
  }

  /** The reservations of a task's spec. */
  of(task: TaskRecord): Resources {
    let versions = this.#byService.get(task.serviceId);
    if (versions === undefined) {
      versions = new Map();
      this.#byService.set(task.serviceId, versions);
    }
    let r = versions.get(task.specVersion);
    if (r === undefined) {
      r = this.#state.taskSpec(task).resources.reservations;
      versions.set(task.specVersion, r);
    }
    return r;
  }
}
