/**
 * The executor layer of the agent: one {@linkcode Executor} runs one task on this node, whatever
 * the runtime (a plain process now, a Docker container later; a fake for tests and simulation).
 *
 * It follows SwarmKit's controller (`agent/exec`): `prepare` → `start` → `wait`, `stop`
 * (SwarmKit's Shutdown, escalating to Terminate after the grace period), `remove`. Unlike
 * SwarmKit, whose `exec.Do` turns controller errors into states, each executor reports the states
 * itself, through one {@linkcode TaskStatusReporter}, so every runtime moves a task the same way:
 *
 * ```
 * assigned → accepted "accepted" → preparing "preparing" → ready "prepared"
 *          → starting "starting" → running "started" → complete "finished"
 *                                                    → failed  (err "task: non-zero exit (3)")
 *          (stop) → shutdown "shutdown";  a failure before the program ran → rejected
 * (with a health check, starting lasts until the first healthy probe; unhealthy → failed)
 * ```
 *
 * Failures of the task are never thrown: they end in a status (rejected or failed, with `err`).
 * Only misuse throws, such as `start()` before `prepare()`.
 *
 * @module
 */
import {
  type HealthCheck,
  isTerminalTaskState,
  type TaskSpec,
  TaskState,
  type TaskStateName,
  taskStateName,
  type TaskStatus,
} from "../../events/schema.ts";
import type { LogLine, LogReadOptions } from "./log_capture.ts";
import type { HealthState, ProbeResult } from "./health.ts";
import type { TaskAddressing } from "./task_addressing.ts";

/** Everything an executor needs to run one task. */
export interface ExecutorTask {
  readonly id: string;
  readonly serviceId: string;
  readonly serviceName: string;
  /** 1-based slot, or 0 for a global service's task. */
  readonly slot: number;
  /** The node this agent runs on. */
  readonly nodeId: string;
  readonly spec: TaskSpec;
  /** Bytes of the secrets `spec.secrets` names, by secret id (the dispatcher sends only these). */
  readonly secretData?: ReadonlyMap<string, Uint8Array>;
  /** Bytes of the configs `spec.configs` names, by config id. */
  readonly configData?: ReadonlyMap<string, Uint8Array>;
  /**
   * Its address to bind and the services it can reach (task_addressing.ts); absent: it binds
   * 127.0.0.1 and knows no service.
   */
  readonly addressing?: TaskAddressing;
}

/** How a task's program ended: its exit code, and the signal that killed it, if one did. */
export interface ExitStatus {
  /** The exit code; 128 + the signal's number when a signal killed it (as a shell reports). */
  readonly code: number;
  readonly signal: Deno.Signal | null;
}

/** Hooks an executor calls as its task moves on. */
export interface ExecutorOptions {
  /** Called with every new status, in order; each has a higher state than the one before. */
  onStatus?: (status: TaskStatus) => void;
  /** Called when a health check changes the task's health (executors with health checks). */
  onHealth?: (health: HealthState, probe: ProbeResult) => void;
  /** Wall clock for status timestamps, in ms. Default `Date.now`. */
  now?: () => number;
}

/** Runs one task. Create one per task; see the module documentation for the states. */
export interface Executor {
  /** The latest status (before `prepare`: assigned, not reported). */
  readonly status: TaskStatus;
  /** The task's health: `"none"` without a health check. */
  readonly health: HealthState | "none";
  /**
   * Makes the task ready to start: reports accepted and preparing, creates what the task needs
   * (its directory, secret and config files; the process executor also resolves the command) and
   * reports ready ("prepared"), or rejected with the reason in `err`.
   */
  prepare(task: ExecutorTask): Promise<TaskStatus>;
  /**
   * Starts a ready task: reports starting, then running ("started"), or rejected when the program
   * cannot start. With a health check the task stays starting until its first healthy probe, as
   * in SwarmKit, and this resolves then (or when the task ends). A task stopped before it started
   * is left as it is.
   */
  start(): Promise<TaskStatus>;
  /**
   * Resolves when the program exits, after the final status was reported; rejects with
   * {@linkcode TaskNotRunError} when the task ends without ever running. May be called before
   * `start`.
   */
  wait(): Promise<ExitStatus>;
  /**
   * Stops the task (SwarmKit's Shutdown): sends the stop signal, then SIGKILL once
   * `gracePeriodMs` (default: the task's, else 10 s) has passed; resolves when it has exited.
   * The task ends shutdown ("shutdown") unless it had already ended. Safe to call at any time
   * and more than once; a shorter grace period given later takes effect.
   */
  stop(gracePeriodMs?: number): Promise<TaskStatus>;
  /** Stops the task at once if it still runs, then deletes all it left (directory, logs). */
  remove(): Promise<void>;
  /** The task's captured output, oldest first; `follow` keeps going until the task ends. */
  logs(options?: LogReadOptions): AsyncIterable<LogLine>;
}

