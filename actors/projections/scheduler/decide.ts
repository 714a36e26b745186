/**
 * The scheduler: gives each pending task a node, SwarmKit's way (`manager/scheduler`), as a pure,
 * level-triggered projection over the fold's state.
 *
 * Each call looks at the pending tasks in the order they became pending (the order the allocator
 * made them so, which follows task creation), and for each:
 *
 * - **desired state past `complete`** (shutdown or remove: the service was updated, scaled down
 *   or removed before the task got a node): reports it `shutdown`, by the scheduler, as SwarmKit's
 *   `noSuitableNode` does (moby/swarmkit#2998). A task of a job (desired `complete`) is scheduled.
 * - **bound to a node already** (a global service's task): runs the filters against that node
 *   only; assigns it if it fits, else marks it unschedulable with SwarmKit's explanation
 *   (`taskFitNode`: the bare explanation, "insufficient resources on 1 node").
 * - **otherwise**: schedules it with the other tasks of its group, the tasks of the same service
 *   and spec version (SwarmKit's `scheduleTaskGroup`; and the same host-mode ports, which tasks
 *   of one spec version share anyway). The group runs every node through the
 *   filter pipeline once, then places its tasks one at a time on the best node that passes,
 *   updating the node's tallies as it goes, so a group spreads:
 *   1. placement preferences first: for each `spread` descriptor (highest precedence first), the
 *      branch (label value; nodes without the label form their own branch) with the fewest tasks
 *      of the service, among branches with a node that passes (SwarmKit's decision tree, filled
 *      one task at a time, which evens the branches as SwarmKit's "fill to the level" does);
 *   2. then the node with the fewest active tasks of the service;
 *   3. then the node with the fewest active tasks in all;
 *   4. then the node that joined first (SwarmKit breaks this tie at random; a projection may not).
 *   When no node passes, the task stays pending and gets SwarmKit's message, "no suitable node
 *   (scheduling constraints not satisfied on 3 nodes; insufficient resources on 1 node)", as a
 *   `TaskUnschedulable` event, only when the message differs from the one the task carries, so an
 *   unschedulable task costs no event on every call.
 *
 * Every decision is recorded (`SchedulingDecision`): how many nodes were considered, up to 20 that
 * passed (the chosen one first), up to 20 that were rejected and by which filter and why, how
 * many each filter rejected, and in words why the chosen node won.
 *
 * Bounded: at most `MAX_BATCH_EVENTS` events and about three quarters of `MAX_BATCH_BYTES` per
 * call; the manager calls again once they are applied.
 *
 * Cost: a call is O(nodes) per group it touches, plus O(log nodes) per task placed, plus O(1) per
 * pending task it looks at. The per-node tallies (resources, ports, task counts) would cost
 * O(live tasks) to build; they are kept across calls, per state, and reused only when the state
 * is exactly what this scheduler left it as: the next index is the entry that applied the events
 * of the last call (checked task by task). Anything else (another proposer's entry in between, a
 * rejected batch, a different state) rebuilds them from the state. The result never depends on the
 * cache: it is memoisation of a pure function.
 *
 * Not (yet) SwarmKit's: the "potentially faulty node" weighting (5 failures in 5 minutes) needs
 * failure times the state does not index, and CSI volumes and plugins do not exist in Shoal.
 *
 * @module
 */
import {
  MAX_BATCH_BYTES,
  MAX_BATCH_EVENTS,
  type SchedulingDecision,
  type ShoalEvent,
  TaskState,
  taskStateName,
} from "../../../events/schema.ts";
import { type ClusterState, nodeName, type TaskRecord } from "../../state.ts";
import type { Projection, ProjectionContext } from "../../manager.ts";
import {
  type Filter,
  PASSED,
  Pipeline,
  type TaskRequirements,
  taskRequirements,
} from "./filters.ts";
import { ENGINE_LABEL_PREFIX, NODE_LABEL_PREFIX } from "./constraints.ts";
import { type NodeInfo, NodeView, ReservationCache, taskHostPorts } from "./view.ts";

