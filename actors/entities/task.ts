/**
 * The task entity and its state machine, as SwarmKit's: new → pending (allocated) → assigned
 * (scheduled) → accepted → preparing → ready → starting → running → complete | shutdown | failed |
 * rejected | orphaned. The observed state only moves forward; the desired state is separate and
 * also only moves forward (ready → running → complete | shutdown → remove).
 *
 * One stricter rule than SwarmKit: a task that reached a terminal state stays in it (SwarmKit
 * would take a later terminal state with a higher number). A finished task never runs again, so
 * nothing is lost, and history reads true.
 *
 * @module
 */
import {
  type EventOf,
  isTerminalTaskState,
  TaskState,
  taskStateName,
  type TaskStateValue,
} from "../../events/schema.ts";
import { type ApplyContext, type ClusterState, specKey, type TaskRecord } from "../state.ts";
import { EventRejected } from "./rejection.ts";
import { addSpecRef, dropSpecRef } from "./service.ts";
import { checkAddresses } from "./network.ts";

type TaskEvent = EventOf<
  | "TaskCreated"
  | "TaskAllocated"
  | "TaskAssigned"
  | "TaskUnschedulable"
  | "TaskStatusReported"
  | "TaskDesiredStateChanged"
  | "TaskRemoved"
>;

/** Desired states a manager may ask of a task. */
const DESIRABLE: ReadonlySet<number> = new Set([
  TaskState.ready,
  TaskState.running,
  TaskState.complete,
  TaskState.shutdown,
  TaskState.remove,
]);

/** Observed states only `TaskStatusReported` may set, once the task is on a node. */
const NEEDS_NODE: ReadonlySet<number> = new Set([
  TaskState.accepted,
  TaskState.preparing,
  TaskState.ready,
  TaskState.starting,
  TaskState.running,
  TaskState.complete,
  TaskState.failed,
  TaskState.rejected,
  TaskState.orphaned,
]);

/** Folds one task event into the state, or throws `EventRejected`. */
export function applyTaskEvent(state: ClusterState, event: TaskEvent, ctx: ApplyContext): void {
  const { data } = event;
  if (event.type === "TaskCreated") {
    createTask(state, event, ctx);
    return;
  }
  const task = state.tasks.get(data.id);
  if (task === undefined) {
    throw new EventRejected("not_found", `Cannot change task ${data.id}: no such task`);
  }
  ctx.checkVersion("task", state.tasks, task, event.meta.expect);
  const state_ = task.status.state;
  let next: TaskRecord;
  switch (event.type) {
    case "TaskAllocated": {
      if (state_ !== TaskState.new) throw badMove(task, "allocate", "new");
      const networks = event.data.networks ?? [];
      checkAddresses(state, task.id, `task ${task.id}`, networks);
      next = {
        ...task,
        version: ctx.index,
        updatedAt: ctx.at,
        ports: event.data.ports,
        addresses: event.data.addresses,
        networks,
        status: {
          state: TaskState.pending,
          timestamp: ctx.at,
          message: "pending task scheduling",
          err: "",
        },
      };
      break;
    }
    case "TaskAssigned": {
      if (state_ !== TaskState.pending) throw badMove(task, "assign", "pending");
      if (task.desiredState > TaskState.complete) {
        throw new EventRejected(
          "invalid_transition",
          `Cannot assign task ${task.id}: it is being stopped (desired state ${
            taskStateName(task.desiredState)
          })`,
        );
      }
      const nodeId = event.data.nodeId;
      if (!state.nodes.has(nodeId)) {
        throw new EventRejected(
          "invalid_reference",
          `Cannot assign task ${task.id} to node ${nodeId}: no such node`,
        );
      }
      if (task.nodeId !== "" && task.nodeId !== nodeId) {
        throw new EventRejected(
          "invalid_transition",
          `Cannot assign task ${task.id} to node ${nodeId}: it belongs to node ${task.nodeId}`,
        );
      }
      next = {
        ...task,
        version: ctx.index,
        updatedAt: ctx.at,
        nodeId,
        status: {
          state: TaskState.assigned,
          timestamp: ctx.at,
          message: "scheduler assigned task to node",
          err: "",
        },
      };
      break;
    }
    case "TaskUnschedulable":
      if (state_ !== TaskState.pending) throw badMove(task, "mark unschedulable", "pending");
      next = {
        ...task,
        version: ctx.index,
        updatedAt: ctx.at,
        status: { ...task.status, timestamp: ctx.at, err: event.data.message },
      };
      break;
    case "TaskStatusReported":
      next = { ...task, version: ctx.index, updatedAt: ctx.at, status: checkReport(task, event) };
      break;
    case "TaskDesiredStateChanged": {
      const desired = event.data.desiredState;
      if (!DESIRABLE.has(desired)) {
        throw new EventRejected(
          "invalid_transition",
          `Cannot set desired state of task ${task.id} to ${
            taskStateName(desired)
          }: not a desired state`,
        );
      }
      if (desired < task.desiredState) {
        throw new EventRejected(
          "invalid_transition",
          `Cannot move desired state of task ${task.id} back from ${
            taskStateName(task.desiredState)
          } to ${taskStateName(desired)}`,
        );
      }
      next = {
        ...task,
        version: ctx.index,
        updatedAt: ctx.at,
        desiredState: desired as TaskStateValue,
      };
      break;
    }
    case "TaskRemoved":
      if (state_ >= TaskState.assigned && !isTerminalTaskState(state_)) {
        throw new EventRejected(
          "in_use",
          `Cannot remove task ${task.id}: it is ${taskStateName(state_)} on node ${task.nodeId}`,
        );
      }
      dropSpecRef(state, task.serviceId, task.specVersion);
      state.tasks.delete(task.id);
      return;
  }
  state.tasks.put(next);
}

