/**
 * The process executor: Shoal's embedded runtime, which runs a task's program directly with
 * `Deno.Command`, no Docker needed. What a container gives a task, it gives as far as a plain
 * process allows:
 *
 * - a private directory per task (see task_dir.ts), the default working directory and `HOME`;
 * - secrets and configs as files there, named in `SHOAL_SECRETS_DIR` and `SHOAL_CONFIGS_DIR`;
 * - a clean environment: `PATH` (the agent's), `HOME`, the task's `env` (`KEY=VALUE` entries; a
 *   bare `KEY` is ignored, so the agent's own variables never leak in), then
 *   `SHOAL_SERVICE_<NAME>_HOST` for each service it can reach and `SHOAL_TASK_ADDR`, the address
 *   to bind (task_addressing.ts), then `SHOAL_TASK_ID`, `SHOAL_TASK_NAME`, `SHOAL_TASK_SLOT`,
 *   `SHOAL_SERVICE_ID`, `SHOAL_SERVICE_NAME`, `SHOAL_NODE_ID`, `SHOAL_SECRETS_DIR` and
 *   `SHOAL_CONFIGS_DIR`;
 * - its own process group: the stop signal goes to the program, SIGKILL after the grace period
 *   goes to the whole group, and whatever the program leaves behind when it exits is killed, as a
 *   container's processes die with its init;
 * - stdout and stderr captured, timestamped, to rotated files (log_capture.ts);
 * - health checks run by the agent (health.ts); with one, the task stays starting until its first
 *   healthy probe, and an unhealthy task is stopped and fails, as SwarmKit's Docker executor does.
 *
 * The program's pid is written to `<task dir>/pid` while it runs, so that after an agent restart
 * {@linkcode reapLeftoverProcess} can kill what was left, and the agent reports the task failed
 * ("the node restarted"); the orchestrator restarts it under its policy. A process is killed
 * rather than adopted (containers are adopted): it is no longer the agent's child, so nothing can
 * wait for it or learn its exit code, which decides between complete and failed (for a job, a
 * completion). The program runs as the agent's user; limits are not enforced.
 *
 * @module
 */
import { TaskState, type TaskStatus } from "../../../events/schema.ts";
import {
  deferred,
  type Executor,
  type ExecutorOptions,
  type ExecutorTask,
  type ExitStatus,
  failureMessage,
  prepareSteps,
  reportExit,
  type RuntimeSettings,
  runtimeSettings,
  type StopCause,
  TaskFailure,
  taskName,
  TaskNotRunError,
  TaskStatusReporter,
} from "../executor.ts";
import {
  healthCheckProblem,
  HealthMonitor,
  type HealthState,
  isHealthCheckEnabled,
} from "../health.ts";
import {
  LogCapture,
  type LogLine,
  type LogReadOptions,
  type LogRotation,
  readLog,
} from "../log_capture.ts";
import { signalGroup, signalProcess } from "../process_group.ts";
import { resolveCommand, spawnErrorReason } from "../resolve_command.ts";
import { prepareTaskDir, removeTaskDir, type TaskDir, taskDirPaths } from "../task_dir.ts";
import { addressingEnv } from "../task_addressing.ts";
import { privateNamesAvailable, withPrivateNames } from "../private_names.ts";

/** Options of a {@linkcode ProcessExecutor}. */
export interface ProcessExecutorOptions extends ExecutorOptions {
  /** The directory holding one directory per task. */
  root: string;
  /** Size and number of log files kept per task. Default 10 MiB × 3. */
  logRotation?: LogRotation;
  /**
   * Name servers (the node's mesh resolver): where the agent may (root, `unshare`), the task
   * runs with a private `/etc/resolv.conf` naming them (private_names.ts).
   */
  dns?: readonly string[];
}

/** `PATH` for tasks when the agent has none. */
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** What `prepare` worked out for `start`. */
interface Prepared {
  readonly command: string;
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly cwd: string;
  readonly settings: RuntimeSettings;
}

