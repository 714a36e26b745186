/**
 * The allocator: gives networks their subnets, services their published ports and virtual IPs,
 * and tasks their addresses, before tasks can be scheduled (SwarmKit's pipeline: orchestrator →
 * allocator → scheduler). Every allocation is a fact in the log (DESIGN.md contract 8), so a new
 * leader never hands out a port or an address twice.
 *
 * ## Networking data model (what the mesh, DNS and agents read from `ClusterState`)
 *
 * - `NetworkRecord.subnet` / `.gateway`: the network's CIDR inside 127.0.0.0/8 and its reserved
 *   first address (`NetworkAllocated`). Why loopback: see `ipam.ts`. An explicit `--subnet` is
 *   honoured (checked at `network create`), otherwise the lowest free /16 from 127.1.0.0/16 up.
 * - `ServiceRecord.endpoint.virtualIPs`: `{networkId, addr}` per network the service is on, its
 *   networks in spec order then the ingress network if it publishes ports in ingress mode; none in
 *   `dnsrr` mode (`ServiceEndpointAllocated`). Docker shows them as `Endpoint.VirtualIPs`.
 * - `TaskRecord.networks`: `{networkId, addr}` per network, in the same order (`TaskAllocated`,
 *   when the task leaves `new`); `TaskRecord.addresses` are the same addresses, bare.
 *   `addresses[0]` is the task's **main address**: the one a process task is told to bind
 *   (`SHOAL_TASK_ADDR`), so the one to connect to whichever network a connection comes from.
 * - `ClusterState.addressOwners`: every address in use → the id of its task or service.
 *
 * Addresses are bare IPv4 (`127.1.0.3`); each network's prefix is in its `subnet`. Addresses are
 * unique across the swarm (subnets never overlap). A task's addresses are released when it ends
 * (reaches a terminal state, by the event that says so) or is removed; a service's VIPs when its
 * endpoint no longer needs them or it is removed; a network's subnet when it is removed. The fold
 * refuses any allocation of an address someone else holds (`checkAddresses`), so the guarantee
 * does not rest on this projection alone.
 *
 * Other rules:
 * - Ingress published ports are unique in the swarm; a port left at 0 gets the lowest free one in
 *   30000-32767, as SwarmKit's port allocator does. (Conflicts between explicitly published ports
 *   are refused when the service is created or updated.)
 * - The ingress network (Docker's `ingress`) is created by the allocator, as a fact in the log,
 *   the first time a service publishes a port in ingress mode.
 * - A new task is allocated (moved to pending) once its service's endpoint is and every network
 *   it joins has a subnet; it carries the service's ports and its own addresses.
 *
 * Pure: the state in, events out, at most one batch.
 *
 * @module
 */
import {
  MAX_BATCH_EVENTS,
  type NetworkAddress,
  type NetworkSpec,
  type PortConfig,
  type ServiceSpec,
  type ShoalEvent,
  type TaskSpec,
  TaskState,
} from "../../../events/schema.ts";
import type { ClusterState, ServiceRecord } from "../../state.ts";
import type { Projection, ProjectionContext } from "../../manager.ts";
import { equalData } from "../../equal.ts";
import { ingressNetwork, usesIngress } from "../../entities/network.ts";
import {
  formatCidr,
  formatIPv4,
  FreeAddresses,
  gatewayOf,
  nextFreeSubnet,
  parseCidr,
  type Subnet,
  subnetProblem,
} from "./ipam.ts";

/** First and last port handed out for ingress ports published as 0. */
export const DYNAMIC_PORT_RANGE = [30000, 32767] as const;

const BY = "allocator";

/** The allocator projection. */
export const allocator: Projection = {
  name: BY,
  reconcile: (state, ctx) => allocate(state, ctx),
};

/** Ingress ports taken in the swarm: published in a spec, or already allocated. */
function ingressPortsInUse(state: ClusterState): Map<string, string> {
  const used = new Map<string, string>();
  for (const svc of state.services.values()) {
    for (const p of [...svc.spec.endpoint.ports, ...(svc.endpoint?.ports ?? [])]) {
      if (p.publishMode === "ingress" && p.publishedPort > 0) {
        used.set(`${p.protocol}/${p.publishedPort}`, svc.id);
      }
    }
  }
  return used;
}

/**
 * The ports a service gets: explicit ones as asked, dynamic ones kept if it had them, else the
 * lowest free in the range. `used` (port → service id) is updated. Undefined: no port is free.
 */
export function allocatePorts(
  service: Pick<ServiceRecord, "id" | "spec" | "endpoint">,
  used: Map<string, string>,
): PortConfig[] | undefined {
  const previous = service.endpoint?.ports ?? [];
  const out: PortConfig[] = [];
  for (const want of service.spec.endpoint.ports) {
    if (want.publishMode !== "ingress" || want.publishedPort > 0) {
      out.push(want);
      continue;
    }
    const key = (port: number) => `${want.protocol}/${port}`;
    // Keep the port this target already had, so an unrelated update does not move it.
    const kept = previous.find((p) =>
      p.targetPort === want.targetPort && p.protocol === want.protocol &&
      p.publishMode === "ingress" && used.get(key(p.publishedPort)) === service.id
    );
    let port = kept?.publishedPort ?? 0;
    for (let p = DYNAMIC_PORT_RANGE[0]; port === 0 && p <= DYNAMIC_PORT_RANGE[1]; p++) {
      if (!used.has(key(p))) port = p;
    }
    if (port === 0) return undefined;
    used.set(key(port), service.id);
    out.push({ ...want, publishedPort: port });
  }
  return out;
}

