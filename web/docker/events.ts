/**
 * Docker's `GET /events` for swarm objects, derived from the committed Shoal log.
 *
 * Docker emits one event per change of a service, node, secret, config or network in the swarm
 * store (`Type`, `Action` create | update | remove, `Actor {ID, Attributes {name, ...}}`,
 * `scope: "swarm"`, `time`, `timeNano`), with `.old`/`.new` attributes for the changes people
 * watch (a service's image, replicas and update state; a node's availability, role, state,
 * leadership and reachability). Shoal derives the same from each applied batch: the changes one
 * batch makes to one object are one event. Rejected batches change nothing and yield nothing.
 *
 * Live events come from `manager.onApplied`. A `since` in the past is served from a buffer of
 * the latest events, and beyond it by folding the log again from its start (the log is the
 * history: the same events come out however often it is replayed). Tasks have no events, as in
 * Docker.
 *
 * @module
 */
import type { ShoalEvent, TaskSpec } from "../../events/schema.ts";
import { equalData } from "../../actors/equal.ts";
import type { LogEntry } from "../../events/log.ts";
import type { Manager } from "../../actors/manager.ts";
import { applyBatch, ClusterState, nodeName } from "../../actors/state.ts";
import { ApiError, baseHeaders } from "../http.ts";
import { Filters } from "./filters.ts";

/** One event as Docker's API streams it. */
export interface DockerEvent {
  Type: "service" | "node" | "secret" | "config" | "network";
  Action: "create" | "update" | "remove";
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: "swarm";
  /** Seconds since the epoch. */
  time: number;
  /** Nanoseconds since the epoch. */
  timeNano: number;
}

/** A derived event and the log index of the entry it comes from. */
export interface IndexedEvent {
  index: number;
  /** `batch.at` of the entry, ms. */
  at: number;
  event: DockerEvent;
}

type Kind = DockerEvent["Type"];
type Summary = Record<string, string>;

/** What each Shoal event does to which object, for events Docker has an equivalent of. */
const EFFECTS: ReadonlyMap<string, [Kind, DockerEvent["Action"]]> = new Map(
  [
    ["ServiceCreated", ["service", "create"]],
    ["ServiceUpdated", ["service", "update"]],
    ["ServiceRolledBack", ["service", "update"]],
    ["ServiceUpdateStatusChanged", ["service", "update"]],
    ["ServiceEndpointAllocated", ["service", "update"]],
    ["ServiceRemoved", ["service", "remove"]],
    ["NodeRegistered", ["node", "create"]],
    ["NodeDescriptionUpdated", ["node", "update"]],
    ["NodeSpecUpdated", ["node", "update"]],
    ["NodeRoleChanged", ["node", "update"]],
    ["NodeStatusChanged", ["node", "update"]],
    ["NodeManagerStatusChanged", ["node", "update"]],
    ["NodeRemoved", ["node", "remove"]],
    ["SecretCreated", ["secret", "create"]],
    ["SecretUpdated", ["secret", "update"]],
    ["SecretRemoved", ["secret", "remove"]],
    ["ConfigCreated", ["config", "create"]],
    ["ConfigUpdated", ["config", "update"]],
    ["ConfigRemoved", ["config", "remove"]],
    ["NetworkCreated", ["network", "create"]],
    ["NetworkRemoved", ["network", "remove"]],
  ] as const,
);

/** Which summary fields become `.old`/`.new` attributes on an update. */
const WATCHED: Record<Kind, string[]> = {
  service: ["image", "replicas", "updatestate"],
  node: ["availability", "role", "state", "leader", "reachability"],
  secret: [],
  config: [],
  network: [],
};

/**
 * Follows objects through the log just enough to name them and to say what changed: a small
 * summary per object, kept up to date from the events themselves (so it works on history too).
 */
export class EventTracker {
  #objects = new Map<string, Summary>();
  /** The summary a service goes back to on rollback. */
  #previous = new Map<string, Summary>();
  /** Each service's task spec, and its previous one: a new one starts a rolling update. */
  #tasks = new Map<string, { task: TaskSpec; previous?: TaskSpec }>();

