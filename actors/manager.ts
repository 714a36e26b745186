/**
 * The manager side of a Shoal node: it folds the committed log into a {@linkcode ClusterState},
 * hosts the entity actors that turn users' commands into events, and runs the projection actors
 * while this node leads.
 *
 * The path of a command (DESIGN.md, "The one idea, as data flow"):
 * 1. `execute(command)` resolves which entity it is about and asks that entity's actor
 *    (`service/<id>`, `node/<id>`, ..., or the collection actor `services` for a create). One actor
 *    handles one command at a time, so commands on one entity never race each other.
 * 2. The actor runs the entity's pure `decide` against the current state, and proposes the
 *    events as a batch (split in order into bounded batches when large, DESIGN.md contract 9).
 * 3. The log commits the batch; this manager applies it with `applyBatch`; the actor answers
 *    with the index, or with the fold's rejection as an error.
 *
 * Entity actors are created lazily on their first command and retired when the fold applies
 * the event that removes their entity, so an idle entity costs nothing but its record.
 *
 * @module
 */
import { type Batch, MAX_BATCH_EVENTS, type ShoalEvent } from "../events/schema.ts";
import { type EventLog, LeaderUnavailableError, type LogEntry } from "../events/log.ts";

export { LeaderUnavailableError, NO_LEADER_MESSAGE } from "../events/log.ts";
import { newId as randomId } from "../events/ids.ts";
import { applyBatch, type ApplyResult, ClusterState, type Rejection } from "./state.ts";
import type { ClusterStateMachine } from "./state_machine.ts";
import { type Command, decide } from "./commands.ts";
import { EventRejected } from "./entities/rejection.ts";
import { resolveService } from "./entities/service.ts";
import { resolveNode } from "./entities/node.ts";
import { resolve } from "./lookup.ts";
import { ActorSystem, type Logger, reply } from "./runtime.ts";

/** What a command led to. */
export interface CommandResult {
  /** Log index of the last batch the command wrote. */
  index: number;
  /** The events written, in order. */
  events: ShoalEvent[];
}

/**
 * A projection (orchestrator, scheduler, allocator, ...): a pure, level-triggered decision over
 * the whole state. It runs on the leader only, after the leader has applied every committed
 * entry, and again after each entry applied while something may be left to do.
 */
export interface Projection {
  /** Its name, which is also its provenance (`by`) on the events it proposes. */
  readonly name: string;
  /**
   * The events to propose now, given the state. Returning nothing means "all is as it should
   * be". Pure: time and ids come in `ctx`.
   */
  reconcile(state: ClusterState, ctx: ProjectionContext): ShoalEvent[];
  /**
   * When the projection next has something to do that no event will announce (a restart delay
   * ending, an update delay elapsing): a time in ms, or undefined. The manager kicks it then.
   */
  wakeAt?(state: ClusterState, now: number): number | undefined;
}

/** What a projection's `reconcile` is given. */
export interface ProjectionContext {
  /** Clock reading, ms. */
  now: number;
  /** A fresh object id. */
  newId: () => string;
  /** Index of the last entry applied, to cite as the cause of what is proposed. */
  cause: number;
}

/**
 * Where commands go when this node's log does not lead (a Raft follower): the leader decides
 * and proposes them, against its state (`node/leader_link.ts`).
 */
export interface LeaderLink {
  /** Whether this node's log accepts appends now (it leads). */
  isLeader(): boolean;
  /** Has the leader carry out `command`; resolves with what it did. */
  execute(command: Command, by: string): Promise<CommandResult>;
  /** Has the leader propose `events`; resolves with the index of the last batch. */
  propose(events: ShoalEvent[], by: string): Promise<number>;
}

