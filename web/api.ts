/**
 * The manager's HTTP API, as a plain `(Request) => Response` handler (testable without a socket).
 * Errors are JSON `{ "message": ..., "code": ... }` with a stable code (DESIGN.md contract 11).
 *
 * Served today: `/_ping`, `/version`, and Shoal's own views of the state and the log under
 * `/shoal/v1/`. The Docker Engine API's swarm endpoints come with the API issue.
 *
 * @module
 */
import type { Manager } from "../actors/manager.ts";
import { taskStateName } from "../events/schema.ts";
import { nodeName } from "../actors/state.ts";
import { EventRejected } from "../actors/entities/rejection.ts";

/** The version this build of Shoal reports. */
export const SHOAL_VERSION = "0.1.0";
/** The Docker Engine API version the API follows. */
export const API_VERSION = "1.41";

/** An API error with an HTTP status and a stable code. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** Stable machine-readable code. */
  readonly code: string;
  /** Creates an API error. */
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const STATUS_OF_CODE: Record<string, number> = {
  not_found: 404,
  already_exists: 409,
  name_conflict: 409,
  version_conflict: 409,
  in_use: 400,
  invalid_argument: 400,
  invalid_reference: 400,
  invalid_transition: 400,
};

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "api-version": API_VERSION },
  });
}

function errorResponse(err: unknown): Response {
  if (err instanceof ApiError) return json({ message: err.message, code: err.code }, err.status);
  if (err instanceof EventRejected) {
    return json({ message: err.message, code: err.code }, STATUS_OF_CODE[err.code] ?? 400);
  }
  return json({ message: `internal error: ${(err as Error).message}`, code: "internal" }, 500);
}

function intParam(url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new ApiError(
      400,
      "invalid_argument",
      `query parameter ${name} must be a whole number, got "${raw}"`,
    );
  }
  return n;
}

/** Builds the API handler over a manager. */
export function createApiHandler(manager: Manager): (req: Request) => Promise<Response> {
  const routes: Record<string, (url: URL) => Response> = {
    "/_ping": () =>
      new Response("OK", { headers: { "content-type": "text/plain", "api-version": API_VERSION } }),
    "/version": () =>
      json({
        Version: SHOAL_VERSION,
        ApiVersion: API_VERSION,
        MinAPIVersion: "1.24",
        Os: Deno.build.os,
        Arch: Deno.build.arch === "x86_64" ? "amd64" : Deno.build.arch,
        Components: [{
          Name: "Shoal",
          Version: SHOAL_VERSION,
          Details: { Deno: Deno.version.deno },
        }],
      }),
    "/shoal/v1/state": () => json(stateSummary(manager)),
    "/shoal/v1/log": (url) => {
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
    },
  };
  return (req) => {
    try {
      const url = new URL(req.url);
      const path = url.pathname.replace(/^\/v1\.\d+(?=\/)/, "");
      const route = routes[path];
      if (route === undefined) {
        throw new ApiError(404, "not_found", `page not found: ${req.method} ${url.pathname}`);
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        throw new ApiError(405, "method_not_allowed", `${req.method} is not allowed on ${path}`);
      }
      return Promise.resolve(route(url));
    } catch (err) {
      return Promise.resolve(errorResponse(err));
    }
  };
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
