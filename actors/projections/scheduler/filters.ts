/**
 * The scheduler's filters: SwarmKit's pipeline (`manager/scheduler/filter.go`, `pipeline.go`),
 * in SwarmKit's order, each node stopping at the first filter it fails:
 *
 * | filter         | a node passes when                                                     |
 * | -------------- | ---------------------------------------------------------------------- |
 * | `ready`        | its status is ready                                                     |
 * | `availability` | its availability is active (pause and drain take no new tasks)         |
 * | `resources`    | the task's reservations fit in what live tasks leave free              |
 * | `runtime`      | it runs the task's runtime kind (`process` or `container`)             |
 * | `constraints`  | it satisfies every placement constraint                                |
 * | `platform`     | its os/arch is one of `placement.platforms` (x86_64 = amd64, aarch64 = arm64) |
 * | `hostPort`     | none of the task's host-mode published ports is in use on it           |
 * | `maxReplicas`  | it runs fewer than `placement.maxReplicas` active tasks of the service |
 *
 * SwarmKit's ready filter is split in two (`ready`, `availability`) so decisions say which, and
 * both explain themselves as SwarmKit's does ("N nodes not available for new tasks"), their counts
 * added. The runtime filter is Shoal's own (a node runs processes, containers or both); it sits
 * where SwarmKit's plugin filter is. A filter that does not apply to a task (no reservations, no
 * constraints, no platforms, no host ports, no replica limit) is disabled for it, as SwarmKit's
 * `SetTask` does.
 *
 * `explain` gives SwarmKit's exact wording; `Pipeline.explain()` joins the failures, most first,
 * into the text that follows "no suitable node (": for example "scheduling constraints not
 * satisfied on 3 nodes; insufficient resources on 1 node".
 *
 * @module
 */
import type { Platform, Resources, RuntimeKind, TaskSpec } from "../../../events/schema.ts";
import type { TaskRecord } from "../../state.ts";
import {
  type Constraint,
  ConstraintError,
  constraintSubject,
  firstUnmet,
  parseConstraints,
} from "./constraints.ts";
import { available, hostPortText, type NodeInfo, taskHostPorts } from "./view.ts";

/** What the filters look at in a task, read once for a group of identical tasks. */
export interface TaskRequirements {
  readonly serviceId: string;
  readonly spec: TaskSpec;
  readonly runtime: RuntimeKind;
  readonly reservations: Resources;
  readonly constraints: readonly Constraint[];
  /** Why the constraints cannot be read, if they cannot (then no node satisfies them). */
  readonly constraintError?: string;
  readonly platforms: readonly Platform[];
  /** Host-mode published ports, as `hostPortKey`s. */
  readonly hostPorts: readonly number[];
  /** 0: no limit. */
  readonly maxReplicas: number;
}

const parsedConstraints = new WeakMap<
  readonly string[],
  { constraints: Constraint[]; error?: string }
>();

/** The requirements of a task, given its spec (`state.taskSpec(task)`). */
export function taskRequirements(
  task: Pick<TaskRecord, "serviceId" | "ports">,
  spec: TaskSpec,
): TaskRequirements {
  const texts = spec.placement.constraints;
  let parsed = parsedConstraints.get(texts);
  if (parsed === undefined) {
    try {
      parsed = { constraints: parseConstraints(texts) };
    } catch (err) {
      if (!(err instanceof ConstraintError)) throw err;
      parsed = { constraints: [], error: err.message };
    }
    parsedConstraints.set(texts, parsed);
  }
  return {
    serviceId: task.serviceId,
    spec,
    runtime: spec.runtime.kind,
    reservations: spec.resources.reservations,
    constraints: parsed.constraints,
    constraintError: parsed.error,
    platforms: spec.placement.platforms,
    hostPorts: taskHostPorts(task.ports),
    maxReplicas: spec.placement.maxReplicas,
  };
}

/** The names of the filters, in pipeline order. */
export type FilterName =
  | "ready"
  | "availability"
  | "resources"
  | "runtime"
  | "constraints"
  | "platform"
  | "hostPort"
  | "maxReplicas";

/** One filter of the pipeline. */
export interface Filter {
  readonly name: FilterName;
  /**
   * Whether placing tasks can change this filter's answer for a node (resources, ports and
   * replica counts change as tasks land; a node's status or labels do not).
   */
  readonly dynamic: boolean;
  /** Whether the filter applies to this task at all (SwarmKit's `SetTask`). */
  enabled(task: TaskRequirements): boolean;
  /** Whether the task may go to the node. */
  check(node: NodeInfo, task: TaskRequirements): boolean;
  /** Why the node failed `check`, in a few words. */
  reason(node: NodeInfo, task: TaskRequirements): string;
  /**
   * What `count` nodes failing this filter means, in SwarmKit's words (the task is given for
   * filters that can say more, such as why its constraints cannot be read).
   */
  explain(count: number, task?: TaskRequirements): string;
}

