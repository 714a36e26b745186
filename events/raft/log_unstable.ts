/**
 * The unstable tail of the Raft log: entries and a snapshot that the application has not yet
 * persisted. Entries handed out in a Ready are "in progress" until `stableTo` confirms them.
 *
 * @module
 */
import type { Entry, Snapshot } from "./types.ts";

/** Entries from `offset` on, and possibly a snapshot just before them, not yet persisted. */
export class Unstable {
  /** A snapshot received from the leader, waiting to be persisted. */
  snapshot: Snapshot | undefined;
  /** Whether `snapshot` has been handed out in a Ready. */
  snapshotInProgress = false;
  /** The entries; `entries[i]` has index `offset + i`. */
  entries: Entry[] = [];
  /** Index of the first unstable entry (one past the last stable one). */
  offset: number;
  /** Entries before this index have been handed out in a Ready. */
  offsetInProgress: number;

  /** An empty tail starting at `offset`. */
  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** The first index, if the tail starts with a snapshot. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }

  /** The last index, if the tail has entries or a snapshot. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.metadata.index;
  }

  /** The term at `i`, if the tail knows it. */
  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      const s = this.snapshot;
      return s && s.metadata.index === i ? s.metadata.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset].term;
  }

  /** Entries not yet handed out. */
  nextEntries(): Entry[] {
    const start = this.offsetInProgress - this.offset;
    return start >= this.entries.length ? [] : this.entries.slice(start);
  }

  /** The snapshot, if not yet handed out. */
  nextSnapshot(): Snapshot | undefined {
    return this.snapshotInProgress ? undefined : this.snapshot;
  }

  /** Marks everything currently in the tail as handed out. */
  acceptInProgress(): void {
    if (this.entries.length > 0) {
      this.offsetInProgress = this.offset + this.entries.length;
    }
    if (this.snapshot) this.snapshotInProgress = true;
  }

  /**
   * Entries up to (`i`, `t`) were persisted. Ignored if the entry at `i` has since been replaced
   * (its term differs) or is already stable.
   */
  stableTo(i: number, t: number): void {
    const term = this.maybeTerm(i);
    if (term === undefined || term !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
  }

  /** The snapshot at `i` was persisted. */
  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.metadata.index === i) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  /** Replaces the whole tail with snapshot `s`. */
  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  /** Appends `ents`, first truncating any entries at or after `ents[0].index`. */
  truncateAndAppend(ents: readonly Entry[]): void {
    const from = ents[0].index;
    const end = this.offset + this.entries.length;
    if (from === end) {
      for (const e of ents) this.entries.push(e);
    } else if (from <= this.offset) {
      // Replaces the whole tail; storage entries from `from` on are superseded.
      this.offset = from;
      this.offsetInProgress = from;
      this.entries = [...ents];
    } else {
      this.entries = [...this.entries.slice(0, from - this.offset), ...ents];
      this.offsetInProgress = Math.min(this.offsetInProgress, from);
    }
  }

  /** Entries in `[lo, hi)`, which must lie within the tail. */
  slice(lo: number, hi: number): Entry[] {
    const upper = this.offset + this.entries.length;
    if (lo > hi || lo < this.offset || hi > upper) {
      throw new RangeError(`Invalid unstable slice [${lo}, ${hi}) of [${this.offset}, ${upper})`);
    }
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
