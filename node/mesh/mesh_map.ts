/**
 * The mesh map: the part of the cluster state every node's mesh needs to route and resolve
 * (nodes and their addresses, networks, services with their ports and virtual IPs, and the tasks
 * that serve right now with their addresses). A manager computes it from its {@linkcode
 * ClusterState} with {@linkcode meshMapFromState}; a worker, which only sees its own assignments,
 * receives it from the dispatcher as a `mesh` message (`node/agent_protocol.ts`), validated with
 * {@linkcode MeshMapSchema}.
 *
 * A task **serves** when its observed state is running and its desired state is still running
 * (a task being stopped leaves the load balancer at once, as Docker's) on a node that is ready.
 * A task with a health check is reported running only after its first healthy probe, and an
 * unhealthy task is stopped (`actors/agent/health.ts`), so "running" already means "healthy".
 *
 * Addresses come from the allocator's IPAM (`Endpoint.virtualIPs`, `TaskRecord.addresses`);
 * addresses may be written with a prefix length (`127.1.0.5/16`), which is dropped here.
 *
 * @module
 */
import { z } from "zod";
import { TaskState } from "../../events/schema.ts";
import type { ClusterState, NetworkRecord, ServiceRecord, TaskRecord } from "../../actors/state.ts";

/** A node, as the mesh sees it. */
export interface MeshNode {
  readonly id: string;
  /** The node's address (host only), where its mesh endpoint listens. */
  readonly addr: string;
}

/** A network and its subnet. */
export interface MeshNetwork {
  readonly id: string;
  readonly name: string;
  /** CIDR, or "" when none was allocated. */
  readonly subnet: string;
}

/** A published or target port of a service. */
export interface MeshPort {
  readonly protocol: "tcp" | "udp" | "sctp";
  readonly targetPort: number;
  /** 0 when not published. */
  readonly publishedPort: number;
  readonly publishMode: "ingress" | "host";
}

/** A service, as the mesh routes to it. */
export interface MeshService {
  readonly id: string;
  readonly name: string;
  /** `com.docker.stack.namespace`, or "". */
  readonly stack: string;
  readonly mode: "vip" | "dnsrr";
  readonly ports: readonly MeshPort[];
  /** Its virtual IP on each network it is on. */
  readonly vips: readonly { readonly networkId: string; readonly addr: string }[];
  /** The networks it is on, with its extra names there. */
  readonly networks: readonly { readonly id: string; readonly aliases: readonly string[] }[];
}

/** A task that is assigned and not stopped: it serves, or will once it runs. */
export interface MeshTask {
  readonly id: string;
  readonly serviceId: string;
  readonly slot: number;
  readonly nodeId: string;
  /** Whether connections and `tasks.` answers may go to it now (see the module documentation). */
  readonly serving: boolean;
  /** Its address on each network ("" network id: an address not matched to a network). */
  readonly addresses: readonly { readonly networkId: string; readonly addr: string }[];
}

/** Everything a node's mesh needs. */
export interface MeshMap {
  /** Log index the map was computed at. */
  readonly index: number;
  readonly nodes: readonly MeshNode[];
  readonly networks: readonly MeshNetwork[];
  readonly services: readonly MeshService[];
  readonly tasks: readonly MeshTask[];
}

/** An empty map (before the first one arrives). */
export const EMPTY_MESH_MAP: MeshMap = {
  index: 0,
  nodes: [],
  networks: [],
  services: [],
  tasks: [],
};

const Addr = z.string().max(64);
const NetAddr = z.object({ networkId: z.string().max(64), addr: Addr });

/** The schema a worker validates a received map with. */
export const MeshMapSchema: z.ZodType<MeshMap> = z.object({
  index: z.number().int().nonnegative(),
  nodes: z.array(z.object({ id: z.string().max(64), addr: z.string().max(300) })),
  networks: z.array(
    z.object({ id: z.string().max(64), name: z.string().max(64), subnet: z.string().max(64) }),
  ),
  services: z.array(z.object({
    id: z.string().max(64),
    name: z.string().max(64),
    stack: z.string().max(64),
    mode: z.enum(["vip", "dnsrr"]),
    ports: z.array(z.object({
      protocol: z.enum(["tcp", "udp", "sctp"]),
      targetPort: z.number().int().min(1).max(65535),
      publishedPort: z.number().int().min(0).max(65535),
      publishMode: z.enum(["ingress", "host"]),
    })),
    vips: z.array(NetAddr),
    networks: z.array(z.object({ id: z.string().max(64), aliases: z.array(z.string().max(255)) })),
  })),
  tasks: z.array(z.object({
    id: z.string().max(64),
    serviceId: z.string().max(64),
    slot: z.number().int().nonnegative(),
    nodeId: z.string().max(64),
    serving: z.boolean(),
    addresses: z.array(NetAddr),
  })),
});

/** The label that names a service's stack. */
export const STACK_LABEL = "com.docker.stack.namespace";

/** `127.1.0.5/16` → `127.1.0.5`. */
export function bareAddr(addr: string): string {
  const slash = addr.indexOf("/");
  return slash < 0 ? addr : addr.slice(0, slash);
}

