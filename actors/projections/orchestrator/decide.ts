/**
 * The orchestrator: makes the tasks of every service match its spec, level-triggered from the
 * whole state (DESIGN.md contract 5). SwarmKit's semantics:
 *
 * - **Replicated services** have numbered slots. Missing slots get a task; extra slots are
 *   removed (first the slots whose task is not running, then those on the nodes that run most of
 *   the service, then the highest numbers).
 * - **Global services** have one task per node that is not down, not drained and meets the
 *   service's constraints; a node leaving that set loses its task.
 * - **Restarts** follow the restart policy (condition, delay, max attempts, window). The delay is a
 *   fact in the log: the new task is created waiting at `ready` with `startAfter`, and asked to run
 *   when that time comes (the manager wakes the orchestrator for it), so a new leader resumes it
 *   exactly. Tasks on a node that is down or drained are replaced at once, elsewhere.
 * - **Rolling updates** replace tasks whose spec version is old, `parallelism` slots at a time,
 *   `delay` apart, `stop-first` (the new task waits at ready until the old one has stopped) or
 *   `start-first` (the old one stops once the new one runs). Rollbacks use the rollback config.
 * - **History**: each slot (or node) keeps at most the cluster's task history retention limit of
 *   tasks; older finished ones are deleted, and so are tasks asked to go (desired `remove`) once
 *   they have stopped.
 * - **Jobs** run to completion: their tasks are created with desired state `complete`, and a task
 *   that completed is never restarted (a restart condition of `any` acts as `on-failure`, as in
 *   SwarmKit); one that failed is retried in its slot (or on its node) per the restart policy.
 *   A replicated job runs at most `maxConcurrent` tasks at once until `totalCompletions` of them
 *   completed, each in its own slot; a global job runs once on every eligible node, including
 *   nodes that join later (Docker's documented behaviour; SwarmKit's code only counts nodes
 *   created before the job's last run). Each update of a job is a new run (the service's
 *   `jobIteration`, SwarmKit's JobIteration): tasks of earlier runs are shut down and the job
 *   starts again from nothing. Jobs have no rolling update.
 *
 * Pure: time and ids come in `ctx`. At most `MAX_BATCH_EVENTS` events per call; the manager calls
 * again after they are applied.
 *
 * @module
 */
import {
  isTerminalTaskState,
  MAX_BATCH_EVENTS,
  type ServiceSpec,
  type ShoalEvent,
  TaskState,
  type TaskStateValue,
  type UpdateConfig,
  type UpdateStatus,
} from "../../../events/schema.ts";
import type { ClusterState, NodeRecord, ServiceRecord, TaskRecord } from "../../state.ts";
import type { Projection, ProjectionContext } from "../../manager.ts";
import { nodeMatchesConstraints } from "../constraints.ts";

const BY = "orchestrator";

/** The orchestrator projection. */
export const orchestrator: Projection = {
  name: BY,
  reconcile: (state, ctx) => orchestrate(state, ctx),
  wakeAt: nextDeadline,
};

/** Collects events, each task changed at most once per call, up to the batch limit. */
class Plan {
  readonly events: ShoalEvent[] = [];
  readonly #touched = new Set<string>();
  constructor(readonly ctx: ProjectionContext) {}

  get full(): boolean {
    return this.events.length >= MAX_BATCH_EVENTS;
  }

  /** Whether the task may still be changed in this plan. */
  free(task: TaskRecord): boolean {
    return !this.#touched.has(task.id);
  }

  /** Asks a task to reach `desiredState`; `cause` is the log index of what called for it. */
  desired(task: TaskRecord, desiredState: TaskStateValue, reason: string, cause: number): void {
    if (this.full || !this.free(task) || task.desiredState >= desiredState) return;
    this.#touched.add(task.id);
    this.events.push({
      type: "TaskDesiredStateChanged",
      v: 1,
      data: { id: task.id, desiredState },
      meta: { by: BY, reason, cause, expect: task.version },
    });
  }

