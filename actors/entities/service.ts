/**
 * The service entity: created, updated (the old spec is kept for rollback), rolled back, given an
 * endpoint and update status by the projections, and removed.
 *
 * Task specs are shared through `state.specs`: each spec version a service has had is stored once
 * and reference-counted by the service (current and previous spec) and by every task created from
 * it.
 *
 * @module
 */
import type { EventOf, ServiceSpec, ShoalEvent, TaskSpec } from "../../events/schema.ts";
import type { ServiceCommand } from "../commands.ts";
import { resolve } from "../lookup.ts";
import { type DecideContext, userMeta } from "./decide_context.ts";
import { type ApplyContext, type ClusterState, type ServiceRecord, specKey } from "../state.ts";
import { EventRejected } from "./rejection.ts";
import { equalData } from "../equal.ts";
import { checkAddresses } from "./network.ts";

type ServiceEvent = EventOf<
  | "ServiceCreated"
  | "ServiceUpdated"
  | "ServiceRolledBack"
  | "ServiceUpdateStatusChanged"
  | "ServiceEndpointAllocated"
  | "ServiceRemoved"
>;

/** Folds one service event into the state, or throws `EventRejected`. */
export function applyServiceEvent(
  state: ClusterState,
  event: ServiceEvent,
  ctx: ApplyContext,
): void {
  const { data } = event;
  if (event.type === "ServiceCreated") {
    if (state.services.has(data.id)) {
      throw new EventRejected("already_exists", `Cannot create service ${data.id}: id in use`);
    }
    const spec = event.data.spec;
    checkName(state, spec.name, data.id);
    checkReferences(state, spec);
    checkPorts(state, spec, data.id);
    state.services.put({
      ...ctx.created(data.id),
      spec,
      specVersion: ctx.index,
      ...(isJob(spec) ? { jobIteration: 0, lastExecution: ctx.at } : {}),
    });
    addSpecRef(state, data.id, ctx.index, spec.task);
    return;
  }
  const service = state.services.get(data.id);
  if (service === undefined) {
    throw new EventRejected("not_found", `Cannot change service ${data.id}: no such service`);
  }
  ctx.checkVersion("service", state.services, service, event.meta.expect);
  let next: ServiceRecord;
  switch (event.type) {
    case "ServiceUpdated": {
      const spec = event.data.spec;
      if (spec.mode.kind !== service.spec.mode.kind) {
        throw new EventRejected(
          "invalid_argument",
          `Cannot update service ${service.spec.name}: changing the mode from ${service.spec.mode.kind} to ${spec.mode.kind} is not allowed`,
        );
      }
      checkName(state, spec.name, service.id);
      checkReferences(state, spec);
      checkPorts(state, spec, service.id);
      // Only a new task template (or --force) is a new spec version, which starts a rolling
      // update; scaling or relabelling the service leaves its tasks alone (SwarmKit compares the
      // task spec the same way).
      const templateChanged = !equalData(spec.task, service.spec.task);
      const specVersion = templateChanged ? ctx.index : service.specVersion;
      if (service.previousSpecVersion !== undefined) {
        dropSpecRef(state, service.id, service.previousSpecVersion);
      }
      addSpecRef(state, service.id, specVersion, spec.task);
      next = {
        ...service,
        spec,
        specVersion,
        previousSpec: service.spec,
        previousSpecVersion: service.specVersion,
        updateStatus: templateChanged && !isJob(spec)
          ? { state: "updating", startedAt: ctx.at, completedAt: 0, message: "update in progress" }
          : service.updateStatus,
        ...nextJobRun(service, ctx.at),
      };
      break;
    }
    case "ServiceRolledBack": {
      if (service.previousSpec === undefined || service.previousSpecVersion === undefined) {
        throw new EventRejected(
          "invalid_transition",
          `Cannot roll back service ${service.spec.name}: it has no previous spec`,
        );
      }
      checkName(state, service.previousSpec.name, service.id);
      dropSpecRef(state, service.id, service.specVersion);
      next = {
        ...service,
        spec: service.previousSpec,
        specVersion: service.previousSpecVersion,
        previousSpec: undefined,
        previousSpecVersion: undefined,
        updateStatus: service.previousSpecVersion === service.specVersion || isJob(service.spec)
          ? service.updateStatus
          : {
            state: "rollback_started",
            startedAt: ctx.at,
            completedAt: 0,
            message: "manually requested rollback",
          },
        ...nextJobRun(service, ctx.at),
      };
      break;
    }
    case "ServiceUpdateStatusChanged":
      next = { ...service, updateStatus: event.data.updateStatus };
      break;
    case "ServiceEndpointAllocated":
      checkAddresses(
        state,
        service.id,
        `service ${service.spec.name}`,
        event.data.endpoint.virtualIPs ?? [],
      );
      next = { ...service, endpoint: event.data.endpoint };
      break;
    case "ServiceRemoved":
      dropSpecRef(state, service.id, service.specVersion);
      if (service.previousSpecVersion !== undefined) {
        dropSpecRef(state, service.id, service.previousSpecVersion);
      }
      state.services.delete(service.id);
      return;
  }
  state.services.put(ctx.touched(next));
}

