/**
 * The node entity: registered when it joins, then its description, spec, role, status and manager
 * status change; removed when it leaves.
 *
 * @module
 */
import {
  type EventOf,
  isTerminalTaskState,
  type ShoalEvent,
  TaskState,
} from "../../events/schema.ts";
import type { NodeCommand } from "../commands.ts";
import { resolve } from "../lookup.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import type { ApplyContext, ClusterState, NodeRecord } from "../state.ts";
import { EventRejected } from "./rejection.ts";

type NodeEvent = EventOf<
  | "NodeRegistered"
  | "NodeDescriptionUpdated"
  | "NodeSpecUpdated"
  | "NodeRoleChanged"
  | "NodeStatusChanged"
  | "NodeManagerStatusChanged"
  | "NodeRemoved"
>;

/** Folds one node event into the state, or throws `EventRejected`. */
export function applyNodeEvent(state: ClusterState, event: NodeEvent, ctx: ApplyContext): void {
  const { data } = event;
  if (event.type === "NodeRegistered") {
    if (state.nodes.has(data.id)) {
      throw new EventRejected(
        "already_exists",
        `Cannot register node ${data.id}: already a member`,
      );
    }
    state.nodes.put({
      ...ctx.created(data.id),
      description: event.data.description,
      spec: event.data.spec,
      role: event.data.role,
      status: { state: "unknown", message: "", addr: event.data.addr },
    });
    return;
  }
  const node = state.nodes.get(data.id);
  if (node === undefined) {
    throw new EventRejected("not_found", `Cannot change node ${data.id}: no such node`);
  }
  ctx.checkVersion("node", state.nodes, node, event.meta.expect);
  let next: NodeRecord;
  switch (event.type) {
    case "NodeDescriptionUpdated":
      next = { ...node, description: event.data.description };
      break;
    case "NodeSpecUpdated":
      next = { ...node, spec: event.data.spec };
      break;
    case "NodeRoleChanged":
      next = { ...node, role: event.data.role };
      if (event.data.role === "worker") next = { ...next, managerStatus: undefined };
      break;
    case "NodeStatusChanged":
      next = { ...node, status: event.data.status };
      break;
    case "NodeManagerStatusChanged":
      if (event.data.managerStatus !== undefined && node.role !== "manager") {
        throw new EventRejected(
          "invalid_transition",
          `Cannot set manager status of node ${node.id}: it is a worker`,
        );
      }
      next = { ...node, managerStatus: event.data.managerStatus };
      break;
    case "NodeRemoved": {
      for (const task of state.tasksOn(node.id)) {
        if (!isTerminalTaskState(task.status.state)) {
          throw new EventRejected(
            "in_use",
            `Cannot remove node ${node.id}: task ${task.id} is still live on it (orphan or stop it first)`,
          );
        }
      }
      state.nodes.delete(node.id);
      return;
    }
  }
  state.nodes.put(ctx.touched(next));
}

/** The node a reference names: an id, a unique hostname or name, or an unambiguous id prefix. */
export function resolveNode(state: ClusterState, ref: string): NodeRecord {
  return resolve("node", state.nodes, (name) => {
    const ids = state.nodesByName.get(name);
    if (ids.size > 1) {
      throw new EventRejected(
        "invalid_argument",
        `node ${name} is ambiguous (${ids.size} nodes have that name): use its id`,
      );
    }
    for (const id of ids) return id;
    return undefined;
  }, ref);
}

/** Decides the events of a node command, or throws `EventRejected`. */
export function decideNodeCommand(
  state: ClusterState,
  command: NodeCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  const node = resolveNode(state, command.node);
  if (command.kind === "UpdateNode") {
    if (
      command.spec.desiredRole === "worker" && node.spec.desiredRole === "manager" &&
      [...state.nodesByRole.get("manager")].every((id) => id === node.id)
    ) {
      throw new EventRejected(
        "invalid_argument",
        "attempting to demote the last manager of the swarm",
      );
    }
    return [{
      type: "NodeSpecUpdated",
      v: 1,
      data: { id: node.id, spec: command.spec },
      meta: userMeta(ctx, "node update", command.version ?? node.version),
    }];
  }
  if (node.role === "manager" || node.managerStatus !== undefined) {
    throw new EventRejected(
      "in_use",
      `rpc error: node ${node.id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal`,
    );
  }
  if (!command.force && node.status.state !== "down") {
    throw new EventRejected(
      "in_use",
      `node ${node.id} is not down and can't be removed (use --force to remove it anyway)`,
    );
  }
  // Tasks still live on the node are orphaned: it will never report on them again.
  const events: ShoalEvent[] = [];
  for (const task of state.tasksOn(node.id)) {
    if (isTerminalTaskState(task.status.state)) continue;
    const assigned = task.status.state >= TaskState.assigned;
    events.push({
      type: "TaskStatusReported",
      v: 1,
      data: {
        id: task.id,
        status: {
          state: assigned ? TaskState.orphaned : TaskState.shutdown,
          timestamp: ctx.now,
          message: "node removed",
          err: `node ${node.id} was removed from the swarm`,
        },
      },
      meta: userMeta(ctx, "node rm", task.version),
    });
  }
  events.push({
    type: "NodeRemoved",
    v: 1,
    data: { id: node.id },
    meta: userMeta(ctx, command.force ? "node rm --force" : "node rm", node.version),
  });
  return events;
}
