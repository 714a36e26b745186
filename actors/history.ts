/**
 * Time travel: the cluster as it was at any log index or time, what changed between two moments,
 * why an object is what it is, a step-by-step replay, and the first index at which a condition
 * holds. Everything here is pure (DESIGN.md contract 1): it reads entries from a
 * {@linkcode HistorySource} (an `EventLog` is one) and folds them with `applyBatch`, so what it
 * shows is exactly what the managers computed.
 *
 * - {@linkcode stateAt} / {@linkcode stateAtTime}: restore the nearest snapshot at or before the
 *   index, then fold the entries after it. The cost is one restore plus one `applyBatch` per entry
 *   since that snapshot, so the snapshot spacing (in events, not entries) bounds it;
 *   {@linkcode HistoryIndex.build} can take extra in-memory checkpoints for faster scrubbing.
 * - {@linkcode diff}: objects created, removed and changed field by field between two states.
 * - {@linkcode why}: every event that changed an object, newest first, each with the chain of
 *   `meta.cause` links back to the user's command, the scheduler's decision for tasks, and the
 *   spec (the user's `service create`/`update`) a task runs. {@linkcode formatWhy} prints it.
 * - {@linkcode replay}: each entry's events and the changes they made.
 * - {@linkcode bisect}: the first index at which a predicate on the state holds.
 *
 * Errors a person can act on are {@linkcode HistoryError}s with a stable `code`.
 *
 * @module
 */
import {
  type Batch,
  type SchedulingDecision,
  type ShoalEvent,
  TaskState,
  taskStateName,
} from "../events/schema.ts";
import {
  applyBatch,
  type ApplyResult,
  ClusterState,
  nodeName,
  type NodeRecord,
  type RecordMeta,
  type Rejection,
  type ServiceRecord,
  type TaskRecord,
} from "./state.ts";
import { restore, snapshot } from "./snapshot.ts";
import { equalData } from "./equal.ts";
import type { ReadonlyTable } from "./table.ts";

// ---------------------------------------------------------------------------------------------
// Sources, snapshots, errors

/** One log entry as time travel needs it (an `events/log.ts` `LogEntry` is one). */
export interface HistoryEntry {
  /** Position in the log, from 1. */
  readonly index: number;
  /** The entry's batch, decoded. */
  readonly batch: Batch;
}

/** Where entries come from: an `EventLog`, or {@linkcode arraySource} over entries in memory. */
export interface HistorySource {
  /** Entries in `[from, to]`, in order (`to` clamped to the last index). */
  read(from: number, to?: number): readonly HistoryEntry[];
  /** Index of the first entry still held (entries before it were compacted away). */
  firstIndex(): number;
  /** Index of the last entry; 0 when there is none. */
  lastIndex(): number;
}

/** A snapshot of the state after entry `index` (`actors/snapshot.ts` bytes). */
export interface SnapshotRef {
  readonly index: number;
  readonly bytes: Uint8Array;
}

/** Stable codes of {@linkcode HistoryError}. */
export type HistoryErrorCode =
  | "out_of_range"
  | "compacted"
  | "gap"
  | "not_found"
  | "invalid_argument";

/** A time-travel request that cannot be answered, with a stable code and an actionable message. */
export class HistoryError extends Error {
  /** Stable code: `out_of_range`, `compacted`, `gap`, `not_found` or `invalid_argument`. */
  readonly code: HistoryErrorCode;
  /** Creates an error. */
  constructor(code: HistoryErrorCode, message: string) {
    super(message);
    this.name = "HistoryError";
    this.code = code;
  }
}

/**
 * A {@linkcode HistorySource} over entries held in memory, which must be consecutive from
 * `firstIndex` (by default the first entry's index; give it for an empty, compacted log).
 */
export function arraySource(
  entries: readonly HistoryEntry[],
  firstIndex: number = entries[0]?.index ?? 1,
): HistorySource {
  const first = firstIndex;
  return {
    read(from: number, to: number = first + entries.length - 1): HistoryEntry[] {
      const lo = Math.max(from, first) - first;
      const hi = Math.min(to, first + entries.length - 1) - first;
      return hi < lo ? [] : entries.slice(lo, hi + 1);
    },
    firstIndex: () => first,
    lastIndex: () => first + entries.length - 1,
  };
}

/** Entries are read from the source this many at a time. */
const CHUNK = 2048;

/**
 * Calls `visit` with every entry in `[from, to]`, in order, reading in chunks; stops early when
 * `visit` returns `false`. Throws `gap` when the source skips an index.
 */
function eachEntry(
  source: HistorySource,
  from: number,
  to: number,
  visit: (entry: HistoryEntry) => boolean | void,
): void {
  for (let start = from; start <= to; start += CHUNK) {
    const end = Math.min(to, start + CHUNK - 1);
    const chunk = source.read(start, end);
    for (let i = 0; i <= end - start; i++) {
      const entry = chunk[i];
      if (entry === undefined || entry.index !== start + i) {
        throw new HistoryError(
          "gap",
          `The log has no entry ${start + i} (read ${start}..${end}, got ${chunk.length} entries)`,
        );
      }
      if (visit(entry) === false) return;
    }
  }
}

/** The entry at `index`, or undefined when the source no longer (or does not yet) hold it. */
function entryAt(source: HistorySource, index: number): HistoryEntry | undefined {
  if (index < source.firstIndex() || index > source.lastIndex()) return undefined;
  const entry = source.read(index, index)[0];
  return entry?.index === index ? entry : undefined;
}