const plural = (n: number) => (n === 1 ? "1 node" : `${n} nodes`);

/** Node status ready. */
export const readyFilter: Filter = {
  name: "ready",
  dynamic: false,
  enabled: () => true,
  check: (n) => n.node.status.state === "ready",
  reason: (n) => `node is ${n.node.status.state}`,
  explain: (count) => `${plural(count)} not available for new tasks`,
};

/** Node availability active. */
export const availabilityFilter: Filter = {
  name: "availability",
  dynamic: false,
  enabled: () => true,
  check: (n) => n.node.spec.availability === "active",
  reason: (n) => `node availability is ${n.node.spec.availability}`,
  explain: readyFilter.explain,
};

/** The task's reservations fit in what the node has left. */
export const resourcesFilter: Filter = {
  name: "resources",
  dynamic: true,
  enabled: (t) => t.reservations.nanoCPUs > 0 || t.reservations.memoryBytes > 0,
  check: (n, t) => {
    const total = n.node.description.resources;
    return t.reservations.nanoCPUs <= total.nanoCPUs - n.reservedCPUs &&
      t.reservations.memoryBytes <= total.memoryBytes - n.reservedMemory;
  },
  reason: (n, t) => {
    const free = available(n);
    const parts: string[] = [];
    if (t.reservations.nanoCPUs > free.nanoCPUs) {
      parts.push(`needs ${cpus(t.reservations.nanoCPUs)} CPU, ${cpus(free.nanoCPUs)} CPU free`);
    }
    if (t.reservations.memoryBytes > free.memoryBytes) {
      parts.push(
        `needs ${bytes(t.reservations.memoryBytes)} memory, ${bytes(free.memoryBytes)} free`,
      );
    }
    return parts.join("; ");
  },
  explain: (count) => `insufficient resources on ${plural(count)}`,
};

/** The node runs the task's kind of runtime. */
export const runtimeFilter: Filter = {
  name: "runtime",
  dynamic: false,
  enabled: () => true,
  check: (n, t) => n.node.description.runtimes.includes(t.runtime),
  reason: (n, t) =>
    `node runs ${n.node.description.runtimes.join(" and ")} tasks, not ${t.runtime}`,
  explain: (count) => `unsupported runtime on ${plural(count)}`,
};

/** The node satisfies every placement constraint. */
export const constraintsFilter: Filter = {
  name: "constraints",
  dynamic: false,
  enabled: (t) => t.constraints.length > 0 || t.constraintError !== undefined,
  check: (n, t) =>
    t.constraintError === undefined && firstUnmet(t.constraints, n.node) === undefined,
  reason: (n, t) => {
    if (t.constraintError !== undefined) return t.constraintError;
    const c = firstUnmet(t.constraints, n.node);
    if (c === undefined) return "constraints satisfied";
    return c.kind === "ip" || c.kind === "id"
      ? `${c.text} not satisfied`
      : `${c.text} not satisfied (${c.key} is "${constraintSubject(c, n.node)}")`;
  },
  explain: (count, t) =>
    t?.constraintError ?? `scheduling constraints not satisfied on ${plural(count)}`,
};

/** Normalises an architecture name as SwarmKit does (x86_64 = amd64, aarch64 = arm64). */
export function normalizeArch(arch: string): string {
  if (arch === "x86_64") return "amd64";
  if (arch === "aarch64") return "arm64";
  return arch;
}

/** Whether a node's platform is one a task supports (empty fields match anything). */
export function platformMatches(wanted: Platform, node: Platform): boolean {
  return (wanted.architecture === "" ||
    normalizeArch(wanted.architecture) === normalizeArch(node.architecture)) &&
    (wanted.os === "" || wanted.os === node.os);
}

/** The node's os/arch is one of the task's platforms. */
export const platformFilter: Filter = {
  name: "platform",
  dynamic: false,
  enabled: (t) => t.platforms.length > 0,
  check: (n, t) => t.platforms.some((p) => platformMatches(p, n.node.description.platform)),
  reason: (n, t) => {
    const p = n.node.description.platform;
    return `node is ${p.os}/${p.architecture}, task runs on ${
      t.platforms.map((w) => `${w.os || "*"}/${w.architecture || "*"}`).join(", ")
    }`;
  },
  explain: (count) => `unsupported platform on ${plural(count)}`,
};