/** What `wait()` rejects with when the task ended without its program ever running. */
export class TaskNotRunError extends Error {
  /** The task's final status. */
  readonly status: TaskStatus;
  constructor(taskId: string, status: TaskStatus) {
    super(
      `Cannot wait for task ${taskId}: it ended ${taskStateName(status.state)} without running` +
        (status.err ? ` (${status.err})` : ""),
    );
    this.name = "TaskNotRunError";
    this.status = status;
  }
}

/**
 * A failure of the task, whose message is the status `err` to report (SwarmKit's style:
 * `task: non-zero exit (3)`). Executors throw it inside their own steps and turn it into a status.
 */
export class TaskFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskFailure";
  }
}

/** SwarmKit's default stop grace period. */
export const DEFAULT_STOP_GRACE_PERIOD_MS = 10_000;
/** The default stop signal. */
export const DEFAULT_STOP_SIGNAL: Deno.Signal = "SIGTERM";

/** A task's stop signal, grace period and health check. */
export interface RuntimeSettings {
  readonly stopSignal: Deno.Signal;
  readonly stopGracePeriodMs: number;
  readonly healthcheck: HealthCheck | undefined;
}

/**
 * The stop signal, grace period and health check of a task, from its runtime, else the defaults.
 * Throws {@linkcode TaskFailure} for an unknown signal.
 */
export function runtimeSettings(task: ExecutorTask): RuntimeSettings {
  const runtime = task.spec.runtime;
  // Read defensively: older specs (decoded from old events) may lack these fields.
  const own = "stopSignal" in runtime ? runtime : undefined;
  return {
    stopSignal: own?.stopSignal ? parseSignal(own.stopSignal) : DEFAULT_STOP_SIGNAL,
    stopGracePeriodMs: own?.stopGracePeriod ?? DEFAULT_STOP_GRACE_PERIOD_MS,
    healthcheck: own?.healthcheck,
  };
}

/** Linux signal numbers of the signals a stop signal may name by number. */
const SIGNAL_NUMBERS: Record<number, Deno.Signal> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  6: "SIGABRT",
  9: "SIGKILL",
  10: "SIGUSR1",
  12: "SIGUSR2",
  14: "SIGALRM",
  15: "SIGTERM",
  28: "SIGWINCH",
};
const SIGNAL_NAMES: ReadonlySet<string> = new Set([
  ...Object.values(SIGNAL_NUMBERS),
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGPWR",
]);

/**
 * A stop signal as Docker accepts them: `SIGTERM`, `TERM` or `15`. Throws
 * {@linkcode TaskFailure} for anything else.
 */
export function parseSignal(text: string): Deno.Signal {
  const trimmed = text.trim().toUpperCase();
  if (/^[0-9]+$/.test(trimmed)) {
    const signal = SIGNAL_NUMBERS[Number(trimmed)];
    if (signal) return signal;
  } else {
    const name = trimmed.startsWith("SIG") ? trimmed : `SIG${trimmed}`;
    if (SIGNAL_NAMES.has(name)) return name as Deno.Signal;
  }
  throw new TaskFailure(`task: invalid stop signal "${text}"`);
}

/** A task's name, as SwarmKit forms it: `<service>.<slot>.<id>`, or `<service>.<node>.<id>`. */
export function taskName(task: ExecutorTask): string {
  return `${task.serviceName}.${task.slot > 0 ? task.slot : task.nodeId}.${task.id}`;
}

/** The `err` of a task whose program exited with `code`: `task: non-zero exit (3)`. */
export function exitError(code: number, cause?: string): string {
  return cause ? `task: non-zero exit (${code}): ${cause}` : `task: non-zero exit (${code})`;
}

/** Why a running task was asked to stop: a request (a stop, a scale down), or failed health. */
export type StopCause = "request" | "unhealthy";

/**
 * Reports how a task that ran ended, in SwarmKit's words: shut down when it was asked to stop,
 * complete on exit code 0, failed otherwise, and failed as an "unhealthy process" (or
 * container: `what`) when its health check stopped it.
 */