function createTask(state: ClusterState, event: EventOf<"TaskCreated">, ctx: ApplyContext): void {
  const { data } = event;
  if (state.tasks.has(data.id)) {
    throw new EventRejected("already_exists", `Cannot create task ${data.id}: id in use`);
  }
  const service = state.services.get(data.serviceId);
  if (service === undefined) {
    throw new EventRejected(
      "invalid_reference",
      `Cannot create task ${data.id}: no such service ${data.serviceId}`,
    );
  }
  if (!state.specs.has(specKey(service.id, data.specVersion))) {
    throw new EventRejected(
      "invalid_reference",
      `Cannot create task ${data.id}: service ${service.spec.name} has no spec version ${data.specVersion}`,
    );
  }
  const perNode = service.spec.mode.kind === "global" || service.spec.mode.kind === "global-job";
  if (perNode) {
    if (data.slot !== 0 || data.nodeId === "") {
      throw new EventRejected(
        "invalid_argument",
        `Cannot create task ${data.id}: a task of global service ${service.spec.name} needs a node and no slot`,
      );
    }
    if (!state.nodes.has(data.nodeId)) {
      throw new EventRejected(
        "invalid_reference",
        `Cannot create task ${data.id} on node ${data.nodeId}: no such node`,
      );
    }
  } else if (data.slot < 1 || data.nodeId !== "") {
    throw new EventRejected(
      "invalid_argument",
      `Cannot create task ${data.id}: a task of replicated service ${service.spec.name} needs a slot from 1 and no node`,
    );
  }
  if (
    data.desiredState !== TaskState.ready && data.desiredState !== TaskState.running &&
    data.desiredState !== TaskState.complete
  ) {
    throw new EventRejected(
      "invalid_argument",
      `Cannot create task ${data.id} with desired state ${taskStateName(data.desiredState)}`,
    );
  }
  addSpecRef(state, service.id, data.specVersion);
  state.tasks.put({
    ...ctx.created(data.id),
    serviceId: data.serviceId,
    slot: data.slot,
    nodeId: data.nodeId,
    specVersion: data.specVersion,
    desiredState: data.desiredState,
    attempt: data.attempt,
    startAfter: data.startAfter,
    // A job's task belongs to the run of the job it was created for (SwarmKit's JobIteration).
    ...(service.jobIteration !== undefined ? { jobIteration: service.jobIteration } : {}),
    status: { state: TaskState.new, timestamp: ctx.at, message: "created", err: "" },
    ports: [],
    addresses: [],
    networks: [],
  });
}

/** The rules for an observed state change; returns the new status. */
function checkReport(task: TaskRecord, event: EventOf<"TaskStatusReported">) {
  const status = event.data.status;
  const from = task.status.state;
  const to = status.state;
  if (to < TaskState.accepted || to === TaskState.remove) {
    throw new EventRejected(
      "invalid_transition",
      `Cannot report task ${task.id} as ${taskStateName(to)}: that state is set by the ${
        to === TaskState.remove ? "orchestrator as a desired state" : "allocator or scheduler"
      }`,
    );
  }
  if (to < from) {
    throw new EventRejected(
      "invalid_transition",
      `Cannot move task ${task.id} back from ${taskStateName(from)} to ${taskStateName(to)}`,
    );
  }
  if (isTerminalTaskState(from) && to !== from) {
    throw new EventRejected(
      "invalid_transition",
      `Cannot move task ${task.id} from ${taskStateName(from)} to ${
        taskStateName(to)
      }: it has finished`,
    );
  }
  if (NEEDS_NODE.has(to) && from < TaskState.assigned) {
    throw new EventRejected(
      "invalid_transition",
      `Cannot report task ${task.id} as ${taskStateName(to)}: it is not assigned to a node`,
    );
  }
  // An agent never takes a task past the state it is asked for (ready waits for running).
  if (
    !isTerminalTaskState(to) && task.desiredState <= TaskState.running && to > task.desiredState
  ) {
    throw new EventRejected(
      "invalid_transition",
      `Cannot report task ${task.id} as ${taskStateName(to)}: its desired state is ${
        taskStateName(task.desiredState)
      }`,
    );
  }
  const by = event.meta.by;
  if (by.startsWith("agent:") && by !== `agent:${task.nodeId}`) {
    throw new EventRejected(
      "invalid_reference",
      `Cannot take a report on task ${task.id} from ${by}: the task is on node ${
        task.nodeId || "(none)"
      }`,
    );
  }
  return status;
}

function badMove(task: TaskRecord, action: string, needed: string): EventRejected {
  return new EventRejected(
    "invalid_transition",
    `Cannot ${action} task ${task.id}: it is ${taskStateName(task.status.state)}, not ${needed}`,
  );
}
