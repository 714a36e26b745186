/**
 * The cluster as `GET /shoal/v1/state` shows it: nodes, services with their running and desired
 * replicas, and every task with its state, desired state, node and slot, in a person's terms
 * (names, state names, ISO-free millisecond times) and in a stable order (managers first, then by
 * name; services by name; tasks by service, slot, then newest first).
 *
 * @module
 */
import { TaskState, taskStateName } from "../../events/schema.ts";
import {
  type ClusterState,
  nodeName,
  type NodeRecord,
  type ServiceRecord,
  type TaskRecord,
} from "../../actors/state.ts";
import { displayName } from "../../actors/history.ts";

/** A node as the state view shows it. */
export interface NodeView {
  id: string;
  name: string;
  hostname: string;
  role: string;
  availability: string;
  status: string;
  message: string;
  addr: string;
  leader: boolean;
  reachability?: string;
  /** Runtimes it offers (`process`, `container`). */
  runtimes: string[];
  nanoCPUs: number;
  memoryBytes: number;
  labels: Record<string, string>;
  version: number;
}

/** A service as the state view shows it. */
export interface ServiceView {
  id: string;
  name: string;
  /** `replicated`, `global`, `replicated-job` or `global-job`. */
  mode: string;
  /** Replicas asked for (for a global service: its tasks meant to run). */
  desired: number;
  /** Tasks running and meant to run, as `docker service ls` counts them. */
  running: number;
  /** Every task the state holds for it (history included). */
  tasks: number;
  /** `process` or `container`. */
  runtime: string;
  /** The image, or the process's command line. */
  image: string;
  /** Rolling update state (`updating`, `paused`, `completed`...), if any. */
  updateState?: string;
  updateMessage?: string;
  ports: { published?: number; target: number; protocol: string }[];
  labels: Record<string, string>;
  version: number;
  createdAt: number;
  updatedAt: number;
}

/** A task as the state view shows it. */
export interface TaskView {
  id: string;
  /** `SERVICE.SLOT`, or `SERVICE.NODE` for a global service. */
  name: string;
  serviceId: string;
  service: string;
  /** 1-based slot; 0 for global services. */
  slot: number;
  nodeId: string;
  /** The node's name ("" while unassigned). */
  node: string;
  state: string;
  desired: string;
  message: string;
  err: string;
  exitCode?: number;
  attempt: number;
  specVersion: number;
  version: number;
  createdAt: number;
  updatedAt: number;
}

/** What `GET /shoal/v1/state` answers. */
export interface StateView {
  /** The log index this state is as of. */
  index: number;
  /** `batch.at` of that entry (0 before the first). */
  at: number;
  /** The last index this manager has applied. */
  lastIndex: number;
  /** Whether this is the live state (index == lastIndex). */
  live: boolean;
  cluster: { id: string; name: string; createdAt: number } | null;
  nodes: NodeView[];
  services: ServiceView[];
  tasks: TaskView[];
  secrets: number;
  configs: number;
  networks: number;
  /** The most recent batches the fold refused (at most 10). */
  rejections: unknown[];
}

/** The state view of `state`. */
export function stateView(
  state: ClusterState,
  info: { at: number; lastIndex: number },
): StateView {
  const cluster = state.cluster;
  const nodes = [...state.nodes.values()].map(nodeView).sort((a, b) =>
    (a.role === b.role ? 0 : a.role === "manager" ? -1 : 1) || a.name.localeCompare(b.name)
  );
  const services = [...state.services.values()].map((s) => serviceView(state, s)).sort((a, b) =>
    a.name.localeCompare(b.name)
  );
  const tasks = [...state.tasks.values()].map((t) => taskView(state, t)).sort((a, b) =>
    a.service.localeCompare(b.service) || a.slot - b.slot || a.node.localeCompare(b.node) ||
    b.createdAt - a.createdAt || a.id.localeCompare(b.id)
  );
  return {
    index: state.index,
    at: info.at,
    lastIndex: info.lastIndex,
    live: state.index === info.lastIndex,
    cluster: cluster === undefined
      ? null
      : { id: cluster.id, name: cluster.spec.name, createdAt: cluster.createdAt },
    nodes,
    services,
    tasks,
    secrets: state.secrets.size,
    configs: state.configs.size,
    networks: state.networks.size,
    rejections: state.rejections.slice(-10),
  };
}

function nodeView(n: NodeRecord): NodeView {
  return {
    id: n.id,
    name: nodeName(n),
    hostname: n.description.hostname,
    role: n.role,
    availability: n.spec.availability,
    status: n.status.state,
    message: n.status.message,
    addr: n.status.addr,
    leader: n.managerStatus?.leader ?? false,
    ...(n.managerStatus === undefined ? {} : { reachability: n.managerStatus.reachability }),
    runtimes: [...(n.description.runtimes ?? [])],
    nanoCPUs: n.description.resources.nanoCPUs,
    memoryBytes: n.description.resources.memoryBytes,
    labels: { ...n.spec.labels },
    version: n.version,
  };
}

function serviceView(state: ClusterState, s: ServiceRecord): ServiceView {
  const mode = s.spec.mode;
  let running = 0, meant = 0, total = 0;
  for (const t of state.tasksOf(s.id)) {
    total++;
    if (t.desiredState <= TaskState.running) meant++;
    // A job's task runs with desired state complete.
    if (t.desiredState === TaskState.complete && t.status.state < TaskState.complete) meant++;
    if (t.desiredState <= TaskState.complete && t.status.state === TaskState.running) running++;
  }
  const desired = mode.kind === "replicated"
    ? mode.replicas
    : mode.kind === "replicated-job"
    ? mode.totalCompletions
    : meant;
  const rt = s.spec.task.runtime;
  const image = rt.kind === "container" ? rt.image : [rt.command, ...rt.args].join(" ");
  const update = s.updateStatus;
  return {
    id: s.id,
    name: s.spec.name,
    mode: mode.kind,
    desired,
    running,
    tasks: total,
    runtime: rt.kind,
    image,
    ...(update === undefined ? {} : { updateState: update.state, updateMessage: update.message }),
    ports: (s.endpoint?.ports ?? s.spec.endpoint.ports).map((p) => ({
      ...(p.publishedPort === 0 ? {} : { published: p.publishedPort }),
      target: p.targetPort,
      protocol: p.protocol,
    })),
    labels: { ...s.spec.labels },
    version: s.version,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
  };
}

function taskView(state: ClusterState, t: TaskRecord): TaskView {
  const node = t.nodeId === "" ? undefined : state.nodes.get(t.nodeId);
  return {
    id: t.id,
    name: displayName(state, "task", t),
    serviceId: t.serviceId,
    service: state.services.get(t.serviceId)?.spec.name ?? t.serviceId.slice(0, 12),
    slot: t.slot,
    nodeId: t.nodeId,
    node: node === undefined ? (t.nodeId === "" ? "" : t.nodeId.slice(0, 12)) : nodeName(node),
    state: taskStateName(t.status.state),
    desired: taskStateName(t.desiredState),
    message: t.status.message,
    err: t.status.err,
    ...(t.status.exitCode === undefined ? {} : { exitCode: t.status.exitCode }),
    attempt: t.attempt,
    specVersion: t.specVersion,
    version: t.version,
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  };
}
