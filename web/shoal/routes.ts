/**
 * Shoal's own API, under `/shoal/v1/`: the cluster now and at any moment of its log, what changed
 * between two moments, why an object is what it is, a step-by-step replay, the first moment a
 * condition held, the raw log, and the log as a live stream. The dashboard (`web/ui/`) is built on
 * these routes and nothing else.
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /shoal/v1/state[?at=I or ?time=ISO]` | nodes, services (running/desired), tasks (state, desired, node, slot) as of index `I` or time `ISO`; live without either ({@linkcode StateView}) |
 * | `GET /shoal/v1/diff?from=A[&to=B][&limit=N]` | objects created, changed (field by field) and removed from `A` to `B` (default: now) |
 * | `GET /shoal/v1/why/{kind}/{ref}[?at=I][&depth=D][&max=N]` | every event that made the object what it is, newest first, with the chain of causes and the scheduler's decision; `kind` is cluster, node, service, task, secret, config or network; `ref` an id, id prefix or name (`web.2` for a task) |
 * | `GET /shoal/v1/replay?from=A[&to=B]` | each entry's events and the changes they made (at most 500 entries a call; `next` says where to go on) |
 * | `GET /shoal/v1/bisect?until=EXPR[&from=A][&to=B][&mode=linear or binary]` | the first index at which `EXPR` holds (syntax: `actors/bisect_expr.ts`) |
 * | `GET /shoal/v1/timeline[?samples=N]` | the log's extent, `N` evenly spaced (index, time) points, and the user's commands: what a timeline slider needs |
 * | `GET /shoal/v1/log[?from=A][&to=B]` | the raw entries (at most 1,000 a call) |
 * | `GET /shoal/v1/stream` | Server-Sent Events: one per applied entry (`web/shoal/stream.ts`) |
 *
 * Points in time (`at`, `from`, `to`) are log indexes (`0` is before the first entry) or, where
 * noted and for `diff`, ISO 8601 times (`2025-01-02T03:04:05Z`: the last entry at or before it).
 * `diff`, `why` and `replay` answer text as the CLI prints it with `format=text`.
 *
 * Errors are `{ "message", "code" }`; a bad parameter is a 400 that names it
 * (`query parameter until: Bad condition at column 13: expected ...`), an object that does not
 * exist a 404, history compacted away a 410.
 *
 * @module
 */
import type { Manager } from "../../actors/manager.ts";
import {
  bisect,
  diff,
  findObject,
  formatDiff,
  formatReplay,
  formatWhy,
  HistoryError,
  indexAtTime,
  isoTime,
  OBJECT_KINDS,
  type ObjectKind,
  replay,
  why,
} from "../../actors/history.ts";
import { BisectExprError, compileBisectExpr } from "../../actors/bisect_expr.ts";
import { ApiError, intParam, json } from "../http.ts";
import type { RouteContext, RouteHandler, Router } from "../router.ts";
import { LiveHistory, type LiveHistoryOptions } from "./live_history.ts";
import { stateView } from "./state_json.ts";
import { STREAM_HEADERS, streamResponse } from "./stream.ts";
import { addUiRoutes } from "./ui_routes.ts";

/** Most entries one `replay` call steps through. */
export const MAX_REPLAY = 500;
/** Default and largest number of changes one `diff` lists. */
export const DIFF_LIMIT = 1_000;
export const MAX_DIFF_LIMIT = 20_000;

/** What {@linkcode addShoalRoutes} leaves running. */
export interface ShoalRoutes {
  /** The time-travel state kept current for the routes. */
  readonly history: LiveHistory;
  /** Ends open streams and stops following the manager. */
  close(): void;
}

/** HTTP status of each {@linkcode HistoryError} code. */
const STATUS_OF: Record<string, number> = {
  out_of_range: 400,
  invalid_argument: 400,
  not_found: 404,
  compacted: 410,
  gap: 500,
};

/** Turns time-travel errors into API errors; everything else passes through. */
function guarded(handler: RouteHandler): RouteHandler {
  return async (ctx) => {
    try {
      return await handler(ctx);
    } catch (err) {
      if (err instanceof HistoryError) {
        throw new ApiError(STATUS_OF[err.code] ?? 400, err.code, err.message);
      }
      throw err;
    }
  };
}