/** Whether a spec is a job (replicated-job or global-job): its tasks run to completion. */
export function isJob(spec: ServiceSpec): boolean {
  return spec.mode.kind === "replicated-job" || spec.mode.kind === "global-job";
}

/**
 * SwarmKit's `JobStatus` after an update or rollback of a job: every change re-runs the job
 * (`service update --force` included), so the iteration goes up by one and the run starts now.
 */
function nextJobRun(
  service: ServiceRecord,
  at: number,
): Pick<ServiceRecord, "jobIteration" | "lastExecution"> {
  if (!isJob(service.spec)) return {};
  return { jobIteration: (service.jobIteration ?? 0) + 1, lastExecution: at };
}

function checkName(state: ClusterState, name: string, id: string): void {
  const owner = state.serviceNames.get(name);
  if (owner !== undefined && owner !== id) {
    throw new EventRejected(
      "name_conflict",
      `name conflicts with an existing object: service ${name} already exists`,
    );
  }
}

/** An ingress port published explicitly belongs to one service (SwarmKit's message). */
function checkPorts(state: ClusterState, spec: ServiceSpec, id: string): void {
  const seen = new Set<string>();
  for (const p of spec.endpoint.ports) {
    if (p.publishMode !== "ingress" || p.publishedPort === 0) continue;
    const key = `${p.protocol}/${p.publishedPort}`;
    if (seen.has(key)) {
      throw new EventRejected(
        "invalid_argument",
        `port '${p.publishedPort}' is published twice in service ${spec.name}`,
      );
    }
    seen.add(key);
    for (const other of state.services.values()) {
      if (other.id === id) continue;
      const taken = [...other.spec.endpoint.ports, ...(other.endpoint?.ports ?? [])].some((q) =>
        q.publishMode === "ingress" && q.protocol === p.protocol &&
        q.publishedPort === p.publishedPort
      );
      if (taken) {
        throw new EventRejected(
          "invalid_argument",
          `port '${p.publishedPort}' is already in use by service '${other.spec.name}' (${other.id}) as an ingress port`,
        );
      }
    }
  }
}

/** A service may only refer to secrets, configs and networks that exist. */
function checkReferences(state: ClusterState, spec: ServiceSpec): void {
  for (const ref of spec.task.secrets) {
    if (!state.secrets.has(ref.id)) {
      throw new EventRejected(
        "invalid_reference",
        `Cannot use secret ${ref.name} (${ref.id}) in service ${spec.name}: no such secret`,
      );
    }
  }
  for (const ref of spec.task.configs) {
    if (!state.configs.has(ref.id)) {
      throw new EventRejected(
        "invalid_reference",
        `Cannot use config ${ref.name} (${ref.id}) in service ${spec.name}: no such config`,
      );
    }
  }
  for (const net of spec.task.networks) {
    if (!state.networks.has(net.target)) {
      throw new EventRejected(
        "invalid_reference",
        `Cannot attach service ${spec.name} to network ${net.target}: no such network`,
      );
    }
  }
}