/**
 * What this pass hands out, over what the state holds: subnets of networks allocated in this
 * pass, and addresses picked so far (a batch never gives one address twice).
 */
class AddressPlan {
  readonly #state: ClusterState;
  readonly #subnets = new Map<string, Subnet>();
  readonly #picked = new Set<string>();
  readonly #cursors = new Map<string, FreeAddresses>();

  constructor(state: ClusterState) {
    this.#state = state;
    for (const n of state.networks.values()) {
      const s = n.subnet === undefined ? undefined : parseCidr(n.subnet);
      if (s !== undefined) this.#subnets.set(n.id, s);
    }
  }

  /** A network's subnet, allocated before or in this pass. */
  subnet(networkId: string): Subnet | undefined {
    return this.#subnets.get(networkId);
  }

  /** Every subnet allocated so far. */
  subnets(): Subnet[] {
    return [...this.#subnets.values()];
  }

  /** Records a subnet given in this pass. */
  setSubnet(networkId: string, subnet: Subnet): void {
    this.#subnets.set(networkId, subnet);
  }

  /** The lowest free address of a network with a subnet, or undefined when it is full. */
  pick(networkId: string): string | undefined {
    let cursor = this.#cursors.get(networkId);
    if (cursor === undefined) {
      const subnet = this.#subnets.get(networkId);
      if (subnet === undefined) return undefined;
      cursor = new FreeAddresses(
        subnet,
        (addr) => this.#picked.has(addr) || this.#state.addressOwners.has(addr),
      );
      this.#cursors.set(networkId, cursor);
    }
    const addr = cursor.next();
    if (addr !== undefined) this.#picked.add(addr);
    return addr;
  }
}

/** The spec of the ingress network the allocator creates (Docker's defaults for it). */
function ingressSpec(): NetworkSpec {
  return {
    name: INGRESS_NAME,
    labels: {},
    driver: "overlay",
    scope: "swarm",
    attachable: false,
    internal: false,
    ingress: true,
    subnet: "",
    options: {},
  };
}

/** The name of the ingress network the allocator creates. */
export const INGRESS_NAME = "ingress";

/**
 * Subnets for networks that have none: explicit ones first (as asked, when still free), then the
 * lowest free /16 for the rest, avoiding what other networks asked for.
 */
function allocateNetworks(
  state: ClusterState,
  plan: AddressPlan,
  pending: readonly { id: string; spec: NetworkSpec; version: number }[],
  events: ShoalEvent[],
): void {
  const requested: Subnet[] = [];
  for (const n of pending) {
    const s = n.spec.subnet === "" ? undefined : parseCidr(n.spec.subnet);
    if (s !== undefined) requested.push(s);
  }
  const explicitFirst = [...pending].sort((a, b) =>
    Number(a.spec.subnet === "") - Number(b.spec.subnet === "")
  );
  for (const n of explicitFirst) {
    if (events.length >= MAX_BATCH_EVENTS) return;
    const taken = plan.subnets();
    let subnet: Subnet | undefined;
    let reason: string;
    if (n.spec.subnet !== "" && subnetProblem(n.spec.subnet, taken.map(formatCidr)) === undefined) {
      subnet = parseCidr(n.spec.subnet)!;
      reason = `subnet ${n.spec.subnet} as asked`;
    } else {
      // Only a network from an old log can ask for a subnet Shoal cannot give (network create
      // refuses them now): it gets a free one instead.
      subnet = nextFreeSubnet([...taken, ...requested]);
      if (subnet === undefined) continue; // loopback is full: its tasks wait in new
      reason = n.spec.subnet === ""
        ? `subnet ${formatCidr(subnet)}`
        : `subnet ${formatCidr(subnet)} (${n.spec.subnet} cannot be used: ${
          subnetProblem(n.spec.subnet, taken.map(formatCidr))
        })`;
    }
    plan.setSubnet(n.id, subnet);
    events.push({
      type: "NetworkAllocated",
      v: 1,
      data: { id: n.id, subnet: formatCidr(subnet), gateway: formatIPv4(gatewayOf(subnet)) },
      meta: state.networks.has(n.id)
        ? { by: BY, reason, cause: n.version, expect: n.version }
        : { by: BY, reason },
    });
  }
}

/** The networks a service's endpoint spans: its own, in spec order, then ingress if it publishes. */
function serviceNetworks(
  spec: ServiceSpec,
  taskNetworks: TaskSpec["networks"],
  ingressId: string | undefined,
): string[] {
  const ids: string[] = [];
  for (const n of taskNetworks) if (!ids.includes(n.target)) ids.push(n.target);
  if (ingressId !== undefined && usesIngress(spec) && !ids.includes(ingressId)) ids.push(ingressId);
  return ids;
}

/** The allocation events due now (at most one batch). */
export function allocate(state: ClusterState, ctx: ProjectionContext): ShoalEvent[] {
  const events: ShoalEvent[] = [];
  const plan = new AddressPlan(state);

  // Networks: the ingress network when a service first needs it, then subnets.
  const unallocated: { id: string; spec: NetworkSpec; version: number }[] = [];
  for (const n of state.networks.values()) if (n.subnet === undefined) unallocated.push(n);
  let ingressId = ingressNetwork(state)?.id;
  if (
    ingressId === undefined && !state.networkNames.has(INGRESS_NAME) &&
    [...state.services.values()].some((s) => usesIngress(s.spec))
  ) {
    ingressId = ctx.newId();
    const spec = ingressSpec();
    events.push({
      type: "NetworkCreated",
      v: 1,
      data: { id: ingressId, spec },
      meta: {
        by: BY,
        reason: "the routing mesh's network, for services that publish ports",
        cause: ctx.cause,
      },
    });
    unallocated.push({ id: ingressId, spec, version: 0 });
  }
  allocateNetworks(state, plan, unallocated, events);

  // Services: published ports and virtual IPs.
  const ready = new Set<string>();
  const used = ingressPortsInUse(state);
  for (const service of state.services.values()) {
    if (events.length >= MAX_BATCH_EVENTS) return events;
    const ports = allocatePorts(service, used);
    if (ports === undefined) continue; // no free port: the tasks stay new until one frees up
    const virtualIPs = allocateVirtualIPs(service, plan, ingressId);
    if (virtualIPs === undefined) continue; // a network without a subnet: wait for it
    const endpoint = { ports, virtualIPs };
    if (
      service.endpoint === undefined ? ports.length === 0 && virtualIPs.length === 0 : equalData(
        { ports: service.endpoint.ports, virtualIPs: service.endpoint.virtualIPs ?? [] },
        endpoint,
      )
    ) {
      ready.add(service.id);
      continue;
    }
    const said = [
      ...ports.map((p) => `published ${p.publishedPort}->${p.targetPort}/${p.protocol}`),
      ...virtualIPs.map((v) =>
        `VIP ${v.addr} on ${state.networks.get(v.networkId)?.spec.name ?? v.networkId}`
      ),
    ];
    events.push({
      type: "ServiceEndpointAllocated",
      v: 1,
      data: { id: service.id, endpoint },
      meta: {
        by: BY,
        reason: said.length > 0 ? said.join(", ") : "no published ports",
        cause: service.version,
        expect: service.version,
      },
    });
  }

  // Tasks: once their service is ready, an address on each of their networks.
  for (const id of state.tasksByState.get(TaskState.new)) {
    if (events.length >= MAX_BATCH_EVENTS) break;
    const task = state.tasks.get(id)!;
    // Jobs' tasks are desired `complete`: they run too.
    if (task.desiredState > TaskState.complete || !ready.has(task.serviceId)) continue;
    const service = state.services.get(task.serviceId)!;
    const networkIds = serviceNetworks(service.spec, state.taskSpec(task).networks, ingressId);
    if (networkIds.some((n) => plan.subnet(n) === undefined)) continue;
    const networks: NetworkAddress[] = [];
    for (const networkId of networkIds) {
      const addr = plan.pick(networkId);
      if (addr === undefined) break; // the network is full: the task waits in new
      networks.push({ networkId, addr });
    }
    if (networks.length < networkIds.length) continue;
    events.push({
      type: "TaskAllocated",
      v: 1,
      data: {
        id,
        ports: [...(service.endpoint?.ports ?? [])],
        addresses: networks.map((n) => n.addr),
        networks,
      },
      meta: {
        by: BY,
        reason: networks.length > 0
          ? `resources allocated: ${networks.map((n) => n.addr).join(", ")}`
          : "resources allocated",
        cause: task.version,
        expect: task.version,
      },
    });
  }
  return events;
}

/**
 * A service's virtual IPs: the one it had on each of its networks, else a free one; none in
 * `dnsrr` mode. Undefined when one of its networks has no subnet yet or is full.
 */
function allocateVirtualIPs(
  service: ServiceRecord,
  plan: AddressPlan,
  ingressId: string | undefined,
): NetworkAddress[] | undefined {
  if (service.spec.endpoint.mode !== "vip") return [];
  const out: NetworkAddress[] = [];
  for (const networkId of serviceNetworks(service.spec, service.spec.task.networks, ingressId)) {
    if (plan.subnet(networkId) === undefined) return undefined;
    const kept = service.endpoint?.virtualIPs?.find((v) => v.networkId === networkId);
    const addr = kept?.addr ?? plan.pick(networkId);
    if (addr === undefined) return undefined;
    out.push({ networkId, addr });
  }
  return out;
}
