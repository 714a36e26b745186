/**
 * Shoal's actor runtime: named actors with bounded mailboxes, `tell`/`ask`, supervision with
 * exponential restart backoff, and lazily materialized actor families.
 *
 * ```ts
 * import { ActorSystem, reply } from "./runtime.ts";
 *
 * type Msg = { type: "add"; n: number } | { type: "get" };
 * const system = new ActorSystem();
 * const counter = system.spawn<number, Msg, number>("counter", {
 *   init: () => 0,
 *   receive: (total, msg) => msg.type === "add" ? total + msg.n : reply(total, total),
 * });
 * counter.tell({ type: "add", n: 2 });
 * console.log(await counter.ask({ type: "get" })); // 2
 * await system.shutdown();
 * ```
 *
 * Semantics in one place:
 * - **One message at a time.** Each actor handles its messages in arrival order; an async handler
 *   finishes (its promise settles) before the next message starts. `tell` never runs a handler
 *   synchronously: handlers run from microtasks, so the sender keeps going first.
 * - **State is a value.** `receive(state, msg, ctx)` returns the next state, or `reply(state, x)` to
 *   also answer an `ask`. A handler that returns a bare state answers an `ask` with `undefined`.
 * - **Backpressure.** A mailbox holds at most `mailboxCapacity` waiting messages (the one being
 *   handled does not count). `tell` on a full mailbox throws {@linkcode MailboxFullError}, `ask`
 *   rejects with it; `tellAsync` and `ready` let a producer wait for room instead.
 * - **Errors.** A handler that throws (or rejects) for an `ask` rejects that ask only: the actor
 *   keeps its previous state and goes on. The same failure for a `tell` is a crash: the message is
 *   dropped, one line is logged, a `failed` event is emitted, and after a backoff (10 ms doubling
 *   up to 5 s, reset once the actor has run quietly for 10 s) the state is rebuilt by `init`. Other
 *   queued messages are kept and handled after the restart. Nothing is rethrown, so a crash can
 *   never take the process down (a promise a handler creates but does not return is its own
 *   business: an unhandled rejection there is still fatal, as anywhere in Deno).
 * - **Addresses.** An {@linkcode ActorRef} is an address (an id), not a handle to one incarnation:
 *   after `stop("a")` and `spawn("a", …)`, old refs reach the new actor.
 * - **Cost.** An idle actor is one small object in a map: the mailbox array is allocated on the
 *   first message and released when it drains, and no actor owns a timer unless it is restarting
 *   or has an `ask` outstanding.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Public types

/** Where the runtime reports crashes and misbehaving listeners. */
export interface Logger {
  /** Routine, expected information. */
  info(message: string, ...data: unknown[]): void;
  /** Something odd that the runtime recovered from. */
  warn(message: string, ...data: unknown[]): void;
  /** A failure, such as an actor crash. */
  error(message: string, ...data: unknown[]): void;
}

/** The default {@linkcode Logger}: every level goes to stderr, keeping stdout for program output. */
export const consoleLogger: Logger = {
  info: (message, ...data) => console.error(message, ...data),
  warn: (message, ...data) => console.error(message, ...data),
  error: (message, ...data) => console.error(message, ...data),
};

/** What a handler sees besides its state and message. */
export interface ActorContext<M, R = void> {
  /** The actor's id. */
  readonly id: string;
  /** A ref to the actor itself, e.g. to send itself a follow-up message. */
  readonly self: ActorRef<M, R>;
  /** The system the actor lives in, to spawn, address or stop other actors. */
  readonly system: ActorSystem;
}

/**
 * The next state plus the answer to an `ask`. Build one with {@linkcode reply}; a handler that
 * returns a bare state instead answers an `ask` with `undefined`.
 */
export class Reply<S, R> {
  /**
   * @param state the actor's next state
   * @param value the answer delivered to the asker (ignored for a `tell`)
   */
  constructor(readonly state: S, readonly value: R) {}
}

/** Returns `state` as the actor's next state and answers the pending `ask` with `value`. */
export function reply<S, R>(state: S, value: R): Reply<S, R> {
  return new Reply(state, value);
}

/** What a handler returns: the next state, or the next state with a reply. */
export type Step<S, R> = S | Reply<S, R>;

/**
 * An actor's behavior: how to build its state and how to handle one message.
 *
 * @typeParam S the state
 * @typeParam M the messages it accepts
 * @typeParam R what it answers to `ask` (`void` when it only acknowledges)
 */
