/**
 * What the log tools show and check, shared by `shoal log` (offline, on a data dir) and the
 * `/shoal/v1/log/...` routes (a running manager): objects as of an index (swarm-rafttool's
 * `dump-object`, which replays the snapshot and the log into a fresh store, as Shoal's fold
 * does), a summary of a snapshot's state, and a check that every stored snapshot equals the fold
 * of the log up to its index.
 *
 * Nothing here shows a secret's data, the CA's private key or the join tokens: they are printed
 * as `[REDACTED]`.
 *
 * @module
 */
import type { LogEntry } from "../events/log.ts";
import type { StoredSnapshot } from "../events/stored_log.ts";
import { taskStateName } from "../events/schema.ts";
import {
  diff,
  displayName,
  findObject,
  formatField,
  HistoryError,
  OBJECT_KINDS,
  type ObjectKind,
  tableOf,
} from "./history.ts";
import { restore, snapshot, snapshotData } from "./snapshot.ts";
import { applyBatch, ClusterState, type RecordMeta, type TaskRecord } from "./state.ts";
import { equalData } from "./equal.ts";

/** What replaces a value never shown. */
export const REDACTED = "[REDACTED]";

/** The words `dump-object` takes for each kind (rafttool's singulars, and plurals). */
const KIND_WORDS: Record<string, ObjectKind> = Object.fromEntries(
  OBJECT_KINDS.flatMap((k) => [[k, k], [`${k}s`, k]]),
);

/** The kind a word names (`services`, `service`, `cluster`); a clear error otherwise. */
export function parseKind(word: string): ObjectKind {
  const kind = KIND_WORDS[word.toLowerCase()];
  if (kind === undefined) {
    throw new HistoryError(
      "invalid_argument",
      `unknown kind "${word}": use one of nodes, services, tasks, networks, secrets, configs, cluster`,
    );
  }
  return kind;
}

/**
 * An object as plain JSON, as `dump-object` prints it: secret data, the CA key and the join
 * tokens redacted; a task's states by name and its task spec included (tasks share specs).
 */
export function objectJson(
  state: ClusterState,
  kind: ObjectKind,
  record: RecordMeta,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: record.id,
    name: displayName(state, kind, record),
    ...structuredClone(record) as unknown as Record<string, unknown>,
  };
  const spec = out.spec as Record<string, unknown> | undefined;
  if (kind === "secret" && spec !== undefined) spec.data = REDACTED;
  if (kind === "cluster") {
    const ca = out.rootCA as Record<string, unknown> | undefined;
    if (ca !== undefined) ca.keyPem = REDACTED;
    if (out.joinTokens !== undefined) out.joinTokens = { worker: REDACTED, manager: REDACTED };
    if (out.unlockKey) out.unlockKey = REDACTED;
  }
  if (kind === "task") {
    const task = record as TaskRecord;
    const status = out.status as Record<string, unknown>;
    status.state = stateName(task.status.state);
    out.desiredState = stateName(task.desiredState);
    try {
      out.spec = structuredClone(state.taskSpec(task));
    } catch {
      out.spec = null;
    }
  }
  return out;
}

function stateName(value: number): string | number {
  try {
    return taskStateName(value);
  } catch {
    return value;
  }
}

/**
 * The objects of `kind` in `state`, as {@linkcode objectJson}: the one `ref` names (an id, a
 * unique id prefix or a name; `SERVICE.SLOT` for a task), or all of them. Throws
 * {@linkcode HistoryError} `not_found` when nothing matches.
 */
export function dumpObjects(
  state: ClusterState,
  kind: ObjectKind,
  ref?: string,
): Record<string, unknown>[] {
  if (ref !== undefined && ref !== "") {
    return [objectJson(state, kind, findObject(state, kind, ref))];
  }
  const all = [...tableOf(state, kind).values()].map((r) => objectJson(state, kind, r));
  if (all.length === 0) {
    throw new HistoryError(
      "not_found",
      `no matching objects found: no ${kind} at index ${state.index}`,
    );
  }
  return all;
}

