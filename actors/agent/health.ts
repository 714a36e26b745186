/**
 * Health checks, as Docker runs a HEALTHCHECK, for tasks whose runtime has no engine to run them
 * (the process runtime). A {@linkcode HealthMonitor} probes every `interval`, gives each probe
 * `timeout`, and reports transitions: starting → healthy, and unhealthy after `retries`
 * consecutive failures. Failures during `startPeriod` do not count until a probe has succeeded,
 * as in Docker.
 *
 * Probes (`test`):
 * - `["NONE"]` (or `[]`): no health check;
 * - `["CMD", program, ...args]`: runs the program; exit 0 is healthy, anything else is not;
 * - `["CMD-SHELL", "command line"]`: runs `/bin/sh -c "command line"`;
 * - `["HTTP", "http://127.0.0.1:8080/health"]`: Shoal's extension, a GET answered with a status
 *   from 200 to 399 is healthy (redirects are not followed).
 *
 * Zero `interval`, `timeout` or `retries` mean Docker's defaults (30 s, 30 s, 3), as in Docker.
 *
 * @module
 */
import type { HealthCheck } from "../../events/schema.ts";
import { type Clock, systemClock } from "../runtime.ts";
import { signalGroup } from "./process_group.ts";
import { resolveCommand, spawnErrorReason } from "./resolve_command.ts";

/** A task's health. */
export type HealthState = "starting" | "healthy" | "unhealthy";

/** One probe's outcome, as `docker inspect` shows a health log entry. */
export interface ProbeResult {
  readonly ok: boolean;
  /** The probe's output (at most {@linkcode MAX_PROBE_OUTPUT} bytes) or why it failed. */
  readonly output: string;
  /** The command's exit code (CMD and CMD-SHELL probes that ran to the end). */
  readonly exitCode?: number;
  /** Wall-clock start and end, in ms. */
  readonly start: number;
  readonly end: number;
}

/** Docker's defaults for a zero interval, timeout and retries. */
export const DEFAULT_HEALTH_INTERVAL_MS = 30_000;
/** Default probe timeout. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 30_000;
/** Default consecutive failures before unhealthy. */
export const DEFAULT_HEALTH_RETRIES = 3;
/** Output kept from a probe, as Docker keeps. */
export const MAX_PROBE_OUTPUT = 4096;
/** Probe results a monitor keeps, as Docker keeps. */
export const HEALTH_LOG_KEPT = 5;

/** Whether `check` asks for probes at all (not absent, empty or `["NONE"]`). */
export function isHealthCheckEnabled(check: HealthCheck | undefined): check is HealthCheck {
  return check !== undefined && check.test.length > 0 && check.test[0] !== "NONE";
}

/** What is wrong with an enabled check's `test`, in words, or undefined if nothing is. */
export function healthCheckProblem(check: HealthCheck): string | undefined {
  const [kind, ...rest] = check.test;
  switch (kind) {
    case "CMD":
      return rest.length > 0 && rest[0] !== "" ? undefined : "CMD needs a program to run";
    case "CMD-SHELL":
      return rest.length > 0 && rest.join(" ").trim() !== ""
        ? undefined
        : "CMD-SHELL needs a command line";
    case "HTTP": {
      if (rest.length !== 1) return "HTTP needs exactly one URL";
      try {
        const url = new URL(rest[0]);
        return url.protocol === "http:" || url.protocol === "https:"
          ? undefined
          : `HTTP needs an http or https URL, not "${rest[0]}"`;
      } catch {
        return `HTTP needs a URL, not "${rest[0]}"`;
      }
    }
    default:
      return `the test must start with NONE, CMD, CMD-SHELL or HTTP, not "${kind}"`;
  }
}