const BY = "scheduler";
/** How many passed and rejected nodes a decision lists. */
export const DECISION_SAMPLE = 20;
/** Bytes of events one call may return, by estimate (a margin under `MAX_BATCH_BYTES`). */
const BYTE_BUDGET = Math.floor(MAX_BATCH_BYTES * 0.75);

/** Options of {@linkcode createScheduler}. */
export interface SchedulerOptions {
  /** Most events one call returns (default `MAX_BATCH_EVENTS`). */
  maxEvents?: number;
  /** Keep node tallies between calls (default true). Off, every call rebuilds them. */
  cache?: boolean;
}

/** A scheduler projection (each one keeps its own per-state cache). */
export function createScheduler(options: SchedulerOptions = {}): Projection {
  const maxEvents = Math.min(options.maxEvents ?? MAX_BATCH_EVENTS, MAX_BATCH_EVENTS);
  const useCache = options.cache ?? true;
  const caches = new WeakMap<ClusterState, ViewCache>();
  return {
    name: BY,
    reconcile(state, ctx) {
      const pending = state.tasksByState.get(TaskState.pending);
      if (pending.size === 0) {
        caches.delete(state);
        return [];
      }
      const cached = useCache ? validCache(state, caches.get(state)) : undefined;
      const view = cached ?? NodeView.build(state);
      const session = new Session(state, ctx, view, maxEvents);
      session.run(pending);
      if (useCache) caches.set(state, { view, index: state.index, events: session.events.slice() });
      return session.events;
    },
  };
}

/** The scheduler projection. */
export const scheduler: Projection = createScheduler();

interface ViewCache {
  view: NodeView;
  /** The state's index when the view was last right (before `events`). */
  index: number;
  /** The events that call returned, which the view already counts. */
  events: ShoalEvent[];
}

/** The cached view, if the state is exactly what applying the last call's events made it. */
function validCache(state: ClusterState, cache: ViewCache | undefined): NodeView | undefined {
  if (cache === undefined) return undefined;
  if (cache.events.length === 0) return cache.index === state.index ? cache.view : undefined;
  if (state.index !== cache.index + 1) return undefined;
  // The last entry must be the batch of those events: every task it names changed there.
  for (const e of cache.events) {
    const id = (e.data as { id: string }).id;
    const task = state.tasks.get(id);
    if (task === undefined || task.version !== state.index) return undefined;
    if (e.type === "TaskAssigned" && task.nodeId !== e.data.nodeId) return undefined;
  }
  return cache.view;
}

/** One call's work: the events, and the node tallies as tasks are placed. */
class Session {
  readonly events: ShoalEvent[] = [];
  bytes = 0;
  /** Nodes that received a task during this call, in order (indexes into `view.nodes`). */
  readonly changedNodes: number[] = [];
  /** The service of each placement in `changedNodes`. */
  readonly changedServices: string[] = [];
  readonly #groups = new Map<string, Map<number | string, Group>>();
  readonly #deferred: { event: ShoalEvent; bytes: number }[] = [];
  readonly reservations: ReservationCache;

  constructor(
    readonly state: ClusterState,
    readonly ctx: ProjectionContext,
    readonly view: NodeView,
    readonly maxEvents: number,
  ) {
    this.reservations = new ReservationCache(state);
  }

  get full(): boolean {
    return this.events.length >= this.maxEvents || this.bytes >= BYTE_BUDGET;
  }

