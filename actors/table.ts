/**
 * Tables of entity records with an undo journal, so a batch can be applied in place and rolled
 * back whole when one of its events is rejected (atomic batches without copying the state).
 *
 * @module
 */

/** Anything stored in a table: a record with an id. Records are replaced, never mutated. */
export interface Row {
  readonly id: string;
}

/** The read side of a table, what projections and the API see. */
export interface ReadonlyTable<R extends Row> {
  /** The record with this id, if any. */
  get(id: string): R | undefined;
  /** Whether a record with this id exists. */
  has(id: string): boolean;
  /** How many records there are. */
  readonly size: number;
  /** All records, in insertion order. */
  values(): IterableIterator<R>;
}

interface JournalEntry {
  table: Table<Row>;
  id: string;
  prev: Row | undefined;
}

/**
 * Records the previous value of every row changed while a batch is open, so the batch can be
 * undone. Outside a batch nothing is recorded (restoring a snapshot, for example).
 */
export class Journal {
  #entries: JournalEntry[] = [];
  #open = false;

  /** Starts recording changes. */
  begin(): void {
    this.#entries.length = 0;
    this.#open = true;
  }

  /** Keeps every change made since `begin`. */
  commit(): void {
    this.#entries.length = 0;
    this.#open = false;
  }

  /** Undoes every change made since `begin`, newest first. */
  rollback(): void {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const { table, id, prev } = this.#entries[i];
      table.restore(id, prev);
    }
    this.#entries.length = 0;
    this.#open = false;
  }

  /**
   * The value a row had when the batch began, if the batch changed it: the first recorded
   * previous value. `found` is false when the batch has not changed the row.
   */
  before(table: ReadonlyTable<Row>, id: string): { found: boolean; row?: Row } {
    for (const e of this.#entries) {
      if (e.table === table && e.id === id) return { found: true, row: e.prev };
    }
    return { found: false };
  }

  /** Notes a row's value before a change. */
  record(table: Table<Row>, id: string, prev: Row | undefined): void {
    if (this.#open) this.#entries.push({ table, id, prev });
  }
}

/** Keeps secondary indexes in step with a table: called with the old and new row of a change. */
export type Reindex<R> = (prev: R | undefined, next: R | undefined) => void;

/** A map of records by id whose changes are journaled and indexed. */
export class Table<R extends Row> implements ReadonlyTable<R> {
  #rows = new Map<string, R>();
  #journal: Journal;
  #reindex: Reindex<R> | undefined;

  /** Creates a table that journals into `journal` and calls `reindex` on every change. */
  constructor(journal: Journal, reindex?: Reindex<R>) {
    this.#journal = journal;
    this.#reindex = reindex;
  }

  /** The record with this id, if any. */
  get(id: string): R | undefined {
    return this.#rows.get(id);
  }

  /** Whether a record with this id exists. */
  has(id: string): boolean {
    return this.#rows.has(id);
  }

  /** How many records there are. */
  get size(): number {
    return this.#rows.size;
  }

  /** All records, in insertion order. */
  values(): IterableIterator<R> {
    return this.#rows.values();
  }

  /** Inserts or replaces a record. */
  put(next: R): void {
    const prev = this.#rows.get(next.id);
    this.#journal.record(this as unknown as Table<Row>, next.id, prev);
    this.#rows.set(next.id, next);
    this.#reindex?.(prev, next);
  }

  /** Deletes a record, if present. */
  delete(id: string): void {
    const prev = this.#rows.get(id);
    if (prev === undefined) return;
    this.#journal.record(this as unknown as Table<Row>, id, prev);
    this.#rows.delete(id);
    this.#reindex?.(prev, undefined);
  }

  /** Puts back a row's earlier value (or its absence) without journaling: used by undo. */
  restore(id: string, prev: Row | undefined): void {
    const current = this.#rows.get(id);
    if (prev === undefined) this.#rows.delete(id);
    else this.#rows.set(id, prev as R);
    this.#reindex?.(current, prev as R | undefined);
  }
}

/** A many-to-many index: key → set of ids, with empty sets dropped. */
export class MultiIndex<K> {
  #map = new Map<K, Set<string>>();

  /** Ids under `key` (an empty set when none). */
  get(key: K): ReadonlySet<string> {
    return this.#map.get(key) ?? EMPTY;
  }

  /** Keys that have at least one id. */
  keys(): IterableIterator<K> {
    return this.#map.keys();
  }

  /** Adds an id under a key. */
  add(key: K, id: string): void {
    let set = this.#map.get(key);
    if (set === undefined) {
      set = new Set();
      this.#map.set(key, set);
    }
    set.add(id);
  }

  /** Removes an id from under a key. */
  remove(key: K, id: string): void {
    const set = this.#map.get(key);
    if (set === undefined) return;
    set.delete(id);
    if (set.size === 0) this.#map.delete(key);
  }

  /** Moves an id from one key to another (either may be undefined). */
  move(from: K | undefined, to: K | undefined, id: string): void {
    if (from === to) return;
    if (from !== undefined) this.remove(from, id);
    if (to !== undefined) this.add(to, id);
  }
}

const EMPTY: ReadonlySet<string> = new Set();
