/**
 * The node entity: registered when it joins, then its description, spec, role, status and manager
 * status change; removed when it leaves.
 *
 * @module
 */
import { type EventOf, isTerminalTaskState } from "../../events/schema.ts";
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
  ctx.checkVersion("node", node, event.meta.expect);
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