/** An IPv4 address as a 32-bit unsigned number, or undefined if it is not one. */
export function ipv4ToNumber(addr: string): number | undefined {
  const parts = addr.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

/** Whether `addr` (IPv4) lies in `cidr`. */
export function inSubnet(addr: string, cidr: string): boolean {
  const [base, lenText] = cidr.split("/");
  const a = ipv4ToNumber(bareAddr(addr));
  const b = ipv4ToNumber(base);
  const len = Number(lenText ?? "32");
  if (a === undefined || b === undefined || !(len >= 0 && len <= 32)) return false;
  if (len === 0) return true;
  const shift = 32 - len;
  return Math.floor(a / 2 ** shift) === Math.floor(b / 2 ** shift);
}

/** The subnet a network has: what the allocator gave it, else what its spec asked for. */
function subnetOf(net: NetworkRecord): string {
  return net.subnet || net.spec.subnet;
}

/** Whether a task serves now: see the module documentation. */
export function isServing(task: TaskRecord, nodeReady: (id: string) => boolean): boolean {
  return task.status.state === TaskState.running && task.desiredState <= TaskState.running &&
    task.nodeId !== "" && nodeReady(task.nodeId);
}

/**
 * Whether a task is in the map at all: assigned to a node, not yet ended, and meant to run. Tasks
 * that do not serve yet are there so that the mesh knows which networks they are on when they
 * connect or ask names while starting.
 */
export function isActive(task: TaskRecord): boolean {
  return task.nodeId !== "" && task.status.state >= TaskState.assigned &&
    task.status.state <= TaskState.running && task.desiredState <= TaskState.running;
}

/**
 * The task's addresses, each with its network: `TaskRecord.networks` as the allocator wrote it;
 * for entries written with bare `addresses` only, each is matched to the network whose subnet
 * holds it, else to the service's networks in order.
 */
export function taskAddresses(
  task: TaskRecord,
  serviceNetworks: readonly string[],
  networks: readonly MeshNetwork[],
): { networkId: string; addr: string }[] {
  const attached = task.networks as TaskRecord["networks"] | undefined; // absent before IPAM
  if (attached !== undefined && attached.length > 0) {
    return attached.map((a) => ({ networkId: a.networkId, addr: bareAddr(a.addr) }));
  }
  return task.addresses.filter((a) => a !== "").map((entry, i) => {
    const addr = bareAddr(entry);
    const bySubnet = networks.find((n) => n.subnet !== "" && inSubnet(addr, n.subnet));
    return { networkId: bySubnet?.id ?? serviceNetworks[i] ?? "", addr };
  });
}

/** The mesh's view of one service. */
export function meshService(service: ServiceRecord): MeshService {
  const endpoint = service.endpoint;
  const ports = (endpoint?.ports ?? service.spec.endpoint.ports).map((p) => ({
    protocol: p.protocol,
    targetPort: p.targetPort,
    publishedPort: p.publishedPort,
    publishMode: p.publishMode,
  }));
  return {
    id: service.id,
    name: service.spec.name,
    stack: service.spec.labels[STACK_LABEL] ?? "",
    mode: service.spec.endpoint.mode,
    ports,
    vips: (endpoint?.virtualIPs ?? []).map((v) => ({
      networkId: v.networkId,
      addr: bareAddr(v.addr),
    })),
    networks: service.spec.task.networks.map((n) => ({ id: n.target, aliases: [...n.aliases] })),
  };
}

/** The mesh map of a state. Pure; cost linear in services plus active tasks. */
export function meshMapFromState(state: ClusterState): MeshMap {
  const nodes: MeshNode[] = [];
  const ready = new Set<string>();
  for (const node of state.nodes.values()) {
    if (node.status.state === "ready") ready.add(node.id);
    nodes.push({ id: node.id, addr: node.status.addr });
  }
  const networks: MeshNetwork[] = [];
  for (const net of state.networks.values()) {
    networks.push({ id: net.id, name: net.spec.name, subnet: subnetOf(net) });
  }
  const services: MeshService[] = [];
  const tasks: MeshTask[] = [];
  const nodeReady = (id: string) => ready.has(id);
  for (const service of state.services.values()) {
    const ms = meshService(service);
    // A service with no published port and no network is invisible to the mesh and the resolver:
    // leaving it (and its tasks) out keeps the map, which every node is sent whole on each
    // change, small when most services do not use the mesh.
    if (ms.ports.length === 0 && ms.networks.length === 0) continue;
    services.push(ms);
    const serviceNetworks = ms.networks.map((n) => n.id);
    for (const task of state.tasksOf(service.id)) {
      if (!isActive(task)) continue;
      tasks.push({
        id: task.id,
        serviceId: task.serviceId,
        slot: task.slot,
        nodeId: task.nodeId,
        serving: isServing(task, nodeReady),
        addresses: taskAddresses(task, serviceNetworks, networks),
      });
    }
  }
  return { index: state.index, nodes, networks, services, tasks };
}
