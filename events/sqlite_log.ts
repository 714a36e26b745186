/**
 * A durable {@linkcode EventLog} in one SQLite file (`node:sqlite`, built into Deno): the log of a
 * single manager, used until the Raft log (events/raft) takes its place; a one-voter Raft group
 * then gives the same guarantees.
 *
 * - One row per entry (a batch), holding the bytes as they were encoded plus a CRC32C; a row whose
 *   checksum fails is reported with its index ({@linkcode CorruptRecordError}), never loaded.
 * - The codec's shared msgpack structures live in the same file, saved before any entry that
 *   uses them, so every entry decodes after a restart.
 * - WAL mode. `synchronous` decides what a crash can cost (SQLite's own guarantees):
 *   `full` (the default) syncs the WAL at every commit, so an acknowledged append survives power
 *   loss; `normal` syncs only at checkpoints, so it survives a crash of the process but the last
 *   commits may be lost on power loss; `off` leaves syncing to the OS.
 * - Group commit: appends made in the same turn of the event loop share one transaction (and one
 *   sync); each resolves only after that commit.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  EventCodec,
  openRecord,
  sealRecord,
  type Structures,
  type StructureStore,
} from "./codec.ts";
import {
  checkIndex,
  type EntriesOptions,
  type EventLog,
  LogChanges,
  LogClosedError,
  type LogEntry,
} from "./log.ts";
import type { Batch } from "./schema.ts";

/** How hard SQLite syncs: see the module documentation. */
export type SyncMode = "full" | "normal" | "off";

/** Options of a {@linkcode SqliteLog}. */
export interface SqliteLogOptions {
  /** Path of the database file (created when missing). */
  path: string;
  /** Default `full`: an acknowledged append survives power loss. */
  synchronous?: SyncMode;
}

interface Pending {
  index: number;
  record: Uint8Array;
  resolve: (index: number) => void;
  reject: (err: unknown) => void;
}

const PAGE = 1024;

/** An {@linkcode EventLog} stored in a SQLite file. */
export class SqliteLog implements EventLog {
  #db: DatabaseSync;
  #codec: EventCodec;
  #insert: StatementSync;
  #page: StatementSync;
  #last: number;
  #first: number;
  #pending: Pending[] = [];
  #flushScheduled = false;
  #changes = new LogChanges();
  #closed = false;

  /** Opens (or creates) the log at `options.path`. */
  constructor(options: SqliteLogOptions) {
    this.#db = new DatabaseSync(options.path);
    const sync = options.synchronous ?? "full";
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = ${sync.toUpperCase()};
      CREATE TABLE IF NOT EXISTS entries (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        record BLOB NOT NULL
      );
      CREATE TABLE IF NOT EXISTS structures (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        record BLOB NOT NULL
      );
    `);
    this.#codec = new EventCodec({ store: new SqliteStructureStore(this.#db) });
    this.#insert = this.#db.prepare("INSERT INTO entries (idx, term, record) VALUES (?, ?, ?)");
    this.#page = this.#db.prepare(
      "SELECT idx, term, record FROM entries WHERE idx >= ? AND idx <= ? ORDER BY idx LIMIT ?",
    );
    const bounds = this.#db.prepare("SELECT min(idx) AS first, max(idx) AS last FROM entries")
      .get() as { first: number | null; last: number | null };
    this.#last = bounds.last ?? 0;
    this.#first = bounds.first ?? 1;
  }

  /** Encodes the batch, commits it (with any other appends of this turn) and resolves. */
  append(batch: Batch): Promise<number> {
    try {
      if (this.#closed) throw new LogClosedError("append");
      const record = sealRecord(this.#codec.encodeBatch(batch));
      const index = this.#last + this.#pending.length + 1;
      const { promise, resolve, reject } = Promise.withResolvers<number>();
      this.#pending.push({ index, record, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(() => this.#flush());
      }
      return promise;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const pending = this.#pending;
    this.#pending = [];
    if (pending.length === 0) return;
    try {
      if (this.#closed) throw new LogClosedError("append");
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        for (const p of pending) this.#insert.run(p.index, 1, p.record);
        this.#db.exec("COMMIT");
      } catch (err) {
        this.#db.exec("ROLLBACK");
        throw err;
      }
    } catch (err) {
      for (const p of pending) p.reject(err);
      return;
    }
    this.#last = pending[pending.length - 1].index;
    for (const p of pending) p.resolve(p.index);
    this.#changes.wake();
  }

  /** See {@linkcode EventLog.entries}. */
  async *entries(from: number, options: EntriesOptions = {}): AsyncGenerator<LogEntry> {
    checkIndex(from);
    const { signal } = options;
    let next = from;
    while (!this.#closed && !signal?.aborted) {
      if (next <= this.#last) {
        for (const entry of this.#readPage(next, this.#last)) {
          yield entry;
          next = entry.index + 1;
          if (this.#closed || signal?.aborted) return;
        }
      } else await this.#changes.next(signal);
    }
  }

  /** See {@linkcode EventLog.read}. */
  read(from: number, to: number = this.lastIndex()): LogEntry[] {
    if (this.#closed) throw new LogClosedError("read");
    checkIndex(from);
    const out: LogEntry[] = [];
    const last = Math.min(to, this.#last);
    let next = from;
    while (next <= last) {
      const page = this.#readPage(next, last);
      if (page.length === 0) break;
      out.push(...page);
      next = page[page.length - 1].index + 1;
    }
    return out;
  }

  /** Reads, checks and decodes up to one page of entries in `[from, to]`. */
  #readPage(from: number, to: number): LogEntry[] {
    const rows = this.#page.all(from, to, PAGE) as {
      idx: number;
      term: number;
      record: Uint8Array;
    }[];
    return rows.map((row) => {
      const bytes = openRecord(row.record, row.idx);
      return { index: row.idx, term: row.term, bytes, batch: this.#codec.decodeBatch(bytes) };
    });
  }

  /** Index of the first entry held. */
  firstIndex(): number {
    if (this.#closed) throw new LogClosedError("read");
    return this.#first;
  }

  /** Index of the last committed entry; 0 while there is none. */
  lastIndex(): number {
    if (this.#closed) throw new LogClosedError("read");
    return this.#last;
  }

  /** Commits what is pending, ends every iteration and closes the file. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#flush();
    this.#closed = true;
    this.#changes.wake();
    this.#db.close();
    return Promise.resolve();
  }
}

/** The codec's shared structures, in the log's own file, checksummed like entries. */
class SqliteStructureStore implements StructureStore {
  #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  load(): Structures | undefined {
    const row = this.#db.prepare("SELECT record FROM structures WHERE id = 1").get() as
      | { record: Uint8Array }
      | undefined;
    if (row === undefined) return undefined;
    return JSON.parse(new TextDecoder().decode(openRecord(row.record, 0))) as Structures;
  }

  save(structures: Structures): void {
    const record = sealRecord(new TextEncoder().encode(JSON.stringify(structures)));
    this.#db.prepare("INSERT OR REPLACE INTO structures (id, record) VALUES (1, ?)").run(record);
  }
}