export interface Behavior<S, M, R = void> {
  /** Builds the initial state; called at spawn and again at every restart after a crash. */
  init(id: string): S;
  /**
   * Handles one message and returns the next state (or `reply(state, value)`). The next message
   * is delivered only after the returned promise, if any, settles. Throwing leaves the previous
   * state in place, so a handler that mutates its state should validate before mutating.
   */
  receive(state: S, msg: M, ctx: ActorContext<M, R>): Step<S, R> | Promise<Step<S, R>>;
}

/** Options for {@linkcode ActorRef.ask}. */
export interface AskOptions {
  /**
   * How long to wait for the reply before rejecting with {@linkcode AskTimeoutError}; defaults to
   * the system's `askTimeoutMs`. `Infinity` waits forever and arms no timer.
   */
  timeoutMs?: number;
}

/**
 * The address of an actor. Every method resolves the id at call time, so a ref may outlive one
 * incarnation of its actor, and a ref into a family materializes the actor on first delivery.
 */
export interface ActorRef<M, R = void> {
  /** The actor's id. */
  readonly id: string;
  /**
   * Enqueues `msg` and returns at once.
   *
   * @throws {MailboxFullError} the mailbox holds `mailboxCapacity` messages already
   * @throws {ActorStoppedError} the actor is stopping, or the system is shut down
   * @throws {ActorNotFoundError} no actor (and no family) has this id
   */
  tell(msg: M): void;
  /**
   * Waits for room in the mailbox, then enqueues `msg`: the way to slow a producer down instead
   * of failing it. Rejects as {@linkcode ActorRef.tell} throws, except on a full mailbox.
   */
  tellAsync(msg: M): Promise<void>;
  /**
   * Enqueues `msg` and resolves with the handler's reply. Rejects with the handler's error if it
   * throws for this message, {@linkcode AskTimeoutError} after the timeout (the message may
   * still be handled later; its reply is then discarded), {@linkcode ActorStoppedError} if the
   * actor stops before handling it, or whatever {@linkcode ActorRef.tell} would throw. A handler
   * that asks its own actor and awaits the answer only gets the timeout: its mailbox waits for it.
   */
  ask(msg: M, options?: AskOptions): Promise<R>;
  /**
   * Resolves when the mailbox has room (at once if it has). Another producer may take the room
   * first; use {@linkcode ActorRef.tellAsync} when the send must not fail for lack of room.
   */
  ready(): Promise<void>;
}

/**
 * Time as the runtime sees it: only ask timeouts and restart backoff use it. Inject one to drive
 * the runtime from a virtual clock (deterministic simulation) or to watch its timers in tests.
 */
export interface Clock {
  /** A monotonic time in milliseconds. */
  now(): number;
  /** Calls `callback` once after `ms` milliseconds; returns a handle for `clearTimeout`. */
  setTimeout(callback: () => void, ms: number): unknown;
  /** Cancels a timer that has not fired yet. */
  clearTimeout(handle: unknown): void;
}

/** The real {@linkcode Clock}: `performance.now()` and the global timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Restart backoff after a crash, in milliseconds. */
export interface BackoffOptions {
  /** Delay before the first restart. Default 10. */
  initialMs: number;
  /** Upper bound for the doubling delay. Default 5000. */
  maxMs: number;
  /** After running this long without crashing, the next crash starts over at `initialMs`. Default 10000. */
  resetAfterMs: number;
}

/** Options for {@linkcode ActorSystem}. */
export interface ActorSystemOptions {
  /** Where crashes are reported. Default {@linkcode consoleLogger}. */
  logger?: Logger;
  /** Time and timers. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Default mailbox capacity (waiting messages per actor). Default 1000. */
  mailboxCapacity?: number;
  /** Default `ask` timeout. Default 5000 ms. */
  askTimeoutMs?: number;
  /** Restart backoff; missing fields take their defaults. */
  backoff?: Partial<BackoffOptions>;
  /**
   * How many synchronous messages an actor handles before yielding to other actors, so a busy
   * actor cannot monopolise a microtask turn. Default 64.
   */
  throughput?: number;
}

/** Options for {@linkcode ActorSystem.spawn} and {@linkcode ActorSystem.family}. */
export interface SpawnOptions {
  /** This actor's mailbox capacity, overriding the system default. */
  mailboxCapacity?: number;
}

