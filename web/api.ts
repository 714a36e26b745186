/**
 * The manager's HTTP API, as a plain `(Request) => Response` handler (testable without a socket).
 * Errors are JSON `{ "message": ..., "code": ... }` with a stable code (DESIGN.md contract 11).
 *
 * Two families of routes:
 * - the Docker Engine API's swarm endpoints (v1.41 shapes, under `/` and `/v1.NN/`), so that the
 *   `docker` CLI works with `DOCKER_HOST` pointing at a manager: see `web/docker/`;
 * - Shoal's own views under `/shoal/v1/`: the state summary and the log.
 *
 * Docker endpoints served: `/_ping`, `/version`, `/info`, `GET /swarm`, `POST /swarm/update`
 * (`rotateWorkerToken`, `rotateManagerToken`), `/nodes` (`filters` id, name, role, label,
 * node.label, membership), `GET|DELETE /nodes/{id}`, `POST /nodes/{id}/update`, `/services`
 * (`filters` id, name, label, mode; `status`), `POST /services/create`, `GET|DELETE
 * /services/{id}`, `POST /services/{id}/update` (`version`, `rollback=previous`), `/tasks`
 * (`filters` id, name, service, node, label, desired-state, runtime), `/tasks/{id}`, `/secrets`
 * and `/configs` (list, create, inspect, update labels, remove), `/networks` (list, create,
 * inspect, remove), `/events` (`since`, `until`, `filters`).
 *
 * Not served: containers, images, volumes, plugins, `/distribution` (so the docker CLI warns that
 * it cannot pin image digests, as with a local image), service and task logs (501), swarm
 * init/join/leave/unlock (a node makes or resumes its swarm when it starts).
 *
 * Bodies are strict: a field Docker's API lacks is refused ("unknown field"), and a Docker field
 * Shoal does not implement (`TTY`, `Privileges`, `LogDriver`, plugins, ...) is accepted only at
 * its zero value; otherwise the answer is a 400 naming it ("TTY is not supported by Shoal").
 * Shoal's extensions: `TaskTemplate.Runtime: "process"` with `TaskTemplate.ProcessSpec` (see
 * `web/docker/service_json.ts`), and `Description.Runtimes` on nodes.
 *
 * @module
 */
import type { Manager } from "../actors/manager.ts";
import { taskStateName } from "../events/schema.ts";
import { nodeName } from "../actors/state.ts";
import { errorResponse, intParam, json } from "./http.ts";
import { Router } from "./router.ts";
import { EventHub } from "./docker/events.ts";
import type { DockerApiContext } from "./docker/context.ts";
import { addSystemRoutes } from "./docker/system_routes.ts";
import { addServiceRoutes } from "./docker/service_routes.ts";
import { addNodeRoutes } from "./docker/node_routes.ts";
import { addFileObjectRoutes } from "./docker/file_object_routes.ts";
import { addNetworkRoutes } from "./docker/network_routes.ts";

export { API_VERSION, ApiError, SHOAL_VERSION } from "./http.ts";

/** Options of {@linkcode createApiHandler}. */
export interface ApiOptions {
  /** The node this manager runs on (what `/info` reports as `NodeID`); by default the leader. */
  nodeId?: string;
}

/** The API handler; `close()` ends open event streams so that the server can shut down. */
export interface ApiHandler {
  (req: Request): Promise<Response>;
  /** Ends every open `/events` stream and stops following the manager. */
  close(): void;
}

/** Builds the API handler over a manager. */
export function createApiHandler(manager: Manager, options: ApiOptions = {}): ApiHandler {
  const hub = new EventHub(manager);
  const ctx: DockerApiContext = { manager, hub, nodeId: options.nodeId };
  const router = new Router();
  addSystemRoutes(router, ctx);
  addServiceRoutes(router, ctx);
  addNodeRoutes(router, ctx);
  addFileObjectRoutes(router, ctx, "secret");
  addFileObjectRoutes(router, ctx, "config");
  addNetworkRoutes(router, ctx);
  addShoalRoutes(router, manager);

  const handler = async (req: Request): Promise<Response> => {
    try {
      const res = await router.handle(req);
      return req.method === "HEAD" ? new Response(null, res) : res;
    } catch (err) {
      return errorResponse(err);
    }
  };
  return Object.assign(handler, { close: () => hub.close() });
}

/** Shoal's own routes: `/shoal/v1/state` and `/shoal/v1/log`. */
function addShoalRoutes(router: Router, manager: Manager): void {
  router.get("/shoal/v1/state", () => json(stateSummary(manager)));
  router.get("/shoal/v1/log", ({ url }) => {
    const last = manager.state.index;
    const from = Math.max(1, intParam(url, "from", Math.max(1, last - 99)));
    const to = Math.min(intParam(url, "to", last), from + 999);
    return json({
      lastIndex: last,
      entries: manager.log.read(from, to).map((e) => ({
        index: e.index,
        term: e.term,
        at: e.batch.at,
        by: e.batch.by,
        events: e.batch.events,
      })),
    });
  });
}

/** A readable summary of the state: what `/shoal/v1/state` returns. */
export function stateSummary(manager: Manager) {
  const s = manager.state;
  return {
    index: s.index,
    cluster: s.cluster &&
      { id: s.cluster.id, name: s.cluster.spec.name, createdAt: s.cluster.createdAt },
    nodes: [...s.nodes.values()].map((n) => ({
      id: n.id,
      name: nodeName(n),
      role: n.role,
      availability: n.spec.availability,
      status: n.status.state,
      leader: n.managerStatus?.leader ?? false,
    })),
    services: [...s.services.values()].map((svc) => ({
      id: svc.id,
      name: svc.spec.name,
      mode: svc.spec.mode,
      version: svc.version,
      tasks: [...s.tasksOf(svc.id)].map((t) => ({
        id: t.id,
        slot: t.slot,
        node: t.nodeId,
        desired: taskStateName(t.desiredState),
        state: taskStateName(t.status.state),
      })),
    })),
    secrets: s.secrets.size,
    configs: s.configs.size,
    networks: s.networks.size,
    rejections: s.rejections.slice(-10),
  };
}