/** Where and how a probe runs. */
export interface ProbeOptions {
  /** Milliseconds before the probe is abandoned (its command killed) and counted a failure. */
  timeoutMs: number;
  /** Environment of CMD and CMD-SHELL probes (the task's); `PATH` is searched for the program. */
  env?: Record<string, string>;
  /** Working directory of CMD and CMD-SHELL probes. */
  cwd?: string;
  /** Abandons the probe (its command is killed); the result is a failure. */
  signal?: AbortSignal;
}

/** Runs one probe of `test` (an enabled, valid one); never throws. */
export async function runProbe(
  test: readonly string[],
  options: ProbeOptions,
): Promise<ProbeResult> {
  const start = Date.now();
  const done = (ok: boolean, output: string, exitCode?: number): ProbeResult => ({
    ok,
    output,
    ...(exitCode === undefined ? {} : { exitCode }),
    start,
    end: Date.now(),
  });
  const [kind, ...rest] = test;
  if (kind === "HTTP") return await httpProbe(rest[0], options, done);
  const [program, ...args] = kind === "CMD-SHELL" ? ["/bin/sh", "-c", rest.join(" ")] : rest;
  return await commandProbe(program, args, options, done);
}

type Done = (ok: boolean, output: string, exitCode?: number) => ProbeResult;

