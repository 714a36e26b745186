/**
 * {@linkcode SqliteStorage}: the Raft log's stable storage in one SQLite file (`node:sqlite`,
 * built into Deno). It is the core's read-only {@linkcode Storage}, plus the write side the
 * driver calls while it handles a Ready.
 *
 * - **One transaction, one sync per Ready** ({@linkcode SqliteStorage.saveReady}): the Ready's
 *   snapshot, entries and hard state (and the applied state noted since the last Ready) commit
 *   together, so a crash leaves all of them or none.
 * - **One row per entry** (an entry is a batch of events): index, term, type, data and a CRC32C
 *   over all four. Rows are checked when read; a row that fails is reported as a
 *   {@linkcode CorruptRecordError} naming its index, never handed to the core. Hard state,
 *   applied state and snapshots are checksummed the same way (`sealRecord`).
 * - **Truncation**: entries that conflict with a Ready's entries (same index, other term) are
 *   deleted with everything after them, in the same transaction.
 * - **Applied state**: the applied index with the configuration as of that index (what
 *   `applyConfChange` returned) and the members' addresses, so that after a restart
 *   `initialState().confState` is the configuration as of `Config.applied`, as the core asks.
 * - **Snapshots and compaction**: the latest snapshot (metadata and data), and `compact(i)`,
 *   which drops the entries up to `i` and keeps the term of `i` readable.
 * - **WAL mode.** What a crash can cost depends on `synchronous` (SQLite's own guarantees):
 *   - `full` (Shoal's default): the WAL is synced at every commit, so a Ready's hard state and
 *     entries are on disk before its messages leave. An acknowledged write survives a crash of
 *     the process and a power loss. This is what Raft's safety argument assumes.
 *   - `normal`: the WAL is synced only at checkpoints. Commits survive a crash of the process
 *     (they are in the OS page cache), but a power loss or kernel crash can lose the last
 *     commits: a node may then forget a vote or an acknowledged entry, which Raft does not
 *     tolerate. For tests and throw-away clusters only.
 *   - `off`: SQLite never syncs; same as `normal` for a process crash, worse for power loss.
 *   A Ready that the core says needs no sync (`mustSync` false: only the commit index moved)
 *   is committed without a sync even in `full` mode, as etcd does: losing a commit index is
 *   harmless, it is learnt again from the leader.
 * - **Caches**: the terms of the log as runs (terms only grow along the log, so a handful of
 *   runs covers millions of entries) and the most recent entries (up to `cacheBytes`), so the
 *   replication and apply paths, which read what was just written, do not touch SQLite.
 * - **Encryption at rest** (optional `cipher`, `events/at_rest_cipher.ts`): entries' data and
 *   the snapshot's data are stored sealed, bound to their place (an entry's index, term and
 *   type; the snapshot's index and term). Empty entries stay empty (they carry nothing, and a
 *   restart tells data entries by their length). The CRC32C is over what is stored, so damage is
 *   still reported as a checksum mismatch; a record that does not decrypt (another key) is a
 *   {@linkcode CorruptRecordError} saying so. Hard and applied state and snapshot metadata
 *   (terms, votes, members' addresses) are not encrypted.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { CorruptRecordError, openRecord, sealRecord } from "../codec.ts";
import { DecryptError, placeAad, type RecordCipher } from "../at_rest_cipher.ts";
import { crc32c } from "../crc32c.ts";
import { copyAndRewrite, type RecipherOptions } from "../sqlite_copy.ts";
import { CompactedError, SnapOutOfDateError, UnavailableError } from "./errors.ts";
import type { InitialState, Storage } from "./storage.ts";
import {
  type ConfState,
  emptyHardState,
  type Entry,
  type EntryType,
  type HardState,
  type NodeId,
  type Snapshot,
} from "./types.ts";

export { CorruptRecordError } from "../codec.ts";

/** How hard SQLite syncs: see the module documentation. */
export type SyncMode = "full" | "normal" | "off";

/** Options of a {@linkcode SqliteStorage}. */
export interface SqliteStorageOptions {
  /** Path of the database file (created when missing). */
  path: string;
  /** Default `full`: nothing acknowledged is lost, even on power loss. */
  synchronous?: SyncMode;
  /**
   * The configuration of a brand-new node (as if from a snapshot at index 0). Ignored when the
   * file already holds a Raft state. Leave empty for a node that joins an existing cluster.
   */
  confState?: ConfState;
  /** Bytes of recent entry payloads kept in memory (default 64 MiB). */
  cacheBytes?: number;
  /** Encrypts entries' data and snapshots on disk (see the module documentation). */
  cipher?: RecordCipher;
}

