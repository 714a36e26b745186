/**
 * A manager's log as it lies in its data dir, whatever its format, for the log tools
 * (`shoal log`, in the manner of swarm-rafttool) and the `/shoal/v1/log/...` routes:
 *
 * - `<data dir>/raft.db`: a Raft member's {@linkcode SqliteStorage}. Event log indexes are the
 *   driver's `seq` (1, 2, 3... over the entries that carry a batch), as `RaftLog` numbers them;
 *   conf changes and the empty entries of new leaders take Raft indexes but no log index. Only
 *   committed entries (up to the hard state's commit index) are part of the log; the snapshot is
 *   the driver's envelope (the `seq` and members' addresses around the state's bytes).
 * - `<data dir>/log.db`: a single manager's {@linkcode SqliteLog}, and the snapshots it keeps.
 *
 * When both are there, `raft.db` is the log (a manager moved onto Raft keeps its old file).
 * Either may be encrypted at rest: pass the cipher (`node/keys.ts` opens it from the data dir).
 *
 * Opening is read-only in spirit: nothing is written, but the files are opened as the node
 * opens them, so run the tools on a stopped node's data dir (or a copy), as rafttool asks.
 *
 * @module
 */
import { join } from "node:path";
import { Unpackr } from "msgpackr";
import { CorruptRecordError, EventCodec } from "./codec.ts";
import type { LogEntry } from "./log.ts";
import type { RecordCipher } from "./at_rest_cipher.ts";
import { SqliteLog } from "./sqlite_log.ts";
import { SqliteStorage } from "./raft/sqlite_storage.ts";
import { decodeConfChange } from "./raft/confchange.ts";
import type { ConfChange, Entry, Snapshot } from "./raft/types.ts";

/** Which kind of log a data dir holds. */
export type StoredLogFormat = "raft" | "log";

/** A member of the Raft group as a snapshot records it. */
export interface SnapshotMember {
  readonly id: number;
  readonly address?: string;
  readonly voter: boolean;
}

/** A stored snapshot of the state. */
export interface StoredSnapshot {
  /** The event log index the state is after (a Raft snapshot's `seq`). */
  readonly index: number;
  /** Raft index of the snapshot (Raft logs only). */
  readonly raftIndex?: number;
  /** Raft term at the snapshot (1 for a single manager's log). */
  readonly term: number;
  /** Bytes of the state (`actors/snapshot.ts`). */
  readonly size: number;
  /** The state's bytes (`actors/snapshot.ts`), decrypted. */
  readonly bytes: Uint8Array;
  /** The Raft configuration at the snapshot (Raft logs only). */
  readonly members?: readonly SnapshotMember[];
}

/** One stored entry as `dump-wal` shows it. */
export type WalRecord =
  | {
    readonly type: "events";
    /** Raft index (Raft logs only). */
    readonly raftIndex?: number;
    readonly term: number;
    readonly committed: boolean;
    readonly entry: LogEntry;
  }
  | {
    readonly type: "confChange";
    readonly raftIndex: number;
    readonly term: number;
    readonly committed: boolean;
    readonly change: ConfChange;
  }
  | {
    readonly type: "empty";
    readonly raftIndex: number;
    readonly term: number;
    readonly committed: boolean;
  };

/** A data dir's log, opened for inspection. */
export interface StoredLog {
  /** Its format. */
  readonly format: StoredLogFormat;
  /** The file. */
  readonly path: string;
  /** Index of the first entry still held (1 until compacted). */
  firstIndex(): number;
  /** Index of the last committed entry; 0 when there is none. */
  lastIndex(): number;
  /** Committed entries in `[from, to]`, checked (checksum, decryption) and decoded. */
  read(from: number, to?: number): LogEntry[];
  /** The stored snapshots, oldest first. */
  snapshots(): StoredSnapshot[];
  /**
   * Every stored entry whose log index is in `[from, to]` (Raft: with the conf changes and empty
   * entries between them, and the uncommitted tail when `to` is past the commit), in order.
   */
  records(from: number, to: number): Iterable<WalRecord>;
  /** Closes the file. */
  close(): void;
}

/** Where the log of `dataDir` is and in which format; a clear error when there is none. */
export function findLogFile(dataDir: string): { format: StoredLogFormat; path: string } {
  for (const [format, name] of [["raft", "raft.db"], ["log", "log.db"]] as const) {
    const path = join(dataDir, name);
    try {
      if (Deno.statSync(path).isFile) return { format, path };
    } catch {
      // Not this one.
    }
  }
  throw new Error(
    `no log in ${dataDir} (neither raft.db nor log.db): is it a Shoal manager's data dir?`,
  );
}

