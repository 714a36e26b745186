/**
 * The allocator: gives services their published ports and tasks what they need before they can
 * be scheduled (SwarmKit's pipeline: orchestrator → allocator → scheduler). Every allocation is a
 * fact in the log (DESIGN.md contract 8), so a new leader never hands out a port twice.
 *
 * - Ingress published ports are unique in the swarm; a port left at 0 gets the lowest free one in
 *   30000-32767, as SwarmKit's port allocator does. (Conflicts between explicitly published ports
 *   are refused when the service is created or updated.)
 * - A new task is allocated (moved to pending) once its service's endpoint is; it carries the
 *   service's ports.
 *
 * Pure: the state in, events out, at most one batch.
 *
 * @module
 */
import {
  MAX_BATCH_EVENTS,
  type PortConfig,
  type ShoalEvent,
  TaskState,
} from "../../../events/schema.ts";
import type { ClusterState, ServiceRecord } from "../../state.ts";
import type { Projection, ProjectionContext } from "../../manager.ts";
import { equalData } from "../../equal.ts";

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

/** The allocation events due now (at most one batch). */
export function allocate(state: ClusterState, _ctx: ProjectionContext): ShoalEvent[] {
  const events: ShoalEvent[] = [];
  const ready = new Set<string>();
  const used = ingressPortsInUse(state);
  for (const service of state.services.values()) {
    if (events.length >= MAX_BATCH_EVENTS) return events;
    const ports = allocatePorts(service, used);
    if (ports === undefined) continue; // no free port: the tasks stay new until one frees up
    if (service.endpoint !== undefined && equalData(service.endpoint.ports, ports)) {
      ready.add(service.id);
      continue;
    }
    if (ports.length === 0 && service.endpoint === undefined) {
      ready.add(service.id);
      continue;
    }
    events.push({
      type: "ServiceEndpointAllocated",
      v: 1,
      data: { id: service.id, endpoint: { ports, virtualIPs: service.endpoint?.virtualIPs ?? [] } },
      meta: {
        by: BY,
        reason: ports.length
          ? `published ${
            ports.map((p) => `${p.publishedPort}->${p.targetPort}/${p.protocol}`).join(", ")
          }`
          : "no published ports",
        cause: service.version,
        expect: service.version,
      },
    });
  }
  for (const id of state.tasksByState.get(TaskState.new)) {
    if (events.length >= MAX_BATCH_EVENTS) break;
    const task = state.tasks.get(id)!;
    if (task.desiredState > TaskState.running || !ready.has(task.serviceId)) continue;
    const service = state.services.get(task.serviceId)!;
    events.push({
      type: "TaskAllocated",
      v: 1,
      data: { id, ports: [...(service.endpoint?.ports ?? [])], addresses: [] },
      meta: { by: BY, reason: "resources allocated", cause: task.version, expect: task.version },
    });
  }
  return events;
}
