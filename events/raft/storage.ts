/**
 * Stable storage as the Raft core sees it: a read-only {@linkcode Storage} interface, and
 * {@linkcode MemoryStorage}, whose write methods the application calls when it handles a Ready.
 *
 * The core reads storage and never writes it. Storage holds a snapshot (possibly empty, at
 * index 0) followed by entries; index `firstIndex() - 1` is the snapshot's, whose term stays
 * readable so that the entry after it can be matched.
 *
 * @module
 */
import { CompactedError, SnapOutOfDateError, UnavailableError } from "./errors.ts";
import {
  type ConfState,
  emptyHardState,
  type Entry,
  type HardState,
  type Snapshot,
} from "./types.ts";
import { limitSize } from "./util.ts";

export { CompactedError, SnapOutOfDateError, UnavailableError } from "./errors.ts";

/** What a node restarts from. */
export interface InitialState {
  /** The persisted hard state. */
  readonly hardState: HardState;
  /**
   * The configuration as of `Config.applied`: conf changes applied after the last snapshot are
   * not replayed by the core. Either persist what `applyConfChange` returns, or restart with
   * `applied` at the snapshot's index and re-apply the entries after it (MemoryStorage keeps
   * only the snapshot's configuration, so it needs the latter).
   */
  readonly confState: ConfState;
}

/**
 * The read side of stable storage. Every method is synchronous. Errors: a
 * {@linkcode CompactedError} for an index before `firstIndex() - 1`, an
 * {@linkcode UnavailableError} for one after `lastIndex()`.
 */
export interface Storage {
  /** The persisted hard state and configuration. */
  initialState(): InitialState;
  /**
   * Entries in `[lo, hi)`, as many as fit in `maxSize` bytes of payload but at least one.
   * Throws {@linkcode CompactedError} when `lo <= firstIndex() - 1`.
   */
  entries(lo: number, hi: number, maxSize: number): Entry[];
  /** Term of the entry at `i`, for `i` in `[firstIndex() - 1, lastIndex()]`. */
  term(i: number): number;
  /** Index of the last entry (the snapshot's index when there are none). */
  lastIndex(): number;
  /** Index of the first entry that may be read (the snapshot's index + 1). */
  firstIndex(): number;
  /** The latest snapshot (throws `SnapshotTemporarilyUnavailableError` if being made). */
  snapshot(): Snapshot;
}

/** The empty configuration. */
const emptyConfState: ConfState = { voters: [], learners: [] };

/** Options of {@linkcode MemoryStorage}. */
export interface MemoryStorageOptions {
  /** Bootstraps the configuration (as if from a snapshot at index 0). */
  confState?: ConfState;
}

/** An in-memory {@linkcode Storage}, for tests and the simulator. */
export class MemoryStorage implements Storage {
  #hardState: HardState = emptyHardState;
  #snapshot: Snapshot;
  /** `#ents[0]` is a dummy standing for the snapshot's entry: it holds its index and term. */
  #ents: Entry[];

  /** An empty log; `options.confState` bootstraps the configuration. */
  constructor(options: MemoryStorageOptions = {}) {
    this.#snapshot = {
      metadata: { index: 0, term: 0, confState: options.confState ?? emptyConfState },
      data: new Uint8Array(),
    };
    this.#ents = [dummy(0, 0)];
  }

  /** The persisted hard state and the snapshot's configuration. */
  initialState(): InitialState {
    return { hardState: this.#hardState, confState: this.#snapshot.metadata.confState };
  }

  /** Persists the hard state of a Ready. */
  setHardState(hs: HardState): void {
    this.#hardState = hs;
  }

  /** Entries in `[lo, hi)`, limited to `maxSize` bytes of payload (at least one). */
  entries(lo: number, hi: number, maxSize: number): Entry[] {
    const offset = this.#ents[0].index;
    if (lo <= offset) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) {
      throw new RangeError(
        `Cannot read entries up to ${hi}: the last index is ${this.lastIndex()}`,
      );
    }
    if (this.#ents.length === 1) throw new UnavailableError(lo);
    return limitSize(this.#ents.slice(lo - offset, hi - offset), maxSize);
  }

  /** Term of the entry at `i`. */
  term(i: number): number {
    const offset = this.#ents[0].index;
    if (i < offset) throw new CompactedError(i);
    if (i - offset >= this.#ents.length) throw new UnavailableError(i);
    return this.#ents[i - offset].term;
  }

  /** Index of the last entry. */
  lastIndex(): number {
    return this.#ents[0].index + this.#ents.length - 1;
  }

  /** Index of the first readable entry. */
  firstIndex(): number {
    return this.#ents[0].index + 1;
  }

  /** The latest snapshot. */
  snapshot(): Snapshot {
    return this.#snapshot;
  }

  /**
   * Replaces the whole log with `snap` (a Ready's snapshot). Throws
   * {@linkcode SnapOutOfDateError} unless it is newer than the current snapshot.
   */
  applySnapshot(snap: Snapshot): void {
    const { index, term } = snap.metadata;
    if (index <= this.#snapshot.metadata.index) {
      throw new SnapOutOfDateError(index, this.#snapshot.metadata.index);
    }
    this.#snapshot = snap;
    this.#ents = [dummy(index, term)];
  }

  /**
   * Records a snapshot of the application's state at applied index `i`, to be served to slow
   * followers; `confState` is the configuration at `i`. Call {@linkcode compact} after it to
   * drop the entries it covers. Returns the snapshot.
   */
  createSnapshot(i: number, confState: ConfState | undefined, data: Uint8Array): Snapshot {
    if (i <= this.#snapshot.metadata.index) {
      throw new SnapOutOfDateError(i, this.#snapshot.metadata.index);
    }
    if (i > this.lastIndex()) {
      throw new RangeError(`Cannot snapshot at ${i}: the last index is ${this.lastIndex()}`);
    }
    this.#snapshot = {
      metadata: {
        index: i,
        term: this.#ents[i - this.#ents[0].index].term,
        confState: confState ?? this.#snapshot.metadata.confState,
      },
      data,
    };
    return this.#snapshot;
  }

  /**
   * Discards entries up to and including `compactIndex`, which must have been applied (and
   * normally snapshotted). Its term stays readable.
   */
  compact(compactIndex: number): void {
    const offset = this.#ents[0].index;
    if (compactIndex <= offset) throw new CompactedError(compactIndex);
    if (compactIndex > this.lastIndex()) {
      throw new RangeError(
        `Cannot compact to ${compactIndex}: the last index is ${this.lastIndex()}`,
      );
    }
    const at = compactIndex - offset;
    this.#ents = [dummy(compactIndex, this.#ents[at].term), ...this.#ents.slice(at + 1)];
  }

  /**
   * Appends a Ready's entries. They must be contiguous, and may overwrite a conflicting tail
   * (which is then discarded); entries already compacted are skipped.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0].index + entries.length - 1;
    if (last < first) return;
    const fresh = first > entries[0].index ? entries.slice(first - entries[0].index) : entries;
    const at = fresh[0].index - this.#ents[0].index;
    if (at > this.#ents.length) {
      throw new RangeError(
        `Cannot append entry ${fresh[0].index}: the last index is ${this.lastIndex()}`,
      );
    }
    if (at < this.#ents.length) this.#ents = this.#ents.slice(0, at);
    for (const e of fresh) this.#ents.push(e);
  }
}

function dummy(index: number, term: number): Entry {
  return { index, term, type: "normal", data: new Uint8Array() };
}
