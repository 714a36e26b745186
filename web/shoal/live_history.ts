/**
 * Time travel on a running manager: what `actors/history.ts` needs to answer the API fast, kept
 * current as the manager applies entries.
 *
 * - A {@linkcode HistoryIndex} (which entries touched which object, refused entries, task slots,
 *   names over time), so `why` reads a handful of entries instead of folding the log.
 * - In-memory checkpoints: a snapshot of the state every {@linkcode CHECKPOINT_ENTRIES} entries
 *   (or {@linkcode CHECKPOINT_EVENTS} events, whichever comes first), so the state at any index
 *   costs one restore plus at most a few thousand `applyBatch` calls. Their number is bounded:
 *   past {@linkcode MAX_CHECKPOINTS}, every other one is dropped and the spacing doubles, so a
 *   long log keeps a logarithmic memory cost and scrubbing stays fast where most people look
 *   (recent history keeps the same density as old).
 * - A {@linkcode TimeCursor} for scrubbing forward (a timeline dragged to the right folds on from
 *   where it was).
 * - The user's commands (`by: user:...`) with their times: the marks a timeline shows.
 *
 * On a node restart the log is already long: the index and checkpoints are built by one fold in
 * the background, a chunk at a time so the server keeps answering; requests that need them wait
 * for {@linkcode LiveHistory.ready}. From then on `manager.onApplied` keeps them current (a few map
 * operations per event). A log compacted below its first entry (a Raft snapshot) cannot be folded
 * from the start: history then starts at the state the manager had when this was created. So it
 * does again when a snapshot replaces the manager's state (`manager.onRestored`: the leader sent
 * one to a member too far behind, or to a new one): the log before it is gone on this member.
 *
 * Every answer is about the entries this manager has *applied* ({@linkcode LiveHistory.source}
 * ends at `manager.state.index`), never committed entries not yet folded.
 *
 * @module
 */
import type { Manager } from "../../actors/manager.ts";
import type { LogEntry } from "../../events/log.ts";
import { applyBatch, type ApplyResult, ClusterState } from "../../actors/state.ts";
import { snapshot } from "../../actors/snapshot.ts";
import {
  HistoryError,
  HistoryIndex,
  type HistorySource,
  type SnapshotRef,
  stateAt,
  TimeCursor,
} from "../../actors/history.ts";

/** A checkpoint is taken after this many entries since the last one (the starting spacing). */
export const CHECKPOINT_ENTRIES = 5_000;
/** ...or after this many events, whichever comes first (big batches fold slowly). */
export const CHECKPOINT_EVENTS = 50_000;
/** Most checkpoints kept; past it every other one is dropped and the spacing doubles. */
export const MAX_CHECKPOINTS = 64;
/** Most user commands remembered for the timeline's marks (the newest). */
export const MAX_MARKS = 2_000;

/** Entries folded per turn of the event loop while building. */
const BUILD_CHUNK = 2_048;

/** A user's command on the timeline. */
export interface TimelineMark {
  readonly index: number;
  /** `batch.at`, ms. */
  readonly at: number;
  /** The proposer, `user:service.scale` and the like. */
  readonly by: string;
  /** The first event's reason, in a person's words. */
  readonly reason: string;
  /** Whether the fold applied it. */
  readonly applied: boolean;
}

/** Options of a {@linkcode LiveHistory} (the defaults suit production; tests make them small). */
export interface LiveHistoryOptions {
  checkpointEntries?: number;
  checkpointEvents?: number;
  maxCheckpoints?: number;
}

/** The time-travel state of one manager, kept current. */
export class LiveHistory {
  /** The log as far as the manager has applied it. */
  readonly source: HistorySource;
  readonly #manager: Manager;
  readonly #checkpoints: SnapshotRef[] = [];
  readonly #marks: TimelineMark[] = [];
  #index: HistoryIndex | undefined;
  #cursor: TimeCursor;
  #everyEntries: number;
  #everyEvents: number;
  readonly #max: number;
  #sinceEntries = 0;
  #sinceEvents = 0;
  #closed = false;
  /** A snapshot replaced the manager's state while the index was being built. */
  #restoredDuringBuild = false;
  readonly #ready: Promise<void>;
  readonly #unsubscribe: () => void;
  readonly #unsubscribeRestore: () => void;

  /** Starts following `manager` (which should have replayed its log already). */
  constructor(manager: Manager, options: LiveHistoryOptions = {}) {
    this.#manager = manager;
    this.#everyEntries = options.checkpointEntries ?? CHECKPOINT_ENTRIES;
    this.#everyEvents = options.checkpointEvents ?? CHECKPOINT_EVENTS;
    this.#max = Math.max(2, options.maxCheckpoints ?? MAX_CHECKPOINTS);
    const log = manager.log;
    this.source = {
      read: (from, to) => {
        const last = manager.state.index;
        return log.read(from, Math.min(to ?? last, last));
      },
      firstIndex: () => log.firstIndex(),
      lastIndex: () => manager.state.index,
    };
    this.#cursor = new TimeCursor(this.source, this.#checkpoints);
    this.#unsubscribe = manager.onApplied((entry, result) => this.#follow(entry, result));
    this.#unsubscribeRestore = manager.onRestored(() => this.#restored());
    this.#ready = this.#build();
    // A failed build is reported to whoever waits on `ready`; nothing else awaits it.
    this.#ready.catch(() => {});
  }