/** None of the task's host-mode ports is taken on the node. */
export const hostPortFilter: Filter = {
  name: "hostPort",
  dynamic: true,
  enabled: (t) => t.hostPorts.length > 0,
  check: (n, t) => {
    for (const p of t.hostPorts) if (n.hostPorts.has(p)) return false;
    return true;
  },
  reason: (n, t) =>
    `host port ${
      t.hostPorts.filter((p) => n.hostPorts.has(p)).map(hostPortText).join(", ")
    } in use`,
  explain: (count) => `host-mode port already in use on ${plural(count)}`,
};

/** The node runs fewer than `maxReplicas` active tasks of the service. */
export const maxReplicasFilter: Filter = {
  name: "maxReplicas",
  dynamic: true,
  enabled: (t) => t.maxReplicas > 0,
  check: (n, t) => (n.activeByService.get(t.serviceId) ?? 0) < t.maxReplicas,
  reason: (n, t) =>
    `node runs ${
      n.activeByService.get(t.serviceId) ?? 0
    } tasks of the service (max ${t.maxReplicas} per node)`,
  // SwarmKit's wording, word for word.
  explain: () => "max replicas per node limit exceed",
};

/** Every filter, in pipeline order. */
export const FILTERS: readonly Filter[] = [
  readyFilter,
  availabilityFilter,
  resourcesFilter,
  runtimeFilter,
  constraintsFilter,
  platformFilter,
  hostPortFilter,
  maxReplicasFilter,
];

/** Where a node stopped in the pipeline: -1 when it passed every filter. */
export const PASSED = -1;

/**
 * The filters enabled for one task, run against nodes one at a time. Counts how many nodes each
 * filter stopped (SwarmKit's `Pipeline`), for `explain`.
 */
export class Pipeline {
  /** The task the pipeline checks. */
  readonly task: TaskRequirements;
  /** The enabled filters, in pipeline order. */
  readonly filters: readonly Filter[];
  /** Nodes stopped by each enabled filter (same positions as `filters`). */
  readonly counts: number[];

  constructor(task: TaskRequirements) {
    this.task = task;
    this.filters = FILTERS.filter((f) => f.enabled(task));
    this.counts = this.filters.map(() => 0);
  }

  /**
   * The position (in `filters`) of the first filter the node fails, or {@linkcode PASSED}. Does
   * not count; see `process`.
   */
  firstFailure(node: NodeInfo): number {
    const filters = this.filters;
    for (let i = 0; i < filters.length; i++) {
      if (!filters[i].check(node, this.task)) return i;
    }
    return PASSED;
  }

  /** Runs the node through the filters, counting a failure; true when it passes them all. */
  process(node: NodeInfo): boolean {
    const at = this.firstFailure(node);
    if (at !== PASSED) this.counts[at]++;
    return at === PASSED;
  }

  /** Failure counts by filter name (filters that stopped no node are left out). */
  countsByName(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < this.filters.length; i++) {
      if (this.counts[i] > 0) out[this.filters[i].name] = this.counts[i];
    }
    return out;
  }

  /** SwarmKit's `Explain()` over the current counts ("" when nothing failed). */
  explain(): string {
    return explainCounts(this.filters, this.counts, this.task);
  }
}

/**
 * The failures, most first (ties in pipeline order), as SwarmKit's `Explain()` words them, joined
 * by "; ". Filters that explain themselves alike (ready, availability) are added together.
 */
export function explainCounts(
  filters: readonly Filter[],
  counts: readonly number[],
  task?: TaskRequirements,
): string {
  const merged: { filter: Filter; count: number }[] = [];
  for (let i = 0; i < filters.length; i++) {
    if (counts[i] === 0) continue;
    const same = merged.find((m) => m.filter.explain === filters[i].explain);
    if (same) same.count += counts[i];
    else merged.push({ filter: filters[i], count: counts[i] });
  }
  // Array.prototype.sort is stable: equal counts keep pipeline order, as SwarmKit's does.
  merged.sort((a, b) => b.count - a.count);
  return merged.map((m) => m.filter.explain(m.count, task)).join("; ");
}

/** `1.5` from 1.5e9 billionths of a CPU. */
function cpus(nano: number): string {
  return String(Math.round(nano / 1e7) / 100);
}

/** `512 MiB`, `1.5 GiB`. */
function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Math.round(v * 100) / 100} ${units[u]}`;
}
