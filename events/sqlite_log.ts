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
 * - Snapshots of the state (`actors/snapshot.ts` bytes) may be kept beside the entries
 *   ({@linkcode SqliteLog.saveSnapshot}), the newest few, checksummed like entries.
 * - Encryption at rest (optional `cipher`, `events/at_rest_cipher.ts`): entries, snapshots and
 *   the shared structures are stored sealed, each bound to its place (an entry's index and
 *   term, a snapshot's index), so that no event is plaintext on disk. The CRC32C is over what is
 *   stored; a record that does not decrypt is a {@linkcode CorruptRecordError} saying why.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { DecryptError, placeAad, type RecordCipher } from "./at_rest_cipher.ts";
import {
  CorruptRecordError,
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
import { copyAndRewrite, type RecipherOptions } from "./sqlite_copy.ts";

/** How hard SQLite syncs: see the module documentation. */
export type SyncMode = "full" | "normal" | "off";

/** Options of a {@linkcode SqliteLog}. */
export interface SqliteLogOptions {
  /** Path of the database file (created when missing). */
  path: string;
  /** Default `full`: an acknowledged append survives power loss. */
  synchronous?: SyncMode;
  /** Encrypts what is stored (see the module documentation). */
  cipher?: RecordCipher;
  /** Snapshots kept by {@linkcode SqliteLog.saveSnapshot} (default 2). */
  keepSnapshots?: number;
}

/** A snapshot kept in the log's file. */
export interface StoredStateSnapshot {
  /** The log index it is the state after. */
  readonly index: number;
  /** Its bytes (`actors/snapshot.ts`), decrypted. */
  readonly bytes: Uint8Array;
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
  #cipher: RecordCipher | undefined;
  #keepSnapshots: number;

  /** Opens (or creates) the log at `options.path`. */
  constructor(options: SqliteLogOptions) {
    this.#cipher = options.cipher;
    this.#keepSnapshots = options.keepSnapshots ?? 2;
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
      CREATE TABLE IF NOT EXISTS snapshots (
        idx INTEGER PRIMARY KEY,
        record BLOB NOT NULL
      );
    `);
    this.#codec = new EventCodec({ store: new SqliteStructureStore(this.#db, this.#cipher) });
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
      const encoded = this.#codec.encodeBatch(batch);
      const index = this.#last + this.#pending.length + 1;
      const record = sealRecord(seal(this.#cipher, encoded, entryAad(index, 1)));
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
      const bytes = open(
        this.#cipher,
        openRecord(row.record, row.idx),
        entryAad(row.idx, row.term),
        row.idx,
      );
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

  /**
   * Keeps `bytes`, a snapshot of the state after entry `index`, and drops all but the newest
   * `keepSnapshots`. Synchronous and durable when it returns.
   */
  saveSnapshot(index: number, bytes: Uint8Array): void {
    if (this.#closed) throw new LogClosedError("save a snapshot");
    checkIndex(index);
    if (index > this.#last) {
      throw new RangeError(`Cannot keep a snapshot at ${index}: the last index is ${this.#last}`);
    }
    const record = sealRecord(seal(this.#cipher, bytes, snapshotAad(index)));
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      this.#db.prepare("INSERT OR REPLACE INTO snapshots (idx, record) VALUES (?, ?)").run(
        index,
        record,
      );
      this.#db.prepare(
        "DELETE FROM snapshots WHERE idx NOT IN (SELECT idx FROM snapshots ORDER BY idx DESC LIMIT ?)",
      ).run(this.#keepSnapshots);
      this.#db.exec("COMMIT");
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  /** The snapshots kept, oldest first, checked and decrypted. */
  snapshots(): StoredStateSnapshot[] {
    if (this.#closed) throw new LogClosedError("read");
    const rows = this.#db.prepare("SELECT idx, record FROM snapshots ORDER BY idx").all() as {
      idx: number;
      record: Uint8Array;
    }[];
    return rows.map((r) => ({
      index: r.idx,
      bytes: open(this.#cipher, openRecord(r.record, r.idx), snapshotAad(r.idx), r.idx).slice(),
    }));
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
  #cipher: RecordCipher | undefined;

  constructor(db: DatabaseSync, cipher: RecordCipher | undefined) {
    this.#db = db;
    this.#cipher = cipher;
  }

  load(): Structures | undefined {
    const row = this.#db.prepare("SELECT record FROM structures WHERE id = 1").get() as
      | { record: Uint8Array }
      | undefined;
    if (row === undefined) return undefined;
    const bytes = open(this.#cipher, openRecord(row.record, 0), STRUCTURES_AAD, 0);
    return JSON.parse(new TextDecoder().decode(bytes)) as Structures;
  }

  save(structures: Structures): void {
    const json = new TextEncoder().encode(JSON.stringify(structures));
    const record = sealRecord(seal(this.#cipher, json, STRUCTURES_AAD));
    this.#db.prepare("INSERT OR REPLACE INTO structures (id, record) VALUES (1, ?)").run(record);
  }
}

const STRUCTURES_AAD = placeAad("log structures");

function entryAad(index: number, term: number): Uint8Array {
  return placeAad("log entry", index, term);
}

function snapshotAad(index: number): Uint8Array {
  return placeAad("log snapshot", index);
}

function seal(cipher: RecordCipher | undefined, bytes: Uint8Array, aad: Uint8Array): Uint8Array {
  return cipher === undefined ? bytes : cipher.seal(bytes, aad);
}

/** Opens a stored payload; one that does not decrypt is a corrupt record naming `index`. */
function open(
  cipher: RecordCipher | undefined,
  bytes: Uint8Array,
  aad: Uint8Array,
  index: number,
): Uint8Array {
  if (cipher === undefined) return bytes;
  try {
    return cipher.open(bytes, aad);
  } catch (err) {
    if (err instanceof DecryptError) throw new CorruptRecordError(index, err.message);
    throw err;
  }
}

/** Options of {@linkcode copyLog}: the ciphers to open and seal records with. */
export type CopyLogOptions = RecipherOptions;

/**
 * Copies the log file `source` (not in use) to a new file `target`, opening every record with
 * `options.from` and sealing it again with `options.to`: a decrypted copy for offline study, or
 * an encrypted copy of a plaintext log. The bytes of each batch are kept as they are (contract
 * 10); every record is checked on the way; the copy is vacuumed. Returns how many entries.
 */
export function copyLog(
  source: string,
  target: string,
  options: CopyLogOptions = {},
): { entries: number } {
  return copyAndRewrite(source, target, (db) => {
    let entries = 0;
    db.exec("CREATE TABLE IF NOT EXISTS snapshots (idx INTEGER PRIMARY KEY, record BLOB NOT NULL)");
    const recipher = (record: Uint8Array, index: number, aad: Uint8Array) =>
      sealRecord(seal(options.to, open(options.from, openRecord(record, index), aad, index), aad));
    const page = db.prepare(
      "SELECT idx, term, record FROM entries WHERE idx > ? ORDER BY idx LIMIT ?",
    );
    const update = db.prepare("UPDATE entries SET record = ? WHERE idx = ?");
    let after = -1;
    for (;;) {
      const rows = page.all(after, PAGE) as { idx: number; term: number; record: Uint8Array }[];
      if (rows.length === 0) break;
      for (const r of rows) {
        update.run(recipher(r.record, r.idx, entryAad(r.idx, r.term)), r.idx);
        entries++;
      }
      after = rows[rows.length - 1].idx;
    }
    const structures = db.prepare("SELECT record FROM structures WHERE id = 1").get() as
      | { record: Uint8Array }
      | undefined;
    if (structures !== undefined) {
      db.prepare("UPDATE structures SET record = ? WHERE id = 1").run(
        recipher(structures.record, 0, STRUCTURES_AAD),
      );
    }
    const snaps = db.prepare("SELECT idx, record FROM snapshots").all() as {
      idx: number;
      record: Uint8Array;
    }[];
    for (const r of snaps) {
      db.prepare("UPDATE snapshots SET record = ? WHERE idx = ?").run(
        recipher(r.record, r.idx, snapshotAad(r.idx)),
        r.idx,
      );
    }
    return { entries };
  });
}
