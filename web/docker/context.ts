/**
 * What every Docker route is given: the manager, the event hub, and which node this is; plus the
 * helpers they share.
 *
 * @module
 */
import type { Manager } from "../../actors/manager.ts";
import type { Command } from "../../actors/commands.ts";
import type { ClusterRecord, NodeRecord } from "../../actors/state.ts";
import type { ShoalEvent } from "../../events/schema.ts";
import { ApiError } from "../http.ts";
import type { EventHub } from "./events.ts";
import type { TaskLogSource } from "../../node/task_logs.ts";

/** The Docker API's view of one manager. */
export interface DockerApiContext {
  readonly manager: Manager;
  readonly hub: EventHub;
  /** The node this manager runs on, if known. */
  readonly nodeId?: string;
  /** Reads tasks' output for `service logs` (without it, logs answer with an error). */
  readonly taskLogs?: TaskLogSource;
}

/** Docker's answer when there is no swarm (yet). */
export const NOT_A_MANAGER =
  'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.';

/** The swarm, or a 503 in Docker's words when there is none. */
export function requireSwarm(ctx: DockerApiContext): ClusterRecord {
  const cluster = ctx.manager.state.cluster;
  if (cluster === undefined) throw new ApiError(503, "not_a_manager", NOT_A_MANAGER);
  return cluster;
}

/**
 * The node this manager runs on: the one it was told, else the leader (a single-node swarm's
 * only manager), else any manager.
 */
export function selfNode(ctx: DockerApiContext): NodeRecord | undefined {
  const s = ctx.manager.state;
  if (ctx.nodeId !== undefined) {
    const n = s.nodes.get(ctx.nodeId);
    if (n !== undefined) return n;
  }
  let manager: NodeRecord | undefined;
  for (const n of s.nodes.values()) {
    if (n.managerStatus?.leader) return n;
    if (manager === undefined && n.role === "manager") manager = n;
  }
  return manager;
}

/** Runs a user's command (`by` is the API call, e.g. `service.create`) and returns its events. */
export async function run(
  ctx: DockerApiContext,
  command: Command,
  call: string,
): Promise<ShoalEvent[]> {
  requireSwarm(ctx);
  const result = await ctx.manager.execute(command, { by: `user:${call}` });
  return result.events;
}

/** The id of the object a create command made (the first event's). */
export function createdId(events: ShoalEvent[]): string {
  return events[0].data.id;
}
