/**
 * The Raft log: what storage holds, followed by the unstable tail not yet persisted, plus the
 * commit and apply cursors.
 *
 * Cursors: `applied <= applying <= committed <= lastIndex()`. `applying` is the last entry handed
 * to the application in a Ready, `applied` the last one it confirmed by `advance()`.
 *
 * @module
 */
import { CompactedError, UnavailableError } from "./errors.ts";
import { Unstable } from "./log_unstable.ts";
import type { Storage } from "./storage.ts";
import type { Entry, Logger, Snapshot } from "./types.ts";
import { limitSize, noLimit } from "./util.ts";

/** Stable storage plus the unstable tail, as one log. */
export class RaftLog {
  /** Persisted entries and snapshot (read-only for the core). */
  readonly storage: Storage;
  /** Entries and snapshot not yet persisted. */
  readonly unstable: Unstable;
  /** Highest index known committed. */
  committed: number;
  /** Highest index handed to the application to apply. */
  applying: number;
  /** Highest index the application confirmed applied. */
  applied: number;
  /** Payload limit of the committed entries of one Ready. */
  readonly maxApplyingSize: number;
  readonly #logger: Logger;

  /** A log over `storage`, with nothing unstable; cursors start at the snapshot's index. */
  constructor(storage: Storage, logger: Logger, maxApplyingSize = noLimit) {
    this.storage = storage;
    this.#logger = logger;
    this.maxApplyingSize = maxApplyingSize;
    const first = storage.firstIndex();
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  /** One line for logs. */
  toString(): string {
    return `committed=${this.committed}, applied=${this.applied}, applying=${this.applying}, ` +
      `unstable.offset=${this.unstable.offset}, unstable.entries=${this.unstable.entries.length}`;
  }

  /**
   * Appends `ents` after (`index`, `logTerm`) if the log has that entry, truncating a conflicting
   * suffix, and commits up to `min(committed, last new index)`. Returns the last new index, or
   * undefined when (`index`, `logTerm`) does not match.
   */
  maybeAppend(
    index: number,
    logTerm: number,
    committed: number,
    ents: readonly Entry[],
  ): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new Error(
          `Entry ${conflict} conflicts with a committed entry (committed ${this.committed})`,
        );
      }
      this.append(ents.slice(conflict - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** Appends `ents` (truncating from `ents[0].index`) and returns the new last index. */
  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    if (after < this.committed) {
      throw new Error(`Cannot truncate at ${after}: entries up to ${this.committed} are committed`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry of `ents` whose term differs from the log's (or that the log
   * lacks), or 0 when all of them are already in the log.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) {
        if (e.index <= this.lastIndex()) {
          this.#logger.info(
            `found conflict at index ${e.index} ` +
              `[existing term: ${this.termOrZero(e.index)}, conflicting term: ${e.term}]`,
          );
        }
        return e.index;
      }
    }
    return 0;
  }

  /**
   * The largest index `<= index` whose term is `<= term`, with that term (0 if unknown). A
   * follower rejecting an append uses it as a hint; the leader uses it to jump back over a
   * whole term of divergent entries at once.
   */
  findConflictByTerm(index: number, term: number): [index: number, term: number] {
    for (let i = index; i > 0; i--) {
      let t: number;
      try {
        t = this.term(i);
      } catch {
        return [i, 0];
      }
      if (t <= term) return [i, t];
    }
    return [0, 0];
  }

  /** Unstable entries not yet handed out in a Ready. */
  nextUnstableEntries(): Entry[] {
    return this.unstable.nextEntries();
  }

  /** Whether there are unstable entries not yet handed out. */
  hasNextUnstableEntries(): boolean {
    return this.unstable.nextEntries().length > 0;
  }

  /** The unstable snapshot, if not yet handed out. */
  nextUnstableSnapshot(): Snapshot | undefined {
    return this.unstable.nextSnapshot();
  }

  /** Whether a snapshot is waiting to be persisted (handed out or not). */
  hasNextOrInProgressSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /**
   * Committed entries not yet handed out to apply, up to `maxApplyingSize` bytes. They may
   * include unstable entries: the application persists a Ready's entries before applying.
   * None while a snapshot is pending: it must be applied first.
   */
  nextCommittedEntries(): Entry[] {
    if (this.hasNextOrInProgressSnapshot()) return [];
    const lo = this.applying + 1;
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.maxApplyingSize);
  }

  /** Whether {@linkcode nextCommittedEntries} would return anything. */
  hasNextCommittedEntries(): boolean {
    return !this.hasNextOrInProgressSnapshot() && this.applying < this.committed;
  }

  /** The newest snapshot: the unstable one, else storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  /** Index of the first entry (after the snapshot). */
  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  /** Index of the last entry. */
  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /**
   * The last index known to be persisted together with everything before it, as the log now
   * stands. 0 while a snapshot is pending (nothing of the new log is durable yet).
   */
  stableLastIndex(): number {
    return this.unstable.snapshot ? 0 : this.unstable.offset - 1;
  }

  /** Raises the commit index to `to` (never lowers it). */
  commitTo(to: number): void {
    if (this.committed >= to) return;
    if (this.lastIndex() < to) {
      throw new Error(
        `Cannot commit ${to}: out of range [last index ${this.lastIndex()}]; ` +
          `was the log corrupted, truncated or lost?`,
      );
    }
    this.committed = to;
  }

  /** The application confirmed it applied everything up to `i`. */
  appliedTo(i: number): void {
    if (i === 0) return;
    if (this.committed < i || i < this.applied) {
      throw new Error(`Applied index ${i} is out of range [${this.applied}, ${this.committed}]`);
    }
    this.applied = i;
    this.applying = Math.max(this.applying, i);
  }

  /** Entries up to `i` were handed out to apply. */
  acceptApplying(i: number): void {
    this.applying = i;
  }

  /** Everything unstable was handed out to persist. */
  acceptUnstable(): void {
    this.unstable.acceptInProgress();
  }

  /** Entries up to (`i`, `t`) were persisted. */
  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  /** The snapshot at `i` was persisted. */
  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Term of the last entry. */
  lastTerm(): number {
    return this.termOrZero(this.lastIndex());
  }

  /**
   * Term of the entry at `i`. Throws {@linkcode CompactedError} before `firstIndex() - 1` and
   * {@linkcode UnavailableError} after `lastIndex()`.
   */
  term(i: number): number {
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw new CompactedError(i);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    return this.storage.term(i);
  }

  /** Term of the entry at `i`, or 0 when the log does not have it. */
  termOrZero(i: number): number {
    try {
      return this.term(i);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return 0;
      throw e;
    }
  }

  /** Entries from `i` to the end, limited to `maxSize` bytes (at least one). */
  entries(i: number, maxSize: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxSize);
  }

  /** Every entry from the first index on (tests). */
  allEntries(): Entry[] {
    return this.entries(this.firstIndex(), noLimit);
  }

  /**
   * Whether a log ending at (`lastIndex`, `lastTerm`) is at least as up to date as this one
   * (Raft §5.4.1): a later last term wins, and with equal terms the longer log.
   */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Whether the log has an entry at `i` with term `t`. */
  matchTerm(i: number, t: number): boolean {
    try {
      return this.term(i) === t;
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return false;
      throw e;
    }
  }

  /**
   * Commits up to `maxIndex` if its entry is of `term` (Raft §5.4.2: a leader commits only
   * entries of its own term by counting replicas). Returns whether the commit index moved.
   */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrZero(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  /** Replaces the log with snapshot `s` (which commits everything it covers). */
  restore(s: Snapshot): void {
    this.#logger.info(
      `log [${this}] starts to restore snapshot [index: ${s.metadata.index}, term: ${s.metadata.term}]`,
    );
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /**
   * Entries in `[lo, hi)` from storage and the unstable tail, limited to `maxSize` bytes (at
   * least one). Throws {@linkcode CompactedError} when `lo` was compacted.
   */
  slice(lo: number, hi: number, maxSize: number): Entry[] {
    this.#checkOutOfBounds(lo, hi);
    if (lo === hi) return [];
    const offset = this.unstable.offset;
    let out: Entry[] = [];
    if (lo < offset) {
      const stored = this.storage.entries(lo, Math.min(hi, offset), maxSize);
      // Storage stopped early: it hit the size limit, so the unstable part cannot follow.
      if (stored.length < Math.min(hi, offset) - lo) return stored;
      out = stored;
    }
    if (hi > offset) {
      const tail = this.unstable.slice(Math.max(lo, offset), hi);
      out = out.length > 0 ? [...out, ...tail] : tail;
    }
    return limitSize(out, maxSize);
  }

  #checkOutOfBounds(lo: number, hi: number): void {
    if (lo > hi) throw new RangeError(`Invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo);
    const last = this.lastIndex();
    if (hi > last + 1) {
      throw new RangeError(`Slice [${lo}, ${hi}) is out of bound [${first}, ${last}]`);
    }
  }
}