/** Options of a {@linkcode Manager}. */
export interface ManagerOptions {
  log: EventLog;
  /** Forwards commands and proposals to the leader while this node follows. */
  leaderLink?: LeaderLink;
  /** Actor system to run in (a new one by default). */
  system?: ActorSystem;
  logger?: Logger;
  /** Wall clock in ms, stamped into batches. */
  clock?: () => number;
  /** Source of object ids. */
  newId?: () => string;
  /** Projections run while leader. */
  projections?: Projection[];
  /** How long one command may wait for its actor, ms. */
  commandTimeoutMs?: number;
  /**
   * The Raft state machine over this manager's state (`actors/state_machine.ts`), when the log
   * is a `RaftLog` whose driver snapshots it: the manager folds into its `state`, and when a
   * snapshot replaces that state (a restart, or the leader's InstallSnapshot) the manager goes
   * on from the entry after it.
   */
  stateMachine?: ClusterStateMachine;
}

type EntityMessage = { command: Command; by: string };

interface Waiter {
  index: number;
  resolve: (result: ApplyResult) => void;
  reject: (err: Error) => void;
}

/** The manager: the fold, the entity actors, and the projections of one node. */
export class Manager {
  /** The cluster as of the last applied entry. */
  readonly state: ClusterState;
  #log: EventLog;
  #system: ActorSystem;
  #ownsSystem: boolean;
  #clock: () => number;
  #newId: () => string;
  #logger: Logger | undefined;
  #projections: Projection[];
  #leaderLink: LeaderLink | undefined;
  #commandTimeoutMs: number;
  #waiters: Waiter[] = [];
  #results = new Map<number, ApplyResult>();
  #listeners = new Set<(entry: LogEntry, result: ApplyResult) => void>();
  #abort = new AbortController();
  #following: Promise<void> | undefined;
  #leading = false;
  #leaderTerm = 0;
  #dirty = new Set<string>();
  #wakeTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #restoreListeners = new Set<(index: number) => void>();
  /** Snapshots restored so far, and the index of the last one. */
  #restores = 0;
  #restoredTo = 0;
  #unsubscribeRestore: (() => void) | undefined;

