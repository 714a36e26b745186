/**
 * Lookups over a {@linkcode MeshMap}, built once per map: services by id and name, serving tasks
 * by service and by address, nodes by id; and the two questions the mesh asks of them, "which
 * networks does this task share with that service" (isolation) and "what does this name resolve
 * to for this asker" (DNS).
 *
 * @module
 */
import type { MeshMap, MeshNode, MeshService, MeshTask } from "./mesh_map.ts";

/** What a name resolves to. */
export interface NameAnswer {
  /** The addresses, in order (a VIP, or the tasks' addresses). */
  readonly addrs: string[];
  readonly service: MeshService;
}

/** Indexes of one map. */
export class MeshIndex {
  readonly map: MeshMap;
  readonly servicesById: Map<string, MeshService> = new Map();
  readonly servicesByName: Map<string, MeshService> = new Map();
  /** Serving tasks only. */
  readonly tasksByService: Map<string, MeshTask[]> = new Map();
  readonly tasksByAddr: Map<string, MeshTask> = new Map();
  readonly tasksById: Map<string, MeshTask> = new Map();
  readonly nodesById: Map<string, MeshNode> = new Map();

  /** Indexes `map`. */
  constructor(map: MeshMap) {
    this.map = map;
    for (const s of map.services) {
      this.servicesById.set(s.id, s);
      this.servicesByName.set(s.name.toLowerCase(), s);
    }
    for (const n of map.nodes) this.nodesById.set(n.id, n);
    for (const t of map.tasks) {
      this.tasksById.set(t.id, t);
      for (const a of t.addresses) this.tasksByAddr.set(a.addr, t);
      if (!t.serving) continue;
      const list = this.tasksByService.get(t.serviceId);
      if (list) list.push(t);
      else this.tasksByService.set(t.serviceId, [t]);
    }
  }

  /** The serving tasks of a service. */
  tasksOf(serviceId: string): readonly MeshTask[] {
    return this.tasksByService.get(serviceId) ?? [];
  }

  /** The networks a task is on (those of its service, and those its addresses are on). */
  networksOfTask(task: MeshTask): Set<string> {
    const out = new Set<string>();
    for (const n of this.servicesById.get(task.serviceId)?.networks ?? []) out.add(n.id);
    for (const a of task.addresses) if (a.networkId) out.add(a.networkId);
    return out;
  }

  /** Whether `task` may reach `service` on `networkId` (or on any network when undefined). */
  mayReach(task: MeshTask, service: MeshService, networkId?: string): boolean {
    if (task.serviceId === service.id) return true;
    const mine = this.networksOfTask(task);
    if (networkId !== undefined) return mine.has(networkId);
    return service.networks.some((n) => mine.has(n.id));
  }

  /**
   * What `name` means to `asker` (a task, or undefined for the host, which sees everything):
   * `SERVICE`, the service's alias on a shared network, `NAME` within the asker's stack (for a
   * service named `STACK_NAME`), and `tasks.` any of these. A VIP service answers its VIP on
   * the shared network; a `dnsrr` service, or a `tasks.` name, the serving tasks' addresses there.
   */
  resolve(name: string, asker: MeshTask | undefined): NameAnswer | undefined {
    let n = name.toLowerCase().replace(/\.$/, "");
    let tasksOnly = false;
    if (n.startsWith("tasks.")) {
      tasksOnly = true;
      n = n.slice("tasks.".length);
    }
    const askerService = asker ? this.servicesById.get(asker.serviceId) : undefined;
    const askerNets = asker ? this.networksOfTask(asker) : undefined;
    const candidates: MeshService[] = [];
    const byName = this.servicesByName.get(n);
    if (byName) candidates.push(byName);
    // STACK_SERVICE: "web" in stack "shop" is the service "shop_web".
    if (askerService?.stack) {
      const s = this.servicesByName.get(`${askerService.stack}_${n}`.toLowerCase());
      if (s) candidates.push(s);
    } else if (asker === undefined) {
      for (const s of this.map.services) {
        if (s.stack && s.name.toLowerCase() === `${s.stack}_${n}`.toLowerCase()) candidates.push(s);
      }
    }
    for (const s of this.map.services) {
      for (const net of s.networks) {
        if (net.aliases.some((a) => a.toLowerCase() === n)) {
          if (askerNets === undefined || askerNets.has(net.id)) candidates.push(s);
        }
      }
    }
    for (const service of candidates) {
      const shared = askerNets === undefined
        ? service.networks.map((x) => x.id)
        : service.networks.map((x) => x.id).filter((id) => askerNets.has(id));
      if (asker !== undefined && asker.serviceId !== service.id && shared.length === 0) continue;
      const onShared = (networkId: string) =>
        asker === undefined || shared.includes(networkId) || networkId === "";
      if (!tasksOnly && service.mode === "vip") {
        const vips = service.vips.filter((v) => onShared(v.networkId)).map((v) => v.addr);
        if (vips.length > 0) return { addrs: [vips[0]], service };
        continue;
      }
      const addrs: string[] = [];
      for (const task of this.tasksOf(service.id)) {
        const a = task.addresses.find((x) => onShared(x.networkId));
        if (a) addrs.push(a.addr);
      }
      return { addrs, service };
    }
    return undefined;
  }
}