/** Counts one more holder of a service's spec version, storing the spec on first use. */
export function addSpecRef(
  state: ClusterState,
  serviceId: string,
  version: number,
  spec?: TaskSpec,
): void {
  const id = specKey(serviceId, version);
  const rec = state.specs.get(id);
  if (rec !== undefined) {
    state.specs.put({ id, spec: rec.spec, refs: rec.refs + 1 });
    return;
  }
  if (spec === undefined) {
    throw new EventRejected(
      "invalid_reference",
      `Service ${serviceId} has no spec version ${version}`,
    );
  }
  state.specs.put({ id, spec, refs: 1 });
}

/** Counts one holder fewer of a spec version, forgetting it when none is left. */
export function dropSpecRef(state: ClusterState, serviceId: string, version: number): void {
  const id = specKey(serviceId, version);
  const rec = state.specs.get(id);
  if (rec === undefined) return;
  if (rec.refs <= 1) state.specs.delete(id);
  else state.specs.put({ id, spec: rec.spec, refs: rec.refs - 1 });
}

/** The service a reference names: an id, a name, or an unambiguous id prefix. */
export function resolveService(state: ClusterState, ref: string): ServiceRecord {
  return resolve("service", state.services, state.serviceNames, ref);
}

/** Decides the events of a service command, or throws `EventRejected`. */
export function decideServiceCommand(
  state: ClusterState,
  command: ServiceCommand,
  ctx: DecideContext,
): ShoalEvent[] {
  if (command.kind === "CreateService") {
    checkName(state, command.spec.name, "");
    checkReferences(state, command.spec);
    checkPorts(state, command.spec, "");
    return [{
      type: "ServiceCreated",
      v: 1,
      data: { id: ctx.newId(), spec: command.spec },
      meta: userMeta(ctx, "service create"),
    }];
  }
  const service = resolveService(state, command.service);
  const updated = (spec: ServiceSpec, reason: string, version?: number): ShoalEvent[] => {
    if (spec.mode.kind !== service.spec.mode.kind) {
      throw new EventRejected(
        "invalid_argument",
        `service mode change is not allowed (service ${service.spec.name} is ${service.spec.mode.kind})`,
      );
    }
    checkName(state, spec.name, service.id);
    checkReferences(state, spec);
    checkPorts(state, spec, service.id);
    return [{
      type: "ServiceUpdated",
      v: 1,
      data: { id: service.id, spec },
      meta: userMeta(ctx, reason, version ?? service.version),
    }];
  };
  switch (command.kind) {
    case "UpdateService":
      return updated(command.spec, "service update", command.version);
    case "ScaleService": {
      const mode = service.spec.mode;
      if (mode.kind !== "replicated") {
        throw new EventRejected(
          "invalid_argument",
          `${service.spec.name}: scale can only be used with replicated mode`,
        );
      }
      return updated(
        { ...service.spec, mode: { kind: "replicated", replicas: command.replicas } },
        `service scale ${service.spec.name}=${command.replicas}`,
      );
    }
    case "RollbackService":
      if (service.previousSpec === undefined) {
        throw new EventRejected(
          "invalid_transition",
          `service ${service.spec.name} does not have a previous spec`,
        );
      }
      return [{
        type: "ServiceRolledBack",
        v: 1,
        data: { id: service.id },
        meta: userMeta(ctx, "service rollback", command.version ?? service.version),
      }];
    case "RemoveService":
      return [{
        type: "ServiceRemoved",
        v: 1,
        data: { id: service.id },
        meta: userMeta(ctx, "service rm", service.version),
      }];
  }
}
