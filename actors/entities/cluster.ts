/**
 * The swarm entity: created once by `swarm init`, then its settings, join tokens and root CA
 * change.
 *
 * @module
 */
import type { EventOf } from "../../events/schema.ts";
import type { ApplyContext, ClusterRecord, ClusterState } from "../state.ts";
import { EventRejected } from "./rejection.ts";

type ClusterEvent = EventOf<
  "ClusterCreated" | "ClusterSpecUpdated" | "ClusterJoinTokenRotated" | "ClusterRootCARotated"
>;

/** Folds one cluster event into the state, or throws `EventRejected`. */
export function applyClusterEvent(
  state: ClusterState,
  event: ClusterEvent,
  ctx: ApplyContext,
): void {
  const { data } = event;
  if (event.type === "ClusterCreated") {
    const existing = state.cluster;
    if (existing !== undefined) {
      throw new EventRejected(
        "already_exists",
        `Cannot create swarm ${data.id}: this node is already part of swarm ${existing.id}`,
      );
    }
    state.clusters.put({
      ...ctx.created(data.id),
      spec: event.data.spec,
      rootCA: event.data.rootCA,
      joinTokens: event.data.joinTokens,
    });
    return;
  }
  const cluster = state.clusters.get(data.id);
  if (cluster === undefined) {
    throw new EventRejected("not_found", `Cannot change swarm ${data.id}: no such swarm`);
  }
  ctx.checkVersion("swarm", cluster, event.meta.expect);
  let next: ClusterRecord;
  switch (event.type) {
    case "ClusterSpecUpdated":
      next = { ...cluster, spec: event.data.spec };
      break;
    case "ClusterJoinTokenRotated":
      next = {
        ...cluster,
        joinTokens: { ...cluster.joinTokens, [event.data.role]: event.data.token },
      };
      break;
    case "ClusterRootCARotated":
      next = { ...cluster, rootCA: event.data.rootCA };
      break;
  }
  state.clusters.put(ctx.touched(next));
}
