/**
 * Docker's `GET /services/{id}/logs` and `GET /tasks/{id}/logs`: the output of a service's tasks
 * (history included, while their nodes keep it) or of one task, as a multiplexed stream (see
 * `log_stream.ts`), read from the node that runs each task (`node/task_logs.ts`).
 *
 * Query parameters, as Docker's: `stdout`, `stderr` (at least one), `follow`, `since` and `until`
 * (Unix seconds, with a fraction: `1700000000.5`; RFC 3339 is accepted too), `timestamps`,
 * `tail` (a number of lines per task, or `all`), `details` (each line's context:
 * `com.docker.swarm.node.id`, `com.docker.swarm.service.id`, `com.docker.swarm.task.id`).
 *
 * Without `follow` the lines of all tasks are merged in time order. With it, each task's lines
 * come as they are written, a service's new tasks join the stream as they are placed, and the
 * stream ends when the client goes away, the service is removed, or `until` passes (a task's
 * stream ends with its output). A task whose node cannot be reached is left out; the stream then
 * ends with Docker's warning on the error stream: `warning: incomplete log stream. some logs could
 * not be retrieved for the following reasons: …`.
 *
 * @module
 */
import { resolve } from "../../actors/lookup.ts";
import { resolveService } from "../../actors/entities/service.ts";
import type { TaskRecord } from "../../actors/state.ts";
import type { LogLine } from "../../actors/agent/log_capture.ts";
import type { TaskLogSource } from "../../node/task_logs.ts";
import { ApiError, baseHeaders } from "../http.ts";
import type { RouteContext, Router } from "../router.ts";
import { type DockerApiContext, requireSwarm } from "./context.ts";
import { encodeFrame, formatDetails, rfc3339NanoFixed, StreamKind } from "./log_stream.ts";

/** A logs request's query, parsed. */
export interface LogQuery {
  stdout: boolean;
  stderr: boolean;
  follow: boolean;
  timestamps: boolean;
  details: boolean;
  /** Lines per task (undefined: all). */
  tail: number | undefined;
  /** ms since the epoch. */
  since: number | undefined;
  /** ms since the epoch. */
  until: number | undefined;
}

/** How often a following service stream looks for new tasks, ms. */
const WATCH_MS = 500;

/** Docker's boolean query values (`httputils.BoolValue`): anything but "", 0, no, false, none. */
function flag(url: URL, name: string): boolean {
  const v = (url.searchParams.get(name) ?? "").trim().toLowerCase();
  return !(v === "" || v === "0" || v === "no" || v === "false" || v === "none");
}

/** A `since`/`until` value: Unix seconds with an optional fraction, or RFC 3339; ms. */
export function parseLogTime(name: string, raw: string | null): number | undefined {
  if (raw === null || raw === "" || raw === "0") return undefined;
  if (/^\d+(\.\d+)?$/.test(raw)) {
    const [secs, frac = ""] = raw.split(".");
    return Number(secs) * 1000 + Math.floor(Number(`0.${frac || "0"}`) * 1000);
  }
  const t = Date.parse(raw);
  if (/^\d{4}-\d\d-\d\dT/.test(raw) && !Number.isNaN(t)) return t;
  throw new ApiError(
    400,
    "invalid_argument",
    `query parameter ${name} must be a Unix timestamp in seconds (1700000000.5) or an RFC 3339 time, got "${raw}"`,
  );
}

