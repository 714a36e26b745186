/**
 * The network entity: created, given its subnet by the allocator, and removed; a network a
 * service uses cannot be removed. Subnets live in 127.0.0.0/8 (why: see
 * `projections/allocator/ipam.ts`); an explicit `--subnet` is checked at `network create`, and
 * the fold refuses an allocation that overlaps another network's.
 *
 * @module
 */
import type { EventOf, NetworkAddress, ServiceSpec, ShoalEvent } from "../../events/schema.ts";
import type { NetworkCommand } from "../commands.ts";
import { resolve } from "../lookup.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import type { ApplyContext, ClusterState, NetworkRecord } from "../state.ts";
import { EventRejected } from "./rejection.ts";
import {
  contains,
  formatIPv4,
  gatewayOf,
  isAssignable,
  parseCidr,
  parseIPv4,
  subnetProblem,
} from "../projections/allocator/ipam.ts";

/** Folds one network event into the state, or throws `EventRejected`. */
export function applyNetworkEvent(
  state: ClusterState,
  event: EventOf<"NetworkCreated" | "NetworkAllocated" | "NetworkRemoved">,
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
    const verb = event.type === "NetworkAllocated" ? "allocate" : "remove";
    throw new EventRejected("not_found", `Cannot ${verb} network ${data.id}: no such network`);
  }
  ctx.checkVersion("network", state.networks, network, event.meta.expect);
  if (event.type === "NetworkAllocated") {
    const { subnet, gateway } = event.data;
    if (network.subnet !== undefined && network.subnet !== subnet) {
      throw new EventRejected(
        "invalid_transition",
        `Cannot allocate network ${network.spec.name}: it already has subnet ${network.subnet}`,
      );
    }
    const others: string[] = [];
    for (const n of state.networks.values()) {
      if (n.id !== network.id && n.subnet !== undefined) others.push(n.subnet);
    }
    const problem = subnetProblem(subnet, others);
    if (problem !== undefined) {
      throw new EventRejected(
        "invalid_argument",
        `Cannot allocate network ${network.spec.name}: ${problem}`,
      );
    }
    const expected = formatIPv4(gatewayOf(parseCidr(subnet)!));
    if (gateway !== expected) {
      throw new EventRejected(
        "invalid_argument",
        `Cannot allocate network ${network.spec.name}: gateway ${gateway} is not ${expected}, the first address of ${subnet}`,
      );
    }
    state.networks.put(ctx.touched({ ...network, subnet, gateway }));
    return;
  }
  const users = networkUsers(state, network.id, network.spec.ingress);
  if (users.length > 0) {
    throw new EventRejected(
      "in_use",
      network.spec.ingress
        ? `ingress network ${network.spec.name} cannot be removed because service(s) ${
          users.join(", ")
        } depend on it (they publish ports in ingress mode)`
        : `network ${network.spec.name} is in use by the following service(s): ${users.join(", ")}`,
    );
  }
  state.networks.delete(network.id);
}

/** Whether a service publishes ports through the routing mesh, and so joins the ingress network. */
export function usesIngress(spec: ServiceSpec): boolean {
  return spec.endpoint.ports.some((p) => p.publishMode === "ingress");
}

/** The names of the services on a network (for the ingress network: those that publish). */
export function networkUsers(state: ClusterState, networkId: string, ingress: boolean): string[] {
  const users: string[] = [];
  for (const service of state.services.values()) {
    if (
      service.spec.task.networks.some((n) => n.target === networkId) ||
      (ingress && usesIngress(service.spec))
    ) {
      users.push(service.spec.name);
    }
  }
  return users;
}

/**
 * Checks addresses given to a task or a service (`holder`, for messages `what`): each on an
 * allocated network, inside its subnet, not reserved, at most one per network, and held by no one
 * else. This is what makes "no address is handed out twice" a property of the log itself.
 */
export function checkAddresses(
  state: ClusterState,
  holder: string,
  what: string,
  addresses: readonly NetworkAddress[],
): void {
  const networks = new Set<string>();
  for (const { networkId, addr } of addresses) {
    const network = state.networks.get(networkId);
    const subnet = network?.subnet === undefined ? undefined : parseCidr(network.subnet);
    if (network === undefined || subnet === undefined) {
      throw new EventRejected(
        "invalid_reference",
        `Cannot give ${what} address ${addr} on network ${networkId}: ${
          network === undefined ? "no such network" : "the network has no subnet yet"
        }`,
      );
    }
    const ip = parseIPv4(addr);
    if (ip === undefined || !contains(subnet, ip) || !isAssignable(subnet, ip)) {
      throw new EventRejected(
        "invalid_argument",
        `Cannot give ${what} address ${addr} on network ${network.spec.name}: it is not an assignable address of ${network.subnet}`,
      );
    }
    if (networks.has(networkId)) {
      throw new EventRejected(
        "invalid_argument",
        `Cannot give ${what} two addresses on network ${network.spec.name}`,
      );
    }
    networks.add(networkId);
    const owner = state.addressOwners.get(addr);
    if (owner !== undefined && owner !== holder) {
      throw new EventRejected(
        "in_use",
        `Cannot give ${what} address ${addr} on network ${network.spec.name}: ${owner} holds it`,
      );
    }
  }
}

/** The ingress network (the routing mesh's), if there is one. */
export function ingressNetwork(state: ClusterState): NetworkRecord | undefined {
  for (const n of state.networks.values()) if (n.spec.ingress) return n;
  return undefined;
}

/** Decides the events of a network command, or throws `EventRejected`. */
export function decideNetworkCommand(
  state: ClusterState,
  command: NetworkCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  if (command.kind === "CreateNetwork") {
    const spec = command.spec;
    if (state.networkNames.has(spec.name)) {
      throw new EventRejected(
        "name_conflict",
        `network with name ${spec.name} already exists`,
      );
    }
    const ingress = ingressNetwork(state);
    if (spec.ingress && ingress !== undefined) {
      throw new EventRejected(
        "already_exists",
        `an ingress network already exists (${ingress.spec.name}, ${ingress.id}): a swarm has only one`,
      );
    }
    if (spec.subnet !== "") {
      const others: string[] = [];
      for (const n of state.networks.values()) {
        const taken = n.subnet ?? n.spec.subnet;
        if (taken !== "") others.push(taken);
      }
      const problem = subnetProblem(spec.subnet, others);
      if (problem !== undefined) throw new EventRejected("invalid_argument", problem);
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