  /**
   * Creates a manager over a log, starting from an empty state (or a restored one; with
   * `options.stateMachine`, from the state machine's state).
   */
  constructor(options: ManagerOptions, state?: ClusterState) {
    const sm = options.stateMachine;
    if (sm !== undefined && state !== undefined && state !== sm.state) {
      throw new TypeError("A manager with a state machine folds into the state machine's state");
    }
    this.state = sm?.state ?? state ?? new ClusterState();
    this.#unsubscribeRestore = sm?.onRestore(() => this.#restored());
    this.#log = options.log;
    this.#ownsSystem = options.system === undefined;
    this.#system = options.system ?? new ActorSystem({ logger: options.logger });
    this.#logger = options.logger;
    this.#clock = options.clock ?? Date.now;
    this.#newId = options.newId ?? randomId;
    this.#projections = options.projections ?? [];
    this.#leaderLink = options.leaderLink;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 30_000;
    for (const family of ["cluster", "node", "service", "secret", "config", "network"]) {
      this.#system.family<null, EntityMessage, CommandResult>(family + "/", () => ({
        init: () => null,
        receive: async (s, msg) => reply(s, await this.#handle(msg)),
      }));
    }
  }

  /**
   * Applies every committed entry, then follows the log as it grows. Resolves once caught up
   * with what was committed when it was called.
   */
  async start(): Promise<void> {
    const target = this.#log.lastIndex();
    this.#following = this.#follow().catch((err) => {
      this.#logger?.error(`manager: following the log failed: ${(err as Error).message}`);
    }).finally(() => {
      // Nothing more will be applied here: whoever waits for an index would wait forever.
      for (const w of this.#waiters.splice(0)) {
        w.reject(new LeaderUnavailableError("this manager stopped following the log"));
      }
    });
    await this.waitFor(target);
  }

  /**
   * Folds the log from the entry after the state's. When a snapshot replaces the state under
   * the iteration (the log behind it is gone then, so the iteration fails), it goes on from the
   * entry after the snapshot.
   */
  async #follow(): Promise<void> {
    const signal = this.#abort.signal;
    for (;;) {
      const restores = this.#restores;
      try {
        for await (const entry of this.#log.entries(this.state.index + 1, { signal })) {
          this.#apply(entry);
        }
        return;
      } catch (err) {
        if (this.#restores === restores || signal.aborted) throw err;
        this.#logger?.info(`manager: restored a snapshot at ${this.state.index}; folding on`);
      }
    }
  }

  /** Resolves once the entry at `index` has been applied (with what the fold did with it). */
  waitFor(index: number): Promise<ApplyResult> {
    if (index <= this.state.index) {
      return Promise.resolve(this.#results.get(index) ?? { applied: true });
    }
    if (this.#following !== undefined && this.#abort.signal.aborted) {
      return Promise.reject(new LeaderUnavailableError("this manager stopped following the log"));
    }
    return new Promise((resolve, reject) => this.#waiters.push({ index, resolve, reject }));
  }

  /**
   * Calls `listener` with the new index after a snapshot replaced the state (in place: the
   * entries in between are never applied one by one, so `onApplied` does not see them); returns
   * a function that unsubscribes. Whatever is derived from the applied entries is to be rebuilt
   * from the state then.
   */
  onRestored(listener: (index: number) => void): () => void {
    this.#restoreListeners.add(listener);
    return () => this.#restoreListeners.delete(listener);
  }

  /** Calls `listener` after each entry is applied; returns a function that unsubscribes. */
  onApplied(listener: (entry: LogEntry, result: ApplyResult) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Carries out a user's command through its entity actor. Resolves once its events are applied;
   * rejects with {@linkcode EventRejected} (stable `code`, human message) when the entity or the
   * fold refuses it.
   */
  execute(command: Command, options: { by: string }): Promise<CommandResult> {
    const link = this.#leaderLink;
    if (link !== undefined && !link.isLeader()) {
      // Read-your-writes: answer once this node has applied what the leader wrote.
      return link.execute(command, options.by).then(async (result) => {
        await this.waitFor(result.index);
        return result;
      });
    }
    let actor: string;
    try {
      actor = this.#actorFor(command);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#system.ref<EntityMessage, CommandResult>(actor).ask(
      { command, by: options.by },
      { timeoutMs: this.#commandTimeoutMs },
    );
  }

  /**
   * Proposes events in order, as bounded batches, and waits for each to be applied. Throws
   * {@linkcode EventRejected} with the fold's reason when a batch is rejected (earlier batches
   * stay applied: each one is valid on its own).
   */
  async propose(events: ShoalEvent[], by: string): Promise<number> {
    const link = this.#leaderLink;
    if (link !== undefined && !link.isLeader()) {
      const last = await link.propose(events, by);
      await this.waitFor(last);
      return last;
    }
    let index = 0;
    for (let i = 0; i < events.length; i += MAX_BATCH_EVENTS) {
      const batch: Batch = { at: this.#clock(), by, events: events.slice(i, i + MAX_BATCH_EVENTS) };
      index = await this.#log.append(batch);
      const result = await this.waitFor(index);
      if (!result.applied) throw rejectionError(result.rejection);
    }
    return index;
  }

  /**
   * Starts the projections (this node leads) or stops them at once (it no longer does). On
   * gaining leadership the projections first wait until every committed entry is applied, then
   * reconcile from the whole state (DESIGN.md contract 5).
   */
  async setLeader(leading: boolean): Promise<void> {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#leaderTerm++;
    if (!leading) {
      this.#clearWakes();
      await Promise.all(this.#projections.map((p) => this.#system.stop(`projection/${p.name}`)));
      return;
    }
    await this.waitFor(this.#log.lastIndex());
    if (!this.#leading) return;
    const term = this.#leaderTerm;
    for (const p of this.#projections) this.#spawnProjection(p, term);
  }

  /** The log this manager follows. */
  get log(): EventLog {
    return this.#log;
  }

  /** Whether projections are running here. */
  get leading(): boolean {
    return this.#leading;
  }

  /** Stops following the log, the projections and the entity actors. */
  async stop(): Promise<void> {
    this.#unsubscribeRestore?.();
    this.#leading = false;
    this.#leaderTerm++;
    this.#clearWakes();
    this.#abort.abort();
    await this.#following;
    if (this.#ownsSystem) await this.#system.shutdown();
    else {
      for (const p of this.#projections) await this.#system.stop(`projection/${p.name}`);
    }
  }

  #apply(entry: LogEntry): void {
    // Read before a restore, already in the snapshot.
    if (entry.index <= this.#restoredTo) return;
    const result = applyBatch(this.state, entry.batch, entry.index);
    if (!result.applied) {
      this.#results.set(entry.index, result);
      // Only proposers waiting right now need it; keep the map small.
      if (this.#results.size > 1024) this.#results.delete(this.#results.keys().next().value!);
    } else this.#retire(entry.batch);
    if (this.#waiters.length > 0) {
      const still: Waiter[] = [];
      for (const w of this.#waiters) {
        if (w.index <= entry.index) w.resolve(w.index === entry.index ? result : { applied: true });
        else still.push(w);
      }
      this.#waiters = still;
    }
    for (const listener of this.#listeners) {
      try {
        listener(entry, result);
      } catch (err) {
        this.#logger?.error(`manager: an applied-entry listener failed: ${(err as Error).message}`);
      }
    }
    if (this.#leading) {
      const self = result.applied ? undefined : entry.batch.by;
      for (const p of this.#projections) if (p.name !== self) this.#kick(p.name);
    }
  }

  /** A snapshot replaced the state (synchronously, inside the Raft driver's loop). */
  #restored(): void {
    const index = this.state.index;
    this.#restores++;
    this.#restoredTo = index;
    this.#results.clear();
    if (this.#waiters.length > 0) {
      // What the fold did with entries in the snapshot: its recent rejections say.
      const rejected = new Map(this.state.rejections.map((r) => [r.index, r]));
      const still: Waiter[] = [];
      for (const w of this.#waiters) {
        if (w.index > index) {
          still.push(w);
          continue;
        }
        const rejection = rejected.get(w.index);
        w.resolve(rejection === undefined ? { applied: true } : { applied: false, rejection });
      }
      this.#waiters = still;
    }
    for (const listener of [...this.#restoreListeners]) {
      try {
        listener(index);
      } catch (err) {
        this.#logger?.error(`manager: a restore listener failed: ${(err as Error).message}`);
      }
    }
    if (this.#leading) { for (const p of this.#projections) this.#kick(p.name); }
  }

  /** Retires the actors of entities the batch removed. */
  #retire(batch: Batch): void {
    for (const e of batch.events) {
      const family = REMOVALS.get(e.type);
      if (family !== undefined) void this.#system.stop(`${family}/${e.data.id}`);
    }
  }

  /** The actor that owns a command; throws `EventRejected` when it names nothing. */
  #actorFor(command: Command): string {
    const s = this.state;
    switch (command.kind) {
      case "InitCluster":
      case "UpdateCluster":
      case "RotateJoinToken":
      case "RotateUnlockKey":
      case "RotateRootCA":
        return "cluster/swarm";
      case "UpdateNode":
      case "RemoveNode":
        return `node/${resolveNode(s, command.node).id}`;
      case "CreateService":
        return "service/+";
      case "UpdateService":
      case "ScaleService":
      case "RollbackService":
      case "RemoveService":
        return `service/${resolveService(s, command.service).id}`;
      case "CreateFileObject":
        return `${command.object}/+`;
      case "UpdateFileObject":
      case "RemoveFileObject": {
        const rec = command.object === "secret"
          ? resolve("secret", s.secrets, s.secretNames, command.ref)
          : resolve("config", s.configs, s.configNames, command.ref);
        return `${command.object}/${rec.id}`;
      }
      case "CreateNetwork":
        return "network/+";
      case "RemoveNetwork":
        return `network/${resolve("network", s.networks, s.networkNames, command.ref).id}`;
    }
  }

  async #handle(msg: EntityMessage): Promise<CommandResult> {
    const events = decide(this.state, msg.command, {
      by: msg.by,
      now: this.#clock(),
      newId: this.#newId,
    });
    const index = await this.propose(events, msg.by);
    return { index, events };
  }

  #spawnProjection(p: Projection, term: number): void {
    const id = `projection/${p.name}`;
    this.#system.spawn<null, "kick">(id, {
      init: () => null,
      receive: async () => {
        this.#dirty.delete(p.name);
        if (term !== this.#leaderTerm) return null;
        const now = this.#clock();
        const events = p.reconcile(this.state, {
          now,
          newId: this.#newId,
          cause: this.state.index,
        });
        this.#scheduleWake(p, now);
        if (events.length === 0) return null;
        try {
          // Applying the entry kicks every projection again, this one included: level-triggered.
          await this.propose(events, p.name);
        } catch (err) {
          // Leadership (or the manager) went away mid-proposal: the next leader decides again.
          const name = (err as Error)?.name;
          if (
            err instanceof LeaderUnavailableError || name === "NotLeaderError" ||
            name === "DriverStoppedError" || name === "LogClosedError" ||
            name === "CommitUnknownError"
          ) {
            return null;
          }
          if (!(err instanceof EventRejected)) throw err;
          // Someone else changed what it decided on; it decides again when the state next
          // changes (its own rejected entries do not kick it, so a bad decision cannot spin).
          this.#logger?.warn(`${p.name}: proposal rejected: ${err.message}`);
        }
        return null;
      },
    });
    this.#kick(p.name);
  }

  /** Arms (or clears) the one timer that kicks a projection when its next deadline comes. */
  #scheduleWake(p: Projection, now: number): void {
    const old = this.#wakeTimers.get(p.name);
    if (old !== undefined) clearTimeout(old);
    this.#wakeTimers.delete(p.name);
    const at = p.wakeAt?.(this.state, now);
    if (at === undefined || !this.#leading) return;
    const timer = setTimeout(() => {
      this.#wakeTimers.delete(p.name);
      if (this.#leading) this.#kick(p.name);
    }, Math.max(0, at - now));
    this.#wakeTimers.set(p.name, timer);
  }

  #clearWakes(): void {
    for (const t of this.#wakeTimers.values()) clearTimeout(t);
    this.#wakeTimers.clear();
  }

  /** Asks a projection to reconcile, unless it already has a request waiting. */
  #kick(name: string): void {
    if (this.#dirty.has(name)) return;
    const ref = this.#system.get<"kick">(`projection/${name}`);
    if (ref === undefined) return;
    this.#dirty.add(name);
    ref.tell("kick");
  }
}

/** The actor family each removal retires (a map: decoded type strings are not internalised). */
const REMOVALS: ReadonlyMap<string, string> = new Map([
  ["NodeRemoved", "node"],
  ["ServiceRemoved", "service"],
  ["SecretRemoved", "secret"],
  ["ConfigRemoved", "config"],
  ["NetworkRemoved", "network"],
]);

/** A proposed batch the fold refused; `rejection` says which event and why. */
export class BatchRejectedError extends EventRejected {
  /** What the fold recorded. */
  readonly rejection: Rejection;
  /** Wraps the fold's rejection. */
  constructor(rejection: Rejection) {
    super(rejection.code as EventRejected["code"], rejection.reason);
    this.name = "BatchRejectedError";
    this.rejection = rejection;
  }
}

function rejectionError(r: Rejection): BatchRejectedError {
  return new BatchRejectedError(r);
}