function checkIndex(source: HistorySource, index: number, what = "index"): void {
  const last = source.lastIndex();
  if (!Number.isInteger(index) || index < 0 || index > last) {
    throw new HistoryError(
      "out_of_range",
      `No ${what} ${index} in this log: indexes go from 0 (before the first entry) to ${last}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// State at an index or a time

/**
 * The snapshot to start from for the state at `index`: the newest one at or before it from which
 * the source still holds every later entry up to `index`. Undefined: fold from the empty state.
 */
function baseFor(
  source: HistorySource,
  snapshots: readonly SnapshotRef[],
  index: number,
): SnapshotRef | undefined {
  const first = source.firstIndex();
  let best: SnapshotRef | undefined;
  for (const s of snapshots) {
    if (s.index > index || (best !== undefined && s.index <= best.index)) continue;
    if (s.index + 1 >= first || s.index === index) best = s;
  }
  if (best === undefined && first > 1 && index > 0) {
    throw new HistoryError(
      "compacted",
      `Cannot rebuild the state at index ${index}: entries 1..${
        first - 1
      } were compacted away and no snapshot between ${first - 1} and ${index} is available`,
    );
  }
  return best;
}

function restoreRef(ref: SnapshotRef): ClusterState {
  const state = restore(ref.bytes);
  if (state.index !== ref.index) {
    throw new HistoryError(
      "invalid_argument",
      `The snapshot listed at index ${ref.index} holds the state at index ${state.index}`,
    );
  }
  return state;
}

/** Folds entries `state.index + 1 .. to` into `state`, calling `visit` after each. */
function foldTo(
  state: ClusterState,
  source: HistorySource,
  to: number,
  visit?: (entry: HistoryEntry, result: ApplyResult) => boolean | void,
): void {
  if (to <= state.index) return;
  const from = state.index + 1;
  if (from < source.firstIndex()) {
    throw new HistoryError(
      "compacted",
      `Cannot fold from index ${from}: the log starts at ${source.firstIndex()}`,
    );
  }
  eachEntry(source, from, to, (entry) => {
    const result = applyBatch(state, entry.batch, entry.index);
    return visit?.(entry, result);
  });
}

/**
 * The cluster state as of log index `index` (0: before the first entry): the nearest snapshot at
 * or before it, restored, with the entries after it folded in. Equal to folding the log from the
 * start (tested). The state is the caller's own: nothing else holds it.
 */
export function stateAt(
  source: HistorySource,
  index: number,
  snapshots: readonly SnapshotRef[] = [],
): ClusterState {
  checkIndex(source, index);
  const base = baseFor(source, snapshots, index);
  const state = base === undefined ? new ClusterState() : restoreRef(base);
  foldTo(state, source, index);
  return state;
}

/**
 * The index of the last entry stamped at or before `ms` (a batch's `at`, the proposer's clock),
 * or 0 when every entry is later.
 *
 * Assumes `at` never decreases along the log. One leader stamps its batches from one clock, so
 * this holds within a term; after a failover a new leader whose clock lags could stamp earlier
 * times. The binary search then still returns an index `i` with `at(i) ≤ ms < at(i + 1)`, a true
 * boundary, though not necessarily the last one. Ties: every entry stamped exactly `ms` counts as
 * before it (the state at time `ms` includes them all).
 */
export function indexAtTime(source: HistorySource, ms: number): number {
  if (!Number.isFinite(ms)) {
    throw new HistoryError(
      "invalid_argument",
      `A time must be a number of milliseconds; got ${ms}`,
    );
  }
  let lo = source.firstIndex();
  let hi = source.lastIndex();
  if (hi < lo) return hi;
  const at = (i: number) => entryAt(source, i)!.batch.at;
  if (at(lo) > ms) {
    if (lo > 1) {
      throw new HistoryError(
        "compacted",
        `No entry is known to be at or before ${
          isoTime(ms)
        }: the oldest entry kept (${lo}) is from ${isoTime(at(lo))}`,
      );
    }
    return 0;
  }
  while (lo < hi) {
    const mid = lo + Math.ceil((hi - lo) / 2);
    if (at(mid) <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The cluster state as of time `ms`: {@linkcode stateAt} of {@linkcode indexAtTime}. */
export function stateAtTime(
  source: HistorySource,
  ms: number,
  snapshots: readonly SnapshotRef[] = [],
): ClusterState {
  return stateAt(source, indexAtTime(source, ms), snapshots);
}

/**
 * A state that moves through the log: `seek` folds forward from where it is when that is no
 * farther than from the nearest snapshot, and restores otherwise. Scrubbing forward (a timeline, a
 * replay, a bisection) then costs one `applyBatch` per entry. The state it returns is changed by
 * the next `seek`.
 */
export class TimeCursor {
  #source: HistorySource;
  #snapshots: readonly SnapshotRef[];
  #state: ClusterState | undefined;

  /** A cursor over `source`, restoring from `snapshots` when jumping. */
  constructor(source: HistorySource, snapshots: readonly SnapshotRef[] = []) {
    this.#source = source;
    this.#snapshots = snapshots;
  }

  /** The state the cursor is at, if it has moved yet. */
  get state(): ClusterState | undefined {
    return this.#state;
  }

  /** The state as of `index`. */
  seek(index: number): ClusterState {
    checkIndex(this.#source, index);
    const current = this.#state;
    if (current !== undefined && current.index <= index) {
      const base = baseFor(this.#source, this.#snapshots, index);
      if (base === undefined || base.index <= current.index) {
        foldTo(current, this.#source, index);
        return current;
      }
    }
    this.#state = stateAt(this.#source, index, this.#snapshots);
    return this.#state;
  }
}

// ---------------------------------------------------------------------------------------------
// Objects

/** The kinds of objects time travel shows. */
export type ObjectKind = "cluster" | "node" | "service" | "task" | "secret" | "config" | "network";

/** Every kind, in the order diffs list them. */
export const OBJECT_KINDS: readonly ObjectKind[] = [
  "cluster",
  "node",
  "service",
  "task",
  "secret",
  "config",
  "network",
];

/** The kind of object an event type changes (`TaskAssigned` → `task`). */
export function kindOfEvent(type: string): ObjectKind {
  if (type.startsWith("Task")) return "task";
  if (type.startsWith("Service")) return "service";
  if (type.startsWith("Node")) return "node";
  if (type.startsWith("Cluster")) return "cluster";
  if (type.startsWith("Secret")) return "secret";
  if (type.startsWith("Config")) return "config";
  if (type.startsWith("Network")) return "network";
  throw new HistoryError("invalid_argument", `Unknown event type ${type}`);
}

/** The table holding one kind of object. */
export function tableOf(state: ClusterState, kind: ObjectKind): ReadonlyTable<RecordMeta> {
  switch (kind) {
    case "cluster":
      return state.clusters;
    case "node":
      return state.nodes;
    case "service":
      return state.services;
    case "task":
      return state.tasks;
    case "secret":
      return state.secrets;
    case "config":
      return state.configs;
    case "network":
      return state.networks;
  }
}

/**
 * The name a person knows an object by: a node's name or hostname, a service's, secret's, config's
 * or network's name, and for a task `SERVICE.SLOT` (`SERVICE.NODE` for global services), as
 * `docker service ps` shows them.
 */
export function displayName(state: ClusterState, kind: ObjectKind, record: RecordMeta): string {
  switch (kind) {
    case "node":
      return nodeName(record as NodeRecord);
    case "task": {
      const t = record as TaskRecord;
      const svc = state.services.get(t.serviceId)?.spec.name ?? short(t.serviceId);
      return t.slot > 0 ? `${svc}.${t.slot}` : `${svc}.${short(t.nodeId)}`;
    }
    default:
      return (record as unknown as { spec: { name: string } }).spec.name;
  }
}

/** The first 12 characters of an id, as Docker prints them. */
function short(id: string): string {
  return id.length > 12 ? id.slice(0, 12) : id;
}

/** A one-line description of an object, for created and removed objects. */
function describe(state: ClusterState, kind: ObjectKind, record: RecordMeta): string {
  switch (kind) {
    case "node": {
      const n = record as NodeRecord;
      return `${n.role}, ${n.status.state}, ${n.spec.availability}`;
    }
    case "service": {
      const s = record as ServiceRecord;
      const mode = s.spec.mode;
      return mode.kind === "replicated" ? `replicated, ${mode.replicas} replicas` : mode.kind;
    }
    case "task": {
      const t = record as TaskRecord;
      const node = t.nodeId === "" ? "" : ` on ${nodeLabel(state, t.nodeId)}`;
      return `${stateName(t.status.state)}${node}, desired ${stateName(t.desiredState)}`;
    }
    case "secret":
      return "secret (data hidden)";
    default:
      return kind;
  }
}

function nodeLabel(state: ClusterState, id: string): string {
  const node = state.nodes.get(id);
  return node === undefined ? short(id) : nodeName(node);
}

function stateName(value: unknown): string {
  if (typeof value !== "number") return String(value);
  try {
    return taskStateName(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------------------------------------
// Diff

/** One field that differs; `from`/`to` are absent for a field that did not exist. */
export interface FieldChange {
  /** Dotted path, as `spec.mode.replicas` or `spec.task.runtime.env[1]`. */
  readonly path: string;
  readonly from?: unknown;
  readonly to?: unknown;
  /** A secret value (secret data, CA key, join tokens): `from`/`to` are never given. */
  readonly redacted?: true;
}

/** An object created, removed or changed between two states. */
export interface ObjectChange {
  readonly kind: ObjectKind;
  readonly id: string;
  readonly name: string;
  readonly change: "created" | "removed" | "changed";
  /** A one-line description of a created or removed object. */
  readonly summary?: string;
  /** What changed, field by field (for `changed`). */
  readonly fields: readonly FieldChange[];
  /** Log index of the object's last change in the older and newer state. */
  readonly fromVersion?: number;
  readonly toVersion?: number;
  /** In a replay: positions of the entry's events that touched this object. */
  readonly events?: readonly number[];
}

/** What changed between two states. */
export interface StateDiff {
  /** Index of the older (first) state. */
  readonly from: number;
  /** Index of the newer (second) state. */
  readonly to: number;
  readonly changes: readonly ObjectChange[];
  readonly created: number;
  readonly removed: number;
  readonly changed: number;
}

/** Options of {@linkcode diff}. */
export interface DiffOptions {
  /**
   * Both states are folds of the same log (as {@linkcode stateAt} gives): a record at the same
   * version in both is then the same record and is skipped without comparing. Default true; set
   * false to compare states from different logs field by field.
   */
  sameLog?: boolean;
}

/** Record fields that change on every change (the version is reported on its own). */
const META_FIELDS = new Set(["id", "version", "createdAt", "updatedAt"]);

/** Paths whose values are never shown: secret data and the swarm's keys and tokens. */
function isRedacted(kind: ObjectKind, path: string): boolean {
  if (kind === "secret") return path === "spec.data" || path.startsWith("spec.data.");
  if (kind === "cluster") {
    return path === "rootCA.keyPem" || path === "joinTokens" || path.startsWith("joinTokens.");
  }
  return false;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

function join(path: string, key: string): string {
  if (!IDENT.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === "" ? key : `${path}.${key}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Appends the leaf-level differences between `a` and `b` under `path` to `out`. */
function diffValues(
  kind: ObjectKind,
  path: string,
  a: unknown,
  b: unknown,
  out: FieldChange[],
): void {
  if (Object.is(a, b)) return;
  if (isRedacted(kind, path) && !(isObject(a) && isObject(b))) {
    if (!equalData(a, b)) out.push({ path, redacted: true });
    return;
  }
  if (isObject(a) && isObject(b)) {
    for (const key of Object.keys(a)) {
      if (path === "" && META_FIELDS.has(key)) continue;
      diffValues(kind, join(path, key), a[key], b[key], out);
    }
    for (const key of Object.keys(b)) {
      if (path === "" && META_FIELDS.has(key)) continue;
      if (!(key in a)) diffValues(kind, join(path, key), undefined, b[key], out);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      diffValues(kind, `${path}[${i}]`, a[i], b[i], out);
    }
    return;
  }
  if (a === undefined && b === undefined) return;
  if (equalData(a, b)) return;
  const taskState = kind === "task" && (path === "status.state" || path === "desiredState");
  const change: { path: string; from?: unknown; to?: unknown } = { path };
  if (a !== undefined) change.from = taskState ? stateName(a) : a;
  if (b !== undefined) change.to = taskState ? stateName(b) : b;
  out.push(change);
}

/** The field-by-field differences between two versions of one object. */
export function diffRecord(kind: ObjectKind, a: unknown, b: unknown): FieldChange[] {
  const out: FieldChange[] = [];
  diffValues(kind, "", a, b, out);
  return out;
}

function objectChange(
  kind: ObjectKind,
  a: RecordMeta | undefined,
  b: RecordMeta | undefined,
  older: ClusterState,
  newer: ClusterState,
  events?: readonly number[],
): ObjectChange | undefined {
  const extra = events === undefined ? {} : { events };
  if (a === undefined && b === undefined) return undefined;
  if (a === undefined) {
    return {
      kind,
      id: b!.id,
      name: displayName(newer, kind, b!),
      change: "created",
      summary: describe(newer, kind, b!),
      fields: [],
      toVersion: b!.version,
      ...extra,
    };
  }
  if (b === undefined) {
    return {
      kind,
      id: a.id,
      name: displayName(older, kind, a),
      change: "removed",
      summary: describe(older, kind, a),
      fields: [],
      fromVersion: a.version,
      ...extra,
    };
  }
  const fields = diffRecord(kind, a, b);
  if (fields.length === 0) return undefined;
  return {
    kind,
    id: b.id,
    name: displayName(newer, kind, b),
    change: "changed",
    fields,
    fromVersion: a.version,
    toVersion: b.version,
    ...extra,
  };
}

/**
 * What changed from state `a` to state `b`: objects created, removed and changed (field by field)
 * for the swarm, nodes, services, tasks, secrets, configs and networks. Task states are given by
 * name; secret data, the CA key and join tokens only as "changed". Objects are listed by kind,
 * then in table order (changed and created), then removed.
 */
export function diff(a: ClusterState, b: ClusterState, options: DiffOptions = {}): StateDiff {
  const sameLog = options.sameLog ?? true;
  const changes: ObjectChange[] = [];
  let created = 0, removed = 0, changed = 0;
  for (const kind of OBJECT_KINDS) {
    const ta = tableOf(a, kind);
    const tb = tableOf(b, kind);
    for (const rb of tb.values()) {
      const ra = ta.get(rb.id);
      if (ra === rb || (sameLog && ra !== undefined && ra.version === rb.version)) continue;
      const c = objectChange(kind, ra, rb, a, b);
      if (c === undefined) continue;
      changes.push(c);
      if (c.change === "created") created++;
      else changed++;
    }
    for (const ra of ta.values()) {
      if (tb.has(ra.id)) continue;
      changes.push(objectChange(kind, ra, undefined, a, b)!);
      removed++;
    }
  }
  return { from: a.index, to: b.index, changes, created, removed, changed };
}

/** A value as a person reads it: bare strings, JSON for structures, long values cut. */
export function formatValue(value: unknown): string {
  if (value === undefined) return "(none)";
  let text: string;
  if (typeof value === "string") text = value === "" ? '""' : value;
  else if (typeof value === "number" || typeof value === "boolean") text = String(value);
  else text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** `path: from → to`, or `path: (changed)` for a redacted field. */
export function formatField(field: FieldChange): string {
  if (field.redacted) return `${field.path}: (changed)`;
  return `${field.path}: ${formatValue(field.from)} → ${formatValue(field.to)}`;
}

function formatChange(c: ObjectChange, indent: string): string[] {
  const sign = c.change === "created" ? "+" : c.change === "removed" ? "-" : "~";
  const head = `${indent}${sign} ${c.kind} ${c.name} (${short(c.id)})${
    c.summary === undefined ? "" : `: ${c.summary}`
  }`;
  return [head, ...c.fields.map((f) => `${indent}    ${formatField(f)}`)];
}

/** The diff as text: a summary line, then one block per object. */
export function formatDiff(d: StateDiff): string {
  const lines = [
    `index ${d.from} → ${d.to}: ${d.created} created, ${d.changed} changed, ${d.removed} removed`,
  ];
  for (const c of d.changes) lines.push(...formatChange(c, ""));
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Replay

/** One event of a replayed entry. */
export interface ReplayEvent {
  /** Its position in the batch. */
  readonly position: number;
  readonly type: string;
  readonly kind: ObjectKind;
  readonly id: string;
  readonly by: string;
  readonly reason: string;
  readonly cause?: number;
}

/** One replayed entry: its events and what they changed. */
export interface ReplayStep {
  readonly index: number;
  readonly at: number;
  /** Who proposed the batch. */
  readonly by: string;
  readonly applied: boolean;
  /** Why the fold refused the batch (then nothing changed). */
  readonly rejection?: Rejection;
  readonly events: readonly ReplayEvent[];
  /** Each touched object's change (with the positions of the events that made it). */
  readonly changes: readonly ObjectChange[];
}

/** Options of {@linkcode replay}. */
export interface ReplayOptions {
  /** Snapshots to start from (the state before `from` is rebuilt from the nearest one). */
  snapshots?: readonly SnapshotRef[];
}

/**
 * Steps through entries `from..to` (inclusive): for each, its events and the changes they made,
 * computed by diffing every touched object before and after the entry. A refused batch changes
 * nothing and carries its rejection. Memory grows with the range: page through long ones.
 */
export function replay(
  source: HistorySource,
  from: number,
  to: number,
  options: ReplayOptions = {},
): ReplayStep[] {
  if (!Number.isInteger(from) || from < 1) {
    throw new HistoryError("out_of_range", `A replay starts at an index from 1; got ${from}`);
  }
  checkIndex(source, to);
  if (to < from) {
    throw new HistoryError("invalid_argument", `A replay from ${from} to ${to} is empty`);
  }
  const state = stateAt(source, from - 1, options.snapshots);
  const steps: ReplayStep[] = [];
  eachEntry(source, from, to, (entry) => {
    const events: ReplayEvent[] = [];
    const touched = new Map<string, { kind: ObjectKind; id: string; events: number[] }>();
    entry.batch.events.forEach((e, position) => {
      const kind = kindOfEvent(e.type);
      const cause = e.meta.cause;
      events.push({
        position,
        type: e.type,
        kind,
        id: e.data.id,
        by: e.meta.by,
        reason: e.meta.reason,
        ...(cause === undefined ? {} : { cause }),
      });
      const key = `${kind}:${e.data.id}`;
      const t = touched.get(key);
      if (t === undefined) touched.set(key, { kind, id: e.data.id, events: [position] });
      else t.events.push(position);
    });
    const before = new Map<string, RecordMeta | undefined>();
    for (const [key, t] of touched) before.set(key, tableOf(state, t.kind).get(t.id));
    // Names are looked up in the state after the entry; a removed task's service is normally
    // still there (it is removed first, its tasks reaped later).
    const result = applyBatch(state, entry.batch, entry.index);
    const changes: ObjectChange[] = [];
    for (const [key, t] of touched) {
      const a = before.get(key);
      const b = tableOf(state, t.kind).get(t.id);
      if (a === b) continue;
      const c = objectChange(t.kind, a, b, state, state, t.events);
      if (c !== undefined) changes.push(c);
    }
    steps.push({
      index: entry.index,
      at: entry.batch.at,
      by: entry.batch.by,
      applied: result.applied,
      ...(result.applied ? {} : { rejection: result.rejection }),
      events,
      changes,
    });
  });
  return steps;
}

/** The replay as text: each entry, its events, and under each event the changes it made. */
export function formatReplay(steps: readonly ReplayStep[]): string {
  const lines: string[] = [];
  for (const step of steps) {
    const verdict = step.applied
      ? ""
      : ` REJECTED (${step.rejection!.code}): ${step.rejection!.reason}`;
    lines.push(
      `#${step.index} ${isoTime(step.at)} by ${step.by}, ${step.events.length} event${
        step.events.length === 1 ? "" : "s"
      }${verdict}`,
    );
    for (const e of step.events) {
      const cause = e.cause === undefined ? "" : ` (cause #${e.cause})`;
      lines.push(`  ${e.type} ${e.kind} ${short(e.id)} by ${e.by}: ${e.reason}${cause}`);
      for (const c of step.changes) {
        if (c.events?.[0] === e.position) lines.push(...formatChange(c, "    "));
      }
    }
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Bisect

/** A condition on the state (see `bisect_expr.ts` for the command line's language). */
export type StatePredicate = (state: ClusterState) => boolean;

/** Options of {@linkcode bisect}. */
export interface BisectOptions {
  /** First index to test (default 1). */
  from?: number;
  /** Last index to test (default the last entry). */
  to?: number;
  /**
   * `linear` (default): fold forward once from the nearest snapshot before `from` and test the
   * state after every entry; exact for any predicate, one `applyBatch` and one test per index.
   * `binary`: assumes the predicate is monotonic over `[from, to]` (false, then true for good,
   * like "node n was ever down") and tests O(log n) states, each rebuilt from a snapshot; on a
   * predicate that flips back and forth it returns some index where it became true, not
   * necessarily the first.
   */
  mode?: "linear" | "binary";
  /** Snapshots to start from. */
  snapshots?: readonly SnapshotRef[];
}

/** What {@linkcode bisect} found. */
export type BisectResult =
  | {
    readonly found: true;
    /** The first index at which the predicate holds. */
    readonly index: number;
    /** The state at that index. */
    readonly state: ClusterState;
    /** How many states were tested. */
    readonly tested: number;
  }
  | { readonly found: false; readonly tested: number };

/** The first index in `[from, to]` at which `predicate` holds of the state. */
export function bisect(
  source: HistorySource,
  predicate: StatePredicate,
  options: BisectOptions = {},
): BisectResult {
  const from = options.from ?? 1;
  const to = options.to ?? source.lastIndex();
  if (!Number.isInteger(from) || from < 1) {
    throw new HistoryError("out_of_range", `bisect starts at an index from 1; got ${from}`);
  }
  checkIndex(source, to);
  if (to < from) return { found: false, tested: 0 };
  const cursor = new TimeCursor(source, options.snapshots);
  if (options.mode === "binary") {
    let tested = 1;
    if (!predicate(cursor.seek(to))) return { found: false, tested };
    let lo = from, hi = to;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      tested++;
      if (predicate(cursor.seek(mid))) hi = mid;
      else lo = mid + 1;
    }
    const state = cursor.state?.index === lo
      ? cursor.state
      : stateAt(source, lo, options.snapshots);
    return { found: true, index: lo, state, tested };
  }
  const state = cursor.seek(from - 1);
  let tested = 0;
  let found = -1;
  foldTo(state, source, to, (entry) => {
    tested++;
    if (!predicate(state)) return true;
    found = entry.index;
    return false;
  });
  return found < 0 ? { found: false, tested } : { found: true, index: found, state, tested };
}

// ---------------------------------------------------------------------------------------------
// Provenance index

interface TaskInfo {
  readonly serviceId: string;
  readonly slot: number;
  /** Entry that created it. */
  readonly created: number;
}

/** Options of {@linkcode HistoryIndex.build}. */
export interface HistoryIndexOptions {
  /** Snapshots to start from when the log has been compacted. */
  snapshots?: readonly SnapshotRef[];
  /** Index the entries up to this one (default the last). */
  to?: number;
  /**
   * Keep an in-memory snapshot of the state every time this many events have been folded since
   * the last one, in `checkpoints`: denser than the Raft snapshots, for fast {@linkcode stateAt}
   * while scrubbing. Default: none.
   */
  checkpointEvery?: number;
}

/**
 * What {@linkcode why} needs to answer in milliseconds instead of one pass over the log: for each
 * object id the entries that carry an event on it, which entries the fold refused, each task's
 * service and slot, and the names objects had over time. A manager keeps one up to date by
 * calling `add` with every entry it applies (a few map operations per event); offline tools
 * `build` one with a single fold.
 */
export class HistoryIndex {
  readonly #touches = new Map<string, number[]>();
  readonly #tasks = new Map<string, TaskInfo>();
  readonly #rejected = new Map<number, Rejection>();
  /** Name history of named objects: [index, name] pairs, oldest first. */
  readonly #names = new Map<string, [number, string][]>();
  #first = 0;
  #last = 0;
  /** In-memory snapshots taken by `build` (see `checkpointEvery`), oldest first. */
  readonly checkpoints: SnapshotRef[] = [];

  /** First entry indexed (0: none yet). */
  get firstIndex(): number {
    return this.#first;
  }

  /** Last entry indexed (0: none yet). */
  get lastIndex(): number {
    return this.#last;
  }

  /**
   * Notes one entry, in log order, with what the fold did with it. Without `result` the entry is
   * taken as applied.
   */
  add(entry: HistoryEntry, result?: ApplyResult): void {
    const index = entry.index;
    if (this.#last !== 0 && index !== this.#last + 1) {
      throw new HistoryError(
        "gap",
        `The history index is at ${this.#last}; it cannot take entry ${index} next`,
      );
    }
    if (this.#first === 0) this.#first = index;
    this.#last = index;
    const applied = result === undefined || result.applied;
    if (result !== undefined && !result.applied) this.#rejected.set(index, result.rejection);
    for (const e of entry.batch.events) {
      const id = e.data.id;
      let list = this.#touches.get(id);
      if (list === undefined) this.#touches.set(id, list = []);
      if (list[list.length - 1] !== index) list.push(index);
      if (!applied) continue;
      if (e.type === "TaskCreated") {
        this.#tasks.set(id, { serviceId: e.data.serviceId, slot: e.data.slot, created: index });
      } else {
        const name = nameIn(e);
        if (name !== undefined) {
          const names = this.#names.get(id);
          if (names === undefined) this.#names.set(id, [[index, name]]);
          else if (names[names.length - 1][1] !== name) names.push([index, name]);
        }
      }
    }
  }

  /** Indexes of the entries with an event on `id`, oldest first (refused ones included). */
  entriesOf(id: string): readonly number[] {
    return this.#touches.get(id) ?? [];
  }

  /** Why the fold refused entry `index`, if it did. */
  rejection(index: number): Rejection | undefined {
    return this.#rejected.get(index);
  }

  /** A task's service, slot and creating entry. */
  task(id: string): TaskInfo | undefined {
    return this.#tasks.get(id);
  }

  /** The name an object had as of `index` (a node's name or hostname, a service's name...). */
  nameAt(id: string, index: number): string | undefined {
    const names = this.#names.get(id);
    if (names === undefined) return undefined;
    for (let i = names.length - 1; i >= 0; i--) if (names[i][0] <= index) return names[i][1];
    return undefined;
  }

  /** Ids of every task the index knows (in creation order). */
  taskIds(): IterableIterator<string> {
    return this.#tasks.keys();
  }

  /**
   * Indexes `source` with one fold (from the empty state, or from the earliest usable snapshot
   * when the log has been compacted), taking checkpoints when asked.
   */
  static build(source: HistorySource, options: HistoryIndexOptions = {}): HistoryIndex {
    const to = options.to ?? source.lastIndex();
    checkIndex(source, to);
    const index = new HistoryIndex();
    const first = source.firstIndex();
    let state = new ClusterState();
    if (first > 1) {
      let base: SnapshotRef | undefined;
      for (const s of options.snapshots ?? []) {
        if (s.index >= first - 1 && s.index <= to && (base === undefined || s.index < base.index)) {
          base = s;
        }
      }
      if (base === undefined) {
        throw new HistoryError(
          "compacted",
          `Cannot index the log: it starts at ${first} and no snapshot at or after ${
            first - 1
          } is available`,
        );
      }
      state = restoreRef(base);
    }
    const every = options.checkpointEvery ?? 0;
    let since = 0;
    foldTo(state, source, to, (entry, result) => {
      index.add(entry, result);
      since += entry.batch.events.length;
      if (every > 0 && since >= every) {
        index.checkpoints.push({ index: entry.index, bytes: snapshot(state) });
        since = 0;
      }
    });
    return index;
  }
}

/** The name an event gives its object, if it names it. */
function nameIn(e: ShoalEvent): string | undefined {
  switch (e.type) {
    case "NodeRegistered":
      return e.data.spec.name || e.data.description.hostname;
    case "NodeSpecUpdated":
      return e.data.spec.name || undefined;
    case "NodeDescriptionUpdated":
      return e.data.description.hostname;
    case "ServiceCreated":
    case "ServiceUpdated":
    case "SecretCreated":
    case "ConfigCreated":
    case "NetworkCreated":
    case "ClusterCreated":
    case "ClusterSpecUpdated":
      return e.data.spec.name;
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Why

/** A node named in a scheduling decision. */
export interface NodeRef {
  readonly id: string;
  readonly name: string;
}

/** The scheduler's decision, with node names. */
export interface DecisionView {
  readonly nodesConsidered: number;
  /** The node picked (absent when none was suitable). */
  readonly chosen?: NodeRef;
  readonly passed: readonly NodeRef[];
  readonly rejected: readonly (NodeRef & { readonly filter: string; readonly reason: string })[];
  readonly rejectedCounts: Readonly<Record<string, number>>;
  readonly reason: string;
  /** For an unschedulable task: the message it was left pending with. */
  readonly message?: string;
}

/** One event in a chain of causes. */
export interface EventRef {
  readonly index: number;
  readonly at: number;
  /** Position in its batch. */
  readonly position: number;
  readonly type: string;
  readonly kind: ObjectKind;
  readonly id: string;
  /** The object's name at that index, when known. */
  readonly name?: string;
  readonly by: string;
  readonly reason: string;
  /** Proposed by a person (`user:<api call>`): the chain's origin. */
  readonly user: boolean;
}

/** One link of a chain of causes: an event, or an entry no single event of which stands out. */
export interface CauseHop {
  readonly index: number;
  readonly at?: number;
  /** The event of that entry that triggered the next link (the most related one). */
  readonly event?: EventRef;
  /** The entry, summarised, when no single event of it is related to the object. */
  readonly entry?: string;
  /** Why the chain could not be followed here (compacted, refused entry, depth). */
  readonly note?: string;
}

/** One event that changed the object. */
export interface WhyStep extends EventRef {
  /** Who proposed the batch (the dispatcher batches agents' reports). */
  readonly batchBy: string;
  /** What the event changed, in words (`status.state: starting → running`). */
  readonly changes: readonly string[];
  /** For `TaskAssigned` and `TaskUnschedulable`: the scheduler's decision. */
  readonly decision?: DecisionView;
  /** Its `meta.cause`, followed transitively, nearest first. */
  readonly causes: readonly CauseHop[];
}

/** An event on the object that the fold refused (so it changed nothing). */
export interface RefusedEvent {
  readonly index: number;
  readonly at: number;
  readonly type: string;
  readonly by: string;
  readonly reason: string;
  readonly code: string;
  readonly message: string;
}

/** The provenance of an object. */
export interface WhyReport {
  readonly kind: ObjectKind;
  readonly id: string;
  readonly name: string;
  /** The answer is as of this index. */
  readonly atIndex: number;
  /** Whether the object exists at `atIndex` (false once removed). */
  readonly exists: boolean;
  /** What it is at `atIndex`, in a line. */
  readonly summary: string;
  /** Every event that changed it, newest first. */
  readonly steps: readonly WhyStep[];
  /** True when older steps were left out (see `WhyOptions.maxSteps`). */
  readonly truncated: boolean;
  /**
   * For a task, the user's commands behind it: the service event that wrote the spec it runs
   * (`service create` or `update`), and the last user change to the service before the task was
   * created (a `scale`, say) when that is another one.
   */
  readonly origin: readonly CauseHop[];
  /** Events on it the fold refused, newest first (at most 20). */
  readonly refused: readonly RefusedEvent[];
}

/** Options of {@linkcode why}. */
export interface WhyOptions {
  /** An index of the log (built with one fold when not given: pass one to answer fast). */
  index?: HistoryIndex;
  /** Snapshots, used when the index must be built from a compacted log. */
  snapshots?: readonly SnapshotRef[];
  /** How many `cause` links to follow from each event (default 8). */
  depth?: number;
  /** Most events to list, newest first (default 200). */
  maxSteps?: number;
}

/**
 * Why an object is what it is as of `atIndex` (default the last entry): every event that changed
 * it, newest first, with who proposed it and why, what it changed, the scheduler's decision for
 * tasks, and its chain of `meta.cause` links followed back (bounded by `depth`) to the event that
 * started it, usually a user's command. For a task, `origin` names the user's `service create` or
 * `update` whose spec it runs. Refused events are listed apart: they changed nothing.
 *
 * `id` is an object id; resolve names against a state first ({@linkcode findObject}).
 */
export function why(
  source: HistorySource,
  kind: ObjectKind,
  id: string,
  atIndex: number = source.lastIndex(),
  options: WhyOptions = {},
): WhyReport {
  checkIndex(source, atIndex);
  const index = options.index ??
    HistoryIndex.build(source, { snapshots: options.snapshots, to: atIndex });
  if (index.lastIndex < atIndex) {
    throw new HistoryError(
      "out_of_range",
      `The history index covers entries up to ${index.lastIndex}, not ${atIndex}`,
    );
  }
  return new WhyWalk(source, index, kind, id, atIndex, options).run();
}

/** Mutable view of an object rebuilt from its own events, to describe each change. */
interface Shadow {
  exists: boolean;
  removedAt: number;
  spec?: Record<string, unknown>;
  previousSpec?: Record<string, unknown>;
  description?: Record<string, unknown>;
  labels?: Record<string, string>;
  state: number;
  desired: number;
  nodeId: string;
  serviceId: string;
  slot: number;
  specVersion: number;
  created: number;
  role: string;
  status: string;
}

class WhyWalk {
  #entries = new Map<number, HistoryEntry | undefined>();
  #depth: number;
  #related = new Set<string>();

  constructor(
    readonly source: HistorySource,
    readonly index: HistoryIndex,
    readonly kind: ObjectKind,
    readonly id: string,
    readonly atIndex: number,
    readonly options: WhyOptions,
  ) {
    this.#depth = options.depth ?? 8;
  }

  entry(i: number): HistoryEntry | undefined {
    if (!this.#entries.has(i)) this.#entries.set(i, entryAt(this.source, i));
    return this.#entries.get(i);
  }

  run(): WhyReport {
    const { kind, id, atIndex } = this;
    const touches = this.index.entriesOf(id).filter((i) => i <= atIndex);
    const mine: { entry: HistoryEntry; position: number; event: ShoalEvent }[] = [];
    for (const i of touches) {
      const entry = this.entry(i);
      if (entry === undefined) continue;
      entry.batch.events.forEach((event, position) => {
        if (event.data.id === id && kindOfEvent(event.type) === kind) {
          mine.push({ entry, position, event });
        }
      });
    }
    if (mine.length === 0) {
      throw new HistoryError(
        "not_found",
        `No ${kind} ${id} in entries ${this.source.firstIndex()}..${atIndex}`,
      );
    }
    const shadow: Shadow = {
      exists: false,
      removedAt: 0,
      state: TaskState.new,
      desired: TaskState.running,
      nodeId: "",
      serviceId: "",
      slot: 0,
      specVersion: 0,
      created: 0,
      role: "",
      status: "",
    };
    const info = kind === "task" ? this.index.task(id) : undefined;
    if (info !== undefined) {
      shadow.serviceId = info.serviceId;
      shadow.slot = info.slot;
      this.#related.add(info.serviceId);
    }
    const steps: WhyStep[] = [];
    const causes: (number | undefined)[] = [];
    const refused: RefusedEvent[] = [];
    for (const { entry, position, event } of mine) {
      const rejection = this.index.rejection(entry.index);
      if (rejection !== undefined) {
        refused.push({
          index: entry.index,
          at: entry.batch.at,
          type: event.type,
          by: event.meta.by,
          reason: event.meta.reason,
          code: rejection.code,
          message: rejection.event === position
            ? rejection.reason
            : `the batch was refused for its event ${rejection.event} (${rejection.type}): ${rejection.reason}`,
        });
        continue;
      }
      const changes = this.apply(shadow, event, entry.index);
      if (shadow.nodeId !== "") this.#related.add(shadow.nodeId);
      steps.push({
        ...this.ref(entry, position, event),
        batchBy: entry.batch.by,
        changes,
        ...this.decision(event, entry.index),
        causes: [],
      });
      causes.push(event.meta.cause);
    }
    steps.reverse();
    causes.reverse();
    refused.reverse();
    const maxSteps = this.options.maxSteps ?? 200;
    const kept = steps.slice(0, maxSteps).map((s, k) => ({
      ...s,
      causes: this.chain(causes[k], s.index),
    }));
    const name = this.index.nameAt(id, atIndex) ?? this.taskName(id, atIndex) ?? short(id);
    return {
      kind,
      id,
      name,
      atIndex,
      exists: shadow.exists,
      summary: this.summary(shadow),
      steps: kept,
      truncated: steps.length > kept.length,
      origin: kind === "task" ? this.origin(shadow) : [],
      refused: refused.slice(0, 20),
    };
  }

  taskName(id: string, at: number): string | undefined {
    const t = this.index.task(id);
    if (t === undefined) return undefined;
    const svc = this.index.nameAt(t.serviceId, at) ?? short(t.serviceId);
    return `${svc}.${t.slot > 0 ? t.slot : "global"}`;
  }

  nameOf(kind: ObjectKind, id: string, at: number): string | undefined {
    return kind === "task" ? this.taskName(id, at) : this.index.nameAt(id, at);
  }

  ref(entry: HistoryEntry, position: number, event: ShoalEvent): EventRef {
    const kind = kindOfEvent(event.type);
    const name = this.nameOf(kind, event.data.id, entry.index);
    return {
      index: entry.index,
      at: entry.batch.at,
      position,
      type: event.type,
      kind,
      id: event.data.id,
      ...(name === undefined ? {} : { name }),
      by: event.meta.by,
      reason: event.meta.reason,
      user: event.meta.by.startsWith("user:"),
    };
  }

  node(id: string, at: number): NodeRef {
    return { id, name: this.index.nameAt(id, at) ?? short(id) };
  }

  decision(event: ShoalEvent, at: number): { decision?: DecisionView } {
    let d: SchedulingDecision;
    let chosen: NodeRef | undefined;
    let message: string | undefined;
    if (event.type === "TaskAssigned") {
      d = event.data.decision;
      chosen = this.node(event.data.nodeId, at);
    } else if (event.type === "TaskUnschedulable") {
      d = event.data.decision;
      message = event.data.message;
    } else return {};
    return {
      decision: {
        nodesConsidered: d.nodesConsidered,
        ...(chosen === undefined ? {} : { chosen }),
        passed: d.passed.map((n) => this.node(n, at)),
        rejected: d.rejected.map((r) => ({
          ...this.node(r.node, at),
          filter: r.filter,
          reason: r.reason,
        })),
        rejectedCounts: d.rejectedCounts,
        reason: d.reason,
        ...(message === undefined ? {} : { message }),
      },
    };
  }

  /** How closely an event of a cause entry is related to the object (0: not at all). */
  relevance(e: ShoalEvent): number {
    const eid = e.data.id;
    if (eid === this.id) return 5;
    const target = this.kind === "task" ? this.index.task(this.id) : undefined;
    const other = this.index.task(eid);
    if (target !== undefined && other !== undefined && other.serviceId === target.serviceId) {
      return other.slot === target.slot ? 4 : 2;
    }
    if (this.#related.has(eid)) return 3;
    if (this.kind === "service" && other !== undefined && other.serviceId === this.id) return 2;
    if (e.meta.by.startsWith("user:")) return 1;
    return 0;
  }

  /** The chain of causes from a `meta.cause` link, nearest first. */
  chain(cause: number | undefined, from: number): CauseHop[] {
    const hops: CauseHop[] = [];
    let next = cause;
    let below = from;
    while (next !== undefined && next > 0) {
      if (hops.length >= this.#depth) {
        hops.push({ index: next, note: `not followed: more than ${this.#depth} links` });
        break;
      }
      if (next >= below) {
        hops.push({ index: next, note: `not followed: a cause must come before entry ${below}` });
        break;
      }
      const entry = this.entry(next);
      if (entry === undefined) {
        hops.push({ index: next, note: "entry no longer in the log (compacted)" });
        break;
      }
      const events = entry.batch.events;
      let best = -1, score = 0;
      events.forEach((e, i) => {
        const s = this.relevance(e);
        if (s > score) [best, score] = [i, s];
      });
      if (best < 0 && events.length === 1) best = 0;
      const refused = this.index.rejection(next);
      const note = refused === undefined
        ? {}
        : { note: `this entry was refused: ${refused.reason}` };
      if (best < 0) {
        hops.push({ index: next, at: entry.batch.at, entry: entrySummary(entry.batch), ...note });
        break;
      }
      const event = events[best];
      hops.push({ index: next, at: entry.batch.at, event: this.ref(entry, best, event), ...note });
      below = next;
      next = event.meta.cause;
    }
    return hops;
  }

  /** A task's origin: the service event that wrote its spec, and the last user change before. */
  origin(shadow: Shadow): CauseHop[] {
    const out: CauseHop[] = [];
    const svc = shadow.serviceId;
    if (svc === "") return out;
    const specEntry = this.entry(shadow.specVersion);
    if (specEntry === undefined) {
      out.push({ index: shadow.specVersion, note: "entry no longer in the log (compacted)" });
    } else {
      const position = specEntry.batch.events.findIndex((e) =>
        e.data.id === svc && kindOfEvent(e.type) === "service"
      );
      if (position >= 0) {
        out.push({
          index: specEntry.index,
          at: specEntry.batch.at,
          event: this.ref(specEntry, position, specEntry.batch.events[position]),
          note: "wrote the spec this task runs",
        });
      }
    }
    const touches = this.index.entriesOf(svc);
    for (let k = touches.length - 1; k >= 0; k--) {
      const i = touches[k];
      if (i > shadow.created || i < this.source.firstIndex()) continue;
      if (this.index.rejection(i) !== undefined) continue;
      const entry = this.entry(i);
      const position = entry?.batch.events.findIndex((e) =>
        e.data.id === svc && e.meta.by.startsWith("user:")
      ) ?? -1;
      if (entry === undefined || position < 0) continue;
      if (i !== shadow.specVersion) {
        out.push({
          index: i,
          at: entry.batch.at,
          event: this.ref(entry, position, entry.batch.events[position]),
          note: "last user change to the service before this task was created",
        });
      }
      break;
    }
    return out;
  }

  summary(s: Shadow): string {
    if (!s.exists) return s.removedAt > 0 ? `removed at index ${s.removedAt}` : "not created yet";
    switch (this.kind) {
      case "task": {
        const node = s.nodeId === "" ? "" : ` on ${this.node(s.nodeId, this.atIndex).name}`;
        return `${stateName(s.state)}${node}, desired ${stateName(s.desired)}`;
      }
      case "service": {
        const mode = s.spec?.mode as { kind: string; replicas?: number } | undefined;
        return mode?.kind === "replicated"
          ? `replicated, ${mode.replicas} replicas`
          : `${mode?.kind}`;
      }
      case "node":
        return `${s.role}, ${s.status || "unknown"}, ${
          (s.spec as { availability?: string } | undefined)?.availability ?? "active"
        }`;
      default:
        return "exists";
    }
  }

  /** Applies an accepted event to the shadow and says what it changed. */
  apply(s: Shadow, e: ShoalEvent, index: number): string[] {
    const kind = this.kind;
    const specDiff = (next: unknown) =>
      diffRecord(kind, { spec: s.spec }, { spec: next }).map(formatField);
    const stateMove = (to: number) =>
      to === s.state ? [] : [`status.state: ${stateName(s.state)} → ${stateName(to)}`];
    switch (e.type) {
      case "TaskCreated": {
        const d = e.data;
        Object.assign(s, {
          exists: true,
          created: index,
          serviceId: d.serviceId,
          slot: d.slot,
          nodeId: d.nodeId,
          specVersion: d.specVersion,
          desired: d.desiredState,
          state: TaskState.new,
        });
        this.#related.add(d.serviceId);
        const where = d.slot > 0 ? `slot ${d.slot}` : `node ${this.node(d.nodeId, index).name}`;
        const out = [
          `created for ${where} of service ${
            this.index.nameAt(d.serviceId, index) ?? short(d.serviceId)
          }, spec version ${d.specVersion}, desired ${stateName(d.desiredState)}`,
        ];
        if (d.attempt > 0) out.push(`restart attempt ${d.attempt}`);
        if (d.startAfter > 0) out.push(`waits until ${isoTime(d.startAfter)} (restart delay)`);
        return out;
      }
      case "TaskAllocated": {
        const out = stateMove(TaskState.pending);
        s.state = TaskState.pending;
        if (e.data.ports.length > 0) out.push(`ports: ${formatValue(e.data.ports)}`);
        if (e.data.addresses.length > 0) out.push(`addresses: ${e.data.addresses.join(", ")}`);
        return out;
      }
      case "TaskAssigned": {
        const out = [`assigned to node ${this.node(e.data.nodeId, index).name}`];
        out.push(...stateMove(TaskState.assigned));
        s.state = TaskState.assigned;
        s.nodeId = e.data.nodeId;
        return out;
      }
      case "TaskUnschedulable":
        return [`left pending: ${e.data.message}`];
      case "TaskStatusReported": {
        const st = e.data.status;
        const out = stateMove(st.state);
        s.state = st.state;
        if (st.message !== "") out.push(`message: ${st.message}`);
        if (st.err !== "") out.push(`error: ${st.err}`);
        if (st.exitCode !== undefined) out.push(`exit code ${st.exitCode}`);
        return out;
      }
      case "TaskDesiredStateChanged": {
        const out = [`desiredState: ${stateName(s.desired)} → ${stateName(e.data.desiredState)}`];
        s.desired = e.data.desiredState;
        return out;
      }
      case "ServiceCreated": {
        s.exists = true;
        s.spec = e.data.spec;
        const mode = e.data.spec.mode;
        return [
          `created service ${e.data.spec.name} (${mode.kind}${
            mode.kind === "replicated" ? `, ${mode.replicas} replicas` : ""
          })`,
        ];
      }
      case "ServiceUpdated": {
        const out = specDiff(e.data.spec);
        s.previousSpec = s.spec;
        s.spec = e.data.spec;
        return out.length > 0 ? out : ["spec unchanged"];
      }
      case "ServiceRolledBack": {
        const out = ["rolled back to the previous spec", ...specDiff(s.previousSpec)];
        s.spec = s.previousSpec;
        s.previousSpec = undefined;
        return out;
      }
      case "ServiceUpdateStatusChanged": {
        const u = e.data.updateStatus;
        return [
          u === undefined
            ? "update status cleared"
            : `update ${u.state}${u.message === "" ? "" : `: ${u.message}`}`,
        ];
      }
      case "ServiceEndpointAllocated":
        return [`endpoint: ${formatValue(e.data.endpoint)}`];
      case "NodeRegistered": {
        const d = e.data;
        Object.assign(s, { exists: true, spec: d.spec, description: d.description, role: d.role });
        return [`joined as ${d.role} (${d.description.hostname}, ${d.addr})`];
      }
      case "NodeSpecUpdated": {
        const out = specDiff(e.data.spec);
        s.spec = e.data.spec;
        return out.length > 0 ? out : ["spec unchanged"];
      }
      case "NodeDescriptionUpdated": {
        const out = diffRecord(kind, { description: s.description }, {
          description: e.data.description,
        }).map(formatField);
        s.description = e.data.description;
        return out.length > 0 ? out : ["description unchanged"];
      }
      case "NodeRoleChanged": {
        const out = [`role: ${s.role} → ${e.data.role}`];
        s.role = e.data.role;
        return out;
      }
      case "NodeStatusChanged": {
        const st = e.data.status;
        const out = [`status.state: ${s.status || "unknown"} → ${st.state}`];
        if (st.message !== "") out.push(`message: ${st.message}`);
        s.status = st.state;
        return out;
      }
      case "NodeManagerStatusChanged":
        return [`managerStatus: ${formatValue(e.data.managerStatus)}`];
      case "ClusterCreated":
        s.exists = true;
        s.spec = e.data.spec;
        return [`swarm ${e.data.spec.name} initialised`];
      case "ClusterSpecUpdated": {
        const out = specDiff(e.data.spec);
        s.spec = e.data.spec;
        return out.length > 0 ? out : ["spec unchanged"];
      }
      case "ClusterJoinTokenRotated":
        return [`joinTokens.${e.data.role}: (changed)`];
      case "ClusterRootCARotated":
        return ["rootCA: (changed)"];
      case "ClusterUnlockKeyRotated":
        return [`unlockKey: ${e.data.unlockKey === "" ? "(removed)" : "(changed)"}`];
      case "SecretCreated":
      case "ConfigCreated":
        s.exists = true;
        s.labels = e.data.spec.labels;
        return [`created ${kind} ${e.data.spec.name}${kind === "secret" ? " (data hidden)" : ""}`];
      case "SecretUpdated":
      case "ConfigUpdated": {
        const out = diffRecord(kind, { labels: s.labels }, { labels: e.data.labels }).map(
          formatField,
        );
        s.labels = e.data.labels;
        return out.length > 0 ? out : ["labels unchanged"];
      }
      case "NetworkCreated":
        s.exists = true;
        return [`created network ${e.data.spec.name} (${e.data.spec.driver})`];
      case "NetworkAllocated":
        return [`subnet ${e.data.subnet}, gateway ${e.data.gateway}`];
      case "TaskRemoved":
      case "ServiceRemoved":
      case "NodeRemoved":
      case "SecretRemoved":
      case "ConfigRemoved":
      case "NetworkRemoved":
        s.exists = false;
        s.removedAt = index;
        return ["removed"];
    }
  }
}

/** An entry in a few words: `3 events by dispatcher: TaskStatusReported ×3`. */
function entrySummary(batch: Batch): string {
  const counts = new Map<string, number>();
  for (const e of batch.events) counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
  const types = [...counts].map(([t, n]) => (n === 1 ? t : `${t} ×${n}`)).join(", ");
  return `${batch.events.length} event${
    batch.events.length === 1 ? "" : "s"
  } by ${batch.by}: ${types}`;
}

/** A time as ISO 8601 (UTC, milliseconds). */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

function formatRef(e: EventRef, withTarget: boolean): string {
  const target = withTarget ? ` ${e.kind} ${e.name ?? short(e.id)}` : "";
  return `${e.type}${target} by ${e.by}: ${e.reason}${e.user ? "  [user command]" : ""}`;
}

function formatHop(h: CauseHop): string {
  const note = h.note === undefined ? "" : ` (${h.note})`;
  if (h.event !== undefined) return `#${h.index} ${formatRef(h.event, true)}${note}`;
  if (h.entry !== undefined) return `#${h.index} ${h.entry}${note}`;
  return `#${h.index}${note}`;
}

function formatDecision(d: DecisionView, indent: string): string[] {
  const out = [
    `${indent}decision: ${d.nodesConsidered} node${
      d.nodesConsidered === 1 ? "" : "s"
    } considered; ${
      d.chosen === undefined ? "none chosen" : `chose ${d.chosen.name}`
    }: ${d.reason}`,
  ];
  if (d.message !== undefined) out.push(`${indent}  message: ${d.message}`);
  if (d.passed.length > 0) {
    out.push(`${indent}  passed: ${d.passed.map((n) => n.name).join(", ")}`);
  }
  for (const r of d.rejected) out.push(`${indent}  rejected ${r.name} by ${r.filter}: ${r.reason}`);
  const counts = Object.entries(d.rejectedCounts);
  if (counts.length > 0) {
    out.push(`${indent}  rejected per filter: ${counts.map(([f, n]) => `${f} ${n}`).join(", ")}`);
  }
  return out;
}

/** The report as text, newest event first, each with its changes, decision and causes. */
export function formatWhy(r: WhyReport): string {
  const lines = [
    `${r.kind} ${r.name} (${r.id}) as of index ${r.atIndex}: ${r.summary}`,
  ];
  for (const s of r.steps) {
    lines.push(`#${s.index} ${isoTime(s.at)} ${formatRef(s, false)}`);
    for (const c of s.changes) lines.push(`      ${c}`);
    if (s.decision !== undefined) lines.push(...formatDecision(s.decision, "      "));
    for (const h of s.causes) lines.push(`      ← caused by ${formatHop(h)}`);
  }
  if (r.truncated) lines.push("... older events left out");
  for (const o of r.origin) lines.push(`origin: ${formatHop(o)}`);
  for (const f of r.refused) {
    lines.push(`refused #${f.index} ${f.type} by ${f.by} (${f.code}): ${f.message}`);
  }
  return lines.join("\n");
}

/**
 * The object a person means by `ref` in `state`: an id, a unique id prefix, or a name (a node's
 * name or hostname; for a task `SERVICE.SLOT`, its newest task in that slot). Throws `not_found`.
 */
export function findObject(state: ClusterState, kind: ObjectKind, ref: string): RecordMeta {
  const table = tableOf(state, kind);
  const exact = table.get(ref);
  if (exact !== undefined) return exact;
  let byName: RecordMeta | undefined;
  if (kind === "task") {
    const m = /^(.+)\.(\d+)$/.exec(ref);
    const svc = m === null ? undefined : state.serviceByName(m[1]);
    if (m !== null && svc !== undefined) {
      for (const t of state.tasksOf(svc.id)) {
        if (t.slot === Number(m[2]) && (byName === undefined || t.createdAt >= byName.createdAt)) {
          byName = t;
        }
      }
    }
  } else if (kind === "cluster") {
    byName = state.cluster;
  } else {
    for (const rec of table.values()) {
      if (displayName(state, kind, rec) === ref) {
        byName = rec;
        break;
      }
    }
  }
  if (byName !== undefined) return byName;
  let found: RecordMeta | undefined;
  for (const rec of table.values()) {
    if (!rec.id.startsWith(ref) || ref === "") continue;
    if (found !== undefined) {
      throw new HistoryError(
        "invalid_argument",
        `${kind} ${ref} is ambiguous: several ids start with it`,
      );
    }
    found = rec;
  }
  if (found === undefined) {
    throw new HistoryError("not_found", `No ${kind} ${ref} at index ${state.index}`);
  }
  return found;
}