  create(
    service: ServiceRecord,
    slot: number,
    nodeId: string,
    reason: string,
    cause: number,
    options: { attempt?: number; startAfter?: number; desired?: TaskStateValue } = {},
  ): void {
    if (this.full) return;
    const startAfter = options.startAfter ?? 0;
    // A job's task is asked to run to completion; a service's to keep running.
    const run = isJobService(service) ? TaskState.complete : TaskState.running;
    this.events.push({
      type: "TaskCreated",
      v: 1,
      data: {
        id: this.ctx.newId(),
        serviceId: service.id,
        slot,
        nodeId,
        specVersion: service.specVersion,
        desiredState: options.desired ?? (startAfter > this.ctx.now ? TaskState.ready : run),
        attempt: options.attempt ?? 0,
        startAfter,
      },
      meta: { by: BY, reason, cause },
    });
  }

  remove(task: TaskRecord, reason: string): void {
    if (this.full || !this.free(task)) return;
    this.#touched.add(task.id);
    this.events.push({
      type: "TaskRemoved",
      v: 1,
      data: { id: task.id },
      meta: { by: BY, reason, cause: task.version, expect: task.version },
    });
  }

  /** Moves a service's update (or rollback) to a new state, with a message and its cause. */
  updateStatus(
    service: ServiceRecord,
    state: UpdateStatus["state"],
    message: string,
    cause: number,
  ): void {
    if (this.full) return;
    const ended = state === "completed" || state === "rollback_completed";
    this.events.push({
      type: "ServiceUpdateStatusChanged",
      v: 1,
      data: {
        id: service.id,
        updateStatus: {
          state,
          startedAt: service.updateStatus?.startedAt ?? this.ctx.now,
          completedAt: ended ? this.ctx.now : 0,
          message,
        },
      },
      meta: { by: BY, reason: `${service.spec.name}: ${message}`, cause, expect: service.version },
    });
  }

  /** Rolls a failed update back to the previous spec (failure action `rollback`). */
  rollback(service: ServiceRecord, message: string, cause: number): void {
    if (this.full || service.previousSpec === undefined) return;
    this.events.push({
      type: "ServiceRolledBack",
      v: 1,
      data: { id: service.id },
      meta: { by: BY, reason: message, cause, expect: service.version },
    });
    this.events.push({
      type: "ServiceUpdateStatusChanged",
      v: 1,
      data: {
        id: service.id,
        updateStatus: {
          state: "rollback_started",
          startedAt: this.ctx.now,
          completedAt: 0,
          message,
        },
      },
      meta: { by: BY, reason: message, cause, expect: service.version },
    });
  }
}

/** The events that move every service toward its spec (at most one batch of them). */
export function orchestrate(state: ClusterState, ctx: ProjectionContext): ShoalEvent[] {
  const plan = new Plan(ctx);
  const retention = state.cluster?.spec.orchestration.taskHistoryRetentionLimit ?? 5;
  for (const service of state.services.values()) {
    if (plan.full) break;
    const mode = service.spec.mode.kind;
    if (mode === "replicated") reconcileReplicated(state, service, plan);
    else if (mode === "global") reconcileGlobal(state, service, plan);
    else if (mode === "replicated-job") reconcileReplicatedJob(state, service, plan);
    else reconcileGlobalJob(state, service, plan);
    reapHistory(state, service.id, retention, plan);
  }
  reapOrphans(state, plan);
  return plan.events;
}

// ---------------------------------------------------------------------------------------------
// Shared rules

/** A task the orchestrator still counts on: asked to be ready or running (or, for a job, complete). */
function isLive(t: TaskRecord): boolean {
  return t.desiredState <= TaskState.complete;
}

/** Whether a service is a job: its tasks run to completion. */
function isJobService(service: ServiceRecord): boolean {
  const kind = service.spec.mode.kind;
  return kind === "replicated-job" || kind === "global-job";
}

/** The desired state that means "run": running for services, complete for jobs. */
function runState(service: ServiceRecord): TaskStateValue {
  return isJobService(service) ? TaskState.complete : TaskState.running;
}

/** A node whose tasks must be replaced elsewhere: gone, down, or drained. */
function nodeLost(state: ClusterState, nodeId: string): string | undefined {
  if (nodeId === "") return undefined;
  const node = state.nodes.get(nodeId);
  if (node === undefined) return "node was removed";
  if (node.status.state === "down") return "node is down";
  if (node.spec.availability === "drain") return "node is drained";
  return undefined;
}

