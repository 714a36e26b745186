/**
 * A small router: `METHOD /path/{param}` patterns to handlers, with Docker's version prefix
 * (`/v1.41/services`) accepted on every route. A path no route knows is a 404 "page not found"
 * (Docker's words); a known path with another method is a 405.
 *
 * @module
 */
import { API_VERSION, ApiError, MIN_API_VERSION } from "./http.ts";

/** What a route handler is given. */
export interface RouteContext {
  readonly req: Request;
  readonly url: URL;
  /** The `{name}` parts of the pattern, URL-decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** The API version the client asked for in the path (`1.41`), if any. */
  readonly apiVersion: string | undefined;
}

/** A route handler. */
export type RouteHandler = (ctx: RouteContext) => Response | Promise<Response>;

interface Route {
  method: string;
  segments: string[];
  handler: RouteHandler;
}

/** Routes requests to handlers. */
export class Router {
  #routes: Route[] = [];

  /** Adds a route: `pattern` is a path whose `{name}` segments match any one segment. */
  add(method: string, pattern: string, handler: RouteHandler): this {
    this.#routes.push({ method, segments: pattern.split("/").slice(1), handler });
    return this;
  }

  /** Shorthand for `add("GET", ...)`; GET routes answer HEAD too. */
  get(pattern: string, handler: RouteHandler): this {
    return this.add("GET", pattern, handler);
  }

  /** Shorthand for `add("POST", ...)`. */
  post(pattern: string, handler: RouteHandler): this {
    return this.add("POST", pattern, handler);
  }

  /** Shorthand for `add("DELETE", ...)`. */
  delete(pattern: string, handler: RouteHandler): this {
    return this.add("DELETE", pattern, handler);
  }

  /** Runs the route for `req`; throws {@linkcode ApiError} when none fits. */
  handle(req: Request): Response | Promise<Response> {
    const url = new URL(req.url);
    let path = url.pathname;
    let apiVersion: string | undefined;
    const versioned = /^\/v(\d+\.\d+)(\/.*)$/.exec(path);
    if (versioned) {
      apiVersion = versioned[1];
      path = versioned[2];
      checkApiVersion(apiVersion);
    }
    const parts = path.split("/").slice(1);
    let methods: string[] = [];
    for (const route of this.#routes) {
      const params = match(route.segments, parts);
      if (params === undefined) continue;
      const method = req.method === "HEAD" ? "GET" : req.method;
      if (route.method !== method) {
        methods.push(route.method);
        continue;
      }
      return route.handler({ req, url, params, apiVersion });
    }
    methods = [...new Set(methods)];
    if (methods.length > 0) {
      throw new ApiError(
        405,
        "method_not_allowed",
        `${req.method} is not allowed on ${path} (use ${methods.join(" or ")})`,
      );
    }
    throw new ApiError(404, "not_found", "page not found");
  }
}

function match(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p.startsWith("{") && p.endsWith("}")) {
      if (parts[i] === "") return undefined;
      let value: string;
      try {
        value = decodeURIComponent(parts[i]);
      } catch {
        return undefined;
      }
      params[p.slice(1, -1)] = value;
    } else if (p !== parts[i]) return undefined;
  }
  return params;
}

function versionNumber(v: string): number {
  const [major, minor] = v.split(".").map(Number);
  return major * 1000 + minor;
}

/** Docker's answers to a client asking for an API version this server does not speak. */
function checkApiVersion(v: string): void {
  if (versionNumber(v) > versionNumber(API_VERSION)) {
    throw new ApiError(
      400,
      "unsupported_api_version",
      `client version ${v} is too new. Maximum supported API version is ${API_VERSION}`,
    );
  }
  if (versionNumber(v) < versionNumber(MIN_API_VERSION)) {
    throw new ApiError(
      400,
      "unsupported_api_version",
      `client version ${v} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
    );
  }
}