/** How many of each thing a state holds. */
export interface StateSummary {
  /** The log index the state is after. */
  readonly index: number;
  readonly clusters: number;
  readonly nodes: number;
  readonly services: number;
  readonly tasks: number;
  readonly secrets: number;
  readonly configs: number;
  readonly networks: number;
  /** Task specs (shared by the tasks of one service spec version). */
  readonly specs: number;
  /** Recent rejected batches remembered. */
  readonly rejections: number;
}

/** Counts what `state` holds. */
export function summarizeState(state: ClusterState): StateSummary {
  return {
    index: state.index,
    clusters: state.clusters.size,
    nodes: state.nodes.size,
    services: state.services.size,
    tasks: state.tasks.size,
    secrets: state.secrets.size,
    configs: state.configs.size,
    networks: state.networks.size,
    specs: state.specs.size,
    rejections: state.rejections.length,
  };
}

/** The summary as one line: `3 nodes, 2 services, 7 tasks, ...`. */
export function formatSummary(s: StateSummary): string {
  const part = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  return [
    part(s.clusters, "cluster"),
    part(s.nodes, "node"),
    part(s.services, "service"),
    part(s.tasks, "task"),
    part(s.secrets, "secret"),
    part(s.configs, "config"),
    part(s.networks, "network"),
    part(s.specs, "task spec"),
    part(s.rejections, "rejection"),
  ].join(", ");
}

