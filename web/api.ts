/**
 * The manager's HTTP API, as a plain `(Request) => Response` handler (testable without a socket).
 * Errors are JSON `{ "message": ..., "code": ... }` with a stable code (DESIGN.md contract 11).
 *
 * Two families of routes:
 * - the Docker Engine API's swarm endpoints (v1.41 shapes, under `/` and `/v1.NN/`), so that the
 *   `docker` CLI works with `DOCKER_HOST` pointing at a manager: see `web/docker/`;
 * - Shoal's own views under `/shoal/v1/`: the state now or at any index, diffs, provenance
 *   (`why`), replay, bisect, the log and a live stream of it (see `web/shoal/routes.ts`); and the
 *   dashboard at `/ui/` (`web/ui/`), to which `/` redirects.
 *
 * Docker endpoints served: `/_ping`, `/version`, `/info`, `GET /swarm`, `POST /swarm/update`
 * (`rotateWorkerToken`, `rotateManagerToken`), `/nodes` (`filters` id, name, role, label,
 * node.label, membership), `GET|DELETE /nodes/{id}`, `POST /nodes/{id}/update`, `/services`
 * (`filters` id, name, label, mode; `status`), `POST /services/create`, `GET|DELETE
 * /services/{id}`, `POST /services/{id}/update` (`version`, `rollback=previous`), `/tasks`
 * (`filters` id, name, service, node, label, desired-state, runtime), `/tasks/{id}`, `/secrets`
 * and `/configs` (list, create, inspect, update labels, remove), `/networks` (list, create,
 * inspect, remove), `/events` (`since`, `until`, `filters`), `/services/{id}/logs` and
 * `/tasks/{id}/logs` (read from each task's node: `web/docker/log_routes.ts`). All of it is
 * described in `docs/api.md`.
 *
 * Not served: containers, images, volumes, plugins, `/distribution` (so the docker CLI warns that
 * it cannot pin image digests, as with a local image), swarm
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
import { errorResponse } from "./http.ts";
import { Router } from "./router.ts";
import { EventHub } from "./docker/events.ts";
import type { DockerApiContext } from "./docker/context.ts";
import { addSystemRoutes } from "./docker/system_routes.ts";
import { addServiceRoutes } from "./docker/service_routes.ts";
import { addLogRoutes } from "./docker/log_routes.ts";
import type { TaskLogSource } from "../node/task_logs.ts";
import { addNodeRoutes } from "./docker/node_routes.ts";
import { addFileObjectRoutes } from "./docker/file_object_routes.ts";
import { addNetworkRoutes } from "./docker/network_routes.ts";
import { addShoalRoutes } from "./shoal/routes.ts";
import { addLogToolRoutes } from "./shoal/log_tool_routes.ts";
import type { StoredSnapshot } from "../events/stored_log.ts";
import type { LiveHistoryOptions } from "./shoal/live_history.ts";

export { API_VERSION, ApiError, SHOAL_VERSION } from "./http.ts";

/** Options of {@linkcode createApiHandler}. */
export interface ApiOptions {
  /** The node this manager runs on (what `/info` reports as `NodeID`); by default the leader. */
  nodeId?: string;
  /** Checkpoint spacing of the time-travel routes (defaults suit production). */
  history?: LiveHistoryOptions;
  /** Reads tasks' output, wherever they run (`node/task_logs.ts`), for the logs routes. */
  taskLogs?: TaskLogSource;
  /**
   * The snapshots the log keeps, for `/shoal/v1/log/snapshots` and `verify`:
   * `() => raftSnapshots(storage)` or `() => sqliteLogSnapshots(log)` (`events/stored_log.ts`).
   */
  logSnapshots?: () => StoredSnapshot[];
}

/** The API handler; `close()` ends open event streams so that the server can shut down. */
export interface ApiHandler {
  (req: Request): Promise<Response>;
  /** Ends every open `/events` and `/shoal/v1/stream` stream and stops following the manager. */
  close(): void;
}

/** Builds the API handler over a manager. */
export function createApiHandler(manager: Manager, options: ApiOptions = {}): ApiHandler {
  const hub = new EventHub(manager);
  const ctx: DockerApiContext = {
    manager,
    hub,
    nodeId: options.nodeId,
    taskLogs: options.taskLogs,
  };
  const router = new Router();
  addSystemRoutes(router, ctx);
  addServiceRoutes(router, ctx);
  addLogRoutes(router, ctx);
  addNodeRoutes(router, ctx);
  addFileObjectRoutes(router, ctx, "secret");
  addFileObjectRoutes(router, ctx, "config");
  addNetworkRoutes(router, ctx);
  const shoal = addShoalRoutes(router, manager, options.history);
  addLogToolRoutes(router, manager, {
    snapshots: options.logSnapshots,
    stateAt: async (index) => {
      await shoal.history.ready();
      return shoal.history.view(index);
    },
  });

  const handler = async (req: Request): Promise<Response> => {
    try {
      const res = await router.handle(req);
      return req.method === "HEAD" ? new Response(null, res) : res;
    } catch (err) {
      return errorResponse(err);
    }
  };
  return Object.assign(handler, {
    close: () => {
      hub.close();
      shoal.close();
    },
  });
}