/** Options for {@linkcode ActorSystem.stop} and {@linkcode ActorSystem.shutdown}. */
export interface StopOptions {
  /**
   * `false` (the default): handle no more queued messages; pending asks reject with
   * {@linkcode ActorStoppedError} and queued tells are dropped (counted in the `stopped` event).
   * `true`: handle everything already queued first. Either way new messages are refused at once,
   * and the message being handled, if any, finishes.
   */
  drain?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A message could not be enqueued because the actor's mailbox is full. */
export class MailboxFullError extends Error {
  override name = "MailboxFullError";
  /**
   * @param actorId the actor whose mailbox is full
   * @param capacity its capacity, in messages
   */
  constructor(readonly actorId: string, readonly capacity: number) {
    super(`Cannot deliver to actor "${actorId}": mailbox full (${capacity} messages)`);
  }
}

/** An `ask` got no reply in time. */
export class AskTimeoutError extends Error {
  override name = "AskTimeoutError";
  /**
   * @param actorId the actor that was asked
   * @param timeoutMs how long the asker waited
   */
  constructor(readonly actorId: string, readonly timeoutMs: number) {
    super(`Actor "${actorId}" did not reply within ${timeoutMs} ms`);
  }
}

/** The actor is stopping or stopped (or the system is shut down), so it takes no message. */
export class ActorStoppedError extends Error {
  override name = "ActorStoppedError";
  /**
   * @param actorId the actor concerned
   * @param message what could not be done, and why
   */
  constructor(
    readonly actorId: string,
    message = `Cannot deliver to actor "${actorId}": actor stopped`,
  ) {
    super(message);
  }
}

/** No actor, and no family, has this id. */
export class ActorNotFoundError extends Error {
  override name = "ActorNotFoundError";
  /** @param actorId the id that was addressed */
  constructor(readonly actorId: string) {
    super(`Cannot deliver to actor "${actorId}": no such actor`);
  }
}

/** `spawn` was given an id that is already taken. */
export class ActorExistsError extends Error {
  override name = "ActorExistsError";
  /** @param actorId the id that is taken */
  constructor(readonly actorId: string) {
    super(`Cannot spawn actor "${actorId}": an actor with this id already exists`);
  }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle events

/** An actor crashed handling a `tell` (or while being re-initialised after a crash). */
export class ActorFailedEvent {
  /** Discriminant. */
  readonly type = "failed";
  /**
   * @param actorId the actor that crashed
   * @param error what its handler (or `init`) threw
   * @param failures crashes in a row, counting this one
   * @param restartInMs when the restart happens, or `null` if the actor is stopping and is not
   *   restarted
   */
  constructor(
    readonly actorId: string,
    readonly error: unknown,
    readonly failures: number,
    readonly restartInMs: number | null,
  ) {}
}

/** An actor was restarted: its state was rebuilt by `init`. */
export class ActorRestartedEvent {
  /** Discriminant. */
  readonly type = "restarted";
  /**
   * @param actorId the actor restarted
   * @param failures crashes in a row that led here
   */
  constructor(readonly actorId: string, readonly failures: number) {}
}

/** An actor stopped; its id is free again. */
export class ActorStoppedEvent {
  /** Discriminant. */
  readonly type = "stopped";
  /**
   * @param actorId the actor stopped
   * @param reason `"stop"` for {@linkcode ActorSystem.stop}, `"shutdown"` for
   *   {@linkcode ActorSystem.shutdown}
   * @param dropped queued tells that were never handled (rejected asks are not counted)
   */
  constructor(
    readonly actorId: string,
    readonly reason: "stop" | "shutdown",
    readonly dropped: number,
  ) {}
}

/** The lifecycle events by type, for {@linkcode ActorSystem.on}. */
export interface ActorEventMap {
  /** An actor crashed. */
  failed: ActorFailedEvent;
  /** An actor was restarted after a crash. */
  restarted: ActorRestartedEvent;
  /** An actor stopped. */
  stopped: ActorStoppedEvent;
}

// ---------------------------------------------------------------------------------------------
// The system

/**
 * A set of actors addressed by string id.
 *
 * Call {@linkcode ActorSystem.shutdown} when done: it settles every pending ask and clears every
 * timer, so nothing keeps the process (or a test's sanitizers) waiting.
 */
export class ActorSystem {
  readonly #kernel: Kernel;

  /** Creates an empty system. */
  constructor(options: ActorSystemOptions = {}) {
    this.#kernel = new Kernel(this, options);
  }

