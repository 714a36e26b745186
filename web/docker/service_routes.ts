/**
 * Docker's service and task endpoints: `/services`, `/services/create`, `/services/{id}`,
 * `/services/{id}/update`, `/tasks`, `/tasks/{id}`.
 *
 * @module
 */
import { resolve } from "../../actors/lookup.ts";
import { resolveService } from "../../actors/entities/service.ts";
import { resolveNode } from "../../actors/entities/node.ts";
import type { ServiceRecord, TaskRecord } from "../../actors/state.ts";
import { type ServiceSpec, TaskState, taskStateName } from "../../events/schema.ts";
import { ApiError, empty, json, optionalIntParam, readJson } from "../http.ts";
import type { Router } from "../router.ts";
import { createdId, type DockerApiContext, requireSwarm, run } from "./context.ts";
import { Filters } from "./filters.ts";
import {
  forDockerClient,
  isDockerClient,
  serviceSpecFromDocker,
  serviceToDocker,
} from "./service_json.ts";
import { taskName, taskToDocker } from "./task_json.ts";

const SERVICE_FILTERS = ["id", "label", "mode", "name"];
// `_up-to-date` is the docker CLI's own (it polls with it while showing progress): tasks that run
// the service's current spec.
const TASK_FILTERS = [
  "id",
  "name",
  "service",
  "node",
  "label",
  "desired-state",
  "runtime",
  "_up-to-date",
];

/** Warnings for a spec no node can run yet (the docker CLI prints them). */
function warnings(ctx: DockerApiContext, spec: ServiceSpec): string[] {
  const kind = spec.task.runtime.kind;
  for (const n of ctx.manager.state.nodes.values()) {
    if (n.description.runtimes.includes(kind)) return [];
  }
  return [
    `no node of this swarm offers the ${kind} runtime yet: the tasks of ${spec.name} stay pending until one joins`,
  ];
}

/** Adds the service and task routes. */
export function addServiceRoutes(router: Router, ctx: DockerApiContext): void {
  const state = () => ctx.manager.state;

  router.get("/services", ({ req, url }) => {
    requireSwarm(ctx);
    const f = Filters.fromUrl(url, SERVICE_FILTERS);
    const status = /^(1|true)$/i.test(url.searchParams.get("status") ?? "");
    const out = [];
    for (const svc of state().services.values()) {
      if (
        !f.prefix("id", svc.id) || !f.prefix("name", svc.spec.name) ||
        !f.exact("mode", svc.spec.mode.kind) || !f.labels("label", svc.spec.labels)
      ) continue;
      out.push(svc);
    }
    out.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    const view = isDockerClient(req) ? forDockerClient : <T>(v: T) => v;
    return json(out.map((svc) => view(serviceToDocker(state(), svc, { status }))));
  });

  router.post("/services/create", async ({ req }) => {
    requireSwarm(ctx);
    const spec = serviceSpecFromDocker(await readJson(req), { state: state() });
    const events = await run(ctx, { kind: "CreateService", spec }, "service.create");
    const w = warnings(ctx, spec);
    return json(
      w.length > 0 ? { ID: createdId(events), Warnings: w } : { ID: createdId(events) },
      201,
    );
  });

  router.get("/services/{id}", ({ req, params }) => {
    requireSwarm(ctx);
    const svc = serviceToDocker(state(), resolveService(state(), params.id));
    return json(isDockerClient(req) ? forDockerClient(svc) : svc);
  });

  router.delete("/services/{id}", async ({ params }) => {
    requireSwarm(ctx);
    const svc = resolveService(state(), params.id);
    await run(ctx, { kind: "RemoveService", service: svc.id }, "service.rm");
    return empty(200);
  });

  router.post("/services/{id}/update", async ({ req, url, params }) => {
    requireSwarm(ctx);
    const current: ServiceRecord = resolveService(state(), params.id);
    const version = optionalIntParam(url, "version");
    const rollback = url.searchParams.get("rollback") ?? "";
    const body = await readJson(req);
    if (rollback === "previous") {
      await run(ctx, { kind: "RollbackService", service: current.id, version }, "service.rollback");
      return json({});
    }
    if (rollback !== "") {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter rollback must be "previous", got "${rollback}"`,
      );
    }
    const spec = serviceSpecFromDocker(body, { state: state(), current });
    await run(
      ctx,
      { kind: "UpdateService", service: current.id, spec, version },
      "service.update",
    );
    return json({});
  });

  router.get("/tasks", ({ req, url }) => {
    requireSwarm(ctx);
    const s = state();
    const f = Filters.fromUrl(url, TASK_FILTERS);
    for (const d of f.get("desired-state")) {
      if (!Object.hasOwn(TaskState, d)) {
        throw new ApiError(400, "invalid_filter", `Invalid desired-state filter: '${d}'`);
      }
    }
    // Services and nodes are named as everywhere else: id, name or id prefix.
    const services = f.has("service")
      ? new Set(f.get("service").map((ref) => resolveService(s, ref).id))
      : undefined;
    const nodes = f.has("node")
      ? new Set(f.get("node").map((ref) => resolveNode(s, ref).id))
      : undefined;
    let candidates: Iterable<TaskRecord>;
    if (services !== undefined) {
      candidates = [...services].flatMap((id) => [...s.tasksOf(id)]);
    } else if (nodes !== undefined) {
      candidates = [...nodes].flatMap((id) => [...s.tasksOn(id)]);
    } else candidates = s.tasks.values();
    const out = [];
    for (const t of candidates) {
      if (services !== undefined && !services.has(t.serviceId)) continue;
      if (nodes !== undefined && !nodes.has(t.nodeId)) continue;
      if (!f.prefix("id", t.id) || !f.prefix("name", taskName(s, t))) continue;
      if (!f.exact("desired-state", taskStateName(t.desiredState))) continue;
      if (!f.exact("runtime", s.taskSpec(t).runtime.kind)) continue;
      if (f.has("_up-to-date")) {
        const current = s.services.get(t.serviceId)?.specVersion === t.specVersion;
        if (!f.exact("_up-to-date", String(current))) continue;
      }
      // As SwarmKit's: a task's labels filter matches its service's labels (`docker stack ps`).
      if (!f.labels("label", s.services.get(t.serviceId)?.spec.labels ?? {})) continue;
      out.push(taskToDocker(s, t));
    }
    return json(isDockerClient(req) ? out.map(forDockerClient) : out);
  });

  router.get("/tasks/{id}", ({ req, params }) => {
    requireSwarm(ctx);
    const s = state();
    const task = taskToDocker(s, resolve("task", s.tasks, new Map(), params.id));
    return json(isDockerClient(req) ? forDockerClient(task) : task);
  });
}