/** The whole state as JSON, every object by {@linkcode objectJson}, kinds in plural. */
export function stateJson(state: ClusterState): Record<string, unknown> {
  const out: Record<string, unknown> = { index: state.index };
  for (const kind of OBJECT_KINDS) {
    out[kind === "cluster" ? "cluster" : `${kind}s`] = [...tableOf(state, kind).values()].map((r) =>
      objectJson(state, kind, r)
    );
  }
  out.rejections = structuredClone(state.rejections);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/** A snapshot as `dump-snapshot` answers it (the API's JSON too). */
export interface SnapshotDump {
  index: number;
  raftIndex?: number;
  term: number;
  size: number;
  members?: StoredSnapshot["members"];
  summary?: StateSummary;
  /** Why the state could not be read, when it could not. */
  error?: string;
  /** The state (JSON format only). */
  state?: Record<string, unknown>;
}

/** Describes stored snapshots: metadata, a summary of the state, and the state with `full`. */
export function describeSnapshots(
  snapshots: readonly StoredSnapshot[],
  full: boolean,
): SnapshotDump[] {
  return snapshots.map((s) => {
    const base: SnapshotDump = {
      index: s.index,
      ...(s.raftIndex === undefined ? {} : { raftIndex: s.raftIndex }),
      term: s.term,
      size: s.size,
      ...(s.members === undefined ? {} : { members: s.members }),
    };
    try {
      const state = restore(s.bytes);
      return {
        ...base,
        summary: summarizeState(state),
        ...(full ? { state: stateJson(state) } : {}),
      };
    } catch (err) {
      return { ...base, error: (err as Error).message };
    }
  });
}

/** Snapshots as text, newest last. */
export function formatSnapshots(dumps: readonly SnapshotDump[]): string {
  if (dumps.length === 0) return "no snapshots: the state is the fold of the whole log\n";
  const lines: string[] = [];
  for (const d of dumps) {
    lines.push(
      `snapshot at index ${d.index}${
        d.raftIndex === undefined ? "" : ` (raft index ${d.raftIndex})`
      }, term ${d.term}, ${d.size} bytes`,
    );
    if (d.members !== undefined) {
      lines.push(
        `  members: ${
          d.members.map((m) =>
            `${m.id}${m.address ? `=${m.address}` : ""}${m.voter ? "" : " (learner)"}`
          )
            .join(", ")
        }`,
      );
    }
    lines.push(d.summary ? `  state: ${formatSummary(d.summary)}` : `  state: ${d.error}`);
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Verify

/** A snapshot to check: the log index it is the state after, and its bytes. */
export interface SnapshotInput {
  readonly index: number;
  readonly bytes: Uint8Array;
  /** Raft index, for messages. */
  readonly raftIndex?: number;
}

/** Where the entries to check come from (a `StoredLog`, an `EventLog`). */
export interface VerifySource {
  firstIndex(): number;
  lastIndex(): number;
  read(from: number, to?: number): readonly LogEntry[];
}

/** What was found about one snapshot. */
export interface SnapshotCheck {
  readonly index: number;
  readonly raftIndex?: number;
  /**
   * `ok`: it equals the fold of the log up to its index; `differs`: it does not (`detail` says
   * how); `unchecked`: the log before it was compacted, so there is nothing to fold it from
   * (it is then the base the later ones are checked from).
   */
  readonly result: "ok" | "differs" | "unchecked";
  readonly detail?: string;
}

/** A problem found, at the index where it is. */
export interface VerifyProblem {
  readonly index: number;
  readonly message: string;
}

/** What {@linkcode verifyLog} found. */
export interface VerifyReport {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** Entries read and checked (checksum, decryption, decoding, continuity). */
  readonly entries: number;
  readonly snapshots: readonly SnapshotCheck[];
  /** Everything wrong, in index order; empty when all is well. */
  readonly problems: readonly VerifyProblem[];
  /** With `live`: whether the fold of the whole log equals the running state. */
  readonly live?: "ok" | "differs" | "unchecked";
}

/** Options of {@linkcode verifyLog}. */
export interface VerifyOptions {
  /** A running manager's state: the fold of the whole log must equal it (when at the same index). */
  live?: ClusterState;
  /** Changes listed in a difference (default 5). */
  maxChanges?: number;
}

const PAGE = 1_000;

/**
 * Checks a log: reads every entry (each read checks its checksum, decrypts and decodes it) and
 * the continuity of the indexes, and folds the log, comparing the fold with every snapshot at
 * its index. A compacted log is folded from the oldest snapshot it can start from (which is
 * then `unchecked`). Stops at the first entry that cannot be read; goes on after a snapshot that
 * differs.
 */
export function verifyLog(
  source: VerifySource,
  snapshots: readonly SnapshotInput[],
  options: VerifyOptions = {},
): VerifyReport {
  const first = source.firstIndex();
  const last = source.lastIndex();
  const problems: VerifyProblem[] = [];
  const checks: SnapshotCheck[] = [];
  const maxChanges = options.maxChanges ?? 5;
  const sorted = [...snapshots].sort((a, b) => a.index - b.index);
  const label = (s: SnapshotInput) =>
    `snapshot at index ${s.index}${
      s.raftIndex === undefined ? "" : ` (raft index ${s.raftIndex})`
    }`;

  // The fold starts from the empty state, or from the oldest snapshot the log goes on from.
  let state: ClusterState | undefined;
  let baseIndex = 0;
  if (first <= 1) {
    state = new ClusterState();
  } else {
    const base = sorted.find((s) => s.index >= first - 1 && s.index <= last);
    if (base !== undefined) {
      try {
        state = restoreAt(base);
        baseIndex = base.index;
      } catch (err) {
        problems.push({ index: base.index, message: `${label(base)}: ${(err as Error).message}` });
      }
    }
  }
  const pending: SnapshotInput[] = [];
  for (const s of sorted) {
    if (state !== undefined && s.index > baseIndex && s.index <= last) {
      pending.push(s);
    } else if (state !== undefined && s.index === baseIndex && first > 1) {
      checks.push({
        index: s.index,
        raftIndex: s.raftIndex,
        result: "unchecked",
        detail: `entries 1 to ${first - 1} were compacted away: the log is folded from it`,
      });
    } else if (s.index > last) {
      checks.push({
        index: s.index,
        raftIndex: s.raftIndex,
        result: "differs",
        detail: `it is past the last entry of the log (${last})`,
      });
      problems.push({
        index: s.index,
        message: `${label(s)}: it is past the last entry of the log (${last})`,
      });
    } else if (s.index === 0 && state !== undefined) {
      pending.push(s);
    } else {
      checks.push({
        index: s.index,
        raftIndex: s.raftIndex,
        result: "unchecked",
        detail: `entries 1 to ${first - 1} were compacted away: nothing to fold it from`,
      });
    }
  }

  const compare = (s: SnapshotInput) => {
    const detail = snapshotDifference(state!, s, maxChanges);
    checks.push({
      index: s.index,
      raftIndex: s.raftIndex,
      result: detail ? "differs" : "ok",
      detail,
    });
    if (detail) {
      problems.push({
        index: s.index,
        message: `${label(s)} differs from the fold of the log up to ${s.index}: ${detail}`,
      });
    }
  };
  while (pending.length > 0 && pending[0].index <= (state?.index ?? 0)) compare(pending.shift()!);

  let count = 0;
  let expected = first;
  try {
    for (let from = first; from <= last; from += PAGE) {
      const page = source.read(from, Math.min(last, from + PAGE - 1));
      if (page.length === 0) throw new Error("missing");
      for (const e of page) {
        if (e.index !== expected) {
          throw new Error(`missing (the log goes from ${expected - 1} to ${e.index})`);
        }
        count++;
        expected++;
        if (state !== undefined && e.index > state.index) {
          applyBatch(state, e.batch, e.index);
          while (pending.length > 0 && pending[0].index === e.index) compare(pending.shift()!);
        }
      }
    }
    if (last >= first && expected !== last + 1) {
      throw new Error(`missing (the last index is ${last})`);
    }
  } catch (err) {
    const message = (err as Error).message;
    problems.push({
      index: expected,
      message: /index \d+/.test(message) ? message : `index ${expected}: ${message}`,
    });
    state = undefined;
  }

  let live: VerifyReport["live"];
  if (options.live !== undefined) {
    if (state === undefined || state.index !== options.live.index) live = "unchecked";
    else {
      const detail = difference(state, options.live, maxChanges, "running state");
      live = detail ? "differs" : "ok";
      if (detail) {
        problems.push({
          index: state.index,
          message: `the running state differs from the fold of the log: ${detail}`,
        });
      }
    }
  }
  problems.sort((a, b) => a.index - b.index);
  checks.sort((a, b) => a.index - b.index);
  return {
    firstIndex: first,
    lastIndex: last,
    entries: count,
    snapshots: checks,
    problems,
    ...(live === undefined ? {} : { live }),
  };
}

function restoreAt(s: SnapshotInput): ClusterState {
  let state: ClusterState;
  try {
    state = restore(s.bytes);
  } catch (err) {
    throw new Error(`cannot be read: ${(err as Error).message}`);
  }
  if (state.index !== s.index) {
    throw new Error(`it holds the state at index ${state.index}, not ${s.index}`);
  }
  return state;
}

/** How snapshot `s` differs from `fold` (the log's state at its index), or undefined. */
function snapshotDifference(
  fold: ClusterState,
  s: SnapshotInput,
  maxChanges: number,
): string | undefined {
  if (bytesEqual(snapshot(fold), s.bytes)) return undefined;
  let restored: ClusterState;
  try {
    restored = restoreAt(s);
  } catch (err) {
    return (err as Error).message;
  }
  return difference(fold, restored, maxChanges, "snapshot") ??
    "the bytes differ but the states are equal as data (a different encoding or order)";
}

/** How `other` differs from `fold`, field by field (log → other), or undefined. */
function difference(
  fold: ClusterState,
  other: ClusterState,
  maxChanges: number,
  what: string,
): string | undefined {
  const d = diff(fold, other, { sameLog: false });
  const parts: string[] = [];
  for (const c of d.changes) {
    const head = `${c.kind} ${c.name} (${c.id.slice(0, 12)})`;
    if (c.change === "created") parts.push(`${head} is in the ${what} but not in the log`);
    else if (c.change === "removed") parts.push(`${head} is in the log but not in the ${what}`);
    else parts.push(`${head}: ${c.fields.map(formatField).join("; ")}`);
  }
  const a = snapshotData(fold), b = snapshotData(other);
  if (!equalData(a.specs, b.specs)) parts.push("the task specs differ");
  if (!equalData(a.rejections, b.rejections)) parts.push("the recent rejections differ");
  if (parts.length === 0) {
    if (equalData(a, b)) return undefined;
    parts.push("the tables hold the same objects in another order");
  }
  const shown = parts.slice(0, maxChanges);
  if (parts.length > maxChanges) shown.push(`and ${parts.length - maxChanges} more`);
  return `${shown.join("; ")} (values are log → ${what})`;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