  /**
   * Starts an actor. `behavior.init` runs now, so a failing `init` throws here.
   *
   * @throws {ActorExistsError} the id is taken
   * @throws {ActorStoppedError} the system is shut down
   */
  spawn<S, M, R = void>(
    id: string,
    behavior: Behavior<S, M, R>,
    options?: SpawnOptions,
  ): ActorRef<M, R> {
    const cell = this.#kernel.spawn(id, behavior as unknown as AnyBehavior, options);
    return cell.self as ActorRef<M, R>;
  }

  /**
   * Declares a family: any id starting with `prefix` (say `"task/"`) names an actor that is
   * spawned with `factory(id)` when the first message reaches it, and retired with
   * {@linkcode ActorSystem.stop}. This suits entity actors created and retired by events. The
   * longest matching prefix wins; an explicitly spawned actor always takes precedence.
   *
   * @throws {Error} the prefix is empty or already declared
   */
  family<S, M, R = void>(
    prefix: string,
    factory: (id: string) => Behavior<S, M, R>,
    options?: SpawnOptions,
  ): void {
    this.#kernel.family(prefix, factory as unknown as (id: string) => AnyBehavior, options);
  }

  /**
   * The ref for `id`, whether or not the actor exists yet (see {@linkcode ActorSystem.family}).
   * The type parameters are the caller's claim; nothing checks them.
   */
  ref<M, R = void>(id: string): ActorRef<M, R> {
    return this.#kernel.ref(id) as ActorRef<M, R>;
  }

  /** The ref of a live actor, or `undefined`. Does not materialize family actors. */
  get<M, R = void>(id: string): ActorRef<M, R> | undefined {
    return this.#kernel.get(id)?.self as ActorRef<M, R> | undefined;
  }

  /** Whether an actor with this id exists (including one that is stopping). */
  has(id: string): boolean {
    return this.#kernel.get(id) !== undefined;
  }

  /** The number of live actors (including those that are stopping). */
  get size(): number {
    return this.#kernel.size;
  }

  /**
   * Stops an actor; see {@linkcode StopOptions} for what happens to its queued messages. Resolves
   * once the message in progress, if any, has finished and the id is free again: `true` if an
   * actor was stopped, `false` if there was none.
   */
  stop(id: string, options?: StopOptions): Promise<boolean> {
    return this.#kernel.stop(id, options?.drain ?? false, "stop");
  }

  /**
   * Stops every actor (see {@linkcode StopOptions}) and refuses new spawns and deliveries for
   * good. Resolves when every actor has stopped: no timer or pending ask remains. A handler
   * whose promise never settles keeps this waiting too.
   */
  shutdown(options?: StopOptions): Promise<void> {
    return this.#kernel.shutdown(options?.drain ?? false);
  }

  /**
   * Resolves once no actor has work: every mailbox is empty, no handler is running and no
   * restart is pending. Handy in tests and simulations.
   */
  idle(): Promise<void> {
    return this.#kernel.idle();
  }

  /**
   * Subscribes to lifecycle events. A listener that throws is logged and otherwise ignored.
   *
   * @returns a function that unsubscribes
   */
  on<K extends keyof ActorEventMap>(
    type: K,
    listener: (event: ActorEventMap[K]) => void,
  ): () => void {
    return this.#kernel.on(type, listener);
  }
}

// ---------------------------------------------------------------------------------------------
// Internals

// deno-lint-ignore no-explicit-any
type AnyBehavior = Behavior<any, any, any>;

type Listener = (event: ActorEventMap[keyof ActorEventMap]) => void;

/** An actor's lifecycle. Invariant: `IDLE` implies an empty mailbox. */
const IDLE = 0; // no work, nothing scheduled
const BUSY = 1; // a drain is scheduled or running, or an async handler is pending
const BACKOFF = 2; // crashed, restart timer armed
const STOPPED = 3;
type Phase = typeof IDLE | typeof BUSY | typeof BACKOFF | typeof STOPPED;

/** A caller waiting for an answer; settles once, whatever comes first. */
class PendingAsk {
  timer: unknown = undefined;
  constructor(
    readonly clock: Clock,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
  ) {}
  ok(value: unknown): void {
    this.#disarm();
    this.resolve(value);
  }
  fail(error: unknown): void {
    this.#disarm();
    this.reject(error);
  }
  #disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

interface Stopping {
  reason: "stop" | "shutdown";
  dropped: number;
  promise: Promise<boolean>;
  resolve(stopped: boolean): void;
}

interface Family {
  prefix: string;
  factory: (id: string) => AnyBehavior;
  options: SpawnOptions | undefined;
}

/**
 * One actor. It doubles as the handler's {@linkcode ActorContext} so that a live actor costs one
 * object and a map entry; everything else is allocated only while needed. Refs are not cached:
 * they are addresses, cheap to make, and most actors are never referred to by a held ref.
 */
class Cell implements ActorContext<unknown, unknown> {
  /**
   * Waiting messages as flat pairs `[msg, ask, msg, ask, …]` from `head` on (`ask` is undefined
   * for a tell): no envelope object per message. `null` while empty.
   */
  queue: unknown[] | null = null;
  head = 0;
  size = 0;
  phase: Phase = IDLE;
  stopping: Stopping | null = null;
  failures = 0;
  /** When the actor last came back from a crash (`clock.now()`), to reset the backoff. */
  restartedAt = 0;
  timer: unknown = undefined;
  waiters: Waiter[] | null = null;