/** Parses a logs request's query, or throws a 400 naming the parameter. */
export function parseLogQuery(url: URL): LogQuery {
  const stdout = flag(url, "stdout");
  const stderr = flag(url, "stderr");
  if (!stdout && !stderr) {
    throw new ApiError(
      400,
      "invalid_argument",
      "Bad parameters: you must choose at least one stream (stdout=1 or stderr=1)",
    );
  }
  const rawTail = (url.searchParams.get("tail") ?? "").trim();
  let tail: number | undefined;
  if (rawTail !== "" && rawTail !== "all") {
    if (!/^-?\d+$/.test(rawTail)) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter tail must be a number of lines or "all", got "${rawTail}"`,
      );
    }
    const n = Number(rawTail);
    tail = n < 0 ? undefined : n;
  }
  return {
    stdout,
    stderr,
    follow: flag(url, "follow"),
    timestamps: flag(url, "timestamps"),
    details: flag(url, "details"),
    tail,
    since: parseLogTime("since", url.searchParams.get("since")),
    until: parseLogTime("until", url.searchParams.get("until")),
  };
}

/** Adds the two logs routes. */
export function addLogRoutes(router: Router, ctx: DockerApiContext): void {
  router.get("/services/{id}/logs", (rc) => {
    requireSwarm(ctx);
    const query = parseLogQuery(rc.url);
    const serviceId = resolveService(ctx.manager.state, rc.params.id).id;
    return streamLogs(ctx, rc, query, () => {
      const s = ctx.manager.state;
      if (!s.services.has(serviceId)) return undefined;
      return [...s.tasksOf(serviceId)];
    }, true);
  });

  router.get("/tasks/{id}/logs", (rc) => {
    requireSwarm(ctx);
    const query = parseLogQuery(rc.url);
    const s = ctx.manager.state;
    const task = resolve("task", s.tasks, new Map(), rc.params.id);
    return streamLogs(ctx, rc, query, () => [task], false);
  });
}

/**
 * The response: frames of every task `tasks()` lists. With `watch`, `tasks` is called again
 * while following (new tasks join), until it returns undefined (the service is gone).
 */
function streamLogs(
  ctx: DockerApiContext,
  rc: RouteContext,
  query: LogQuery,
  tasks: () => TaskRecord[] | undefined,
  watch: boolean,
): Response {
  const source: TaskLogSource = ctx.taskLogs ?? noLogSource;
  // Not the request's signal: Deno.serve aborts it once the response is returned. A client that
  // goes away cancels the body, which rejects the writer.
  const abort = new AbortController();
  const signal = abort.signal;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  // The client went away (the response body was cancelled): stop reading.
  writer.closed.catch(() => abort.abort());
  const problems: string[] = [];
  const write = async (task: TaskRecord, line: LogLine) => {
    if (line.stream === "stdout" ? !query.stdout : !query.stderr) return;
    let payload = "";
    if (query.timestamps) payload += `${rfc3339NanoFixed(line.time)} `;
    if (query.details) {
      payload += `${
        formatDetails({
          "com.docker.swarm.node.id": task.nodeId,
          "com.docker.swarm.service.id": task.serviceId,
          "com.docker.swarm.task.id": task.id,
        })
      } `;
    }
    payload += `${line.text}\n`;
    await writer.write(
      encodeFrame(line.stream === "stdout" ? StreamKind.stdout : StreamKind.stderr, payload),
    ).catch(() => abort.abort());
  };
  const read = (task: TaskRecord, follow: boolean, tail = query.tail) => {
    const node = ctx.manager.state.nodes.get(task.nodeId);
    if (node === undefined) {
      return failing(`node ${task.nodeId} of task ${task.id} is not part of the swarm any more`);
    }
    return source(task, { tail, since: query.since, follow, signal });
  };
  const inWindow = (line: LogLine) => query.until === undefined || line.time <= query.until;
  const placed = (t: TaskRecord) => t.nodeId !== "";

  const run = async () => {
    const first = (tasks() ?? []).filter(placed);
    if (!query.follow) {
      const sources = first.map((t) => ({ task: t, lines: read(t, false) }));
      for await (const { task, line } of mergeByTime(sources, problems)) {
        if (signal.aborted) return;
        if (inWindow(line)) await write(task, line);
      }
      return;
    }
    const seen = new Set<string>();
    const pumps: Promise<void>[] = [];
    const pump = async (task: TaskRecord, tail: number | undefined) => {
      try {
        for await (const line of read(task, true, tail)) {
          if (signal.aborted) return;
          if (!inWindow(line)) return;
          await write(task, line);
        }
      } catch (err) {
        if (!signal.aborted) problems.push((err as Error).message);
      }
    };
    const start = (list: TaskRecord[], tail: number | undefined) => {
      for (const t of list) {
        if (seen.has(t.id)) continue;
        seen.add(t.id);
        pumps.push(pump(t, tail));
      }
    };
    start(first, query.tail);
    let more = watch;
    while (!signal.aborted && more) {
      if (query.until !== undefined && Date.now() > query.until) break;
      await sleep(WATCH_MS, signal);
      const now = tasks();
      if (now === undefined) more = false;
      // New tasks: from their start, whatever the tail.
      else start(now.filter(placed), undefined);
    }
    if (watch) abort.abort();
    await Promise.all(pumps);
  };

  void run().catch((err) => {
    if (!signal.aborted) problems.push((err as Error).message);
  }).then(async () => {
    if (problems.length > 0) {
      await writer.write(encodeFrame(
        StreamKind.systemerr,
        `warning: incomplete log stream. some logs could not be retrieved for the following reasons: ${
          problems.join(", ")
        }\n`,
      )).catch(() => {});
    }
    await writer.close().catch(() => {});
  }).finally(() => abort.abort());

  const multiplexed = rc.apiVersion !== undefined && versionAtLeast(rc.apiVersion, 1, 42);
  return new Response(readable, {
    status: 200,
    headers: {
      ...baseHeaders(),
      "content-type": multiplexed
        ? "application/vnd.docker.multiplexed-stream"
        : "application/vnd.docker.raw-stream",
    },
  });
}

function versionAtLeast(v: string, major: number, minor: number): boolean {
  const [a, b] = v.split(".").map(Number);
  return a > major || (a === major && b >= minor);
}

interface Source {
  task: TaskRecord;
  lines: AsyncIterable<LogLine>;
}

/**
 * The lines of finite sources, merged in time order (each source is in order). A source that
 * fails adds its error to `problems` and ends.
 */
export async function* mergeByTime(
  sources: readonly Source[],
  problems: string[],
): AsyncGenerator<{ task: TaskRecord; line: LogLine }> {
  const heads: { task: TaskRecord; it: AsyncIterator<LogLine>; line: LogLine }[] = [];
  const advance = async (task: TaskRecord, it: AsyncIterator<LogLine>) => {
    try {
      const r = await it.next();
      if (!r.done) heads.push({ task, it, line: r.value });
    } catch (err) {
      problems.push((err as Error).message);
    }
  };
  await Promise.all(sources.map((s) => advance(s.task, s.lines[Symbol.asyncIterator]())));
  try {
    while (heads.length > 0) {
      let min = 0;
      for (let i = 1; i < heads.length; i++) if (heads[i].line.time < heads[min].line.time) min = i;
      const [head] = heads.splice(min, 1);
      yield { task: head.task, line: head.line };
      await advance(head.task, head.it);
    }
  } finally {
    for (const h of heads) void h.it.return?.(undefined)?.catch(() => {});
  }
}

const noLogSource: TaskLogSource = (task) =>
  failing(`this manager reads no task output: the logs of task ${task.id} cannot be read`);

// deno-lint-ignore require-yield
async function* failing(message: string): AsyncGenerator<LogLine> {
  throw new Error(message);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