async function commandProbe(
  program: string,
  args: string[],
  options: ProbeOptions,
  done: Done,
): Promise<ProbeResult> {
  const cwd = options.cwd ?? Deno.cwd();
  const env = options.env ?? {};
  const resolved = await resolveCommand(program, {
    path: env.PATH ?? Deno.env.get("PATH") ?? "",
    cwd,
  });
  if (!resolved.ok) return done(false, `cannot run "${program}": ${resolved.reason}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(resolved.path, {
      args,
      env,
      clearEnv: options.env !== undefined,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (error) {
    return done(false, `cannot run "${program}": ${spawnErrorReason(error)}`);
  }
  let timedOut = false;
  const kill = () => signalGroup(child.pid, "SIGKILL");
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  options.signal?.addEventListener("abort", kill);
  const output = new BoundedOutput(MAX_PROBE_OUTPUT);
  try {
    const reading = Promise.all([output.read(child.stdout), output.read(child.stderr)]);
    const status = await child.status;
    // Whatever the probe left behind in its process group goes too (it may hold the pipes).
    signalGroup(child.pid, "SIGKILL");
    await reading;
    if (timedOut) {
      return done(false, `Health check exceeded timeout (${duration(options.timeoutMs)})`);
    }
    if (options.signal?.aborted) return done(false, "Health check was cancelled");
    return done(status.code === 0, output.text(), status.code);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", kill);
  }
}

async function httpProbe(url: string, options: ProbeOptions, done: Done): Promise<ProbeResult> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  const abort = () => controller.abort();
  options.signal?.addEventListener("abort", abort);
  try {
    const response = await fetch(url, { signal: controller.signal, redirect: "manual" });
    await response.body?.cancel();
    const ok = response.status >= 200 && response.status < 400;
    return done(ok, `HTTP ${response.status} ${response.statusText}`.trim());
  } catch (error) {
    if (timedOut) {
      return done(false, `Health check exceeded timeout (${duration(options.timeoutMs)})`);
    }
    if (options.signal?.aborted) return done(false, "Health check was cancelled");
    return done(false, `GET ${url} failed: ${error instanceof Error ? error.message : error}`);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", abort);
  }
}

/** Options of a {@linkcode HealthMonitor}. */
export interface HealthMonitorOptions extends Omit<ProbeOptions, "timeoutMs" | "signal"> {
  /** Schedules probes and measures the start period. Default: real time. */
  clock?: Clock;
  /** Called on each change of health, with the probe that caused it. */
  onChange?: (state: HealthState, probe: ProbeResult) => void;
  /** Called after every probe (for `inspect`-style health logs). */
  onProbe?: (probe: ProbeResult, state: HealthState) => void;
}

/**
 * Probes a task's health until stopped; see the module documentation. Starts in `starting`; the
 * first probe runs one interval after `start()`, each next one an interval after the previous one
 * ended, so probes never overlap.
 */
export class HealthMonitor {
  readonly #test: readonly string[];
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #startPeriodMs: number;
  readonly #options: HealthMonitorOptions;
  readonly #clock: Clock;
  #state: HealthState = "starting";
  #failingStreak = 0;
  #log: ProbeResult[] = [];
  #startedAt: number | undefined;
  #timer: unknown;
  #probing: Promise<void> | undefined;
  #abort: AbortController | undefined;
  #stopped = false;

  /** A monitor for `check`; throws a `TypeError` if the check is disabled or invalid. */
  constructor(check: HealthCheck, options: HealthMonitorOptions = {}) {
    if (!isHealthCheckEnabled(check)) throw new TypeError("Cannot monitor health: no health check");
    const problem = healthCheckProblem(check);
    if (problem) throw new TypeError(`Cannot monitor health: ${problem}`);
    this.#test = [...check.test];
    this.#intervalMs = check.interval || DEFAULT_HEALTH_INTERVAL_MS;
    this.#timeoutMs = check.timeout || DEFAULT_HEALTH_TIMEOUT_MS;
    this.#retries = check.retries || DEFAULT_HEALTH_RETRIES;
    this.#startPeriodMs = check.startPeriod;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** The current health. */
  get state(): HealthState {
    return this.#state;
  }

  /** Consecutive failed probes that counted. */
  get failingStreak(): number {
    return this.#failingStreak;
  }

  /** The latest probe results, oldest first (at most {@linkcode HEALTH_LOG_KEPT}). */
  get log(): readonly ProbeResult[] {
    return this.#log;
  }

  /** Starts probing; the start period counts from now. */
  start(): void {
    if (this.#startedAt !== undefined) throw new Error("Cannot start a health monitor twice");
    this.#startedAt = this.#clock.now();
    this.#schedule();
  }

  /** Stops probing: clears the timer, kills a probe in flight and waits for it. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    await this.#probing;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped) return;
      this.#probing = this.#probe();
    }, this.#intervalMs);
  }

  async #probe(): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    const startedAt = this.#clock.now();
    const result = await runProbe(this.#test, {
      timeoutMs: this.#timeoutMs,
      env: this.#options.env,
      cwd: this.#options.cwd,
      signal: abort.signal,
    });
    this.#abort = undefined;
    if (this.#stopped) return;
    this.#record(result, startedAt);
    this.#schedule();
  }

  #record(result: ProbeResult, probeStartedAt: number): void {
    this.#log.push(result);
    if (this.#log.length > HEALTH_LOG_KEPT) this.#log.shift();
    const before = this.#state;
    if (result.ok) {
      this.#failingStreak = 0;
      this.#state = "healthy";
    } else {
      const inStartPeriod = this.#state === "starting" &&
        probeStartedAt - this.#startedAt! < this.#startPeriodMs;
      if (!inStartPeriod) {
        this.#failingStreak++;
        if (this.#failingStreak >= this.#retries) this.#state = "unhealthy";
      }
    }
    this.#options.onProbe?.(result, this.#state);
    if (this.#state !== before) this.#options.onChange?.(this.#state, result);
  }
}

/** A duration as Go prints it, roughly: `500ms`, `30s`, `1.5s`. */
function duration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${ms / 1000}s`;
}

/** Collects up to `limit` bytes from several streams, and drains the rest. */
class BoundedOutput {
  readonly #limit: number;
  readonly #chunks: Uint8Array[] = [];
  #size = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  async read(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const chunk of stream) {
      const room = this.#limit - this.#size;
      if (room <= 0) continue;
      const kept = chunk.subarray(0, room);
      this.#chunks.push(kept);
      this.#size += kept.length;
    }
  }

  text(): string {
    const all = new Uint8Array(this.#size);
    let at = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return new TextDecoder().decode(all);
  }
}