  constructor(
    readonly kernel: Kernel,
    readonly id: string,
    readonly behavior: AnyBehavior,
    readonly capacity: number,
    public state: unknown,
  ) {}

  get self(): Ref {
    return new Ref(this.kernel, this.id);
  }

  get system(): ActorSystem {
    return this.kernel.system;
  }
}

class Ref implements ActorRef<unknown, unknown> {
  readonly #kernel: Kernel;
  constructor(kernel: Kernel, readonly id: string) {
    this.#kernel = kernel;
  }
  tell(msg: unknown): void {
    this.#kernel.tell(this.id, msg);
  }
  tellAsync(msg: unknown): Promise<void> {
    return this.#kernel.tellAsync(this.id, msg);
  }
  ask(msg: unknown, options?: AskOptions): Promise<unknown> {
    return this.#kernel.ask(this.id, msg, options?.timeoutMs);
  }
  ready(): Promise<void> {
    return this.#kernel.ready(this.id);
  }
}

/** Compacting below this many consumed slots is not worth the copy. */
const COMPACT_AFTER = 1024;

class Kernel {
  readonly system: ActorSystem;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #capacity: number;
  readonly #askTimeoutMs: number;
  readonly #backoff: BackoffOptions;
  readonly #throughput: number;
  readonly #cells = new Map<string, Cell>();
  /** Sorted longest prefix first, so the first match is the most specific. */
  readonly #families: Family[] = [];
  readonly #listeners = new Map<keyof ActorEventMap, Set<Listener>>();
  /** Cells waiting for the next dispatch (double-buffered), and whether it is queued. */
  #ready: Cell[] = [];
  #spare: Cell[] = [];
  #dispatching = false;
  /** Cells in BUSY or BACKOFF, so `idle()` needs no scan. */
  #active = 0;
  #idleWaiters: (() => void)[] = [];
  #closed = false;