  /** A tracker that knows every object of `state`. */
  static fromState(state: ClusterState): EventTracker {
    const t = new EventTracker();
    for (const s of state.services.values()) {
      t.#objects.set(`service/${s.id}`, serviceSummary(s.spec, s.updateStatus?.state));
      if (s.previousSpec) t.#previous.set(s.id, serviceSummary(s.previousSpec, undefined));
      t.#tasks.set(s.id, { task: s.spec.task, previous: s.previousSpec?.task });
    }
    for (const n of state.nodes.values()) {
      t.#objects.set(`node/${n.id}`, {
        name: nodeName(n),
        hostname: n.description.hostname,
        availability: n.spec.availability,
        role: n.role,
        state: n.status.state,
        ...managerSummary(n.managerStatus),
      });
    }
    for (const s of state.secrets.values()) t.#objects.set(`secret/${s.id}`, { name: s.spec.name });
    for (const c of state.configs.values()) t.#objects.set(`config/${c.id}`, { name: c.spec.name });
    for (const n of state.networks.values()) {
      t.#objects.set(`network/${n.id}`, { name: n.spec.name });
    }
    return t;
  }

  /** The Docker events of one applied entry (and the tracker moves past it). */
  derive(entry: LogEntry): DockerEvent[] {
    const touched = new Map<
      string,
      { kind: Kind; id: string; before?: Summary; actions: Set<string> }
    >();
    for (const event of entry.batch.events) {
      const effect = EFFECTS.get(event.type);
      if (effect === undefined) continue;
      const [kind, action] = effect;
      const id = event.data.id;
      const key = `${kind}/${id}`;
      let t = touched.get(key);
      if (t === undefined) {
        const before = this.#objects.get(key);
        t = { kind, id, before: before && { ...before }, actions: new Set() };
        touched.set(key, t);
      }
      t.actions.add(action);
      this.#apply(key, id, event);
    }
    const out: DockerEvent[] = [];
    const at = entry.batch.at;
    for (const [key, t] of touched) {
      const after = this.#objects.get(key);
      const name = (after ?? t.before)?.name ?? "";
      const emit = (action: DockerEvent["Action"], attributes: Record<string, string>) =>
        out.push({
          Type: t.kind,
          Action: action,
          Actor: { ID: t.id, Attributes: attributes },
          scope: "swarm",
          time: Math.floor(at / 1000),
          timeNano: at * 1_000_000,
        });
      if (t.actions.has("create")) emit("create", { name });
      if (t.actions.has("remove")) {
        emit("remove", { name });
        this.#objects.delete(key);
        this.#previous.delete(t.id);
        this.#tasks.delete(t.id);
        continue;
      }
      if (!t.actions.has("create") && t.actions.has("update")) {
        const attributes: Record<string, string> = { name };
        for (const field of WATCHED[t.kind]) {
          const was = t.before?.[field];
          const now = after?.[field];
          if (was === now || now === undefined) continue;
          if (was !== undefined) attributes[`${field}.old`] = was;
          attributes[`${field}.new`] = now;
        }
        emit("update", attributes);
      }
    }
    return out;
  }

  #apply(key: string, id: string, event: ShoalEvent): void {
    const cur = this.#objects.get(key) ?? { name: "" };
    switch (event.type) {
      case "ServiceCreated":
        this.#objects.set(key, serviceSummary(event.data.spec, undefined));
        this.#tasks.set(id, { task: event.data.spec.task });
        return;
      case "ServiceUpdated": {
        // As the fold does: only a new task template starts a rolling update.
        const tasks = this.#tasks.get(id);
        const changed = tasks === undefined || !equalData(tasks.task, event.data.spec.task);
        this.#previous.set(id, { ...cur });
        this.#tasks.set(id, { task: event.data.spec.task, previous: tasks?.task });
        const state = changed ? "updating" : cur.updatestate;
        this.#objects.set(key, serviceSummary(event.data.spec, state));
        return;
      }
      case "ServiceRolledBack": {
        const prev = this.#previous.get(id);
        const tasks = this.#tasks.get(id);
        const changed = tasks?.previous !== undefined && !equalData(tasks.previous, tasks.task);
        const state = changed ? "rollback_started" : cur.updatestate;
        if (prev) {
          const next: Summary = { ...prev };
          delete next.updatestate;
          if (state !== undefined) next.updatestate = state;
          this.#objects.set(key, next);
        }
        if (tasks?.previous) this.#tasks.set(id, { task: tasks.previous });
        this.#previous.delete(id);
        return;
      }
      case "ServiceUpdateStatusChanged": {
        const next = { ...cur };
        if (event.data.updateStatus) next.updatestate = event.data.updateStatus.state;
        else delete next.updatestate;
        this.#objects.set(key, next);
        return;
      }
      case "NodeRegistered":
        this.#objects.set(key, {
          name: event.data.spec.name || event.data.description.hostname,
          hostname: event.data.description.hostname,
          availability: event.data.spec.availability,
          role: event.data.role,
          state: "unknown",
        });
        return;
      case "NodeDescriptionUpdated": {
        const hostname = event.data.description.hostname;
        const named = cur.name !== cur.hostname;
        this.#objects.set(key, { ...cur, hostname, name: named ? cur.name : hostname });
        return;
      }
      case "NodeSpecUpdated":
        this.#objects.set(key, {
          ...cur,
          name: event.data.spec.name || cur.hostname || cur.name,
          availability: event.data.spec.availability,
        });
        return;
      case "NodeRoleChanged":
        this.#objects.set(key, { ...cur, role: event.data.role });
        return;
      case "NodeStatusChanged":
        this.#objects.set(key, { ...cur, state: event.data.status.state });
        return;
      case "NodeManagerStatusChanged": {
        const next = { ...cur };
        delete next.leader;
        delete next.reachability;
        this.#objects.set(key, { ...next, ...managerSummary(event.data.managerStatus) });
        return;
      }
      case "SecretCreated":
      case "ConfigCreated":
      case "NetworkCreated":
        this.#objects.set(key, { name: event.data.spec.name });
        return;
    }
  }
}

