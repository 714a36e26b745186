/**
 * The fake executor: the {@linkcode Executor} twin for tests and simulation. It runs nothing,
 * touches no disk, and moves a task through the same states, with the same messages, as the real
 * executors (it shares their {@linkcode TaskStatusReporter}). By default a task completes the
 * moment it starts; a {@linkcode FakeBehaviour} makes it fail, be rejected, print lines, or run
 * until stopped (or until `exit()` ends it, as a crash would).
 *
 * Like SwarmKit's `agent/testutils.TestExecutor`, it is what lets a whole cluster run in one
 * process without Docker.
 *
 * @module
 */
import { TaskState, type TaskStatus } from "../../../events/schema.ts";
import {
  deferred,
  type Executor,
  type ExecutorOptions,
  type ExecutorTask,
  exitError,
  type ExitStatus,
  TaskNotRunError,
  TaskStatusReporter,
} from "../executor.ts";
import type { HealthState } from "../health.ts";
import { LineQueue, type LogLine, type LogReadOptions } from "../log_capture.ts";

/** How a fake task behaves. */
export interface FakeBehaviour {
  /** Exit code when it ends by itself. Default 0 (complete); anything else fails it. */
  exitCode?: number;
  /** Keep running after start, until `stop()` or `exit()`. Default false: ends at once. */
  runsUntilStopped?: boolean;
  /** Reject the task while preparing, with this `err`. */
  rejectPrepare?: string;
  /** Reject the task when starting, with this `err` (as a missing program would). */
  rejectStart?: string;
  /** Lines it prints on stdout when it starts. */
  output?: readonly string[];
}

/** Options of a {@linkcode FakeExecutor}. */
export interface FakeExecutorOptions extends ExecutorOptions {
  /** The behaviour, or a function choosing it per task. Default: complete at once. */
  behaviour?: FakeBehaviour | ((task: ExecutorTask) => FakeBehaviour);
}

let fakePids = 1_000;

/** Runs a task in name only. See the module documentation. */
export class FakeExecutor implements Executor {
  readonly #options: FakeExecutorOptions;
  readonly #reporter: TaskStatusReporter;
  readonly #exit = deferred<ExitStatus>();
  #task: ExecutorTask | undefined;
  #behaviour: FakeBehaviour = {};
  #running = false;
  #lines: LogLine[] = [];
  readonly #followers = new Set<LineQueue>();
  #removed = false;

  constructor(options: FakeExecutorOptions = {}) {
    this.#options = options;
    this.#reporter = new TaskStatusReporter(options);
  }

  get status(): TaskStatus {
    return this.#reporter.status;
  }

  get health(): HealthState | "none" {
    return "none";
  }

  /** The task it was given. */
  get task(): ExecutorTask | undefined {
    return this.#task;
  }

  /** Whether the fake program is running now. */
  get running(): boolean {
    return this.#running;
  }

  prepare(task: ExecutorTask): Promise<TaskStatus> {
    if (this.#task !== undefined) {
      throw new Error(
        `Cannot prepare task ${task.id}: this executor already has task ${this.#task.id}`,
      );
    }
    this.#task = task;
    const behaviour = this.#options.behaviour;
    this.#behaviour = typeof behaviour === "function" ? behaviour(task) : behaviour ?? {};
    const reporter = this.#reporter;
    reporter.advance("accepted", "accepted");
    reporter.advance("preparing", "preparing");
    if (this.#behaviour.rejectPrepare !== undefined) {
      reporter.fail(this.#behaviour.rejectPrepare);
      this.#notRun();
    } else {
      reporter.advance("ready", "prepared");
    }
    return Promise.resolve(reporter.status);
  }

  start(): Promise<TaskStatus> {
    const reporter = this.#reporter;
    if (reporter.ended) return Promise.resolve(reporter.status);
    if (this.#task === undefined || reporter.status.state !== TaskState.ready) {
      throw new Error(`Cannot start task ${this.#task?.id ?? "(none)"}: it is not ready`);
    }
    reporter.advance("starting", "starting");
    if (this.#behaviour.rejectStart !== undefined) {
      reporter.advance("rejected", reporter.status.message, { err: this.#behaviour.rejectStart });
      this.#notRun();
      return Promise.resolve(reporter.status);
    }
    this.#running = true;
    reporter.advance("running", "started", { runtimeId: `fake-${fakePids++}` });
    const now = this.#options.now ?? Date.now;
    this.#log(
      (this.#behaviour.output ?? []).map((text) => ({ time: now(), stream: "stdout", text })),
    );
    if (!this.#behaviour.runsUntilStopped) this.exit(this.#behaviour.exitCode ?? 0);
    return Promise.resolve(reporter.status);
  }

  /** Ends the running fake program with `code`, as if it exited (or crashed) by itself. */
  exit(code: number, signal: Deno.Signal | null = null): void {
    if (!this.#running) return;
    const reporter = this.#reporter;
    if (code === 0) reporter.advance("complete", "finished", { exitCode: 0 });
    else reporter.fail(exitError(code), { exitCode: code });
    this.#end({ code, signal });
  }

  wait(): Promise<ExitStatus> {
    return this.#exit.promise;
  }

  stop(_gracePeriodMs?: number): Promise<TaskStatus> {
    const reporter = this.#reporter;
    if (this.#running) {
      // As a program that honours SIGTERM: exit code 128 + 15.
      reporter.advance("shutdown", "shutdown", { exitCode: 143 });
      this.#end({ code: 143, signal: "SIGTERM" });
    } else if (!reporter.ended) {
      reporter.advance("shutdown", "shutdown");
      this.#notRun();
    }
    return Promise.resolve(reporter.status);
  }

  async remove(): Promise<void> {
    await this.stop(0);
    this.#removed = true;
    this.#lines = [];
  }

  async *logs(options: LogReadOptions = {}): AsyncGenerator<LogLine> {
    if (this.#removed) return;
    const { since, tail } = options;
    const keep = (line: LogLine) => since === undefined || line.time >= since;
    let history = this.#lines.filter(keep);
    if (tail !== undefined && Number.isFinite(tail)) {
      history = history.slice(Math.max(0, history.length - Math.max(0, Math.trunc(tail))));
    }
    const follower = options.follow && this.#running ? new LineQueue(keep) : undefined;
    if (follower) this.#followers.add(follower);
    try {
      for (const line of history) {
        if (options.signal?.aborted) return;
        yield line;
      }
      if (follower) yield* follower.drain(options.signal);
    } finally {
      if (follower) this.#followers.delete(follower);
    }
  }

  /** Adds lines to the fake output, as if the program printed them (it must be running). */
  print(lines: readonly string[], stream: LogLine["stream"] = "stdout"): void {
    if (!this.#running) return;
    const now = this.#options.now ?? Date.now;
    this.#log(lines.map((text) => ({ time: now(), stream, text })));
  }

  #log(lines: LogLine[]): void {
    this.#lines.push(...lines);
    for (const follower of this.#followers) follower.push(lines);
  }

  #end(exit: ExitStatus): void {
    this.#running = false;
    for (const follower of this.#followers) follower.end();
    this.#exit.resolve(exit);
  }

  #notRun(): void {
    this.#exit.reject(new TaskNotRunError(this.#task?.id ?? "(none)", this.#reporter.status));
  }
}