  constructor(system: ActorSystem, options: ActorSystemOptions) {
    this.system = system;
    this.#logger = options.logger ?? consoleLogger;
    this.#clock = options.clock ?? systemClock;
    this.#capacity = checkCapacity(options.mailboxCapacity ?? 1000);
    this.#askTimeoutMs = checkTimeout(options.askTimeoutMs ?? 5000);
    this.#backoff = { initialMs: 10, maxMs: 5000, resetAfterMs: 10_000, ...options.backoff };
    for (const [key, value] of Object.entries(this.#backoff)) {
      if (!(value >= 0)) throw new RangeError(`backoff.${key} must be >= 0, got ${value}`);
    }
    this.#throughput = options.throughput ?? 64;
    if (!Number.isInteger(this.#throughput) || this.#throughput < 1) {
      throw new RangeError(`throughput must be a positive integer, got ${this.#throughput}`);
    }
  }

  get size(): number {
    return this.#cells.size;
  }

  // --- actors ---------------------------------------------------------------------------------

  spawn(id: string, behavior: AnyBehavior, options: SpawnOptions | undefined): Cell {
    if (this.#closed) {
      throw new ActorStoppedError(id, `Cannot spawn actor "${id}": the actor system is shut down`);
    }
    if (this.#cells.has(id)) throw new ActorExistsError(id);
    const capacity = options?.mailboxCapacity === undefined
      ? this.#capacity
      : checkCapacity(options.mailboxCapacity);
    const cell = new Cell(this, id, behavior, capacity, behavior.init(id));
    this.#cells.set(id, cell);
    return cell;
  }

  family(prefix: string, factory: (id: string) => AnyBehavior, options?: SpawnOptions): void {
    if (prefix === "") throw new Error("Cannot declare an actor family with an empty prefix");
    if (this.#families.some((f) => f.prefix === prefix)) {
      throw new Error(`Cannot declare actor family "${prefix}": already declared`);
    }
    if (options?.mailboxCapacity !== undefined) checkCapacity(options.mailboxCapacity);
    this.#families.push({ prefix, factory, options });
    this.#families.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  get(id: string): Cell | undefined {
    return this.#cells.get(id);
  }

  ref(id: string): Ref {
    return new Ref(this, id);
  }

  #familyOf(id: string): Family | undefined {
    return this.#families.find((f) => id.startsWith(f.prefix));
  }

  /** The cell that can take a message for `id` now, spawning a family member if need be. */
  #target(id: string): Cell {
    let cell = this.#cells.get(id);
    if (cell === undefined) {
      if (this.#closed) {
        throw new ActorStoppedError(
          id,
          `Cannot deliver to actor "${id}": the actor system is shut down`,
        );
      }
      const family = this.#familyOf(id);
      if (family === undefined) throw new ActorNotFoundError(id);
      cell = this.spawn(id, family.factory(id), family.options);
    }
    if (cell.stopping !== null) throw new ActorStoppedError(id);
    if (cell.size >= cell.capacity) throw new MailboxFullError(id, cell.capacity);
    return cell;
  }

  // --- sending --------------------------------------------------------------------------------

  tell(id: string, msg: unknown): void {
    this.#enqueue(this.#target(id), msg, undefined);
  }

  async tellAsync(id: string, msg: unknown): Promise<void> {
    for (;;) {
      const cell = this.#cells.get(id);
      if (cell === undefined || cell.stopping !== null || cell.size < cell.capacity) {
        return this.tell(id, msg);
      }
      await this.ready(id);
    }
  }

  ask(id: string, msg: unknown, timeoutMs = this.#askTimeoutMs): Promise<unknown> {
    let cell: Cell;
    try {
      checkTimeout(timeoutMs);
      cell = this.#target(id);
    } catch (error) {
      return Promise.reject(error);
    }
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const pending = new PendingAsk(this.#clock, resolve, reject);
    if (timeoutMs !== Infinity) {
      pending.timer = this.#clock.setTimeout(() => {
        pending.timer = undefined;
        reject(new AskTimeoutError(id, timeoutMs));
      }, timeoutMs);
    }
    this.#enqueue(cell, msg, pending);
    return promise;
  }

  ready(id: string): Promise<void> {
    const cell = this.#cells.get(id);
    if (cell === undefined) {
      // A family member that does not exist yet has an empty mailbox.
      try {
        if (this.#closed || this.#familyOf(id) === undefined) this.#target(id);
      } catch (error) {
        return Promise.reject(error);
      }
      return Promise.resolve();
    }
    if (cell.stopping !== null) return Promise.reject(new ActorStoppedError(id));
    if (cell.size < cell.capacity) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    (cell.waiters ??= []).push({ resolve, reject });
    return promise;
  }

  #enqueue(cell: Cell, msg: unknown, ask: PendingAsk | undefined): void {
    (cell.queue ??= []).push(msg, ask);
    cell.size++;
    if (cell.phase === IDLE) {
      this.#setPhase(cell, BUSY);
      this.#schedule(cell);
    }
  }

  /** Discards the oldest message, which the caller has read, and wakes waiting producers. */
  #shift(cell: Cell): void {
    const queue = cell.queue!;
    cell.size--;
    if (cell.size === 0) {
      cell.queue = null; // release the array: idle actors hold no mailbox
      cell.head = 0;
    } else {
      queue[cell.head] = queue[cell.head + 1] = undefined;
      cell.head += 2;
      if (cell.head >= COMPACT_AFTER && cell.head * 2 >= queue.length) {
        queue.splice(0, cell.head);
        cell.head = 0;
      }
    }
    const waiters = cell.waiters;
    if (waiters !== null) {
      // One freed slot wakes one producer; an empty mailbox wakes all, so a producer that was
      // woken but sent nothing cannot strand the others.
      if (cell.size === 0 || waiters.length === 1) {
        cell.waiters = null;
        for (const waiter of waiters) waiter.resolve();
      } else {
        waiters.shift()!.resolve();
      }
    }
  }

  // --- processing -----------------------------------------------------------------------------

