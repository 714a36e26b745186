/**
 * The event log: the only truth of a Shoal cluster (DESIGN.md). One proposal (a batch) is one
 * entry; entries are numbered from 1 and never change once committed. The Raft log implements
 * this interface for real; {@linkcode MemoryLog} is the single-process one for tests, and both
 * pass the same suite (`_log_contract.ts`).
 *
 * @module
 */
import { EventCodec, MemoryStructureStore } from "./codec.ts";
import type { Batch } from "./schema.ts";

/** One committed entry. Shared by every reader: treat it, its bytes and its batch as frozen. */
export interface LogEntry {
  /** Position in the log, from 1. */
  readonly index: number;
  /** Raft term of the leader that appended it (1 in a {@linkcode MemoryLog}). */
  readonly term: number;
  /** The bytes as encoded when appended; never re-encoded (DESIGN.md contract 10). */
  readonly bytes: Uint8Array;
  /** The batch decoded from `bytes` (upcast to current event shapes). */
  readonly batch: Batch;
}

/** Options of {@linkcode EventLog.entries}. */
export interface EntriesOptions {
  /** Ends the iteration (cleanly, without an error) when aborted, even while it waits. */
  signal?: AbortSignal;
}

/** An append-only, replicated (or not) log of batches. */
export interface EventLog {
  /**
   * Appends `batch` as ONE entry and resolves with its index once it is committed (durable).
   * Rejects with a RangeError for a batch the codec refuses (too big, no events), taking no
   * index, and with {@linkcode LogClosedError} once the log is closed.
   */
  append(batch: Batch): Promise<number>;
  /**
   * Committed entries from `from` (inclusive), then live ones as they commit: every entry once,
   * in index order. Ends when `signal` aborts or the log closes. `from` may lie beyond the
   * last index: the iteration then starts when that entry commits.
   */
  entries(from: number, options?: EntriesOptions): AsyncIterable<LogEntry>;
  /** Committed entries in `[from, to]` (`to` defaults to the last index; clamped to it). */
  read(from: number, to?: number): LogEntry[];
  /** Index of the first entry still held (1 until the log is compacted). */
  firstIndex(): number;
  /** Index of the last committed entry; 0 while there is none. */
  lastIndex(): number;
  /** Stops the log: iterations end, later appends reject. Idempotent. */
  close(): Promise<void>;
}

/** The log was closed: nothing more can be appended or read. */
export class LogClosedError extends Error {
  /** `what` names the refused operation. */
  constructor(what: string) {
    super(`The event log is closed: cannot ${what}`);
    this.name = "LogClosedError";
  }
}

/** Options of a {@linkcode MemoryLog}. */
export interface MemoryLogOptions {
  /** Encodes appended batches; by default one with an in-memory structure store. */
  codec?: EventCodec;
}

/**
 * An {@linkcode EventLog} in memory: commits at once, keeps every entry. For tests and the
 * single-process simulator; it encodes and decodes every batch exactly as a durable log would,
 * so what readers see is what the bytes say.
 */
export class MemoryLog implements EventLog {
  #codec: EventCodec;
  #entries: LogEntry[] = [];
  #changes = new LogChanges();
  #closed = false;

  /** An empty log. */
  constructor(options: MemoryLogOptions = {}) {
    this.#codec = options.codec ?? new EventCodec({ store: new MemoryStructureStore() });
  }

  /** Encodes, commits and resolves with the new index. */
  append(batch: Batch): Promise<number> {
    try {
      if (this.#closed) throw new LogClosedError("append");
      const bytes = this.#codec.encodeBatch(batch);
      const index = this.#entries.length + 1;
      // Decoded from the bytes, not the caller's object: readers see exactly what a restart
      // would, and later changes to `batch` cannot reach the log.
      const entry = Object.freeze({ index, term: 1, bytes, batch: this.#codec.decodeBatch(bytes) });
      this.#entries.push(entry);
      this.#changes.wake();
      return Promise.resolve(index);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** See {@linkcode EventLog.entries}. */
  async *entries(from: number, options: EntriesOptions = {}): AsyncGenerator<LogEntry> {
    checkIndex(from);
    const { signal } = options;
    let next = from;
    while (!this.#closed && !signal?.aborted) {
      if (next <= this.#entries.length) yield this.#entries[next++ - 1];
      else await this.#changes.next(signal);
    }
  }

  /** See {@linkcode EventLog.read}. */
  read(from: number, to: number = this.lastIndex()): LogEntry[] {
    if (this.#closed) throw new LogClosedError("read");
    checkIndex(from);
    return this.#entries.slice(from - 1, Math.max(from - 1, to));
  }

  /** Always 1: a memory log is never compacted. */
  firstIndex(): number {
    if (this.#closed) throw new LogClosedError("read");
    return 1;
  }

  /** The number of entries. */
  lastIndex(): number {
    if (this.#closed) throw new LogClosedError("read");
    return this.#entries.length;
  }

  /** Ends every iteration; later appends and reads are refused. */
  close(): Promise<void> {
    this.#closed = true;
    this.#changes.wake();
    return Promise.resolve();
  }
}

/**
 * Lets readers of a log wait for its next change (an append or a close), or for their own
 * signal to abort: what every log's `entries()` does while it is caught up.
 */
export class LogChanges {
  #waiters = new Set<() => void>();

  /** Resolves at the next `wake()`, or when `signal` aborts. */
  next(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#waiters.delete(wake);
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal?.addEventListener("abort", wake);
    });
  }

  /** Wakes every waiting reader. */
  wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** Throws a RangeError unless `index` is a valid log index (a whole number from 1). */
export function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 1) {
    throw new RangeError(`Log indexes are whole numbers from 1; got ${index}`);
  }
}

/** Docker's words when a write needs a leader and none can be reached. */
export const NO_LEADER_MESSAGE =
  "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";

/**
 * An append needs the leader of a replicated log, and none answers (quorum lost, or an election
 * under way). When it ends a write already proposed, the write may or may not commit later.
 */
export class LeaderUnavailableError extends Error {
  /** `detail` says what was tried, after Docker's words. */
  constructor(detail = "") {
    super(detail ? `${NO_LEADER_MESSAGE} (${detail})` : NO_LEADER_MESSAGE);
    this.name = "LeaderUnavailableError";
  }
}