  /**
   * Goes through the pending tasks. New messages for unschedulable tasks wait until the end, and
   * take only the room placements left: a change that rewords the message of many waiting tasks
   * (a node joins: "on 4 nodes" becomes "on 5 nodes") never holds up tasks that can be placed.
   */
  run(pending: ReadonlySet<string>): void {
    for (const id of pending) {
      if (this.full) break;
      const task = this.state.tasks.get(id)!;
      if (task.desiredState > TaskState.complete) this.shutDown(task);
      else if (task.nodeId !== "") this.checkPreassigned(task);
      else this.groupOf(task).schedule(task);
    }
    for (const d of this.#deferred) {
      if (this.full) break;
      this.emit(d.event, d.bytes);
    }
  }

  /** Puts a task on a node: counts it there and notes the change for the groups. */
  place(info: NodeInfo, task: TaskRecord, req: TaskRequirements): void {
    info.reservedCPUs += req.reservations.nanoCPUs;
    info.reservedMemory += req.reservations.memoryBytes;
    for (const p of req.hostPorts) info.hostPorts.add(p);
    info.activeTasks++;
    info.activeByService.set(task.serviceId, (info.activeByService.get(task.serviceId) ?? 0) + 1);
    this.changedNodes.push(info.index);
    this.changedServices.push(task.serviceId);
  }

  emit(event: ShoalEvent, bytes: number): void {
    this.events.push(event);
    this.bytes += bytes;
  }

  meta(task: TaskRecord, reason: string) {
    // The cause is the change that made the task pending (or last moved it): what `why` follows.
    return { by: BY, reason, cause: task.version, expect: task.version };
  }

  assigned(task: TaskRecord, info: NodeInfo, decision: SchedulingDecision, bytes: number): void {
    this.emit({
      type: "TaskAssigned",
      v: 1,
      data: { id: task.id, nodeId: info.node.id, decision },
      meta: this.meta(task, `assigned to node ${nodeName(info.node)}`),
    }, EVENT_BYTES + bytes);
  }

  /**
   * Records why a task has no node, unless it already says so. The decision is taken now (it
   * describes the nodes as they are at this point of the call); the event goes out at the end.
   */
  unschedulable(
    task: TaskRecord,
    message: string,
    decision: () => SchedulingDecision,
    bytes: () => number,
  ): void {
    if (task.status.err === message || this.#deferred.length >= this.maxEvents) return;
    this.#deferred.push({
      event: {
        type: "TaskUnschedulable",
        v: 1,
        data: { id: task.id, message, decision: decision() },
        meta: this.meta(task, message),
      },
      // The message is written three times: data, decision and meta.
      bytes: EVENT_BYTES + 3 * message.length + bytes(),
    });
  }

  shutDown(task: TaskRecord): void {
    const desired = taskStateName(task.desiredState);
    this.emit({
      type: "TaskStatusReported",
      v: 1,
      data: {
        id: task.id,
        status: {
          state: TaskState.shutdown,
          timestamp: this.ctx.now,
          message: "shut down before it was scheduled",
          err: "",
        },
      },
      meta: this.meta(task, `pending task no longer wanted (desired state ${desired})`),
    }, EVENT_BYTES + 60);
  }

  /** A global service's task: it may only go to its own node. */
  checkPreassigned(task: TaskRecord): void {
    const info = this.view.byId.get(task.nodeId);
    if (info === undefined) {
      const message = `no suitable node (node ${task.nodeId} is not in the swarm)`;
      this.unschedulable(task, message, () => ({
        nodesConsidered: 0,
        passed: [],
        rejected: [],
        rejectedCounts: {},
        reason: message,
      }), () => 0);
      return;
    }
    const req = taskRequirements(task, this.state.taskSpec(task));
    const pipeline = new Pipeline(req);
    const at = pipeline.firstFailure(info);
    if (at === PASSED) {
      this.place(info, task, req);
      this.assigned(task, info, {
        nodesConsidered: 1,
        passed: [info.node.id],
        rejected: [],
        rejectedCounts: {},
        reason: `task of a global service: it runs on its own node, ${
          nodeName(info.node)
        }, which passed every filter`,
      }, 200);
      return;
    }
    pipeline.counts[at]++;
    // SwarmKit's taskFitNode: the bare explanation ("insufficient resources on 1 node").
    const message = pipeline.explain();
    const filter = pipeline.filters[at];
    const rejected = [{
      node: info.node.id,
      filter: filter.name,
      reason: filter.reason(info, req),
    }];
    this.unschedulable(task, message, () => ({
      nodesConsidered: 1,
      passed: [],
      rejected,
      rejectedCounts: { [filter.name]: 1 },
      reason: `its node, ${nodeName(info.node)}, does not fit: ${rejected[0].reason}`,
    }), () => 2 * rejectedBytes(rejected) + 60);
  }

  groupOf(task: TaskRecord): Group {
    let versions = this.#groups.get(task.serviceId);
    if (versions === undefined) {
      versions = new Map();
      this.#groups.set(task.serviceId, versions);
    }
    // Tasks of one spec version publish the same host ports; should two not, they are not alike.
    const key = task.ports.length === 0
      ? task.specVersion
      : `${task.specVersion}:${taskHostPorts(task.ports).join(",")}`;
    let group = versions.get(key);
    if (group === undefined) {
      group = new Group(this, taskRequirements(task, this.state.taskSpec(task)));
      versions.set(key, group);
    }
    return group;
  }
}