/** What exists once the program was spawned. */
interface Running {
  readonly child: Deno.ChildProcess;
  readonly log: LogCapture;
  /** Settles when the program exited and everything about it was recorded. */
  readonly finished: Promise<void>;
}

/** Runs one task as a local process. See the module documentation. */
export class ProcessExecutor implements Executor {
  readonly #options: ProcessExecutorOptions;
  readonly #reporter: TaskStatusReporter;
  #task: ExecutorTask | undefined;
  #dir: TaskDir | undefined;
  #prepared: Prepared | undefined;
  #running: Running | undefined;
  #exited = false;
  #health: HealthState | "none" = "none";
  readonly #exit = deferred<ExitStatus>();
  /** Settles when `start()` may return: the task runs, or it ended. */
  readonly #startSettled = deferred<void>();
  /** Why the program is being stopped: a request (shutdown) or ill health (failure). */
  #stopCause: StopCause | undefined;
  #stopSignalSent = false;
  #killDeadline = Infinity;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #removed = false;

  constructor(options: ProcessExecutorOptions) {
    this.#options = options;
    this.#reporter = new TaskStatusReporter(options);
  }

  get status(): TaskStatus {
    return this.#reporter.status;
  }

  get health(): HealthState | "none" {
    return this.#health;
  }

  /** The program's process id, once it was spawned. */
  get pid(): number | undefined {
    return this.#running?.child.pid;
  }

  /** The task's directory, once `prepare` got as far as creating it. */
  get taskDir(): string | undefined {
    return this.#dir?.path;
  }