/**
 * What the application has applied: the index, the configuration as of that index and the
 * members' addresses (from conf change contexts, which compaction drops from the log).
 */
export interface AppliedState {
  /** The last applied index. */
  readonly index: number;
  /** The configuration as of `index` (what `applyConfChange` last returned). */
  readonly confState: ConfState;
  /** Raft address of each member, as `[id, "host:port"]`. */
  readonly addresses: readonly (readonly [NodeId, string])[];
  /**
   * Members removed from the cluster, with their last address ("" if unknown), so that they
   * can be told (this node's own id when it was removed). Absent in states written before.
   */
  readonly removed?: readonly (readonly [NodeId, string])[];
}

/** What a Ready asks to persist (a `Ready` fits). */
export interface ReadyToSave {
  /** Set when term, vote or commit changed. */
  readonly hardState?: HardState;
  /** Entries to append, replacing any conflicting tail. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader: replaces the whole log. */
  readonly snapshot?: Snapshot;
  /** Whether the commit must be synced (`Ready.mustSync`); default true. */
  readonly mustSync?: boolean;
}

const TYPE_CODES: Record<EntryType, number> = { normal: 0, confChange: 1 };
const TYPES: readonly EntryType[] = ["normal", "confChange"];
const PAGE = 256;
/** Rows per multi-row INSERT. */
const INSERT_BATCH = 32;
/** Applied entries between writes of an unchanged applied state. */
const APPLIED_EVERY = 1024;
const emptyConfState: ConfState = { voters: [], learners: [] };
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** A run of entries of one term: from index `lo` up to the next run (or the last index). */
interface TermRun {
  lo: number;
  readonly term: number;
}

interface EntryRow {
  idx: number;
  term: number;
  type: number;
  data: Uint8Array;
  crc: number;
}