/** Options of {@linkcode openStoredLog}. */
export interface OpenStoredLogOptions {
  /** The data dir's cipher, when it is encrypted at rest. */
  cipher?: RecordCipher;
}

/** Opens the log of `dataDir` (see the module documentation). */
export function openStoredLog(dataDir: string, options: OpenStoredLogOptions = {}): StoredLog {
  const { format, path } = findLogFile(dataDir);
  return format === "raft"
    ? new RaftStoredLog(
      new SqliteStorage({ path, synchronous: "off", cipher: options.cipher }),
      path,
    )
    : new SqliteStoredLog(
      new SqliteLog({ path, synchronous: "off", cipher: options.cipher }),
      path,
    );
}

/** The snapshots a {@linkcode SqliteLog} keeps, as {@linkcode StoredSnapshot}s. */
export function sqliteLogSnapshots(log: SqliteLog): StoredSnapshot[] {
  return log.snapshots().map((s) => ({
    index: s.index,
    term: 1,
    size: s.bytes.byteLength,
    bytes: s.bytes,
  }));
}

const envelopeUnpackr = new Unpackr({ useRecords: false, copyBuffers: true });

/** What the Raft driver wraps around the state in a snapshot (`events/raft/driver.ts`). */
interface Envelope {
  readonly v: 1;
  readonly seq: number;
  readonly addresses: [number, string][];
  readonly app: Uint8Array;
}

/** Reads the driver's envelope from a Raft snapshot's data; a clear error when it is not one. */
export function decodeSnapshotEnvelope(data: Uint8Array, raftIndex: number): Envelope {
  let e: Partial<Envelope>;
  try {
    e = envelopeUnpackr.unpack(data) as Partial<Envelope>;
  } catch (err) {
    throw new SyntaxError(
      `the snapshot at raft index ${raftIndex} cannot be read: ${(err as Error).message}`,
    );
  }
  if (
    typeof e !== "object" || e === null || e.v !== 1 || typeof e.seq !== "number" ||
    !Array.isArray(e.addresses) || !(e.app instanceof Uint8Array)
  ) {
    throw new SyntaxError(
      `the snapshot at raft index ${raftIndex} is not a Raft driver's snapshot envelope`,
    );
  }
  return e as Envelope;
}

/** The snapshot a Raft {@linkcode SqliteStorage} holds (none, or one), as stored snapshots. */
export function raftSnapshots(storage: SqliteStorage): StoredSnapshot[] {
  const snap: Snapshot = storage.snapshot();
  const { index, term, confState } = snap.metadata;
  if (index === 0) return [];
  const envelope = decodeSnapshotEnvelope(snap.data, index);
  const addresses = new Map(envelope.addresses);
  const members: SnapshotMember[] = [
    ...confState.voters.map((id) => ({ id, address: addresses.get(id), voter: true })),
    ...confState.learners.map((id) => ({ id, address: addresses.get(id), voter: false })),
  ];
  return [{
    index: envelope.seq,
    raftIndex: index,
    term,
    size: envelope.app.byteLength,
    bytes: envelope.app,
    members,
  }];
}

class SqliteStoredLog implements StoredLog {
  readonly format = "log" as const;
  readonly path: string;
  #log: SqliteLog;

  constructor(log: SqliteLog, path: string) {
    this.#log = log;
    this.path = path;
  }

  firstIndex(): number {
    return this.#log.firstIndex();
  }

  lastIndex(): number {
    return this.#log.lastIndex();
  }

  read(from: number, to?: number): LogEntry[] {
    return this.#log.read(from, to);
  }

  snapshots(): StoredSnapshot[] {
    return sqliteLogSnapshots(this.#log);
  }

  *records(from: number, to: number): Iterable<WalRecord> {
    const PAGE = 1_000;
    for (let next = Math.max(from, 1); next <= Math.min(to, this.lastIndex());) {
      const page = this.#log.read(next, Math.min(to, next + PAGE - 1));
      if (page.length === 0) return;
      for (const entry of page) {
        yield { type: "events", term: entry.term, committed: true, entry };
      }
      next = page[page.length - 1].index + 1;
    }
  }

  close(): void {
    void this.#log.close();
  }
}

/** Payload bytes per page read from a Raft storage. */
const PAGE_BYTES = 4 * 1024 * 1024;

class RaftStoredLog implements StoredLog {
  readonly format = "raft" as const;
  readonly path: string;
  #storage: SqliteStorage;
  #codec = new EventCodec();
  /** Raft indexes of the committed data entries held, in order. */
  #dataIndexes: number[];
  /** `seq` of the data entry before the first one held. */
  #seqBase: number;
  #commit: number;