  prepare(task: ExecutorTask): Promise<TaskStatus> {
    const current = this.#task;
    if (current === undefined) this.#task = task;
    return prepareSteps(this.#reporter, current, task, () => this.#prepare(task), {
      prepared: (prepared) => this.#prepared = prepared,
      fail: (err) => this.#end(() => this.#reporter.fail(err)),
    });
  }

  async #prepare(task: ExecutorTask): Promise<Prepared> {
    const runtime = task.spec.runtime;
    if (runtime.kind !== "process") {
      throw new TaskFailure(`task: the process executor cannot run a ${runtime.kind} task`);
    }
    const settings = runtimeSettings(task);
    if (isHealthCheckEnabled(settings.healthcheck)) {
      const problem = healthCheckProblem(settings.healthcheck);
      if (problem) throw new TaskFailure(`task: invalid health check: ${problem}`);
    }
    const dir = taskDirPaths(this.#options.root, task.id);
    this.#dir = dir;
    await prepareTaskDir(dir, task);
    const cwd = runtime.dir || dir.path;
    await checkWorkingDir(cwd);
    const env = taskEnvironment(task, dir);
    const resolved = await resolveCommand(runtime.command, { path: env.PATH ?? "", cwd });
    if (!resolved.ok) {
      throw new TaskFailure(`task: cannot start "${runtime.command}": ${resolved.reason}`);
    }
    let run = { program: resolved.path, args: runtime.args };
    const dns = this.#options.dns ?? [];
    if (dns.length > 0 && await privateNamesAvailable()) {
      run = await withPrivateNames({
        dir: dir.path,
        nameservers: dns,
        hostname: taskName(task),
        addr: env.SHOAL_TASK_ADDR ?? "127.0.0.1",
        ...run,
      });
    }
    return {
      command: runtime.command,
      program: run.program,
      args: run.args,
      env,
      cwd,
      settings,
    };
  }

  async start(): Promise<TaskStatus> {
    const reporter = this.#reporter;
    if (reporter.ended) return reporter.status;
    const prepared = this.#prepared;
    const dir = this.#dir;
    if (prepared === undefined || dir === undefined || reporter.status.state !== TaskState.ready) {
      throw new Error(`Cannot start task ${this.#task?.id ?? "(none)"}: it is not ready`);
    }
    reporter.advance("starting", "starting");
    let log: LogCapture;
    try {
      log = await LogCapture.open(dir.logs, {
        ...this.#options.logRotation,
        now: this.#options.now,
      });
    } catch (error) {
      const err = `task: cannot capture output: ${failureMessage(error)}`;
      this.#end(() => reporter.advance("rejected", reporter.status.message, { err }));
      return reporter.status;
    }
    if (reporter.ended) { // stopped while the log was opening
      await log.close();
      return reporter.status;
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(prepared.program, {
        args: [...prepared.args],
        env: prepared.env,
        clearEnv: true,
        cwd: prepared.cwd,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        detached: true,
      }).spawn();
    } catch (error) {
      await log.close();
      // It never ran: rejected, although it got as far as starting.
      const err = `task: cannot start "${prepared.command}": ${spawnErrorReason(error)}`;
      this.#end(() => reporter.advance("rejected", reporter.status.message, { err }));
      return reporter.status;
    }
    const capturing = Promise.all([
      log.capture("stdout", child.stdout),
      log.capture("stderr", child.stderr),
    ]);
    // Written at once (a few bytes), so it is there before anything can remove it.
    try {
      Deno.writeTextFileSync(dir.pidFile, `${child.pid}\n`, { mode: 0o600 });
    } catch { /* only adoption after an agent restart needs it */ }
    const health = this.#healthMonitor(prepared);
    // No await from here to the report of running: a quick exit must be seen after it.
    this.#running = { child, log, finished: this.#finish(child, log, capturing, health) };
    if (health) {
      this.#health = "starting";
      health.start();
    } else {
      this.#markRunning();
    }
    await this.#startSettled.promise;
    return reporter.status;
  }

  /** A health monitor for the task, if it has a health check. */
  #healthMonitor(prepared: Prepared): HealthMonitor | undefined {
    const check = prepared.settings.healthcheck;
    if (!isHealthCheckEnabled(check)) return undefined;
    return new HealthMonitor(check, {
      env: prepared.env,
      cwd: prepared.cwd,
      onChange: (state, probe) => {
        this.#health = state;
        this.#options.onHealth?.(state, probe);
        if (state === "healthy") this.#markRunning();
        if (state === "unhealthy" && this.#stopCause === undefined && !this.#exited) {
          this.#stopCause = "unhealthy";
          void this.#terminate(prepared.settings.stopGracePeriodMs);
        }
      },
    });
  }

  /** Reports running ("started") if the task is still starting, and lets `start()` return. */
  #markRunning(): void {
    const pid = this.#running?.child.pid;
    this.#reporter.advance("running", "started", {
      ...(pid === undefined ? {} : { runtimeId: String(pid) }),
    });
    this.#startSettled.resolve();
  }

  /** Waits for the program to end, cleans up after it, and reports how it ended. */
  async #finish(
    child: Deno.ChildProcess,
    log: LogCapture,
    capturing: Promise<unknown>,
    health: HealthMonitor | undefined,
  ): Promise<void> {
    const status = await child.status;
    this.#exited = true;
    if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
    this.#killTimer = undefined;
    // Whatever it left in its process group dies with it, and lets go of the pipes. (Its pid
    // cannot be given to a new process while the group has members.)
    signalGroup(child.pid, "SIGKILL");
    // Nothing below may keep the end from being reported.
    await health?.stop().catch(() => {});
    await capturing.catch(() => {});
    await log.close().catch(() => {});
    if (this.#dir) await Deno.remove(this.#dir.pidFile).catch(() => {});
    const reporter = this.#reporter;
    this.#end(
      () => reportExit(reporter, status.code, this.#stopCause, "process"),
      { code: status.code, signal: status.signal },
    );
  }

  /** Makes the final move, then settles `wait()` and `start()`. */
  #end(move: () => void, exit?: ExitStatus): void {
    move();
    if (exit) {
      this.#exit.resolve(exit);
    } else if (this.#reporter.ended) {
      this.#exit.reject(new TaskNotRunError(this.#task?.id ?? "(none)", this.status));
    }
    this.#startSettled.resolve();
  }

  wait(): Promise<ExitStatus> {
    return this.#exit.promise;
  }

  async stop(gracePeriodMs?: number): Promise<TaskStatus> {
    const running = this.#running;
    if (running === undefined) {
      // Nothing runs (yet), and nothing will now.
      this.#end(() => this.#reporter.advance("shutdown", "shutdown"));
      return this.status;
    }
    if (!this.#exited) this.#stopCause ??= "request";
    await this.#terminate(gracePeriodMs ?? this.#prepared!.settings.stopGracePeriodMs);
    return this.status;
  }

  /**
   * Sends the stop signal (once) and arms SIGKILL for `graceMs` from now unless an earlier one is
   * armed; resolves when the program has exited and its end was reported.
   */
  #terminate(graceMs: number): Promise<void> {
    const running = this.#running!;
    if (this.#exited) return running.finished;
    const pid = running.child.pid;
    if (!this.#stopSignalSent) {
      this.#stopSignalSent = true;
      signalProcess(pid, this.#prepared!.settings.stopSignal);
    }
    const delay = Math.max(0, graceMs);
    const deadline = performance.now() + delay;
    if (deadline < this.#killDeadline) {
      this.#killDeadline = deadline;
      if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
      this.#killTimer = setTimeout(() => {
        this.#killTimer = undefined;
        signalGroup(pid, "SIGKILL");
        signalProcess(pid, "SIGKILL");
      }, delay);
    }
    return running.finished;
  }

  async remove(): Promise<void> {
    await this.stop(0);
    this.#removed = true;
    if (this.#dir) await removeTaskDir(this.#dir);
  }

  logs(options: LogReadOptions = {}): AsyncIterable<LogLine> {
    if (this.#running && !this.#removed) return this.#running.log.read(options);
    if (this.#dir === undefined || this.#removed) return noLines();
    return readLog(this.#dir.logs, { ...options, maxFiles: this.#options.logRotation?.maxFiles });
  }
}

async function* noLines(): AsyncGenerator<LogLine> {}

/**
 * Kills what task `taskId` left running under `root` before this agent started (its pid file
 * names it), and deletes the pid file. The process is killed only if it still carries the task's
 * `SHOAL_TASK_ID` (read from `/proc`), so a pid reused since is never hit. Returns whether
 * something was killed.
 */
export async function reapLeftoverProcess(root: string, taskId: string): Promise<boolean> {
  const dir = taskDirPaths(root, taskId);
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(dir.pidFile)).trim());
  } catch {
    return false;
  }
  await Deno.remove(dir.pidFile).catch(() => {});
  if (!Number.isInteger(pid) || pid <= 1) return false;
  let environ: string;
  try {
    environ = await Deno.readTextFile(`/proc/${pid}/environ`);
  } catch {
    return false; // gone, or not ours to read
  }
  if (!environ.split("\0").includes(`SHOAL_TASK_ID=${taskId}`)) return false;
  signalGroup(pid, "SIGKILL");
  signalProcess(pid, "SIGKILL");
  return true;
}

/** The task's environment; see the module documentation for what goes in, in which order. */
export function taskEnvironment(task: ExecutorTask, dir: TaskDir): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") || DEFAULT_PATH,
    HOME: dir.path,
  };
  const runtime = task.spec.runtime;
  for (const entry of runtime.env) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return Object.assign(env, addressingEnv(task.addressing), {
    SHOAL_TASK_ID: task.id,
    SHOAL_TASK_NAME: taskName(task),
    SHOAL_TASK_SLOT: String(task.slot),
    SHOAL_SERVICE_ID: task.serviceId,
    SHOAL_SERVICE_NAME: task.serviceName,
    SHOAL_NODE_ID: task.nodeId,
    SHOAL_SECRETS_DIR: dir.secrets,
    SHOAL_CONFIGS_DIR: dir.configs,
  });
}

async function checkWorkingDir(cwd: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(cwd);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "No such file or directory"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new TaskFailure(`task: cannot use working directory "${cwd}": ${reason}`);
  }
  if (!info.isDirectory) {
    throw new TaskFailure(`task: cannot use working directory "${cwd}": not a directory`);
  }
}