/** A Raft {@linkcode Storage} in a SQLite file. Single-threaded: one driver uses it. */
export class SqliteStorage implements Storage {
  /** The database file. */
  readonly path: string;
  /** The configured sync mode. */
  readonly synchronous: SyncMode;
  #db: DatabaseSync;
  #sync: SyncMode;
  #insert: StatementSync;
  #insertMany: StatementSync | undefined;
  #page: StatementSync;
  #truncate: StatementSync;
  #putState: StatementSync;
  #hardState: HardState;
  #applied: AppliedState;
  /** An applied state noted by `setApplied` and not written yet. */
  #appliedDirty = false;
  /** It must go out with the next transaction (the configuration or addresses changed). */
  #appliedUrgent = false;
  /** The applied index last written. */
  #appliedWritten = 0;
  /** Index and term of the last compacted entry (the snapshot's, or 0). */
  #offset: number;
  #offsetTerm: number;
  #last = 0;
  /** Terms of the entries in `(#offset, #last]`, as runs in index order. */
  #runs: TermRun[] = [];
  /** The latest snapshot, read lazily. */
  #snapshot: Snapshot | undefined;
  #snapshotIndex: number;
  /** Recent entries `[#tailStart, #last]`, as written (no need to check what we wrote). */
  #tail: Entry[] = [];
  #tailStart: number;
  #tailBytes = 0;
  #cacheBytes: number;
  #cipher: RecordCipher | undefined;
  #closed = false;
  /** Set while `saveReadyAsync` commits: SQLite's sync is NORMAL and the WAL is synced after. */
  #deferSync = false;
  /** The WAL file, opened for `fdatasync` by `saveReadyAsync`. */
  #wal: Deno.FsFile | undefined;
  /** A file on disk, not an in-memory database. */
  get #onDisk(): boolean {
    return this.path !== "" && this.path !== ":memory:" && !this.path.startsWith("file::memory:");
  }

  /** Opens (or creates) the storage at `options.path`. */
  constructor(options: SqliteStorageOptions) {
    this.path = options.path;
    this.synchronous = options.synchronous ?? "full";
    if (!["full", "normal", "off"].includes(this.synchronous)) {
      throw new RangeError(`synchronous must be full, normal or off; got ${this.synchronous}`);
    }
    this.#cacheBytes = options.cacheBytes ?? 64 * 1024 * 1024;
    this.#cipher = options.cipher;
    this.#db = new DatabaseSync(options.path);
    this.#sync = this.synchronous;
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = ${this.#sync.toUpperCase()};
      CREATE TABLE IF NOT EXISTS raft_entries (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        type INTEGER NOT NULL,
        data BLOB NOT NULL,
        crc INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS raft_state (
        name TEXT PRIMARY KEY,
        record BLOB NOT NULL
      );
      CREATE TABLE IF NOT EXISTS raft_snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        meta BLOB NOT NULL,
        data BLOB NOT NULL
      );
    `);
    this.#insert = this.#db.prepare(
      "INSERT INTO raft_entries (idx, term, type, data, crc) VALUES (?, ?, ?, ?, ?)",
    );
    this.#page = this.#db.prepare(
      "SELECT idx, term, type, data, crc FROM raft_entries WHERE idx >= ? AND idx < ? " +
        "ORDER BY idx LIMIT ?",
    );
    this.#truncate = this.#db.prepare("DELETE FROM raft_entries WHERE idx >= ?");
    this.#putState = this.#db.prepare(
      "INSERT OR REPLACE INTO raft_state (name, record) VALUES (?, ?)",
    );
    try {
      const hard = this.#readState<HardState>("hard");
      const applied = this.#readState<AppliedState>("applied");
      const compacted = this.#readState<{ index: number; term: number }>("compacted");
      this.#hardState = hard ?? emptyHardState;
      this.#offset = compacted?.index ?? 0;
      this.#offsetTerm = compacted?.term ?? 0;
      const snapMeta = this.#db.prepare("SELECT meta FROM raft_snapshot WHERE id = 1").get() as
        | { meta: Uint8Array }
        | undefined;
      this.#snapshotIndex = snapMeta
        ? (parseRecord(snapMeta.meta, 0, "snapshot metadata") as Snapshot["metadata"]).index
        : 0;
      if (applied && applied.index >= this.#snapshotIndex) {
        this.#applied = applied;
      } else if (snapMeta) {
        // The snapshot is newer than the applied state written (it never is when written by
        // this class, which saves both together; be safe): restart from the snapshot.
        const meta = parseRecord(snapMeta.meta, 0, "snapshot metadata") as Snapshot["metadata"];
        this.#applied = {
          index: meta.index,
          confState: meta.confState,
          addresses: applied?.addresses ?? [],
          removed: applied?.removed,
        };
      } else {
        // A brand-new node: bootstrap the configuration (a node of an existing cluster that
        // never applied anything has none yet).
        this.#applied = { index: 0, confState: options.confState ?? emptyConfState, addresses: [] };
        if (hard === undefined && options.confState) this.#writeApplied();
      }
      this.#loadTerms();
    } catch (err) {
      this.#db.close();
      throw err;
    }
    this.#tailStart = this.#last + 1;
  }

  // -------------------------------------------------------------------------------------------
  // Storage (read side)

  /** The persisted hard state and the configuration as of the applied index. */
  initialState(): InitialState {
    return { hardState: this.#hardState, confState: this.#applied.confState };
  }

  /** The applied state: pass its `index` as `Config.applied` after a restart. */
  appliedState(): AppliedState {
    return this.#applied;
  }

  /** The persisted hard state. */
  hardState(): HardState {
    return this.#hardState;
  }

  /**
   * Entries in `[lo, hi)`, as many as fit in `maxSize` bytes of payload but at least one.
   * Rows read from the file are checked: a bad one throws {@linkcode CorruptRecordError}.
   */
  entries(lo: number, hi: number, maxSize: number): Entry[] {
    this.#checkOpen();
    if (lo <= this.#offset) throw new CompactedError(lo);
    if (hi > this.#last + 1) {
      throw new RangeError(`Cannot read entries up to ${hi}: the last index is ${this.#last}`);
    }
    if (this.#last === this.#offset) throw new UnavailableError(lo);
    if (lo >= hi) return [];
    const out: Entry[] = [];
    let size = 0;
    let next = lo;
    // Older entries come from the file, a page at a time, until the size limit.
    while (next < hi && next < this.#tailStart) {
      const upTo = Math.min(hi, this.#tailStart);
      const rows = this.#page.all(next, upTo, PAGE) as unknown as EntryRow[];
      if (rows.length === 0) throw new CorruptRecordError(next, "the entry is missing");
      for (const row of rows) {
        if (row.idx !== next) throw new CorruptRecordError(next, "the entry is missing");
        const e = checkRow(row, this.#cipher);
        size += e.data.byteLength;
        if (out.length > 0 && size > maxSize) return out;
        out.push(e);
        next++;
      }
    }
    // Then the cached tail.
    for (; next < hi; next++) {
      const e = this.#tail[next - this.#tailStart];
      size += e.data.byteLength;
      if (out.length > 0 && size > maxSize) return out;
      out.push(e);
    }
    return out;
  }

  /**
   * Indexes of the entries in `[lo, hi]` that carry data (normal, non-empty), straight from
   * the file without reading or checking their payloads: a fast scan for a restart, which
   * must number data entries but reads the entries themselves later, checked.
   */
  dataIndexes(lo: number, hi: number): number[] {
    this.#checkOpen();
    if (lo > hi) return [];
    const rows = this.#db.prepare(
      "SELECT idx FROM raft_entries WHERE idx >= ? AND idx <= ? AND type = 0 AND length(data) > 0 " +
        "ORDER BY idx",
    ).all(lo, hi) as { idx: number }[];
    return rows.map((r) => r.idx);
  }

  /** Term of the entry at `i`, for `i` in `[firstIndex() - 1, lastIndex()]`. */
  term(i: number): number {
    if (i < this.#offset) throw new CompactedError(i);
    if (i > this.#last) throw new UnavailableError(i);
    if (i === this.#offset) return this.#offsetTerm;
    const runs = this.#runs;
    // Most lookups are near the end.
    let k = runs.length - 1;
    if (runs[k].lo > i) {
      let lo = 0;
      let hi = k;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (runs[mid].lo <= i) lo = mid;
        else hi = mid - 1;
      }
      k = lo;
    }
    return runs[k].term;
  }

  /** Index of the last entry (the snapshot's or compaction's index when there are none). */
  lastIndex(): number {
    return this.#last;
  }

  /** Index of the first entry that may be read. */
  firstIndex(): number {
    return this.#offset + 1;
  }

  /** The latest snapshot (index 0 and the bootstrap configuration when there is none). */
  snapshot(): Snapshot {
    this.#checkOpen();
    if (this.#snapshot) return this.#snapshot;
    const row = this.#db.prepare("SELECT meta, data FROM raft_snapshot WHERE id = 1").get() as
      | { meta: Uint8Array; data: Uint8Array }
      | undefined;
    if (row === undefined) {
      return {
        metadata: { index: 0, term: 0, confState: this.#bootstrapConfState() },
        data: new Uint8Array(),
      };
    }
    const metadata = parseRecord(row.meta, this.#snapshotIndex, "snapshot metadata") as Snapshot[
      "metadata"
    ];
    const data = openSnapshotData(row.data, metadata, this.#cipher);
    this.#snapshot = { metadata, data };
    return this.#snapshot;
  }

  // -------------------------------------------------------------------------------------------
  // Write side

  /**
   * Persists what a Ready asks, in ONE transaction with one sync (none when `mustSync` is
   * false): its snapshot (which replaces the log), its entries (deleting any conflicting tail
   * first; entries already compacted are skipped) and its hard state, plus the applied state
   * noted by {@linkcode setApplied} since the last transaction. Memory caches change only once
   * the transaction committed. Throws (and changes nothing) when SQLite fails: the caller must
   * then stop, as etcd does, since the Ready cannot be acknowledged.
   */
  saveReady(rd: ReadyToSave): void {
    this.#checkOpen();
    const { hardState, snapshot } = rd;
    const sync = rd.mustSync ?? true;
    let entries = rd.entries;
    // Work out the new shape of the log before touching the file.
    let offset = this.#offset;
    let last = this.#last;
    if (snapshot) {
      const { index } = snapshot.metadata;
      if (index <= this.#snapshotIndex) throw new SnapOutOfDateError(index, this.#snapshotIndex);
      offset = index;
      last = index;
    }
    if (entries.length > 0) {
      const first = entries[0].index;
      if (first + entries.length - 1 <= offset) {
        entries = [];
      } else {
        if (first <= offset) entries = entries.slice(offset + 1 - first);
        if (entries[0].index > last + 1) {
          throw new RangeError(
            `Cannot append entry ${entries[0].index}: the last index is ${last}`,
          );
        }
      }
    }
    const truncateFrom = entries.length > 0 && entries[0].index <= last
      ? entries[0].index
      : undefined;
    let applied = this.#appliedDirty &&
        (this.#appliedUrgent || this.#applied.index - this.#appliedWritten >= APPLIED_EVERY)
      ? this.#applied
      : undefined;
    if (snapshot) {
      applied = {
        index: snapshot.metadata.index,
        confState: snapshot.metadata.confState,
        addresses: this.#applied.addresses,
        removed: this.#applied.removed,
      };
    }
    this.#setSync(sync);
    const db = this.#db;
    db.exec("BEGIN IMMEDIATE");
    try {
      if (snapshot) {
        const { index, term } = snapshot.metadata;
        db.exec("DELETE FROM raft_entries");
        db.prepare("INSERT OR REPLACE INTO raft_snapshot (id, meta, data) VALUES (1, ?, ?)").run(
          sealJson(snapshot.metadata),
          sealSnapshotData(snapshot.data, snapshot.metadata, this.#cipher),
        );
        this.#putState.run("compacted", sealJson({ index, term }));
      }
      if (truncateFrom !== undefined) this.#truncate.run(truncateFrom);
      this.#insertEntries(entries);
      if (hardState) this.#putState.run("hard", sealJson(hardState));
      if (applied) this.#putState.run("applied", sealJson(applied));
      db.exec("COMMIT");
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw err;
    }
    // Committed: now the caches.
    if (snapshot) {
      const { index, term } = snapshot.metadata;
      this.#offset = index;
      this.#offsetTerm = term;
      this.#last = index;
      this.#runs = [];
      this.#snapshot = snapshot;
      this.#snapshotIndex = index;
      this.#tail = [];
      this.#tailStart = index + 1;
      this.#tailBytes = 0;
    }
    if (applied) {
      this.#applied = applied;
      this.#appliedWritten = applied.index;
      this.#appliedDirty = false;
      this.#appliedUrgent = false;
    }
    if (hardState) this.#hardState = hardState;
    if (entries.length > 0) this.#appendToCaches(entries, truncateFrom);
  }

  /**
   * {@linkcode saveReady} with the sync off the caller's event loop, when the storage syncs
   * every commit (`synchronous: "full"`): the transaction commits with SQLite's NORMAL sync
   * (in WAL mode: the WAL is not synced at commit; checkpoints still sync as with FULL), then
   * the WAL file is synced with an asynchronous `fdatasync`, on Deno's thread pool. Resolves
   * once the Ready is exactly as durable as `saveReady` makes it (FULL is NORMAL plus that
   * sync of the WAL after each commit); until then the caller must not act on it: no sends,
   * no applying, no `advance()`. Reads see it at once, as after `saveReady`. Returns
   * `undefined` when there is nothing to wait for (no sync needed or configured).
   */
  saveReadyAsync(rd: ReadyToSave): Promise<void> | undefined {
    if (rd.mustSync === false || this.synchronous !== "full" || !this.#onDisk) {
      this.saveReady(rd);
      return undefined;
    }
    this.#deferSync = true;
    try {
      this.saveReady(rd);
    } finally {
      this.#deferSync = false;
    }
    this.#wal ??= Deno.openSync(`${this.path}-wal`, { read: true });
    return this.#wal.syncData();
  }

  /**
   * Notes what the application applied. It is written with the next Ready's transaction when
   * `changed` (the configuration or the addresses changed), and otherwise once the applied
   * index moved 1,024 entries past the last one written, and by {@linkcode flush},
   * {@linkcode close} and {@linkcode createSnapshot}. Losing it in a crash is harmless: the
   * core then hands out the entries after the older applied index again (conf changes apply
   * idempotently), and that older index always comes with its own configuration.
   */
  setApplied(state: AppliedState, changed = false): void {
    this.#applied = state;
    this.#appliedDirty = true;
    if (changed) this.#appliedUrgent = true;
  }

  /** Writes a pending applied state now (on shutdown). */
  flush(): void {
    if (this.#closed || !this.#appliedDirty) return;
    this.#setSync(true);
    this.#writeApplied();
  }

  /**
   * Records a snapshot of the application's state at applied index `i` (`confState` is the
   * configuration as of `i`), to restart from and to serve to slow followers. Follow with
   * {@linkcode compact}. Returns the snapshot.
   */
  createSnapshot(i: number, confState: ConfState | undefined, data: Uint8Array): Snapshot {
    this.#checkOpen();
    if (i <= this.#snapshotIndex) throw new SnapOutOfDateError(i, this.#snapshotIndex);
    if (i > this.#last) {
      throw new RangeError(`Cannot snapshot at ${i}: the last index is ${this.#last}`);
    }
    const snapshot: Snapshot = {
      metadata: {
        index: i,
        term: this.term(i),
        confState: confState ?? this.snapshot().metadata.confState,
      },
      data,
    };
    this.#setSyncLater();
    const db = this.#db;
    db.exec("BEGIN IMMEDIATE");
    try {
      db.prepare("INSERT OR REPLACE INTO raft_snapshot (id, meta, data) VALUES (1, ?, ?)").run(
        sealJson(snapshot.metadata),
        sealSnapshotData(data, snapshot.metadata, this.#cipher),
      );
      // The applied state goes with it, so a restart never finds a snapshot newer than it.
      if (this.#appliedDirty) this.#writeApplied();
      db.exec("COMMIT");
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw err;
    }
    this.#snapshot = snapshot;
    this.#snapshotIndex = i;
    return snapshot;
  }

  /**
   * Discards the entries up to and including `compactIndex` (which must be applied and
   * normally snapshotted); its term stays readable.
   */
  compact(compactIndex: number): void {
    this.#checkOpen();
    if (compactIndex <= this.#offset) throw new CompactedError(compactIndex);
    if (compactIndex > this.#last) {
      throw new RangeError(
        `Cannot compact to ${compactIndex}: the last index is ${this.#last}`,
      );
    }
    const term = this.term(compactIndex);
    this.#setSyncLater();
    const db = this.#db;
    db.exec("BEGIN IMMEDIATE");
    try {
      db.prepare("DELETE FROM raft_entries WHERE idx <= ?").run(compactIndex);
      this.#putState.run("compacted", sealJson({ index: compactIndex, term }));
      db.exec("COMMIT");
    } catch (err) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw err;
    }
    this.#offset = compactIndex;
    this.#offsetTerm = term;
    // Keep the runs that reach past the compaction point; the first then starts after it.
    const runs = this.#runs.filter((_, k, all) =>
      k + 1 >= all.length || all[k + 1].lo > compactIndex + 1
    );
    if (runs.length > 0 && runs[0].lo <= compactIndex) runs[0].lo = compactIndex + 1;
    this.#runs = compactIndex === this.#last ? [] : runs;
    if (this.#tailStart <= compactIndex) {
      const drop = compactIndex + 1 - this.#tailStart;
      for (const e of this.#tail.slice(0, drop)) this.#tailBytes -= e.data.byteLength;
      this.#tail = this.#tail.slice(drop);
      this.#tailStart = compactIndex + 1;
    }
  }

  /** Writes what is pending and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    try {
      this.flush();
    } finally {
      this.#closed = true;
      this.#db.close();
      try {
        this.#wal?.close();
      } catch {
        // Already closed.
      }
    }
  }

  // -------------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Raft storage ${this.path} is closed`);
  }

  /** Switches SQLite's sync for the next commit: the configured mode, or off for this one. */
  #setSync(sync: boolean): void {
    this.#useSync(!sync ? "off" : this.#deferSync ? "normal" : this.synchronous);
  }

  /**
   * Sync for a commit nothing acknowledged waits on (a snapshot taken here, a compaction): in
   * `full` mode it is committed with NORMAL (no sync of its own) and becomes durable with the
   * next synced commit, since SQLite recovers a WAL as a prefix of its commits; a crash before
   * that loses it with everything after it (the previous snapshot and the entries stay). This
   * keeps a sync of a large snapshot off the caller's event loop.
   */
  #setSyncLater(): void {
    this.#useSync(this.synchronous === "full" ? "normal" : this.synchronous);
  }

  #useSync(want: SyncMode): void {
    if (want === this.#sync) return;
    this.#db.exec(`PRAGMA synchronous = ${want.toUpperCase()}`);
    this.#sync = want;
  }

  #bootstrapConfState(): ConfState {
    return this.#applied.index === 0 ? this.#applied.confState : emptyConfState;
  }

  #writeApplied(): void {
    this.#putState.run("applied", sealJson(this.#applied));
    this.#appliedWritten = this.#applied.index;
    this.#appliedDirty = false;
    this.#appliedUrgent = false;
  }

  /** Inserts rows, 32 to a statement where it can (a third cheaper than one by one). */
  #insertEntries(entries: readonly Entry[]): void {
    let i = 0;
    if (entries.length >= INSERT_BATCH) {
      this.#insertMany ??= this.#db.prepare(
        "INSERT INTO raft_entries (idx, term, type, data, crc) VALUES " +
          Array(INSERT_BATCH).fill("(?, ?, ?, ?, ?)").join(", "),
      );
      const args: (number | Uint8Array)[] = new Array(5 * INSERT_BATCH);
      for (; i + INSERT_BATCH <= entries.length; i += INSERT_BATCH) {
        for (let k = 0; k < INSERT_BATCH; k++) {
          const e = entries[i + k];
          const type = TYPE_CODES[e.type];
          const data = sealEntryData(e.index, e.term, type, e.data, this.#cipher);
          args[5 * k] = e.index;
          args[5 * k + 1] = e.term;
          args[5 * k + 2] = type;
          args[5 * k + 3] = data;
          args[5 * k + 4] = checksum(e.index, e.term, type, data);
        }
        this.#insertMany.run(...args);
      }
    }
    for (; i < entries.length; i++) {
      const e = entries[i];
      const type = TYPE_CODES[e.type];
      const data = sealEntryData(e.index, e.term, type, e.data, this.#cipher);
      this.#insert.run(e.index, e.term, type, data, checksum(e.index, e.term, type, data));
    }
  }

  #readState<T>(name: string): T | undefined {
    const row = this.#db.prepare("SELECT record FROM raft_state WHERE name = ?").get(name) as
      | { record: Uint8Array }
      | undefined;
    return row === undefined ? undefined : parseRecord(row.record, 0, `raft ${name} state`) as T;
  }

  /** Loads the term runs and bounds, checking that the entries are contiguous. */
  #loadTerms(): void {
    const bounds = this.#db.prepare(
      "SELECT min(idx) AS lo, max(idx) AS hi, count(*) AS n FROM raft_entries",
    ).get() as { lo: number | null; hi: number | null; n: number };
    if (bounds.n === 0) {
      this.#last = this.#offset;
      this.#runs = [];
      return;
    }
    const lo = bounds.lo!;
    const hi = bounds.hi!;
    if (lo !== this.#offset + 1) {
      throw new CorruptRecordError(
        this.#offset + 1,
        `the log starts at ${lo} but the last compacted index is ${this.#offset}`,
      );
    }
    if (bounds.n !== hi - lo + 1) {
      throw new CorruptRecordError(lo, `entries ${lo} to ${hi} are not contiguous`);
    }
    // Terms never decrease along a log, so grouping by term yields the runs in order.
    const runs = this.#db.prepare(
      "SELECT term, min(idx) AS lo, max(idx) AS hi FROM raft_entries GROUP BY term ORDER BY lo",
    ).all() as { term: number; lo: number; hi: number }[];
    for (let k = 1; k < runs.length; k++) {
      if (runs[k].lo !== runs[k - 1].hi + 1) {
        throw new CorruptRecordError(runs[k].lo, "terms do not increase along the log");
      }
    }
    this.#runs = runs.map((r) => ({ lo: r.lo, term: r.term }));
    this.#last = hi;
    // The last entry decides votes (its term): check its row now.
    const lastRow = this.#page.get(hi, hi + 1, 1) as unknown as EntryRow;
    checkRow(lastRow, this.#cipher);
  }

  #appendToCaches(entries: readonly Entry[], truncateFrom: number | undefined): void {
    if (truncateFrom !== undefined) {
      this.#runs = this.#runs.filter((r) => r.lo < truncateFrom);
      if (truncateFrom < this.#tailStart) {
        this.#tail = [];
        this.#tailBytes = 0;
        this.#tailStart = truncateFrom;
      } else {
        for (const e of this.#tail.slice(truncateFrom - this.#tailStart)) {
          this.#tailBytes -= e.data.byteLength;
        }
        this.#tail.length = truncateFrom - this.#tailStart;
      }
    }
    for (const e of entries) {
      const lastRun = this.#runs.at(-1);
      if (lastRun === undefined || lastRun.term !== e.term) {
        this.#runs.push({ lo: e.index, term: e.term });
      }
      this.#tail.push(e);
      this.#tailBytes += e.data.byteLength;
    }
    this.#last = entries[entries.length - 1].index;
    // Keep at least the newest entry cached; evict the oldest past the budget.
    if (this.#tailBytes > this.#cacheBytes) {
      let drop = 0;
      while (drop < this.#tail.length - 1 && this.#tailBytes > this.#cacheBytes) {
        this.#tailBytes -= this.#tail[drop].data.byteLength;
        drop++;
      }
      this.#tail = this.#tail.slice(drop);
      this.#tailStart += drop;
    }
  }
}

/** CRC32C over an entry's index, term, type and data. */
export function entryChecksum(e: Entry): number {
  return checksum(e.index, e.term, TYPE_CODES[e.type], e.data);
}

const header = new Uint8Array(17);
const headerView = new DataView(header.buffer);

/** CRC32C over a header of index, term (float64, big-endian) and type (a byte), then data. */
function checksum(index: number, term: number, type: number, data: Uint8Array): number {
  headerView.setFloat64(0, index);
  headerView.setFloat64(8, term);
  header[16] = type;
  return crc32c(data, crc32c(header));
}

function checkRow(row: EntryRow, cipher: RecordCipher | undefined): Entry {
  const type = TYPES[row.type];
  const computed = checksum(row.idx, row.term, row.type, row.data);
  if (type === undefined || computed !== row.crc) {
    throw new CorruptRecordError(
      row.idx,
      type === undefined
        ? `unknown entry type ${row.type}`
        : `checksum mismatch (stored 0x${(row.crc >>> 0).toString(16).padStart(8, "0")}, ` +
          `computed 0x${computed.toString(16).padStart(8, "0")})`,
    );
  }
  const data = cipher === undefined || row.data.byteLength === 0
    ? row.data
    : openSealed(cipher, row.data, entryAad(row.idx, row.term, row.type), row.idx, "entry data");
  return { index: row.idx, term: row.term, type, data };
}

function entryAad(index: number, term: number, type: number): Uint8Array {
  return placeAad("raft entry", index, term, type);
}

/** What is stored for an entry's data: sealed under `cipher`, except empty data. */
function sealEntryData(
  index: number,
  term: number,
  type: number,
  data: Uint8Array,
  cipher: RecordCipher | undefined,
): Uint8Array {
  if (cipher === undefined || data.byteLength === 0) return data;
  return cipher.seal(data, entryAad(index, term, type));
}

function snapshotAad(meta: Snapshot["metadata"]): Uint8Array {
  return placeAad("raft snapshot", meta.index, meta.term);
}

function sealSnapshotData(
  data: Uint8Array,
  meta: Snapshot["metadata"],
  cipher: RecordCipher | undefined,
): Uint8Array {
  return sealRecord(cipher === undefined ? data : cipher.seal(data, snapshotAad(meta)));
}

function openSnapshotData(
  record: Uint8Array,
  meta: Snapshot["metadata"],
  cipher: RecordCipher | undefined,
): Uint8Array {
  const stored = openWith(record, meta.index, "snapshot data");
  if (cipher === undefined) return stored.slice();
  return openSealed(cipher, stored, snapshotAad(meta), meta.index, "snapshot data");
}

/** Opens a sealed record, naming `what` and `index` when it does not decrypt. */
function openSealed(
  cipher: RecordCipher,
  sealed: Uint8Array,
  aad: Uint8Array,
  index: number,
  what: string,
): Uint8Array {
  try {
    return cipher.open(sealed, aad);
  } catch (err) {
    if (err instanceof DecryptError) throw new CorruptRecordError(index, `${what}: ${err.message}`);
    throw err;
  }
}

function sealJson(value: unknown): Uint8Array {
  return sealRecord(utf8.encode(JSON.stringify(value)));
}

/** Opens a sealed record, naming `what` (and `index`) when it is corrupt. */
function openWith(record: Uint8Array, index: number, what: string): Uint8Array {
  try {
    return openRecord(record, index);
  } catch (err) {
    if (err instanceof CorruptRecordError) {
      throw new CorruptRecordError(index, `${what}: ${err.message.replace(/^.*?: /, "")}`);
    }
    throw err;
  }
}

function parseRecord(record: Uint8Array, index: number, what: string): unknown {
  const bytes = openWith(record, index, what);
  try {
    return JSON.parse(fromUtf8.decode(bytes));
  } catch {
    throw new CorruptRecordError(index, `${what}: not valid JSON`);
  }
}

/** Options of {@linkcode copyStorage}: the ciphers to open and seal records with. */
export type CopyStorageOptions = RecipherOptions;

/**
 * Copies the storage file `source` (not in use) to a new file `target`, opening every entry's
 * data and the snapshot with `options.from` and sealing them again with `options.to`: a
 * decrypted copy for offline study, or an encrypted copy of a plaintext one. Every record is
 * checked on the way (a bad one throws {@linkcode CorruptRecordError}); the copy is vacuumed so
 * that no page of it keeps what was replaced. Returns how many entries were copied.
 */
export function copyStorage(
  source: string,
  target: string,
  options: CopyStorageOptions = {},
): { entries: number } {
  return copyAndRewrite(source, target, (db) => {
    let entries = 0;
    const update = db.prepare("UPDATE raft_entries SET data = ?, crc = ? WHERE idx = ?");
    const page = db.prepare(
      "SELECT idx, term, type, data, crc FROM raft_entries WHERE idx > ? ORDER BY idx LIMIT ?",
    );
    let after = -1;
    for (;;) {
      const rows = page.all(after, PAGE) as unknown as EntryRow[];
      if (rows.length === 0) break;
      for (const row of rows) {
        const e = checkRow(row, options.from);
        const data = sealEntryData(e.index, e.term, row.type, e.data, options.to);
        update.run(data, checksum(e.index, e.term, row.type, data), e.index);
        entries++;
      }
      after = rows[rows.length - 1].idx;
    }
    const snap = db.prepare("SELECT meta, data FROM raft_snapshot WHERE id = 1").get() as
      | { meta: Uint8Array; data: Uint8Array }
      | undefined;
    if (snap !== undefined) {
      const meta = parseRecord(snap.meta, 0, "snapshot metadata") as Snapshot["metadata"];
      const data = openSnapshotData(snap.data, meta, options.from);
      db.prepare("UPDATE raft_snapshot SET data = ? WHERE id = 1").run(
        sealSnapshotData(data, meta, options.to),
      );
    }
    return { entries };
  });
}