function serviceSummary(
  spec: { name: string; task: { runtime: { kind: string } }; mode: { kind: string } },
  updateState: string | undefined,
): Summary {
  const rt = spec.task.runtime as { kind: string; image?: string; command?: string };
  const s: Summary = { name: spec.name, image: rt.kind === "container" ? rt.image! : rt.command! };
  const mode = spec.mode as { kind: string; replicas?: number };
  if (mode.kind === "replicated") s.replicas = String(mode.replicas);
  if (updateState !== undefined) s.updatestate = updateState;
  return s;
}

function managerSummary(m: { leader: boolean; reachability: string } | undefined): Summary {
  return m === undefined ? {} : { leader: String(m.leader), reachability: m.reachability };
}

/** How many recent events the hub keeps for `since` queries before folding the log again. */
export const EVENTS_KEPT = 1024;

/**
 * Derives Docker events from every applied entry, keeps the latest, and fans them out to the
 * open `/events` streams.
 */
export class EventHub {
  readonly #manager: Manager;
  #tracker: EventTracker;
  readonly #recent: IndexedEvent[] = [];
  /** Every event of an entry after this index is in `#recent`. */
  #recentFrom: number;
  readonly #subscribers = new Set<(events: IndexedEvent[]) => void>();
  readonly #streams = new Set<() => void>();
  readonly #unsubscribe: () => void;
  readonly #unsubscribeRestore: () => void;