function text(body: string): Response {
  return new Response(body + "\n", {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

function wantsText(url: URL): boolean {
  const format = url.searchParams.get("format") ?? "json";
  if (format !== "json" && format !== "text") {
    throw new ApiError(
      400,
      "invalid_argument",
      `query parameter format must be json or text, got "${format}"`,
    );
  }
  return format === "text";
}

/** Adds the `/shoal/v1/` routes and the dashboard to `router`. */
export function addShoalRoutes(
  router: Router,
  manager: Manager,
  options: LiveHistoryOptions = {},
): ShoalRoutes {
  const history = new LiveHistory(manager, options);
  const streams = new Set<() => void>();

  /**
   * A point in the log from parameter `name`: an index in `[min, last]`, or (with `times`) an ISO
   * time, which means the last entry at or before it. `undefined` when absent.
   */
  const point = (url: URL, name: string, min = 0, times = true): number | undefined => {
    const raw = url.searchParams.get(name);
    if (raw === null || raw === "") return undefined;
    const last = history.lastIndex;
    if (/^\d+$/.test(raw)) {
      const i = Number(raw);
      if (!Number.isSafeInteger(i) || i < min || i > last) {
        throw new ApiError(
          400,
          "out_of_range",
          `query parameter ${name}: no index ${raw} in this log: indexes go from ${min}${
            min === 0 ? " (before the first entry)" : ""
          } to ${last}`,
        );
      }
      return i;
    }
    const ms = times && /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : NaN;
    if (Number.isNaN(ms)) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter ${name} must be a log index${
          times ? " or an ISO 8601 time (2025-01-02T03:04:05Z)" : ""
        }, got "${raw}"`,
      );
    }
    return Math.max(min, indexAtTime(history.source, ms));
  };

  const required = (url: URL, name: string, min = 0, times = true): number => {
    const p = point(url, name, min, times);
    if (p === undefined) {
      throw new ApiError(400, "invalid_argument", `query parameter ${name} is required`);
    }
    return p;
  };

  const bounded = (url: URL, name: string, fallback: number, max: number): number => {
    const n = intParam(url, name, fallback);
    if (n < 1 || n > max) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter ${name} must be between 1 and ${max}, got ${n}`,
      );
    }
    return n;
  };

  const get = (path: string, handler: (ctx: RouteContext) => Response | Promise<Response>) =>
    router.get(path, guarded(handler));

  get("/shoal/v1/state", async ({ url }) => {
    const hasAt = url.searchParams.has("at"), hasTime = url.searchParams.has("time");
    if (hasAt && hasTime) {
      throw new ApiError(400, "invalid_argument", "give query parameter at or time, not both");
    }
    if (!hasAt && !hasTime) {
      const last = history.lastIndex;
      return json(stateView(manager.state, { at: history.timeOf(last), lastIndex: last }));
    }
    if (hasTime && !/^\d{4}-\d{2}-\d{2}/.test(url.searchParams.get("time")!)) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter time must be an ISO 8601 time (2025-01-02T03:04:05Z), got "${
          url.searchParams.get("time")
        }"`,
      );
    }
    await history.ready();
    const at = hasAt ? required(url, "at", 0, false) : required(url, "time");
    // Rendered synchronously: the view is only valid until the next await.
    return json(
      stateView(history.view(at), { at: history.timeOf(at), lastIndex: history.lastIndex }),
    );
  });

  get("/shoal/v1/diff", async ({ url }) => {
    await history.ready();
    const asText = wantsText(url);
    const from = required(url, "from");
    const to = point(url, "to") ?? history.lastIndex;
    const limit = bounded(url, "limit", DIFF_LIMIT, MAX_DIFF_LIMIT);
    const d = diff(history.stateCopy(from), history.view(to));
    if (asText) return text(formatDiff(d));
    return json({
      ...d,
      fromAt: history.timeOf(from),
      toAt: history.timeOf(to),
      changes: d.changes.slice(0, limit),
      truncated: d.changes.length > limit,
    });
  });

  get("/shoal/v1/why/{kind}/{ref}", async ({ url, params }) => {
    const kind = params.kind as ObjectKind;
    if (!OBJECT_KINDS.includes(kind)) {
      throw new ApiError(
        400,
        "invalid_argument",
        `unknown kind "${params.kind}": use one of ${OBJECT_KINDS.join(", ")}`,
      );
    }
    await history.ready();
    const asText = wantsText(url);
    const at = point(url, "at", 0, true) ?? history.lastIndex;
    const depth = bounded(url, "depth", 8, 64);
    const maxSteps = bounded(url, "max", 200, 5_000);
    let id: string;
    try {
      id = findObject(history.view(at), kind, params.ref).id;
    } catch (err) {
      // A removed object is no longer in the state, but the log still knows it by its id.
      const known = history.index.entriesOf(params.ref).some((i) => i <= at);
      if (!(err instanceof HistoryError && err.code === "not_found" && known)) throw err;
      id = params.ref;
    }
    const report = why(history.source, kind, id, at, {
      index: history.index,
      depth,
      maxSteps,
    });
    return asText ? text(formatWhy(report)) : json(report);
  });

  get("/shoal/v1/replay", async ({ url }) => {
    await history.ready();
    const asText = wantsText(url);
    const last = history.lastIndex;
    const from = required(url, "from", 1);
    const asked = point(url, "to", 1) ?? Math.min(last, from + 99);
    if (asked < from) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter to (${asked}) must not be before from (${from})`,
      );
    }
    const to = Math.min(asked, from + MAX_REPLAY - 1);
    const steps = replay(history.source, from, to, { snapshots: history.checkpoints });
    if (asText) return text(formatReplay(steps));
    return json({
      from,
      to,
      lastIndex: last,
      ...(to < asked ? { next: to + 1 } : {}),
      steps,
    });
  });

  get("/shoal/v1/bisect", async ({ url }) => {
    const until = url.searchParams.get("until");
    if (until === null || until.trim() === "") {
      throw new ApiError(
        400,
        "invalid_argument",
        "query parameter until is required: a condition such as 'running(web) < 3'",
      );
    }
    let predicate;
    try {
      predicate = compileBisectExpr(until);
    } catch (err) {
      if (!(err instanceof BisectExprError)) throw err;
      throw new ApiError(400, "invalid_argument", `query parameter until: ${err.message}`);
    }
    const mode = url.searchParams.get("mode") ?? "linear";
    if (mode !== "linear" && mode !== "binary") {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter mode must be linear or binary, got "${mode}"`,
      );
    }
    await history.ready();
    const last = history.lastIndex;
    const from = point(url, "from", 1) ?? Math.min(1, last);
    const to = point(url, "to", 1) ?? last;
    if (last === 0) return json({ until, from: 0, to: 0, mode, found: false, tested: 0 });
    const r = bisect(history.source, predicate, {
      from,
      to,
      mode,
      snapshots: history.checkpoints,
    });
    return json({
      until,
      from,
      to,
      mode,
      found: r.found,
      ...(r.found ? { index: r.index, at: history.timeOf(r.index) } : {}),
      tested: r.tested,
    });
  });

  get("/shoal/v1/timeline", async ({ url }) => {
    await history.ready();
    const samples = bounded(url, "samples", 200, 5_000);
    const first = manager.log.firstIndex();
    const last = history.lastIndex;
    const points: { index: number; at: number }[] = [];
    if (last >= first) {
      const span = last - first;
      const n = Math.min(samples, span + 1);
      let prev = -1;
      for (let k = 0; k < n; k++) {
        const i = n === 1 ? last : first + Math.round((span * k) / (n - 1));
        if (i === prev) continue;
        prev = i;
        points.push({ index: i, at: history.timeOf(i) });
      }
    }
    const marks = history.marks.slice(-bounded(url, "marks", 500, 2_000));
    return json({
      firstIndex: first,
      lastIndex: last,
      firstAt: points[0]?.at ?? 0,
      lastAt: points[points.length - 1]?.at ?? 0,
      points,
      marks,
    });
  });

  get("/shoal/v1/log", ({ url }) => {
    const last = manager.state.index;
    const from = Math.max(1, intParam(url, "from", Math.max(1, last - 99)));
    const to = Math.min(intParam(url, "to", last), from + 999);
    return json({
      lastIndex: last,
      entries: manager.log.read(from, to).map((e) => ({
        index: e.index,
        term: e.term,
        at: e.batch.at,
        time: isoTime(e.batch.at),
        by: e.batch.by,
        events: e.batch.events,
      })),
    });
  });

  const streamSource = {
    manager,
    rejectionOf: (i: number) => {
      try {
        return history.index.rejection(i);
      } catch {
        return undefined; // still indexing: the entry is described as applied
      }
    },
    track: (close: () => void) => {
      streams.add(close);
      return () => streams.delete(close);
    },
  };
  get("/shoal/v1/stream", ({ req, url }) =>
    // A HEAD must not open a stream nobody will read or cancel.
    req.method === "HEAD"
      ? new Response(null, { headers: STREAM_HEADERS })
      : streamResponse(streamSource, req, url));

  addUiRoutes(router);

  return {
    history,
    close() {
      history.close();
      for (const close of [...streams]) close();
      streams.clear();
    },
  };
}