export function reportExit(
  reporter: TaskStatusReporter,
  exitCode: number,
  cause: StopCause | undefined,
  what: "process" | "container",
): void {
  if (cause === "unhealthy") {
    const err = exitCode === 0
      ? `task: unhealthy ${what}`
      : exitError(exitCode, `unhealthy ${what}`);
    reporter.fail(err, { exitCode });
  } else if (cause === "request") {
    reporter.advance("shutdown", "shutdown", { exitCode });
  } else if (exitCode === 0) {
    reporter.advance("complete", "finished", { exitCode });
  } else {
    reporter.fail(exitError(exitCode), { exitCode });
  }
}

/** What a status move may carry besides state and message. */
export interface StatusDetails {
  err?: string;
  exitCode?: number;
  runtimeId?: string;
}

/**
 * Keeps a task's status and reports each change. A status only ever moves to a higher state, and
 * nothing moves it once it is terminal, so racing steps (a stop during a start) cannot report a
 * task going backwards. Shared by every executor so they all report alike.
 */
export class TaskStatusReporter {
  #status: TaskStatus;
  readonly #onStatus: ((status: TaskStatus) => void) | undefined;
  readonly #now: () => number;

  constructor(options: Pick<ExecutorOptions, "onStatus" | "now"> = {}) {
    this.#onStatus = options.onStatus;
    this.#now = options.now ?? Date.now;
    this.#status = { state: TaskState.assigned, timestamp: this.#time(), message: "", err: "" };
  }

  /** The latest status. */
  get status(): TaskStatus {
    return this.#status;
  }

  /** Whether the task reached a terminal state. */
  get ended(): boolean {
    return isTerminalTaskState(this.#status.state);
  }

  /**
   * Moves to `state` with `message` and reports it; returns false (and reports nothing) when the
   * task is already there or past it, or has ended.
   */
  advance(state: TaskStateName, message: string, details: StatusDetails = {}): boolean {
    const value = TaskState[state];
    if (this.ended || value <= this.#status.state) return false;
    const next: TaskStatus = {
      state: value,
      timestamp: this.#time(),
      message,
      err: details.err ?? "",
    };
    const exitCode = details.exitCode;
    const runtimeId = details.runtimeId ?? this.#status.runtimeId;
    if (exitCode !== undefined) next.exitCode = exitCode;
    if (runtimeId !== undefined) next.runtimeId = runtimeId;
    this.#status = next;
    this.#onStatus?.(next);
    return true;
  }

  /**
   * Ends the task on a fatal error, as SwarmKit's `exec.Do` does: rejected when the program had
   * not started (before starting), failed otherwise. The message stays the last step's.
   */
  fail(err: string, details: Omit<StatusDetails, "err"> = {}): boolean {
    const state = this.#status.state < TaskState.starting ? "rejected" : "failed";
    return this.advance(state, this.#status.message, { ...details, err });
  }

  #time(): number {
    return Math.trunc(this.#now());
  }
}

/**
 * A promise with its resolve and reject, whose rejection is never reported as unhandled (callers
 * that await it still see it).
 */
export function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
} {
  const parts = Promise.withResolvers<T>();
  parts.promise.catch(() => {});
  return parts;
}

/**
 * The common shape of every executor's `prepare`: refuse a second task, report accepted and
 * preparing, run the runtime's own `steps`, and report ready ("prepared") — or, whatever went
 * wrong (a full disk too), end the task through `fail` with the reason: rejected, never stuck.
 * A task stopped while its steps ran stays stopped.
 */
export async function prepareSteps<P>(
  reporter: TaskStatusReporter,
  current: ExecutorTask | undefined,
  task: ExecutorTask,
  steps: () => Promise<P>,
  done: { prepared: (prepared: P) => void; fail: (err: string) => void },
): Promise<TaskStatus> {
  if (current !== undefined) {
    throw new Error(`Cannot prepare task ${task.id}: this executor already has task ${current.id}`);
  }
  reporter.advance("accepted", "accepted");
  reporter.advance("preparing", "preparing");
  try {
    const prepared = await steps();
    if (reporter.ended) return reporter.status; // stopped meanwhile
    done.prepared(prepared);
    reporter.advance("ready", "prepared");
  } catch (error) {
    done.fail(failureMessage(error));
  }
  return reporter.status;
}

/** A status `err` for `error`: a {@linkcode TaskFailure}'s own, else `task: <message>`. */
export function failureMessage(error: unknown): string {
  if (error instanceof TaskFailure) return error.message;
  return `task: ${error instanceof Error ? error.message : String(error)}`;
}