  /**
   * Queues a BUSY cell for a drain. One microtask serves every cell that became ready in the same
   * turn, instead of a closure and a microtask per cell: a burst of messages fanned out to many
   * actors costs one scheduling.
   */
  #schedule(cell: Cell): void {
    this.#ready.push(cell);
    if (!this.#dispatching) {
      this.#dispatching = true;
      queueMicrotask(this.#dispatch);
    }
  }

  readonly #dispatch = (): void => {
    // Drain only the cells ready now; cells scheduled meanwhile go to the other buffer and wait
    // for the next microtask, so promise continuations (async handlers, askers) interleave.
    const ready = this.#ready;
    this.#ready = this.#spare;
    for (let i = 0; i < ready.length; i++) this.#drain(ready[i]);
    ready.length = 0;
    this.#spare = ready;
    if (this.#ready.length > 0) queueMicrotask(this.#dispatch);
    else this.#dispatching = false;
  };

  /**
   * Handles queued messages in order until the mailbox is empty, a handler goes async, the
   * actor crashes or its throughput budget is spent. Runs with the cell BUSY.
   */
  #drain(cell: Cell): void {
    for (let budget = this.#throughput; cell.size > 0; budget--) {
      if (budget === 0) {
        this.#schedule(cell); // let other actors run
        return;
      }
      const msg = cell.queue![cell.head];
      const ask = cell.queue![cell.head + 1] as PendingAsk | undefined;
      this.#shift(cell);
      let step: unknown;
      try {
        step = cell.behavior.receive(cell.state, msg, cell);
      } catch (error) {
        if (this.#failed(cell, ask, error)) return;
        continue;
      }
      if (isThenable(step)) {
        step.then(
          (next) => {
            this.#settle(cell, ask, next);
            this.#drain(cell);
          },
          (error) => {
            if (!this.#failed(cell, ask, error)) this.#drain(cell);
          },
        );
        return;
      }
      this.#settle(cell, ask, step);
    }
    this.#setPhase(cell, IDLE);
    if (cell.stopping !== null) this.#finishStop(cell);
  }

  #settle(cell: Cell, ask: PendingAsk | undefined, step: unknown): void {
    if (step instanceof Reply) {
      cell.state = step.state;
      ask?.ok(step.value);
    } else {
      cell.state = step;
      ask?.ok(undefined);
    }
  }

  /**
   * Handles a handler failure. An ask's failure belongs to the asker; a tell's is a crash.
   * Returns true when the actor is now waiting to restart, so the drain must stop.
   */
  #failed(cell: Cell, ask: PendingAsk | undefined, error: unknown): boolean {
    if (ask !== undefined) {
      ask.fail(error);
      return false;
    }
    return this.#crash(cell, error, "crashed handling a message");
  }