/** Rough encoded size of an event without its decision's lists and texts. */
const EVENT_BYTES = 160;

type Rejected = SchedulingDecision["rejected"][number];

function rejectedBytes(list: readonly Rejected[]): number {
  let n = 0;
  for (const r of list) n += r.node.length + r.filter.length + r.reason.length + 12;
  return n;
}

/** A spread preference the tree splits on. */
interface Spread {
  /** As written (`node.labels.zone`). */
  readonly descriptor: string;
  readonly engine: boolean;
  readonly label: string;
}

/** A branch of the decision tree: the nodes with one label value at each level above. */
interface Branch {
  readonly value: string;
  readonly parent: Branch | undefined;
  /** Active tasks of the service on every node under the branch (passing or not). */
  tasks: number;
  /** Nodes under the branch that pass every filter now. */
  candidates: number;
  /** Sub-branches by label value (inner branches only), sorted by value once built. */
  children: Branch[] | undefined;
  byValue: Map<string, Branch> | undefined;
  /** Passing nodes (leaves only): a min-heap of node indexes, best first. */
  heap: number[] | undefined;
}

function branch(value: string, parent: Branch | undefined): Branch {
  return {
    value,
    parent,
    tasks: 0,
    candidates: 0,
    children: undefined,
    byValue: undefined,
    heap: undefined,
  };
}

/**
 * The tasks of one service and spec version in this call: every node is run through the
 * filters once, arranged in the decision tree, then tasks are placed one at a time.
 */
class Group {
  readonly req: TaskRequirements;
  readonly pipeline: Pipeline;
  readonly #session: Session;
  readonly #nodes: NodeInfo[];
  readonly #spreads: Spread[];
  readonly #root: Branch;
  /** Per node: where it stopped in the pipeline (`PASSED` when it passes). */
  readonly #failedAt: Int8Array;
  /** Per node: active tasks of this service. */
  readonly #svc: Int32Array;
  /** Per node: its position in its leaf's heap, -1 when not in it. */
  readonly #heapPos: Int32Array;
  /** Per node: its leaf. */
  readonly #leafOf: Branch[];
  /** How many of the session's placements this group has taken into account. */
  #synced: number;
  /** Up to `DECISION_SAMPLE` nodes that passed when the group was built. */
  readonly #passedSample: number[] = [];
  #rejected: Rejected[] = [];
  #rejectedBytes = 0;
  #counts: Record<string, number> | undefined;
  #message: string | undefined;

