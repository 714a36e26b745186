/**
 * The network entity: created and removed; a network a service uses cannot be removed.
 *
 * @module
 */
import type { EventOf, ShoalEvent } from "../../events/schema.ts";
import type { NetworkCommand } from "../commands.ts";
import { resolve } from "../lookup.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import type { ApplyContext, ClusterState } from "../state.ts";
import { EventRejected } from "./rejection.ts";

/** Folds one network event into the state, or throws `EventRejected`. */
export function applyNetworkEvent(
  state: ClusterState,
  event: EventOf<"NetworkCreated" | "NetworkRemoved">,
  ctx: ApplyContext,
): void {
  const { data } = event;
  if (event.type === "NetworkCreated") {
    if (state.networks.has(data.id)) {
      throw new EventRejected("already_exists", `Cannot create network ${data.id}: id in use`);
    }
    const name = event.data.spec.name;
    if (state.networkNames.has(name)) {
      throw new EventRejected(
        "name_conflict",
        `name conflicts with an existing object: network ${name} already exists`,
      );
    }
    state.networks.put({ ...ctx.created(data.id), spec: event.data.spec });
    return;
  }
  const network = state.networks.get(data.id);
  if (network === undefined) {
    throw new EventRejected("not_found", `Cannot remove network ${data.id}: no such network`);
  }
  ctx.checkVersion("network", state.networks, network, event.meta.expect);
  const users: string[] = [];
  for (const service of state.services.values()) {
    if (service.spec.task.networks.some((n) => n.target === network.id)) {
      users.push(service.spec.name);
    }
  }
  if (users.length > 0) {
    throw new EventRejected(
      "in_use",
      `network ${network.spec.name} is in use by the following service(s): ${users.join(", ")}`,
    );
  }
  state.networks.delete(network.id);
}

/** Decides the events of a network command, or throws `EventRejected`. */
export function decideNetworkCommand(
  state: ClusterState,
  command: NetworkCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  if (command.kind === "CreateNetwork") {
    if (state.networkNames.has(command.spec.name)) {
      throw new EventRejected(
        "name_conflict",
        `network with name ${command.spec.name} already exists`,
      );
    }
    return [{
      type: "NetworkCreated",
      v: 1,
      data: { id: ctx.newId(), spec: command.spec },
      meta: userMeta(ctx, "network create"),
    }];
  }
  const net = resolve("network", state.networks, state.networkNames, command.ref);
  return [{
    type: "NetworkRemoved",
    v: 1,
    data: { id: net.id },
    meta: userMeta(ctx, "network rm", net.version),
  }];
}