/**
 * Whether a finished task may be restarted under its service's policy, and with what delay.
 * Returns undefined when the policy says no.
 */
function restartPlan(
  state: ClusterState,
  service: ServiceRecord,
  dead: TaskRecord,
  now: number,
): { attempt: number; startAfter: number } | undefined {
  const policy = state.taskSpec(dead).restart;
  const failed = dead.status.state !== TaskState.complete;
  if (policy.condition === "none") return undefined;
  // A job's task that completed is done: for jobs, `any` means `on-failure` (SwarmKit's rule).
  if ((policy.condition === "on-failure" || isJobService(service)) && !failed) return undefined;
  const sameSpec = dead.specVersion === service.specVersion;
  const attempt = sameSpec ? dead.attempt + 1 : 0;
  if (policy.maxAttempts > 0 && sameSpec) {
    let restarts = dead.attempt;
    if (policy.window > 0) {
      // Only restarts made within the window count: those tasks of the slot created in it.
      restarts = 0;
      for (const t of slotTasks(state, dead)) {
        if (
          t.attempt > 0 && t.specVersion === dead.specVersion && t.createdAt >= now - policy.window
        ) {
          restarts++;
        }
      }
    }
    if (restarts >= policy.maxAttempts) return undefined;
  }
  return { attempt, startAfter: policy.delay > 0 ? now + policy.delay : 0 };
}

/** The tasks sharing a task's slot (replicated) or node (global). */
function slotTasks(state: ClusterState, task: TaskRecord): TaskRecord[] {
  const out: TaskRecord[] = [];
  for (const t of state.tasksOf(task.serviceId)) {
    if (t.jobIteration !== task.jobIteration) continue; // a job's earlier runs do not count
    if (task.slot !== 0 ? t.slot === task.slot : t.nodeId === task.nodeId && t.slot === 0) {
      out.push(t);
    }
  }
  return out;
}

/** Newest first: by creation index (version order of creation is the log order). */
function newestFirst(a: TaskRecord, b: TaskRecord): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1);
}

/**
 * Handles the live task of a slot: restarts it when it finished or its node is lost, starts it
 * when its restart delay is over. Returns true when the slot still has a task that counts.
 */
function tendLiveTask(
  state: ClusterState,
  service: ServiceRecord,
  task: TaskRecord,
  plan: Plan,
): boolean {
  const lost = task.status.state >= TaskState.assigned ? nodeLost(state, task.nodeId) : undefined;
  if (isTerminalTaskState(task.status.state) || lost !== undefined) {
    if (!plan.free(task)) return true;
    const why = lost ?? `task ${stateWord(task.status.state)}`;
    // The cause: the node's change (down, drained, removed) or the task's own final report.
    const cause = lost !== undefined
      ? state.nodes.get(task.nodeId)?.version ?? plan.ctx.cause
      : task.version;
    plan.desired(task, TaskState.shutdown, `${why}: replacing it`, cause);
    const slot = task.slot;
    // Global services and jobs (slot 0) restart on the same node; replicated ones anywhere.
    const nodeId = slot === 0 ? task.nodeId : "";
    if (lost !== undefined) {
      // Moved, not failed: no delay, not an attempt.
      if (nodeId === "") {
        plan.create(service, slot, nodeId, `slot ${slot}: ${lost}`, cause, {
          attempt: task.attempt,
        });
      }
      return true;
    }
    const restart = restartPlan(state, service, task, plan.ctx.now);
    if (restart !== undefined) {
      plan.create(service, slot, nodeId, `restart policy: ${why}`, cause, restart);
    }
    return true;
  }
  if (
    task.desiredState === TaskState.ready && task.startAfter > 0 && task.startAfter <= plan.ctx.now
  ) {
    plan.desired(task, runState(service), "restart delay elapsed", task.version);
  }
  return true;
}

function stateWord(state: number): string {
  switch (state) {
    case TaskState.complete:
      return "completed";
    case TaskState.failed:
      return "failed";
    case TaskState.rejected:
      return "was rejected";
    case TaskState.orphaned:
      return "was orphaned";
    default:
      return "stopped";
  }
}

// ---------------------------------------------------------------------------------------------
// Replicated services