  constructor(storage: SqliteStorage, path: string) {
    this.#storage = storage;
    this.path = path;
    try {
      const first = storage.firstIndex();
      this.#commit = Math.min(storage.hardState().commit, storage.lastIndex());
      this.#dataIndexes = storage.dataIndexes(first, this.#commit);
      const snap = storage.snapshot().metadata;
      let seqAtSnapshot = 0;
      if (snap.index > 0) {
        seqAtSnapshot = decodeSnapshotEnvelope(storage.snapshot().data, snap.index).seq;
      }
      let between = 0;
      while (between < this.#dataIndexes.length && this.#dataIndexes[between] <= snap.index) {
        between++;
      }
      this.#seqBase = seqAtSnapshot - between;
    } catch (err) {
      storage.close();
      throw err;
    }
  }

  firstIndex(): number {
    return this.#seqBase + 1;
  }

  lastIndex(): number {
    return this.#seqBase + this.#dataIndexes.length;
  }

  read(from: number, to: number = this.lastIndex()): LogEntry[] {
    const lo = Math.max(from, this.firstIndex());
    const hi = Math.min(to, this.lastIndex());
    const out: LogEntry[] = [];
    if (hi < lo) return out;
    let seq = lo;
    this.#eachRaw(this.#raftIndexOf(lo), this.#raftIndexOf(hi), (e) => {
      if (e.type === "normal" && e.data.byteLength > 0) out.push(this.#entry(e, seq++));
    });
    return out;
  }

  snapshots(): StoredSnapshot[] {
    return raftSnapshots(this.#storage);
  }

  *records(from: number, to: number): Iterable<WalRecord> {
    const first = this.#storage.firstIndex();
    const last = this.#storage.lastIndex();
    if (last < first || to < from || from > this.lastIndex()) return;
    // Raft range: from just after the data entry before `from` to just before the one after `to`.
    const lo = from <= this.firstIndex() ? first : this.#raftIndexOf(from - 1) + 1;
    const hi = to >= this.lastIndex() ? last : this.#raftIndexOf(to + 1) - 1;
    let seq = Math.max(from, this.firstIndex());
    const PAGE = 1_000;
    for (let start = lo; start <= hi; start += PAGE) {
      const page: WalRecord[] = [];
      this.#eachRaw(start, Math.min(hi, start + PAGE - 1), (e) => {
        const committed = e.index <= this.#commit;
        if (e.type === "confChange") {
          page.push({
            type: "confChange",
            raftIndex: e.index,
            term: e.term,
            committed,
            change: decodeConfChange(e.data),
          });
        } else if (e.data.byteLength === 0) {
          page.push({ type: "empty", raftIndex: e.index, term: e.term, committed });
        } else {
          const index = committed ? seq++ : 0;
          page.push({
            type: "events",
            raftIndex: e.index,
            term: e.term,
            committed,
            entry: this.#entry(e, index),
          });
        }
      });
      yield* page;
    }
  }

  close(): void {
    this.#storage.close();
  }

  #raftIndexOf(seq: number): number {
    return this.#dataIndexes[seq - this.#seqBase - 1];
  }

  /**
   * Calls `each` with the raw entries `[lo, hi]` (checked and decrypted by the storage). A bad
   * row is reported with its log index as well as its Raft index.
   */
  #eachRaw(lo: number, hi: number, each: (e: Entry) => void): void {
    let next = lo;
    while (next <= hi) {
      let page: Entry[];
      try {
        page = this.#storage.entries(next, hi + 1, PAGE_BYTES);
      } catch (err) {
        if (!(err instanceof CorruptRecordError)) throw err;
        const detail = err.message.replace(/^Corrupt record at index \d+: /, "");
        const seq = this.#seqAt(err.index);
        const named = new CorruptRecordError(seq ?? err.index, detail);
        named.message = seq === undefined
          ? `Corrupt record at raft index ${err.index}: ${detail}`
          : `Corrupt record at index ${seq} (raft index ${err.index}): ${detail}`;
        throw named;
      }
      for (const e of page) each(e);
      next = page[page.length - 1].index + 1;
    }
  }

  /** The log index of the data entry at Raft index `raftIndex`, if it is one. */
  #seqAt(raftIndex: number): number | undefined {
    let lo = 0, hi = this.#dataIndexes.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.#dataIndexes[mid];
      if (v === raftIndex) return this.#seqBase + mid + 1;
      if (v < raftIndex) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  #entry(e: Entry, index: number): LogEntry {
    let batch;
    try {
      batch = this.#codec.decodeBatch(e.data);
    } catch (err) {
      throw new Error(
        `index ${index} (raft index ${e.index}): cannot decode its batch: ${
          (err as Error).message
        }`,
      );
    }
    return { index, term: e.term, bytes: e.data, batch };
  }
}