  /** Resolves once the index and checkpoints cover every applied entry. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The provenance index (after {@linkcode ready}). */
  get index(): HistoryIndex {
    if (this.#index === undefined) {
      throw new HistoryError("out_of_range", "The history index is still being built");
    }
    return this.#index;
  }

  /** The in-memory checkpoints, oldest first. */
  get checkpoints(): readonly SnapshotRef[] {
    return this.#checkpoints;
  }

  /** Index of the last entry applied. */
  get lastIndex(): number {
    return this.#manager.state.index;
  }

  /** The user's commands, oldest first (at most {@linkcode MAX_MARKS}, the newest). */
  get marks(): readonly TimelineMark[] {
    return this.#marks;
  }

  /**
   * The state as of `index`, for reading right away: it may be the manager's live state or the
   * scrubbing cursor's, both of which change after the next `await`. Use {@linkcode stateCopy}
   * for a state to keep.
   */
  view(index: number): ClusterState {
    if (index === this.#manager.state.index) return this.#manager.state;
    return this.#cursor.seek(index);
  }

  /** A state as of `index` that nothing else holds. */
  stateCopy(index: number): ClusterState {
    return stateAt(this.source, index, this.#checkpoints);
  }

  /** `batch.at` of entry `index` (0 for index 0 or an entry no longer held). */
  timeOf(index: number): number {
    const log = this.#manager.log;
    if (index < 1 || index < log.firstIndex()) return 0;
    return log.read(index, index)[0]?.batch.at ?? 0;
  }

  /** Stops following the manager. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    this.#unsubscribeRestore();
  }

  /** The manager's state is a snapshot's now: history starts again at it. */
  #restored(): void {
    if (this.#closed) return;
    const state = this.#manager.state;
    this.#checkpoints.splice(0, this.#checkpoints.length, {
      index: state.index,
      bytes: snapshot(state),
    });
    this.#cursor = new TimeCursor(this.source, this.#checkpoints);
    const kept = this.#marks.filter((m) => m.index > state.index);
    this.#marks.splice(0, this.#marks.length, ...kept);
    this.#sinceEntries = 0;
    this.#sinceEvents = 0;
    if (this.#index === undefined) this.#restoredDuringBuild = true;
    else this.#index = new HistoryIndex();
  }

  #follow(entry: LogEntry, result: ApplyResult): void {
    // Until the build is done the builder folds these entries itself (it reads to the end).
    if (this.#index === undefined || this.#closed) return;
    this.#index.add(entry, result);
    this.#note(entry, result, this.#manager.state);
  }

  /** Records a user's command and takes a checkpoint when due. */
  #note(entry: LogEntry, result: ApplyResult, state: ClusterState): void {
    const batch = entry.batch;
    if (batch.by.startsWith("user:")) {
      this.#marks.push({
        index: entry.index,
        at: batch.at,
        by: batch.by,
        reason: batch.events[0]?.meta.reason ?? "",
        applied: result.applied,
      });
      if (this.#marks.length > MAX_MARKS) this.#marks.splice(0, this.#marks.length - MAX_MARKS);
    }
    this.#sinceEntries++;
    this.#sinceEvents += batch.events.length;
    if (this.#sinceEntries < this.#everyEntries && this.#sinceEvents < this.#everyEvents) return;
    this.#sinceEntries = 0;
    this.#sinceEvents = 0;
    this.#checkpoints.push({ index: state.index, bytes: snapshot(state) });
    if (this.#checkpoints.length > this.#max) {
      // Keep the newest, drop every other one before it; take them half as often from now on.
      const kept = this.#checkpoints.filter((_, i, all) => (all.length - 1 - i) % 2 === 0);
      this.#checkpoints.splice(0, this.#checkpoints.length, ...kept);
      this.#everyEntries *= 2;
      this.#everyEvents *= 2;
    }
  }

  async #build(): Promise<void> {
    const manager = this.#manager;
    const log = manager.log;
    if (log.firstIndex() > 1) {
      // Compacted: no fold from the start is possible; history starts here.
      this.#checkpoints.push({ index: manager.state.index, bytes: snapshot(manager.state) });
      this.#index = new HistoryIndex();
      return;
    }
    const index = new HistoryIndex();
    const state = new ClusterState();
    for (;;) {
      if (this.#closed) return;
      if (this.#restoredDuringBuild) {
        // `#restored` started history over at the snapshot; what was built is behind it.
        this.#index = new HistoryIndex();
        return;
      }
      const target = manager.state.index;
      if (state.index >= target) break;
      const to = Math.min(target, state.index + BUILD_CHUNK);
      for (const entry of log.read(state.index + 1, to)) {
        if (entry.index !== state.index + 1) {
          throw new HistoryError(
            "gap",
            `The log skipped from ${state.index} to ${entry.index} while indexing it`,
          );
        }
        const result = applyBatch(state, entry.batch, entry.index);
        index.add(entry, result);
        this.#note(entry, result, state);
      }
      if (state.index < to) {
        throw new HistoryError("gap", `The log has no entry ${state.index + 1} (indexing it)`);
      }
      // Let the server answer other requests between chunks.
      if (state.index < manager.state.index) await new Promise((r) => setTimeout(r, 0));
    }
    // Caught up, synchronously with the check above: from here `onApplied` keeps it current.
    this.#index = index;
  }
}