function reconcileReplicated(state: ClusterState, service: ServiceRecord, plan: Plan): void {
  const mode = service.spec.mode;
  if (mode.kind !== "replicated") return;
  // Slots in use: those with any task not being removed.
  const slots = new Map<number, TaskRecord[]>();
  for (const t of state.tasksOf(service.id)) {
    if (t.desiredState === TaskState.remove) continue;
    const list = slots.get(t.slot);
    if (list) list.push(t);
    else slots.set(t.slot, [t]);
  }

  // Scale down first: choose the slots to give up.
  if (slots.size > mode.replicas) {
    const perNode = new Map<string, number>();
    for (const list of slots.values()) {
      for (const t of list) if (isLive(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
    }
    const ranked = [...slots.entries()].map(([slot, list]) => {
      const live = list.find(isLive);
      return {
        slot,
        list,
        running: live?.status.state === TaskState.running ? 1 : 0,
        load: live ? perNode.get(live.nodeId) ?? 0 : Infinity,
      };
    }).sort((a, b) => a.running - b.running || b.load - a.load || b.slot - a.slot);
    for (const r of ranked.slice(0, slots.size - mode.replicas)) {
      for (const t of r.list) {
        plan.desired(t, TaskState.remove, `scaled down to ${mode.replicas}`, service.version);
      }
      slots.delete(r.slot);
    }
  }

  let outdated: TaskRecord[] = [];
  for (const [slot, list] of slots) {
    if (plan.full) return;
    const live = list.filter(isLive).sort(newestFirst);
    if (live.length === 0) {
      // The slot's newest task finished and was not restarted: restart it if the policy now
      // allows (a new spec resets the attempts), else the slot stays finished.
      const newest = [...list].sort(newestFirst)[0];
      // A slot that ran an older spec is refilled by the update, whatever the restart policy.
      const restart = newest.specVersion !== service.specVersion
        ? { attempt: 0, startAfter: 0 }
        : restartPlan(state, service, newest, plan.ctx.now);
      if (restart !== undefined) {
        plan.create(
          service,
          slot,
          "",
          `slot ${slot} has no running task`,
          Math.max(newest.version, service.specVersion),
          restart,
        );
      }
      continue;
    }
    for (const t of live) tendLiveTask(state, service, t, plan);
    if (advanceUpdate(state, service, list, live, plan)) outdated = outdated.concat(live);
  }

  // Scale up: new slots take the lowest free numbers.
  let next = 1;
  for (let have = slots.size; have < mode.replicas && !plan.full; have++) {
    while (slots.has(next)) next++;
    slots.set(next, []);
    plan.create(
      service,
      next,
      "",
      `scaled up to ${mode.replicas}: slot ${next} is new`,
      service.version,
    );
  }

  rollingUpdate(state, service, outdated, slots.size, plan);
}

// ---------------------------------------------------------------------------------------------
// Global services

function reconcileGlobal(state: ClusterState, service: ServiceRecord, plan: Plan): void {
  const byNode = new Map<string, TaskRecord[]>();
  for (const t of state.tasksOf(service.id)) {
    if (t.desiredState === TaskState.remove) continue;
    const list = byNode.get(t.nodeId);
    if (list) list.push(t);
    else byNode.set(t.nodeId, [t]);
  }
  const spec = service.spec;
  let outdated: TaskRecord[] = [];
  let eligibleCount = 0;
  for (const node of state.nodes.values()) {
    if (plan.full) return;
    const list = byNode.get(node.id) ?? [];
    byNode.delete(node.id);
    const live = list.filter(isLive).sort(newestFirst);
    const why = globalIneligible(node, spec);
    if (why !== undefined) {
      for (const t of live) {
        plan.desired(
          t,
          TaskState.shutdown,
          `node ${node.id}: ${why}`,
          Math.max(node.version, service.version),
        );
      }
      continue;
    }
    eligibleCount++;
    if (live.length === 0) {
      if (node.spec.availability !== "active") continue; // paused: keeps what it has, gets nothing new
      const newest = [...list].sort(newestFirst)[0];
      const restart = newest === undefined || newest.specVersion !== service.specVersion
        ? { attempt: 0, startAfter: 0 }
        : restartPlan(state, service, newest, plan.ctx.now);
      if (restart !== undefined) {
        plan.create(
          service,
          0,
          node.id,
          `node ${node.id} has no task of this global service`,
          Math.max(node.version, service.specVersion, newest?.version ?? 0),
          restart,
        );
      }
      continue;
    }
    for (const t of live) tendLiveTask(state, service, t, plan);
    if (advanceUpdate(state, service, list, live, plan)) outdated = outdated.concat(live);
  }
  // Tasks on nodes that no longer exist.
  for (const list of byNode.values()) {
    for (const t of list) {
      if (isLive(t)) plan.desired(t, TaskState.shutdown, "node was removed", plan.ctx.cause);
    }
  }
  rollingUpdate(state, service, outdated, eligibleCount, plan);
}

/** Why a node may not run a task of this global service, or undefined when it may. */
function globalIneligible(node: NodeRecord, spec: ServiceSpec): string | undefined {
  if (node.status.state === "down") return "node is down";
  if (node.spec.availability === "drain") return "node is drained";
  const kind = spec.task.runtime.kind;
  if (!node.description.runtimes.includes(kind)) return `node cannot run ${kind} tasks`;
  if (!nodeMatchesConstraints(node, spec.task.placement.constraints)) {
    return "scheduling constraints not satisfied";
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Jobs

/**
 * The tasks of a job's current run, by `key` (slot or node), not counting tasks being removed;
 * tasks of earlier runs are asked to shut down (a running one stops; a finished one leaves the
 * count and becomes history).
 */
function currentRun(
  state: ClusterState,
  service: ServiceRecord,
  key: (t: TaskRecord) => string | number,
  plan: Plan,
): Map<string | number, TaskRecord[]> {
  const iteration = service.jobIteration ?? 0;
  const groups = new Map<string | number, TaskRecord[]>();
  for (const t of state.tasksOf(service.id)) {
    if (t.desiredState === TaskState.remove) continue;
    if ((t.jobIteration ?? 0) !== iteration) {
      plan.desired(
        t,
        TaskState.shutdown,
        `job run ${iteration} replaces run ${t.jobIteration ?? 0}`,
        service.version,
      );
      continue;
    }
    const k = key(t);
    const list = groups.get(k);
    if (list) list.push(t);
    else groups.set(k, [t]);
  }
  return groups;
}

/**
 * Where one slot (or node) of a job stands: `done` once a task completed; `active` while a task
 * is on its way or was just restarted; `failed` when its last task ended and the restart policy
 * gives up.
 */
function tendJobGroup(
  state: ClusterState,
  service: ServiceRecord,
  list: readonly TaskRecord[],
  slot: number,
  nodeId: string,
  plan: Plan,
): "done" | "active" | "failed" {
  if (list.some((t) => t.status.state === TaskState.complete)) return "done";
  const live = list.filter((t) => isLive(t));
  if (live.length > 0) {
    for (const t of live) tendLiveTask(state, service, t, plan);
    return "active";
  }
  // Every task of the group was stopped (it failed and was replaced, or its node went away):
  // retry under the restart policy, which decides when the job gives up on this slot.
  const newest = [...list].sort(newestFirst)[0];
  const restart = restartPlan(state, service, newest, plan.ctx.now);
  if (restart === undefined) return "failed";
  plan.create(
    service,
    slot,
    nodeId,
    `job: retrying ${slot > 0 ? `slot ${slot}` : `on node ${nodeId}`}`,
    newest.version,
    restart,
  );
  return "active";
}

/**
 * A replicated job: at most `maxConcurrent` tasks at once, each in a slot of its own, until
 * `totalCompletions` slots hold a completed task (slots whose task failed for good count as
 * finished, so a job whose restart policy gives up ends short of its total).
 */
function reconcileReplicatedJob(state: ClusterState, service: ServiceRecord, plan: Plan): void {
  const mode = service.spec.mode;
  if (mode.kind !== "replicated-job") return;
  const slots = currentRun(state, service, (t) => t.slot, plan);
  let done = 0;
  let active = 0;
  let failed = 0;
  for (const [slot, list] of slots) {
    if (plan.full) return;
    const where = tendJobGroup(state, service, list, slot as number, "", plan);
    if (where === "done") done++;
    else if (where === "active") active++;
    else failed++;
  }
  const wanted = Math.min(
    mode.maxConcurrent - active,
    mode.totalCompletions - done - failed - active,
  );
  let next = 1;
  for (let n = 0; n < wanted && !plan.full; n++) {
    while (slots.has(next)) next++;
    slots.set(next, []);
    plan.create(
      service,
      next,
      "",
      `job: ${done} of ${mode.totalCompletions} completed, ${
        active + n
      } of at most ${mode.maxConcurrent} running: slot ${next} starts`,
      Math.max(service.version, newestVersion([...slots.values()].flat())),
    );
  }
}

/** A global job: one run to completion on every eligible node, nodes joining later included. */
function reconcileGlobalJob(state: ClusterState, service: ServiceRecord, plan: Plan): void {
  const byNode = currentRun(state, service, (t) => t.nodeId, plan);
  for (const node of state.nodes.values()) {
    if (plan.full) return;
    const list = byNode.get(node.id) ?? [];
    byNode.delete(node.id);
    const why = globalIneligible(node, service.spec);
    if (why !== undefined) {
      for (const t of list) {
        if (isLive(t) && !isTerminalTaskState(t.status.state)) {
          plan.desired(
            t,
            TaskState.shutdown,
            `node ${node.id}: ${why}`,
            Math.max(node.version, service.version),
          );
        }
      }
      continue;
    }
    if (list.length === 0) {
      if (node.spec.availability !== "active") continue; // paused: gets nothing new
      plan.create(
        service,
        0,
        node.id,
        `node ${node.id} has not run this global job`,
        Math.max(node.version, service.version),
      );
      continue;
    }
    tendJobGroup(state, service, list, 0, node.id, plan);
  }
  // Tasks on nodes that no longer exist.
  for (const list of byNode.values()) {
    for (const t of list) {
      if (isLive(t) && !isTerminalTaskState(t.status.state)) {
        plan.desired(t, TaskState.shutdown, "node was removed", plan.ctx.cause);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Rolling updates

/**
 * Moves an update along in one slot (or node): returns true when the slot has only outdated live
 * tasks (it waits for the updater), false when it is current or being replaced.
 */
function advanceUpdate(
  state: ClusterState,
  service: ServiceRecord,
  all: readonly TaskRecord[],
  live: readonly TaskRecord[],
  plan: Plan,
): boolean {
  // Once a task of the slot runs, every live task of an older spec goes (start-first updates,
  // and slots that went through several updates while their node was away).
  // The current spec ranks first (after a rollback it is the older version), then newer specs.
  const rank = (t: TaskRecord) => t.specVersion === service.specVersion ? Infinity : t.specVersion;
  let best: TaskRecord | undefined;
  for (const t of live) {
    if (t.status.state !== TaskState.running) continue;
    if (best === undefined || rank(t) > rank(best)) best = t;
  }
  if (best !== undefined) {
    for (const o of live) {
      if (rank(o) < rank(best)) {
        plan.desired(o, TaskState.shutdown, "replaced by an updated task", best.version);
      }
    }
  }
  const current = live.filter((t) => t.specVersion === service.specVersion);
  if (current.length === 0) return live.length > 0;
  if (current.length > 1) {
    // Never two tasks of one spec in a slot: keep the one furthest along (then the newest).
    const keep = [...current].sort((a, b) =>
      b.status.state - a.status.state || newestFirst(a, b)
    )[0];
    for (const t of current) {
      if (t !== keep) {
        plan.desired(t, TaskState.shutdown, `slot already has task ${keep.id}`, keep.version);
      }
    }
  }
  // stop-first: the new task waits at ready until every older task of the slot has stopped.
  const oldStopped = all.every((t) =>
    t.specVersion === service.specVersion || isTerminalTaskState(t.status.state) ||
    t.status.state < TaskState.assigned || nodeLost(state, t.nodeId) !== undefined
  );
  for (const c of current) {
    if (oldStopped && c.desiredState === TaskState.ready && c.startAfter === 0) {
      plan.desired(c, TaskState.running, "the task it replaces has stopped", newestVersion(all));
    }
  }
  return false;
}

/**
 * Replaces outdated tasks (whose slot has no task of the current spec), `parallelism` at a time.
 * A new batch starts when every updated task of the service runs and `delay` has passed since the
 * last of them started running (times from the log, so a new leader continues the same way).
 */
function rollingUpdate(
  state: ClusterState,
  service: ServiceRecord,
  outdated: TaskRecord[],
  slotCount: number,
  plan: Plan,
): void {
  const status = service.updateStatus;
  const rollingBack = status?.state.startsWith("rollback") ?? false;
  const config: UpdateConfig = rollingBack ? service.spec.rollback : service.spec.update;
  const active = status?.state === "updating" || status?.state === "rollback_started";
  // In flight: tasks of the current spec on their way up. Failed: tasks this update started that
  // ended on their own (not stopped by us), SwarmKit's "failure or early termination".
  let inFlight = 0;
  let lastStarted = 0;
  let failures = 0;
  let firstFailure: TaskRecord | undefined;
  for (const t of state.tasksOf(service.id)) {
    if (t.specVersion !== service.specVersion) continue;
    if (active && t.createdAt >= status!.startedAt && failedOnItsOwn(t)) {
      failures++;
      if (firstFailure === undefined || t.updatedAt < firstFailure.updatedAt) firstFailure = t;
    }
    if (!isLive(t)) continue;
    if (t.status.state !== TaskState.running) {
      if (t.attempt === 0 && t.startAfter === 0 && !isTerminalTaskState(t.status.state)) inFlight++;
    } else lastStarted = Math.max(lastStarted, t.updatedAt);
  }
  if (
    active && firstFailure !== undefined &&
    failures / Math.max(1, slotCount) > config.maxFailureRatio
  ) {
    const action = config.failureAction;
    const what = rollingBack ? "rollback" : "update";
    const why = `failure or early termination of task ${firstFailure.id}`;
    if (action === "pause" || (action === "rollback" && rollingBack)) {
      plan.updateStatus(
        service,
        rollingBack ? "rollback_paused" : "paused",
        `${what} paused due to ${why}`,
        firstFailure.version,
      );
      return;
    }
    if (action === "rollback") {
      plan.rollback(service, `update rolled back due to ${why}`, firstFailure.version);
      return;
    }
    // continue: carry on regardless.
  }
  if (outdated.length === 0) {
    // Done once the last updated task has run for the monitor period without failing.
    if (
      active && inFlight === 0 &&
      (lastStarted === 0 || plan.ctx.now >= lastStarted + config.monitor)
    ) {
      plan.updateStatus(
        service,
        rollingBack ? "rollback_completed" : "completed",
        rollingBack ? "rollback completed" : "update completed",
        service.specVersion,
      );
    }
    return;
  }
  if (status?.state === "paused" || status?.state === "rollback_paused") return;
  const parallelism = config.parallelism === 0 ? slotCount : config.parallelism;
  if (inFlight >= parallelism) return;
  if (
    inFlight === 0 && config.delay > 0 && lastStarted > 0 &&
    plan.ctx.now < lastStarted + config.delay
  ) {
    return; // the manager wakes us when the delay is over (nextDeadline)
  }
  // One replacement per slot (or node), whatever number of old tasks it holds.
  const groups = new Map<string, TaskRecord[]>();
  for (const t of outdated) {
    const key = t.slot > 0 ? `s${t.slot}` : `n${t.nodeId}`;
    const list = groups.get(key);
    if (list) list.push(t);
    else groups.set(key, [t]);
  }
  const order = [...groups.values()].sort((a, b) =>
    a[0].slot - b[0].slot || (a[0].nodeId < b[0].nodeId ? -1 : 1)
  );
  const verb = rollingBack ? "rollback" : "update";
  for (const olds of order.slice(0, parallelism - inFlight)) {
    if (plan.full || !olds.every((o) => plan.free(o))) break;
    const first = olds[0];
    const nodeId = service.spec.mode.kind === "global" ? first.nodeId : "";
    if (config.order === "start-first") {
      plan.create(
        service,
        first.slot,
        nodeId,
        `${verb}: start-first replacement of ${first.id}`,
        service.specVersion,
      );
      continue;
    }
    for (const o of olds) {
      plan.desired(o, TaskState.shutdown, `${verb}: stop-first, replacing it`, service.specVersion);
    }
    const stopped = olds.every((o) =>
      isTerminalTaskState(o.status.state) || o.status.state < TaskState.assigned
    );
    plan.create(
      service,
      first.slot,
      nodeId,
      `${verb}: replaces ${first.id} once it stops`,
      service.specVersion,
      {
        desired: stopped ? TaskState.running : TaskState.ready,
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// History and removal

/** Deletes finished tasks beyond the retention limit per slot or node, oldest first. */
function reapHistory(state: ClusterState, serviceId: string, retention: number, plan: Plan): void {
  const groups = new Map<string, TaskRecord[]>();
  for (const t of state.tasksOf(serviceId)) {
    if (t.desiredState === TaskState.remove) {
      if (removable(t)) plan.remove(t, "removed task has stopped");
      continue;
    }
    const key = t.slot !== 0 ? `s${t.slot}` : `n${t.nodeId}`;
    const list = groups.get(key);
    if (list) list.push(t);
    else groups.set(key, [t]);
  }
  if (retention < 0) return;
  for (const list of groups.values()) {
    if (list.length <= retention) continue;
    const oldest = list.filter((t) => !isLive(t) && removable(t)).sort(newestFirst).reverse();
    for (const t of oldest.slice(0, list.length - Math.max(retention, 1))) {
      plan.remove(t, `task history retention limit ${retention}`);
    }
  }
}

/** Desired states an orphaned task is moved from to `remove`. */
const ORPHAN_STOP_STATES = [
  TaskState.running,
  TaskState.ready,
  TaskState.complete,
  TaskState.shutdown,
] as const;

/** Tasks of services that no longer exist: asked to go, then deleted once stopped. */
function reapOrphans(state: ClusterState, plan: Plan): void {
  for (const desired of ORPHAN_STOP_STATES) {
    for (const id of state.tasksByDesiredState.get(desired)) {
      if (plan.full) return;
      const t = state.tasks.get(id)!;
      if (!state.services.has(t.serviceId)) {
        plan.desired(t, TaskState.remove, "service was removed", plan.ctx.cause);
      }
    }
  }
  for (const id of state.tasksByDesiredState.get(TaskState.remove)) {
    if (plan.full) return;
    const t = state.tasks.get(id)!;
    if (!state.services.has(t.serviceId) && removable(t)) plan.remove(t, "service was removed");
  }
}

/** A task that ended without being asked to stop: it failed, was rejected, or exited. */
function failedOnItsOwn(t: TaskRecord): boolean {
  const st = t.status.state;
  return (st === TaskState.failed || st === TaskState.rejected || st === TaskState.complete) &&
    t.desiredState <= TaskState.running;
}

/** The index of the latest change among some tasks. */
function newestVersion(tasks: readonly TaskRecord[]): number {
  let v = 0;
  for (const t of tasks) v = Math.max(v, t.version);
  return v;
}

/** The fold deletes only tasks that stopped or never reached a node. */
function removable(t: TaskRecord): boolean {
  return isTerminalTaskState(t.status.state) || t.status.state < TaskState.assigned;
}

/** The next time something is due: a restart delay or an update delay ending. */
function nextDeadline(state: ClusterState, now: number): number | undefined {
  let next: number | undefined;
  const consider = (t: number) => {
    if (t > now && (next === undefined || t < next)) next = t;
  };
  for (const id of state.tasksByDesiredState.get(TaskState.ready)) {
    const t = state.tasks.get(id)!;
    if (t.startAfter > 0) consider(t.startAfter);
  }
  for (const service of state.services.values()) {
    const st = service.updateStatus?.state;
    if (st !== "updating" && st !== "rollback_started") continue;
    const config = st === "updating" ? service.spec.update : service.spec.rollback;
    let lastStarted = 0;
    for (const t of state.tasksOf(service.id)) {
      if (t.specVersion === service.specVersion && t.status.state === TaskState.running) {
        lastStarted = Math.max(lastStarted, t.updatedAt);
      }
    }
    if (lastStarted > 0) {
      if (config.delay > 0) consider(lastStarted + config.delay);
      consider(lastStarted + config.monitor);
    }
  }
  return next;
}