  constructor(session: Session, req: TaskRequirements) {
    this.#session = session;
    this.req = req;
    this.pipeline = new Pipeline(req);
    const nodes = session.view.nodes;
    this.#nodes = nodes;
    const n = nodes.length;
    this.#failedAt = new Int8Array(n);
    this.#svc = new Int32Array(n);
    this.#heapPos = new Int32Array(n).fill(-1);
    this.#leafOf = new Array(n);
    this.#synced = session.changedNodes.length;
    this.#spreads = spreadsOf(req);
    this.#root = branch("", undefined);
    const counts = this.pipeline.counts;
    const filters = this.pipeline.filters;
    for (let i = 0; i < n; i++) {
      const info = nodes[i];
      const svc = info.activeByService.get(req.serviceId) ?? 0;
      this.#svc[i] = svc;
      let b = this.#root;
      for (const spread of this.#spreads) {
        b.tasks += svc;
        const value = spreadValue(spread, info);
        b.byValue ??= new Map();
        let next = b.byValue.get(value);
        if (next === undefined) {
          next = branch(value, b);
          b.byValue.set(value, next);
        }
        b = next;
      }
      b.tasks += svc;
      this.#leafOf[i] = b;
      const at = this.pipeline.firstFailure(info);
      this.#failedAt[i] = at;
      if (at === PASSED) {
        (b.heap ??= []).push(i);
        if (this.#passedSample.length < DECISION_SAMPLE) this.#passedSample.push(i);
      } else {
        counts[at]++;
        if (this.#rejected.length < DECISION_SAMPLE) {
          const r = {
            node: info.node.id,
            filter: filters[at].name,
            reason: filters[at].reason(info, req),
          };
          this.#rejected.push(r);
          this.#rejectedBytes += rejectedBytes([r]);
        }
      }
    }
    this.#finish(this.#root);
  }

  /** Sorts children, heapifies leaves and counts candidates, bottom up. */
  #finish(b: Branch): number {
    if (b.byValue !== undefined) {
      b.children = [...b.byValue.values()].sort((
        x,
        y,
      ) => (x.value < y.value ? -1 : x.value > y.value ? 1 : 0));
      b.candidates = 0;
      for (const c of b.children) b.candidates += this.#finish(c);
      return b.candidates;
    }
    const heap = b.heap ??= [];
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.#siftDown(heap, i);
    for (let i = 0; i < heap.length; i++) this.#heapPos[heap[i]] = i;
    b.candidates = heap.length;
    return b.candidates;
  }

  /** Places one task of the group, or records why it cannot be placed. */
  schedule(task: TaskRecord): void {
    this.#sync();
    const session = this.#session;
    const leaf = this.#pickLeaf();
    if (leaf === undefined) {
      session.unschedulable(
        task,
        this.#explanation(),
        () => this.#decision(undefined, this.#explanation()),
        () => this.#rejectedBytes + 40,
      );
      return;
    }
    const i = leaf.heap![0];
    const info = this.#nodes[i];
    const reason = this.#why(leaf, i);
    const decision = this.#decision(i, reason);
    session.place(info, task, this.req);
    this.#synced = session.changedNodes.length;
    this.#svc[i]++;
    for (let b: Branch | undefined = leaf; b !== undefined; b = b.parent) b.tasks++;
    this.#reevaluate(i);
    let bytes = reason.length + this.#rejectedBytes + 60;
    for (const id of decision.passed) bytes += id.length + 2;
    session.assigned(task, info, decision, bytes);
  }