  /** Starts following `manager`'s applied entries. */
  constructor(manager: Manager) {
    this.#manager = manager;
    this.#tracker = EventTracker.fromState(manager.state);
    this.#recentFrom = manager.state.index;
    this.#unsubscribe = manager.onApplied((entry, result) => {
      if (!result.applied) return;
      const events = this.#tracker.derive(entry).map((event) => ({
        index: entry.index,
        at: entry.batch.at,
        event,
      }));
      if (events.length === 0) return;
      this.#recent.push(...events);
      if (this.#recent.length > EVENTS_KEPT) {
        const dropped = this.#recent.splice(0, this.#recent.length - EVENTS_KEPT);
        // Events of the last dropped entry may still be in the buffer: count that entry out.
        this.#recentFrom = dropped[dropped.length - 1].index;
        while (this.#recent.length > 0 && this.#recent[0].index <= this.#recentFrom) {
          this.#recent.shift();
        }
      }
      for (const s of this.#subscribers) s(events);
    });
    // A snapshot replaced the state (Raft InstallSnapshot): what happened in between is unknown.
    this.#unsubscribeRestore = manager.onRestored((index) => {
      this.#tracker = EventTracker.fromState(manager.state);
      this.#recent.length = 0;
      this.#recentFrom = index;
    });
  }

  /** Calls `fn` with the events of each entry applied from now on; returns the unsubscriber. */
  subscribe(fn: (events: IndexedEvent[]) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  /**
   * Events of entries up to `toIndex` at or after `sinceMs`: from the buffer when it reaches back
   * that far, else by folding the log from its first entry (which must be 1: a compacted log's
   * history starts at the buffer).
   */
  async history(sinceMs: number, toIndex: number): Promise<IndexedEvent[]> {
    const fromBuffer = this.#recent.filter((e) => e.at >= sinceMs && e.index <= toIndex);
    const log = this.#manager.log;
    // (A compacted log is asked nothing: the buffer's first entry may be compacted too.)
    if (this.#recentFrom === 0 || log.firstIndex() > 1) return fromBuffer;
    const reachesBack =
      (log.read(this.#recentFrom, this.#recentFrom)[0]?.batch.at ?? Infinity) < sinceMs;
    if (reachesBack) return fromBuffer;
    const older = await foldEvents(this.#manager, this.#recentFrom, sinceMs);
    return [...older, ...fromBuffer];
  }

  /** Registers an open stream's closer, for {@linkcode close}; returns the unregisterer. */
  track(close: () => void): () => void {
    this.#streams.add(close);
    return () => this.#streams.delete(close);
  }

  /** Stops following the manager and ends every open stream (so a server can shut down). */
  close(): void {
    this.#unsubscribe();
    this.#unsubscribeRestore();
    for (const close of [...this.#streams]) close();
    this.#streams.clear();
    this.#subscribers.clear();
  }
}

/** Folds the log's entries `1..toIndex` afresh and returns their events at or after `sinceMs`. */
async function foldEvents(
  manager: Manager,
  toIndex: number,
  sinceMs: number,
): Promise<IndexedEvent[]> {
  const state = new ClusterState();
  const tracker = new EventTracker();
  const out: IndexedEvent[] = [];
  const CHUNK = 2000;
  for (let from = 1; from <= toIndex; from += CHUNK) {
    for (const entry of manager.log.read(from, Math.min(toIndex, from + CHUNK - 1))) {
      if (!applyBatch(state, entry.batch, entry.index).applied) continue;
      for (const event of tracker.derive(entry)) {
        if (entry.batch.at >= sinceMs) out.push({ index: entry.index, at: entry.batch.at, event });
      }
    }
    // Let the server answer others while a long history is folded.
    await new Promise((r) => setTimeout(r, 0));
  }
  return out;
}

const EVENT_FILTERS = [
  "type",
  "event",
  "scope",
  "service",
  "node",
  "secret",
  "config",
  "network",
  "label",
  "container",
  "image",
  "volume",
  "plugin",
  "daemon",
] as const;

/** Whether `e` passes Docker's event filters. */
function matches(f: Filters, e: DockerEvent): boolean {
  if (!f.exact("type", e.Type) || !f.exact("event", e.Action) || !f.exact("scope", e.scope)) {
    return false;
  }
  for (const kind of ["service", "node", "secret", "config", "network"] as const) {
    if (!f.has(kind)) continue;
    const name = e.Actor.Attributes.name ?? "";
    if (e.Type !== kind) return false;
    if (!f.some(kind, (v) => e.Actor.ID.startsWith(v) || (name !== "" && name.startsWith(v)))) {
      return false;
    }
  }
  // Swarm events name no containers, images, volumes, plugins or daemons.
  for (const other of ["container", "image", "volume", "plugin", "daemon"]) {
    if (f.has(other)) return false;
  }
  return f.labels("label", e.Actor.Attributes);
}

/**
 * Docker's event times: seconds since the epoch (`1700000000`, `1700000000.5`) or an RFC 3339
 * date. Returns ms.
 */
export function parseEventTime(name: string, raw: string): number {
  if (/^\d+(\.\d{1,9})?$/.test(raw)) {
    const [s, frac = ""] = raw.split(".");
    return Number(s) * 1000 + Math.floor(Number(frac.padEnd(9, "0")) / 1_000_000);
  }
  const t = Date.parse(raw);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(raw)) {
    throw new ApiError(
      400,
      "invalid_argument",
      `query parameter ${name} must be a Unix timestamp (seconds) or an RFC 3339 date, got "${raw}"`,
    );
  }
  return t;
}

/** Serves `GET /events`: history from `since`, then live events until `until` (if given). */
export function eventsResponse(hub: EventHub, manager: Manager, url: URL): Response {
  const filters = Filters.fromUrl(url, EVENT_FILTERS);
  const sinceRaw = url.searchParams.get("since");
  const untilRaw = url.searchParams.get("until");
  const since = sinceRaw ? parseEventTime("since", sinceRaw) : undefined;
  const until = untilRaw ? parseEventTime("until", untilRaw) : undefined;
  const encoder = new TextEncoder();
  let cleanup = () => {};
  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const close = () => {
        if (closed) return;
        closed = true;
        cleanup();
        try {
          controller.close();
        } catch { /* already closed by the client */ }
      };
      const send = (e: IndexedEvent) => {
        if (closed || (until !== undefined && e.at > until) || !matches(filters, e.event)) return;
        controller.enqueue(encoder.encode(JSON.stringify(e.event) + "\n"));
      };
      let replaying = true;
      const queued: IndexedEvent[] = [];
      const at = manager.state.index;
      const unsubscribe = hub.subscribe((events) => {
        if (replaying) queued.push(...events);
        else for (const e of events) send(e);
      });
      const untrack = hub.track(close);
      cleanup = () => {
        unsubscribe();
        untrack();
        if (timer !== undefined) clearTimeout(timer);
      };
      if (since !== undefined) {
        for (const e of await hub.history(since, at)) send(e);
      }
      replaying = false;
      for (const e of queued) if (e.index > at) send(e);
      if (until !== undefined) {
        const wait = until - Date.now();
        if (wait <= 0) close();
        else timer = setTimeout(close, wait);
      }
    },
    cancel() {
      closed = true;
      cleanup();
    },
  });
  return new Response(body, {
    headers: { ...baseHeaders(), "content-type": "application/json" },
  });
}
