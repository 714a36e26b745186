/**
 * The swarm entity: created once by `swarm init`, then its settings, join tokens and root CA
 * change.
 *
 * @module
 */
import type { EventOf, ShoalEvent } from "../../events/schema.ts";
import type { ClusterCommand } from "../commands.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import type { ApplyContext, ClusterRecord, ClusterState } from "../state.ts";
import { EventRejected } from "./rejection.ts";

type ClusterEvent = EventOf<
  | "ClusterCreated"
  | "ClusterSpecUpdated"
  | "ClusterJoinTokenRotated"
  | "ClusterRootCARotated"
  | "ClusterUnlockKeyRotated"
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
  ctx.checkVersion("swarm", state.clusters, cluster, event.meta.expect);
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
    case "ClusterUnlockKeyRotated":
      next = { ...cluster, unlockKey: event.data.unlockKey };
      break;
  }
  state.clusters.put(ctx.touched(next));
}

/** Decides the events of a swarm command, or throws `EventRejected`. */
export function decideClusterCommand(
  state: ClusterState,
  command: ClusterCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  if (command.kind === "InitCluster") {
    const existing = state.cluster;
    if (existing !== undefined) {
      throw new EventRejected(
        "already_exists",
        'This node is already part of a swarm. Use "shoal swarm leave" to leave this swarm and join another one.',
      );
    }
    const { node } = command;
    return [
      {
        type: "ClusterCreated",
        v: 1,
        data: {
          id: command.clusterId,
          spec: command.spec,
          rootCA: command.rootCA,
          joinTokens: command.joinTokens,
        },
        meta: userMeta(ctx, "swarm init"),
      },
      {
        type: "NodeRegistered",
        v: 1,
        data: {
          id: node.id,
          description: node.description,
          spec: { name: "", labels: {}, desiredRole: "manager", availability: "active" },
          role: "manager",
          addr: node.addr,
        },
        meta: userMeta(ctx, "first manager of the swarm"),
      },
    ];
  }
  const cluster = state.cluster;
  if (cluster === undefined) {
    throw new EventRejected(
      "not_found",
      'This node is not a swarm manager. Use "shoal swarm init" or "shoal swarm join" to connect this node to swarm and try again.',
    );
  }
  if (command.kind === "UpdateCluster") {
    return [{
      type: "ClusterSpecUpdated",
      v: 1,
      data: { id: cluster.id, spec: command.spec },
      meta: userMeta(ctx, "swarm update", command.version ?? cluster.version),
    }];
  }
  if (command.kind === "RotateUnlockKey") {
    return [{
      type: "ClusterUnlockKeyRotated",
      v: 1,
      data: { id: cluster.id, unlockKey: command.unlockKey },
      meta: userMeta(
        ctx,
        command.unlockKey === "" ? "autolock turned off" : "new manager unlock key",
        cluster.version,
      ),
    }];
  }
  if (command.kind === "RotateRootCA") {
    const current = cluster.rootCA.rotation?.digest;
    if (command.finishes !== undefined) {
      if (current !== command.finishes || command.rootCA.digest !== command.finishes) {
        throw new EventRejected(
          "version_conflict",
          `cannot finish the root rotation to ${command.finishes.slice(0, 12)}: ${
            current ? `the rotation under way is to ${current.slice(0, 12)}` : "none is under way"
          }`,
        );
      }
    } else if (command.rootCA.rotation === undefined) {
      throw new EventRejected("invalid_argument", "a root rotation needs the new root (rotation)");
    }
    const meta = userMeta(
      ctx,
      command.finishes ? "every node holds a certificate of the new root" : "swarm ca --rotate",
      cluster.version,
    );
    const events: ShoalEvent[] = [{
      type: "ClusterRootCARotated",
      v: 1,
      data: { id: cluster.id, rootCA: command.rootCA },
      meta,
    }];
    for (const role of ["worker", "manager"] as const) {
      const token = command.joinTokens?.[role];
      if (token === undefined) continue;
      events.push({
        type: "ClusterJoinTokenRotated",
        v: 1,
        data: { id: cluster.id, role, token },
        meta: userMeta(ctx, `new ${role} join token pinning the new root CA`, cluster.version),
      });
    }
    return events;
  }
  return [{
    type: "ClusterJoinTokenRotated",
    v: 1,
    data: { id: cluster.id, role: command.role, token: command.token },
    meta: userMeta(ctx, `rotate ${command.role} join token`, cluster.version),
  }];
}