  /** Takes into account the placements other groups made since this one last looked. */
  #sync(): void {
    const session = this.#session;
    const nodes = session.changedNodes;
    while (this.#synced < nodes.length) {
      const i = nodes[this.#synced];
      if (session.changedServices[this.#synced] === this.req.serviceId) {
        this.#svc[i]++;
        for (let b: Branch | undefined = this.#leafOf[i]; b !== undefined; b = b.parent) b.tasks++;
      }
      this.#synced++;
      this.#reevaluate(i);
    }
  }

  /** Runs a node whose tallies changed through the filters again. */
  #reevaluate(i: number): void {
    const before = this.#failedAt[i];
    const at = this.pipeline.firstFailure(this.#nodes[i]);
    const leaf = this.#leafOf[i];
    if (at === before) {
      if (at === PASSED) this.#fix(leaf.heap!, this.#heapPos[i]);
      return;
    }
    this.#failedAt[i] = at;
    this.#counts = undefined;
    this.#message = undefined;
    const counts = this.pipeline.counts;
    if (before === PASSED) {
      this.#remove(leaf.heap!, i);
      for (let b: Branch | undefined = leaf; b !== undefined; b = b.parent) b.candidates--;
    } else counts[before]--;
    if (at === PASSED) {
      this.#insert(leaf.heap!, i);
      for (let b: Branch | undefined = leaf; b !== undefined; b = b.parent) b.candidates++;
      this.#unreject(i);
    } else {
      counts[at]++;
      this.#reject(i, this.pipeline.filters[at]);
    }
  }

  /** Notes a node in the rejected sample (copy on write: earlier decisions keep their list). */
  #reject(i: number, filter: Filter): void {
    const info = this.#nodes[i];
    const entry = {
      node: info.node.id,
      filter: filter.name,
      reason: filter.reason(info, this.req),
    };
    const at = this.#rejected.findIndex((r) => r.node === entry.node);
    if (at < 0 && this.#rejected.length >= DECISION_SAMPLE) return;
    const next = this.#rejected.slice();
    if (at < 0) next.push(entry);
    else next[at] = entry;
    this.#rejected = next;
    this.#rejectedBytes = rejectedBytes(next);
  }

  #unreject(i: number): void {
    const id = this.#nodes[i].node.id;
    if (!this.#rejected.some((r) => r.node === id)) return;
    this.#rejected = this.#rejected.filter((r) => r.node !== id);
    this.#rejectedBytes = rejectedBytes(this.#rejected);
  }

  /** The leaf to place the next task in: the emptiest branch with room, level by level. */
  #pickLeaf(): Branch | undefined {
    let b = this.#root;
    if (b.candidates === 0) return undefined;
    while (b.children !== undefined) {
      let best: Branch | undefined;
      for (const c of b.children) {
        if (c.candidates > 0 && (best === undefined || c.tasks < best.tasks)) best = c;
      }
      b = best!;
    }
    return b;
  }

  /** Why node `i` of `leaf` wins, in words (before the task is counted on it). */
  #why(leaf: Branch, i: number): string {
    const parts = [`${this.#root.candidates} of ${this.#nodes.length} nodes passed every filter`];
    const path: Branch[] = [];
    for (let b: Branch | undefined = leaf; b?.parent !== undefined; b = b.parent) path.unshift(b);
    path.forEach((b, level) => {
      const spread = `spread over ${this.#spreads[level].descriptor}`;
      const value = b.value === "" ? "nodes without it" : `"${b.value}"`;
      const open = b.parent!.children!.filter((c) => c.candidates > 0).length;
      parts.push(
        open > 1
          ? `${spread}: ${value} had the fewest tasks of the service (${b.tasks}) of ${open} values with room`
          : `${spread}: ${value} was the only value with room`,
      );
    });
    const info = this.#nodes[i];
    const name = nodeName(info.node);
    if (leaf.candidates === 1) {
      parts.push(`${name} was the only node there that passed`);
      return parts.join("; ");
    }
    let why = `${name} had the fewest tasks of the service (${
      this.#svc[i]
    }), then in all (${info.activeTasks})`;
    // A tie on both counts is broken by join order (heap[1] or heap[2] is the runner-up).
    const heap = leaf.heap!;
    for (const at of [1, 2]) {
      const j = heap[at];
      if (
        j !== undefined && this.#svc[j] === this.#svc[i] &&
        this.#nodes[j].activeTasks === info.activeTasks
      ) {
        why += ", then joined first";
        break;
      }
    }
    parts.push(why);
    return parts.join("; ");
  }

