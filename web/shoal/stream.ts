/**
 * `GET /shoal/v1/stream`: the committed log as Server-Sent Events, so that a dashboard follows the
 * cluster without polling or reloading.
 *
 * ```text
 * retry: 2000
 *
 * event: hello
 * data: {"lastIndex":41,"firstIndex":1,"at":1700000000000}
 *
 * id: 42
 * event: entry
 * data: {"index":42,"at":1700000000123,"by":"user:service.scale","applied":true,
 *        "reason":"scale web to 3","types":{"ServiceUpdated":1},
 *        "events":[{"type":"ServiceUpdated","kind":"service","id":"...","name":"web",
 *                   "summary":"service web updated: 3 replicas"}],"more":0}
 * ```
 *
 * One `entry` per applied entry (refused ones too, with `applied: false` and the `rejection`): its
 * index, time, proposer, event types with their counts, and up to {@linkcode EVENTS_PER_ENTRY}
 * events summarised in a line each (`more` counts the rest). A client that reconnects with
 * `Last-Event-ID` (browsers' `EventSource` do it themselves), or asks `?from=I`, first gets the
 * entries it missed, at most {@linkcode MAX_CATCH_UP} of them (then a `hello` tells it to reload
 * its view). A comment line every {@linkcode KEEPALIVE_MS} keeps idle connections open through
 * proxies.
 *
 * @module
 */
import type { Manager } from "../../actors/manager.ts";
import type { LogEntry } from "../../events/log.ts";
import { type ShoalEvent, TaskState, taskStateName } from "../../events/schema.ts";
import {
  type ApplyResult,
  type ClusterState,
  nodeName,
  type Rejection,
} from "../../actors/state.ts";
import { displayName, kindOfEvent, type ObjectKind } from "../../actors/history.ts";
import { ApiError, baseHeaders } from "../http.ts";

/** Events described per entry; the rest are only counted. */
export const EVENTS_PER_ENTRY = 20;
/** Most missed entries sent to a client that resumes. */
export const MAX_CATCH_UP = 1_000;
/** Interval of the keep-alive comment. */
export const KEEPALIVE_MS = 15_000;