  #crash(cell: Cell, error: unknown, what: string): boolean {
    if (cell.failures > 0 && this.#clock.now() - cell.restartedAt >= this.#backoff.resetAfterMs) {
      cell.failures = 0;
    }
    const failures = ++cell.failures;
    if (cell.stopping !== null) {
      // No backoff while stopping: a drain has a finite queue, so no crash loop is possible.
      const restart = cell.size > 0;
      this.#logger.error(
        `Actor "${cell.id}" ${what} while stopping (failure ${failures}): ${describe(error)}; ` +
          (restart ? "restarting at once to drain its mailbox" : "not restarting"),
      );
      this.#emit("failed", new ActorFailedEvent(cell.id, error, failures, restart ? 0 : null));
      if (restart) this.#restart(cell, false);
      return false;
    }
    const delay = Math.min(
      this.#backoff.initialMs * 2 ** (failures - 1),
      this.#backoff.maxMs,
    );
    this.#logger.error(
      `Actor "${cell.id}" ${what} (failure ${failures}): ${describe(error)}; ` +
        `restarting in ${delay} ms`,
    );
    this.#setPhase(cell, BACKOFF);
    cell.timer = this.#clock.setTimeout(() => {
      cell.timer = undefined;
      if (this.#restart(cell, true)) {
        this.#setPhase(cell, BUSY);
        this.#drain(cell);
      }
    }, delay);
    this.#emit("failed", new ActorFailedEvent(cell.id, error, failures, delay));
    return true;
  }

  /**
   * Rebuilds the state. If `init` throws, that is another crash: with `backoff` it schedules the
   * next attempt, without it (while stopping) the queued messages are abandoned. Returns whether
   * the actor is ready to handle messages.
   */
  #restart(cell: Cell, backoff: boolean): boolean {
    try {
      cell.state = cell.behavior.init(cell.id);
    } catch (error) {
      if (backoff) {
        this.#crash(cell, error, "failed to restart");
      } else {
        this.#logger.error(
          `Actor "${cell.id}" failed to restart while stopping: ${describe(error)}; ` +
            `dropping its ${cell.size} queued messages`,
        );
        this.#dropQueue(cell);
      }
      return false;
    }
    cell.restartedAt = this.#clock.now();
    this.#emit("restarted", new ActorRestartedEvent(cell.id, cell.failures));
    return true;
  }

  // --- stopping -------------------------------------------------------------------------------

  stop(id: string, drain: boolean, reason: "stop" | "shutdown"): Promise<boolean> {
    const cell = this.#cells.get(id);
    if (cell === undefined) return Promise.resolve(false);
    if (cell.stopping !== null) return cell.stopping.promise;
    const { promise, resolve } = Promise.withResolvers<boolean>();
    cell.stopping = { reason, dropped: 0, promise, resolve };
    const waiters = cell.waiters;
    cell.waiters = null;
    for (const waiter of waiters ?? []) waiter.reject(new ActorStoppedError(id));
    if (!drain) this.#dropQueue(cell);
    if (cell.phase === BACKOFF) {
      this.#clock.clearTimeout(cell.timer);
      cell.timer = undefined;
      if (cell.size > 0 && this.#restart(cell, false) && cell.size > 0) {
        this.#setPhase(cell, BUSY);
        this.#schedule(cell);
      } else {
        this.#setPhase(cell, IDLE);
        this.#finishStop(cell);
      }
    } else if (cell.phase === IDLE) {
      this.#finishStop(cell);
    } // BUSY: the drain loop finishes the stop when the mailbox is empty.
    return promise;
  }

  /** Empties the mailbox: asks are rejected, tells counted as dropped. */
  #dropQueue(cell: Cell): void {
    const queue = cell.queue;
    if (queue === null) return;
    for (let i = cell.head; i < queue.length; i += 2) {
      const ask = queue[i + 1] as PendingAsk | undefined;
      if (ask === undefined) {
        if (cell.stopping !== null) cell.stopping.dropped++;
      } else {
        ask.fail(
          new ActorStoppedError(
            cell.id,
            `Actor "${cell.id}" stopped before handling the message`,
          ),
        );
      }
    }
    cell.queue = null;
    cell.head = 0;
    cell.size = 0;
  }

  #finishStop(cell: Cell): void {
    const stopping = cell.stopping!;
    this.#setPhase(cell, STOPPED);
    if (this.#cells.get(cell.id) === cell) this.#cells.delete(cell.id);
    this.#emit("stopped", new ActorStoppedEvent(cell.id, stopping.reason, stopping.dropped));
    stopping.resolve(true);
  }

  async shutdown(drain: boolean): Promise<void> {
    this.#closed = true;
    const stops: Promise<boolean>[] = [];
    for (const id of this.#cells.keys()) stops.push(this.stop(id, drain, "shutdown"));
    await Promise.all(stops);
  }

  // --- idleness and events --------------------------------------------------------------------

  #setPhase(cell: Cell, phase: Phase): void {
    const was = cell.phase === BUSY || cell.phase === BACKOFF;
    const is = phase === BUSY || phase === BACKOFF;
    cell.phase = phase;
    if (was === is) return;
    this.#active += is ? 1 : -1;
    if (this.#active === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  idle(): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  on<K extends keyof ActorEventMap>(
    type: K,
    listener: (event: ActorEventMap[K]) => void,
  ): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, set = new Set());
    set.add(listener as Listener);
    return () => set.delete(listener as Listener);
  }

  #emit<K extends keyof ActorEventMap>(type: K, event: ActorEventMap[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const listener of set) {
      // Not an EventTarget: its listener errors are reported as uncaught and end the process.
      try {
        listener(event);
      } catch (error) {
        this.#logger.error(`An actor "${type}" listener threw: ${describe(error)}`);
      }
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value != null && typeof (value as PromiseLike<unknown>).then === "function";
}

function checkCapacity(capacity: number): number {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`mailboxCapacity must be a positive integer, got ${capacity}`);
  }
  return capacity;
}

function checkTimeout(timeoutMs: number): number {
  if (!(timeoutMs >= 0)) throw new RangeError(`timeoutMs must be >= 0, got ${timeoutMs}`);
  return timeoutMs;
}

/** One line about any thrown value, even one whose `toString` is missing or throws. */
function describe(error: unknown): string {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}