  #decision(chosen: number | undefined, reason: string): SchedulingDecision {
    const passed: string[] = [];
    if (chosen !== undefined) passed.push(this.#nodes[chosen].node.id);
    for (const i of this.#passedSample) {
      if (passed.length >= DECISION_SAMPLE) break;
      if (i !== chosen && this.#failedAt[i] === PASSED) passed.push(this.#nodes[i].node.id);
    }
    this.#counts ??= this.pipeline.countsByName();
    return {
      nodesConsidered: this.#nodes.length,
      passed,
      rejected: this.#rejected,
      rejectedCounts: this.#counts,
      reason,
    };
  }

  /** SwarmKit's message for a task no node can take now. */
  #explanation(): string {
    if (this.#message === undefined) {
      const why = this.pipeline.explain();
      this.#message = why === "" ? "no suitable node" : `no suitable node (${why})`;
    }
    return this.#message;
  }

  // A min-heap of node indexes per leaf: fewest tasks of the service, then fewest tasks in all,
  // then join order. Positions are tracked in #heapPos so a node can be fixed or removed.

  #less(a: number, b: number): boolean {
    const sa = this.#svc[a];
    const sb = this.#svc[b];
    if (sa !== sb) return sa < sb;
    const ta = this.#nodes[a].activeTasks;
    const tb = this.#nodes[b].activeTasks;
    if (ta !== tb) return ta < tb;
    return a < b;
  }

  #siftDown(heap: number[], at: number): number {
    const pos = this.#heapPos;
    const item = heap[at];
    const n = heap.length;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.#less(heap[r], heap[l]) ? r : l;
      if (!this.#less(heap[child], item)) break;
      heap[at] = heap[child];
      pos[heap[at]] = at;
      at = child;
    }
    heap[at] = item;
    pos[item] = at;
    return at;
  }

  #siftUp(heap: number[], at: number): number {
    const pos = this.#heapPos;
    const item = heap[at];
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!this.#less(item, heap[parent])) break;
      heap[at] = heap[parent];
      pos[heap[at]] = at;
      at = parent;
    }
    heap[at] = item;
    pos[item] = at;
    return at;
  }

  #fix(heap: number[], at: number): void {
    if (this.#siftUp(heap, at) === at) this.#siftDown(heap, at);
  }

  #insert(heap: number[], i: number): void {
    heap.push(i);
    this.#siftUp(heap, heap.length - 1);
  }

  #remove(heap: number[], i: number): void {
    const at = this.#heapPos[i];
    const last = heap.pop()!;
    this.#heapPos[i] = -1;
    if (last === i) return;
    heap[at] = last;
    this.#heapPos[last] = at;
    this.#fix(heap, at);
  }
}

/** The spread preferences the tree splits on (SwarmKit ignores descriptors it cannot read). */
function spreadsOf(req: TaskRequirements): Spread[] {
  const out: Spread[] = [];
  for (const pref of req.spec.placement.preferences) {
    const d = pref.spread;
    const lower = d.toLowerCase();
    if (lower.startsWith(NODE_LABEL_PREFIX) && d.length > NODE_LABEL_PREFIX.length) {
      out.push({ descriptor: d, engine: false, label: d.slice(NODE_LABEL_PREFIX.length) });
    } else if (lower.startsWith(ENGINE_LABEL_PREFIX) && d.length > ENGINE_LABEL_PREFIX.length) {
      out.push({ descriptor: d, engine: true, label: d.slice(ENGINE_LABEL_PREFIX.length) });
    }
  }
  return out;
}

/** A node's value for a spread descriptor ("" when it has no such label). */
function spreadValue(spread: Spread, info: NodeInfo): string {
  const labels = spread.engine ? info.node.description.engine.labels : info.node.spec.labels;
  return labels[spread.label] ?? "";
}