/** Headers of the stream (no caching, no proxy buffering). */
export const STREAM_HEADERS: Readonly<Record<string, string>> = {
  ...baseHeaders(),
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

/** One event of an entry, in a line. */
export interface StreamEvent {
  type: string;
  kind: ObjectKind;
  id: string;
  /** The object's name, when the state knows it. */
  name?: string;
  summary: string;
}

/** What an `entry` message carries. */
export interface StreamEntry {
  index: number;
  at: number;
  by: string;
  applied: boolean;
  rejection?: { code: string; reason: string };
  /** The first event's reason. */
  reason: string;
  types: Record<string, number>;
  events: StreamEvent[];
  /** Events not described. */
  more: number;
}

/** The `entry` message of an applied entry, with names from `state` (the state after it). */
export function streamEntry(
  entry: LogEntry,
  result: ApplyResult,
  state: ClusterState,
): StreamEntry {
  const batch = entry.batch;
  const types: Record<string, number> = {};
  for (const e of batch.events) types[e.type] = (types[e.type] ?? 0) + 1;
  return {
    index: entry.index,
    at: batch.at,
    by: batch.by,
    applied: result.applied,
    ...(result.applied ? {} : {
      rejection: { code: result.rejection.code, reason: result.rejection.reason },
    }),
    reason: batch.events[0]?.meta.reason ?? "",
    types,
    events: batch.events.slice(0, EVENTS_PER_ENTRY).map((e) => describeEvent(e, state)),
    more: Math.max(0, batch.events.length - EVENTS_PER_ENTRY),
  };
}

function nameOf(state: ClusterState, kind: ObjectKind, id: string): string | undefined {
  if (kind === "cluster") return state.cluster?.spec.name;
  const table = kind === "node"
    ? state.nodes
    : kind === "service"
    ? state.services
    : kind === "task"
    ? state.tasks
    : kind === "secret"
    ? state.secrets
    : kind === "config"
    ? state.configs
    : state.networks;
  const rec = table.get(id);
  return rec === undefined ? undefined : displayName(state, kind, rec);
}

function nodeLabel(state: ClusterState, id: string): string {
  const n = state.nodes.get(id);
  return n === undefined ? id.slice(0, 12) : nodeName(n);
}

/** One event in a line (`web.2 running`, `web.3 → node-1`). */
export function describeEvent(e: ShoalEvent, state: ClusterState): StreamEvent {
  const kind = kindOfEvent(e.type);
  const id = e.data.id;
  const name = nameOf(state, kind, id);
  const label = name ?? `${kind} ${id.slice(0, 12)}`;
  let summary: string;
  switch (e.type) {
    case "TaskCreated":
      summary = `${label} created`;
      break;
    case "TaskAllocated":
      summary = `${label} allocated`;
      break;
    case "TaskAssigned":
      summary = `${label} → ${nodeLabel(state, e.data.nodeId)}`;
      break;
    case "TaskUnschedulable":
      summary = `${label} pending: ${e.data.message}`;
      break;
    case "TaskStatusReported": {
      // The agent's message says more than the state only when something went wrong.
      const st = e.data.status;
      const why = st.err || (st.state >= TaskState.complete ? st.message : "");
      summary = `${label} ${taskStateName(st.state)}${why ? `: ${why}` : ""}`;
      break;
    }
    case "TaskDesiredStateChanged":
      summary = `${label} desired ${taskStateName(e.data.desiredState)}`;
      break;
    case "ServiceCreated":
    case "ServiceUpdated": {
      const mode = e.data.spec.mode;
      const what = e.type === "ServiceCreated" ? "created" : "updated";
      summary = `service ${e.data.spec.name} ${what}: ${
        mode.kind === "replicated" ? `${mode.replicas} replicas` : mode.kind
      }`;
      break;
    }
    case "ServiceUpdateStatusChanged":
      summary = `service ${label} update ${e.data.updateStatus?.state ?? "cleared"}`;
      break;
    case "NodeRegistered":
      summary = `node ${label} joined as ${e.data.role}`;
      break;
    case "NodeStatusChanged":
      summary = `node ${label} ${e.data.status.state}`;
      break;
    case "NodeSpecUpdated":
      summary = `node ${label} ${e.data.spec.availability}`;
      break;
    case "NodeRoleChanged":
      summary = `node ${label} is now a ${e.data.role}`;
      break;
    default:
      summary = `${e.type} ${label}`;
  }
  return { type: e.type, kind, id, ...(name === undefined ? {} : { name }), summary };
}

/** What {@linkcode streamResponse} needs besides the request. */
export interface StreamSource {
  readonly manager: Manager;
  /** Why the fold refused entry `index`, if it did (for entries sent again on resume). */
  rejectionOf(index: number): Rejection | undefined;
  /** Registers a closer, so the server can end the stream at shutdown; returns the unregisterer. */
  track(close: () => void): () => void;
}

/** Serves the stream. */
export function streamResponse(source: StreamSource, req: Request, url: URL): Response {
  const { manager } = source;
  const resume = req.headers.get("last-event-id") ?? url.searchParams.get("from");
  let from: number | undefined;
  if (resume !== null && resume !== "") {
    if (!/^\d+$/.test(resume)) {
      throw new ApiError(
        400,
        "invalid_argument",
        `query parameter from (or Last-Event-ID) must be a whole number, got "${resume}"`,
      );
    }
    from = Number(resume);
  }
  const encoder = new TextEncoder();
  let cleanup = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      const write = (text: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(text));
        } catch {
          close();
        }
      };
      const send = (event: string, data: unknown, id?: number) =>
        write(
          `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${
            JSON.stringify(data)
          }\n\n`,
        );
      const close = () => {
        if (closed) return;
        closed = true;
        cleanup();
        try {
          controller.close();
        } catch { /* the client went away first */ }
      };
      const unsubscribe = manager.onApplied((entry, result) =>
        send("entry", streamEntry(entry, result, manager.state), entry.index)
      );
      const untrack = source.track(close);
      const keepalive = setInterval(() => write(": keepalive\n\n"), KEEPALIVE_MS);
      cleanup = () => {
        unsubscribe();
        untrack();
        clearInterval(keepalive);
      };
      write("retry: 2000\n\n");
      const last = manager.state.index;
      // Missed entries, described with today's names (the objects may be gone: ids then).
      if (from !== undefined && from < last && last - from <= MAX_CATCH_UP) {
        for (const entry of manager.log.read(Math.max(from + 1, manager.log.firstIndex()), last)) {
          const rejection = source.rejectionOf(entry.index);
          const result: ApplyResult = rejection === undefined
            ? { applied: true }
            : { applied: false, rejection };
          send("entry", streamEntry(entry, result, manager.state), entry.index);
        }
      }
      send("hello", {
        lastIndex: last,
        firstIndex: manager.log.firstIndex(),
        at: last > 0 ? manager.log.read(last, last)[0]?.batch.at ?? 0 : 0,
      });
    },
    cancel() {
      cleanup();
    },
  });
  return new Response(body, { headers: STREAM_HEADERS });
}
