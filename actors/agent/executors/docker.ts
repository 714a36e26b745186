/**
 * The Docker executor: runs a task as a container through the Docker Engine API
 * (docker_api.ts), as SwarmKit's container adapter does (moby's `daemon/cluster/executor`):
 *
 * - **prepare**: checks the image is present, else tries to pull it (Shoal pulls only a missing
 *   image; SwarmKit always tries to pull to catch a moved tag, and logs a failure). Without the
 *   image the task is rejected with SwarmKit's words, `No such image: X`, and why the pull
 *   failed. Then it writes the task's secrets and configs into the task's directory (task_dir.ts:
 *   owner-only directories, each file with its reference's mode, and, when the agent is root,
 *   its `uid` and `gid`) and creates the container, bind-mounting each file read-only at
 *   `/run/secrets/<target>` (secrets) or at its target, default `/<name>` (configs); an absolute
 *   target is used as it is.
 * - **the container** is named `<service>.<slot>.<task id>` and labelled as SwarmKit labels its
 *   containers (`com.docker.swarm.task.id`, `.task.name`, `.service.id`, `.service.name`,
 *   `.node.id`, and `com.docker.swarm.task`), plus `io.shoal.*` labels that say Shoal made it,
 *   which {@linkcode adoptOrRemove} looks for (a real swarm on the same daemon also uses the
 *   `com.docker.swarm.*` ones). `command` becomes the entrypoint and `args` the command, as in
 *   SwarmKit; `env` (only `KEY=VALUE` entries), then the addressing variables of
 *   task_addressing.ts (`SHOAL_SERVICE_<NAME>_HOST`, `SHOAL_TASK_ADDR`), `SHOAL_TASK_ID`, `SHOAL_TASK_NAME`,
 *   `SHOAL_TASK_SLOT`, `SHOAL_SERVICE_ID`, `SHOAL_SERVICE_NAME` and `SHOAL_NODE_ID`; hostname,
 *   user, working directory, mounts, stop signal and grace period, health check, CPU and memory
 *   limits, the `json-file` log driver with the process runtime's rotation (10 MB × 3), and no
 *   restart policy (restarting is the orchestrator's job).
 * - **network mode host**: the container shares the node's network. Addressing, overlay
 *   networks and the routing mesh belong to the networking work still to come, which will decide
 *   how containers get their own addresses; until then host networking gives containers and
 *   processes the same reachability (the mesh forwards to `node address:target port`) and needs
 *   nothing of the daemon, which runs here with `--bridge=none --iptables=false`. The price: a
 *   host-mode published port must equal its target port (the container listens on the host's
 *   port itself), and a different one is refused with a clear error; the ports a task is
 *   reachable on are given by {@linkcode DockerExecutor.ports}.
 * - **start** starts the container; if it cannot start (a program that does not exist) the task
 *   is rejected with `task: cannot start "<program>": <Docker's message>`. With a health check,
 *   Docker's own (CMD or CMD-SHELL, from the spec or the image), the task stays starting until
 *   Docker says healthy, and fails with `task: unhealthy container` when Docker says unhealthy,
 *   then or later, as SwarmKit's adapter does; Shoal's `HTTP` check, which Docker does not know,
 *   is probed by the agent (health.ts), which reaches the container's ports on the host network.
 * - **wait** follows Docker's wait: exit 0 completes ("finished"); any other code fails with
 *   `task: non-zero exit (N)`. Docker reports a signal's death as 128 + N, so `signal` is null.
 * - **stop** asks Docker to stop the container (its stop signal, SIGKILL after the grace period,
 *   rounded up to whole seconds since Docker's timeout is in seconds) and arms its own SIGKILL
 *   at the exact grace period, so a shorter grace period given later takes effect too.
 * - **remove** stops at once, removes the container with its anonymous volumes, and the task's
 *   directory.
 * - **logs** come from Docker's log API (timestamps on), line by line.
 *
 * Bind mounts name paths on the agent's host, so the daemon must run on the same host (a
 * `tcp://` `DOCKER_HOST` elsewhere would not see the secret files).
 *
 * @module
 */
import { join } from "node:path";
import { type PortConfig, TaskState, type TaskStatus } from "../../../events/schema.ts";
import {
  type ContainerCreateBody,
  type ContainerInspect,
  DockerApi,
  DockerApiError,
  type DockerHealthConfig,
  type DockerMount,
  isNotFound,
} from "../docker_api.ts";
import {
  deferred,
  type Executor,
  type ExecutorOptions,
  type ExecutorTask,
  type ExitStatus,
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
  type ProbeResult,
} from "../health.ts";
import { addressingEnv } from "../task_addressing.ts";
import type { LogLine, LogReadOptions, LogStream } from "../log_capture.ts";
import {
  fileTarget,
  prepareTaskDir,
  removeTaskDir,
  type TaskDir,
  taskDirPaths,
} from "../task_dir.ts";

/** SwarmKit's labels on a task's container. */
export const SWARM_LABELS = {
  task: "com.docker.swarm.task",
  taskId: "com.docker.swarm.task.id",
  taskName: "com.docker.swarm.task.name",
  nodeId: "com.docker.swarm.node.id",
  serviceId: "com.docker.swarm.service.id",
  serviceName: "com.docker.swarm.service.name",
} as const;

/** Shoal's own labels on a task's container: these say Shoal made it. */
export const SHOAL_LABELS = {
  taskId: "io.shoal.task.id",
  nodeId: "io.shoal.node.id",
  serviceId: "io.shoal.service.id",
  serviceName: "io.shoal.service.name",
  slot: "io.shoal.task.slot",
} as const;

/** A task for the Docker executor: an {@linkcode ExecutorTask}, with its published ports. */
export interface DockerExecutorTask extends ExecutorTask {
  /** The service's ports; the host-mode ones are published on this node. */
  readonly ports?: readonly PortConfig[];
}

/** Options of a {@linkcode DockerExecutor}. */
export interface DockerExecutorOptions extends ExecutorOptions {
  /** The daemon. The executor never closes it. */
  api: DockerApi;
  /** The directory holding one directory per task (for secret and config files). */
  root: string;
  /** How long a pull of a missing image may take. Default 5 minutes. */
  pullTimeoutMs?: number;
  /** How often Docker's health status is read while a check runs. Default: min(interval, 1 s). */
  healthPollMs?: number;
  /**
   * Name servers for the container's resolv.conf (`HostConfig.Dns`): the node's mesh resolver
   * (`node/mesh`), which answers service names. Default: Docker's (the host's).
   */
  dns?: readonly string[];
}

/** Default time a pull may take. */
export const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;

/** Which health check watches the task. */
type HealthWatch = "none" | "docker" | "agent";

/** What `prepare` worked out for `start`. */
interface Prepared {
  readonly containerId: string;
  /** The program, for messages. */
  readonly program: string;
  readonly settings: RuntimeSettings;
  readonly healthWatch: HealthWatch;
  /** Docker's health check interval in ms, when Docker runs one. */
  readonly healthIntervalMs: number;
}

/** Runs one task as a Docker container. See the module documentation. */
export class DockerExecutor implements Executor {
  readonly #options: DockerExecutorOptions;
  readonly #api: DockerApi;
  readonly #reporter: TaskStatusReporter;
  #task: DockerExecutorTask | undefined;
  #dir: TaskDir | undefined;
  #prepared: Prepared | undefined;
  #containerId: string | undefined;
  #ports: PortConfig[] = [];
  #health: HealthState | "none" = "none";
  /** The start request, while it is under way. */
  #launching: Promise<void> | undefined;
  /** The container was started: `#finished` watches it. */
  #launched = false;
  #finished: Promise<void> | undefined;
  #exited = false;
  readonly #exit = deferred<ExitStatus>();
  /** Settles when `start()` may return: the task runs, or it ended. */
  readonly #startSettled = deferred<void>();
  #stopCause: StopCause | undefined;
  #stopSent = false;
  #killDeadline = Infinity;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  /** Aborts the pull, health polling and the wait. */
  readonly #background = new AbortController();
  /** Requests sent in the background (stop, kill), awaited by `remove`. */
  readonly #pending = new Set<Promise<unknown>>();
  #agentHealth: HealthMonitor | undefined;
  #removed = false;

  constructor(options: DockerExecutorOptions) {
    this.#options = options;
    this.#api = options.api;
    this.#reporter = new TaskStatusReporter(options);
  }

  get status(): TaskStatus {
    return this.#reporter.status;
  }

  get health(): HealthState | "none" {
    return this.#health;
  }

  /** The container's id, once it was created. */
  get containerId(): string | undefined {
    return this.#containerId;
  }

  /** The task's directory, once `prepare` got as far as creating it. */
  get taskDir(): string | undefined {
    return this.#dir?.path;
  }

  /**
   * The host-mode ports the task is reachable on, on this node, once prepared (host networking:
   * each is its target port).
   */
  get ports(): readonly PortConfig[] {
    return this.#ports;
  }

  prepare(task: DockerExecutorTask): Promise<TaskStatus> {
    const current = this.#task;
    if (current === undefined) this.#task = task;
    return prepareSteps(this.#reporter, current, task, () => this.#prepare(task), {
      prepared: (prepared) => this.#prepared = prepared,
      fail: (err) => this.#end(() => this.#reporter.fail(err)),
    });
  }

  async #prepare(task: DockerExecutorTask): Promise<Prepared> {
    const runtime = task.spec.runtime;
    if (runtime.kind !== "container") {
      throw new TaskFailure(`task: the Docker executor cannot run a ${runtime.kind} task`);
    }
    const settings = runtimeSettings(task);
    const check = settings.healthcheck;
    if (isHealthCheckEnabled(check)) {
      const problem = healthCheckProblem(check);
      if (problem) throw new TaskFailure(`task: invalid health check: ${problem}`);
    }
    this.#ports = hostPorts(task.ports ?? []);
    const image = await this.#ensureImage(runtime.image);
    if (this.#reporter.ended) throw new TaskFailure("task: stopped while preparing");
    const dir = taskDirPaths(this.#options.root, task.id);
    this.#dir = dir;
    await prepareTaskDir(dir, task);
    await ownFiles(dir, task);
    const body = containerBody(task, dir, settings, this.#options.dns);
    const containerId = await this.#create(taskName(task), task.id, body);
    this.#containerId = containerId;
    if (this.#removed) {
      await this.#api.removeContainer(containerId, { force: true, volumes: true });
    }
    const imageCheck = image.Config?.Healthcheck ?? undefined;
    const watch = healthWatch(check, imageCheck);
    const dockerCheck = watch === "docker" ? (body.Healthcheck ?? imageCheck) : undefined;
    return {
      containerId,
      program: [...runtime.command, ...runtime.args][0] ?? runtime.image,
      settings,
      healthWatch: watch,
      healthIntervalMs: dockerCheck?.Interval ? dockerCheck.Interval / 1e6 : 30_000,
    };
  }

  /** The image, pulled if missing; throws SwarmKit's "No such image" when it cannot be had. */
  async #ensureImage(image: string) {
    const present = await this.#api.inspectImage(image);
    if (present) return present;
    const timeoutMs = this.#options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    const signal = AbortSignal.any([this.#background.signal, AbortSignal.timeout(timeoutMs)]);
    let why: string;
    try {
      await this.#api.pullImage(image, signal);
      const pulled = await this.#api.inspectImage(image);
      if (pulled) return pulled;
      why = "the pull ended without it";
    } catch (error) {
      why = this.#background.signal.aborted
        ? "stopped"
        : signal.aborted
        ? `no answer within ${timeoutMs} ms`
        : error instanceof DockerApiError
        ? error.dockerMessage
        : String(error);
    }
    throw new TaskFailure(`task: No such image: ${image} (pull failed: ${why})`);
  }

  /**
   * Creates the container. A container of the same name left by an earlier attempt at this very
   * task (it carries the task's id) is removed first; any other name clash is an error.
   */
  async #create(name: string, taskId: string, body: ContainerCreateBody): Promise<string> {
    try {
      return (await this.#api.createContainer(name, body)).Id;
    } catch (error) {
      if (!(error instanceof DockerApiError) || !error.conflict) throw error;
      const existing = await this.#api.inspectContainer(name);
      if (existing?.Config.Labels?.[SHOAL_LABELS.taskId] !== taskId) {
        throw new TaskFailure(`task: cannot create container ${name}: ${error.dockerMessage}`);
      }
      await this.#api.removeContainer(existing.Id, { force: true, volumes: true });
      return (await this.#api.createContainer(name, body)).Id;
    }
  }

  async start(): Promise<TaskStatus> {
    const reporter = this.#reporter;
    if (reporter.ended) return reporter.status;
    const prepared = this.#prepared;
    if (prepared === undefined || reporter.status.state !== TaskState.ready) {
      throw new Error(`Cannot start task ${this.#task?.id ?? "(none)"}: it is not ready`);
    }
    reporter.advance("starting", "starting");
    const launching = this.#launch(prepared);
    this.#launching = launching;
    await launching;
    this.#launching = undefined;
    await this.#startSettled.promise;
    return reporter.status;
  }

  /** Starts the container and watches it; if it cannot start, the task is rejected. */
  async #launch(prepared: Prepared): Promise<void> {
    try {
      await this.#api.startContainer(prepared.containerId);
    } catch (error) {
      const reason = error instanceof DockerApiError ? error.dockerMessage : String(error);
      const err = `task: cannot start "${prepared.program}": ${reason}`;
      // It never ran: rejected, although it got as far as starting.
      this.#end(() => this.#reporter.advance("rejected", this.#reporter.status.message, { err }));
      return;
    }
    this.#watch(prepared);
  }

  /**
   * Watches a started container: its health (reporting running once healthy, or at once without
   * a check) and its end. No await before the report of running, so a quick exit is seen after.
   */
  #watch(prepared: Prepared): void {
    this.#launched = true;
    this.#finished = this.#finish(prepared);
    if (prepared.healthWatch === "none") {
      this.#markRunning();
      return;
    }
    this.#health = "starting";
    this.#reporter.advance("starting", "starting");
    if (prepared.healthWatch === "agent") {
      this.#agentHealth = new HealthMonitor(prepared.settings.healthcheck!, {
        onChange: (state, probe) => this.#healthChanged(state, probe),
      });
      this.#agentHealth.start();
    } else {
      this.#track(this.#pollHealth(prepared));
    }
  }

  /** Reads Docker's health status until the container ends. */
  async #pollHealth(prepared: Prepared): Promise<void> {
    const pollMs = this.#options.healthPollMs ??
      Math.max(50, Math.min(1_000, prepared.healthIntervalMs));
    const signal = this.#background.signal;
    let last: HealthState = "starting"; // as Docker starts, and as `#watch` set it
    while (!this.#exited && !signal.aborted) {
      await sleep(pollMs, signal);
      if (this.#exited || signal.aborted) return;
      let info: ContainerInspect | undefined;
      try {
        info = await this.#api.inspectContainer(prepared.containerId, signal);
      } catch {
        continue; // a hiccup: the next poll will tell
      }
      const health = info?.State.Health;
      if (!health || health.Status === "none") continue;
      if (health.Status === last) continue;
      last = health.Status;
      const entry = health.Log?.at(-1);
      const probe: ProbeResult = entry
        ? {
          ok: entry.ExitCode === 0,
          output: entry.Output,
          exitCode: entry.ExitCode,
          start: Date.parse(entry.Start),
          end: Date.parse(entry.End),
        }
        : { ok: health.Status === "healthy", output: "", start: Date.now(), end: Date.now() };
      this.#healthChanged(health.Status, probe);
    }
  }

  #healthChanged(state: HealthState, probe: ProbeResult): void {
    if (this.#exited) return;
    this.#health = state;
    this.#options.onHealth?.(state, probe);
    if (state === "healthy") this.#markRunning();
    if (state === "unhealthy" && this.#stopCause === undefined) {
      this.#stopCause = "unhealthy";
      void this.#terminate(this.#prepared!.settings.stopGracePeriodMs);
    }
  }

  /** Reports running ("started") if the task is still starting, and lets `start()` return. */
  #markRunning(): void {
    const containerId = this.#containerId;
    this.#reporter.advance("running", "started", {
      ...(containerId === undefined ? {} : { runtimeId: containerId }),
    });
    this.#startSettled.resolve();
  }

  /** Waits for the container to end, and reports how it ended. */
  async #finish(prepared: Prepared): Promise<void> {
    const code = await this.#waitForExit(prepared.containerId);
    this.#exited = true;
    if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
    this.#killTimer = undefined;
    await this.#agentHealth?.stop().catch(() => {});
    const reporter = this.#reporter;
    this.#end(() => {
      if (code === undefined) reporter.fail("task: the container was removed while it ran");
      else reportExit(reporter, code, this.#stopCause, "container");
    }, { code: code ?? 255, signal: null });
  }

  /**
   * The container's exit code, once it is not running: Docker's wait, and should that request
   * fail (a daemon restart), polling inspect. Undefined when the container is gone.
   */
  async #waitForExit(id: string): Promise<number | undefined> {
    const signal = this.#background.signal;
    try {
      return (await this.#api.waitContainer(id, { signal })).StatusCode;
    } catch (error) {
      if (isNotFound(error)) return undefined;
    }
    while (true) {
      try {
        const info = await this.#api.inspectContainer(id);
        if (info === undefined) return undefined;
        if (!info.State.Running && !info.State.Restarting) return info.State.ExitCode;
      } catch { /* the daemon may be restarting: keep asking */ }
      await sleep(500);
    }
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
    if (this.#launching) await this.#launching;
    if (!this.#launched) {
      // Nothing runs (yet), and nothing will now. A pull under way is abandoned.
      this.#end(() => this.#reporter.advance("shutdown", "shutdown"));
      if (!this.#prepared) this.#background.abort();
      return this.status;
    }
    if (!this.#exited) this.#stopCause ??= "request";
    await this.#terminate(gracePeriodMs ?? this.#prepared!.settings.stopGracePeriodMs);
    return this.status;
  }

  /**
   * Asks Docker to stop the container (once), arms SIGKILL for `graceMs` from now unless an
   * earlier one is armed, and resolves when the container has exited and its end was reported.
   */
  #terminate(graceMs: number): Promise<void> {
    const finished = this.#finished!;
    if (this.#exited) return finished;
    const id = this.#containerId!;
    const delay = Math.max(0, graceMs);
    if (!this.#stopSent) {
      this.#stopSent = true;
      this.#track(this.#api.stopContainer(id, delay / 1000));
    }
    const deadline = performance.now() + delay;
    if (deadline < this.#killDeadline) {
      this.#killDeadline = deadline;
      if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
      this.#killTimer = setTimeout(() => {
        this.#killTimer = undefined;
        if (!this.#exited) this.#track(this.#api.killContainer(id, "SIGKILL"));
      }, delay);
    }
    return finished;
  }

  /** Keeps `promise` for `remove` to await, and ignores its failure. */
  #track(promise: Promise<unknown>): void {
    const quiet = promise.catch(() => {});
    this.#pending.add(quiet);
    void quiet.then(() => this.#pending.delete(quiet));
  }

  async remove(): Promise<void> {
    await this.stop(0);
    this.#removed = true;
    this.#background.abort();
    await Promise.all(this.#pending);
    if (this.#containerId !== undefined) {
      await this.#api.removeContainer(this.#containerId, { force: true, volumes: true });
    }
    if (this.#dir) await removeTaskDir(this.#dir);
  }

  logs(options: LogReadOptions = {}): AsyncIterable<LogLine> {
    const id = this.#containerId;
    if (id === undefined || this.#removed) return noLines();
    if (options.tail !== undefined && options.tail <= 0 && !options.follow) return noLines();
    return containerLogLines(this.#api, id, options);
  }

  /**
   * Takes over task `task`'s container `containerId`, left by an earlier agent: a created
   * container becomes a ready task (start it), a running one a running task (starting while
   * its health check has not passed), a stopped one ends at once with its exit code. Status
   * reports jump straight to the container's state. Throws when the container is gone or is
   * not this task's.
   */
  async adopt(task: DockerExecutorTask, containerId: string): Promise<TaskStatus> {
    if (this.#task !== undefined) {
      throw new Error(
        `Cannot adopt task ${task.id}: this executor already has task ${this.#task.id}`,
      );
    }
    const info = await this.#api.inspectContainer(containerId);
    if (info === undefined) throw new Error(`Cannot adopt container ${containerId}: it is gone`);
    if (info.Config.Labels?.[SHOAL_LABELS.taskId] !== task.id) {
      throw new Error(`Cannot adopt container ${containerId}: it is not task ${task.id}'s`);
    }
    this.#task = task;
    this.#containerId = info.Id;
    this.#dir = taskDirPaths(this.#options.root, task.id);
    const runtime = task.spec.runtime;
    const settings = runtimeSettings(task);
    this.#ports = hostPorts(task.ports ?? []);
    const dockerCheck = info.Config.Healthcheck ?? undefined;
    const watch = healthWatch(settings.healthcheck, dockerCheck);
    const prepared: Prepared = {
      containerId: info.Id,
      program: runtime.kind === "container"
        ? [...runtime.command, ...runtime.args][0] ?? runtime.image
        : info.Config.Image,
      settings,
      healthWatch: watch,
      healthIntervalMs: dockerCheck?.Interval ? dockerCheck.Interval / 1e6 : 30_000,
    };
    this.#prepared = prepared;
    const reporter = this.#reporter;
    if (info.State.Status === "created") {
      reporter.advance("ready", "prepared");
      return reporter.status;
    }
    reporter.advance("starting", "starting");
    this.#watch(prepared);
    if (info.State.Health?.Status === "healthy") this.#markRunning();
    if (!info.State.Running) await this.#finished;
    return reporter.status;
  }
}

async function* noLines(): AsyncGenerator<LogLine> {}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done);
  });
}

/** Which health check watches a task: Docker's (spec's or image's), the agent's (HTTP), none. */
function healthWatch(
  check: RuntimeSettings["healthcheck"],
  imageCheck: DockerHealthConfig | undefined,
): HealthWatch {
  if (check !== undefined) {
    if (!isHealthCheckEnabled(check)) return "none";
    return check.test[0] === "HTTP" ? "agent" : "docker";
  }
  const test = imageCheck?.Test ?? [];
  return test.length > 0 && test[0] !== "NONE" ? "docker" : "none";
}

/**
 * The host-mode ports a task is reachable on with host networking: each on its target port.
 * Throws {@linkcode TaskFailure} for one published on another port, which host networking
 * cannot do. Ingress ports are the routing mesh's, not the executor's.
 */
export function hostPorts(ports: readonly PortConfig[]): PortConfig[] {
  const out: PortConfig[] = [];
  for (const port of ports) {
    if (port.publishMode !== "host") continue;
    if (port.publishedPort !== 0 && port.publishedPort !== port.targetPort) {
      throw new TaskFailure(
        `task: cannot publish port ${port.targetPort}/${port.protocol} on host port ` +
          `${port.publishedPort}: Shoal's containers use the host's network, where a ` +
          `container's port is the host's (publish it on ${port.targetPort}, or leave it 0)`,
      );
    }
    out.push({ ...port, publishedPort: port.targetPort });
  }
  return out;
}

/** The labels of task `task`'s container: the spec's, then SwarmKit's and Shoal's. */
export function containerLabels(task: ExecutorTask): Record<string, string> {
  const runtime = task.spec.runtime;
  return {
    ...(runtime.kind === "container" ? runtime.labels : {}),
    [SWARM_LABELS.task]: "",
    [SWARM_LABELS.taskId]: task.id,
    [SWARM_LABELS.taskName]: taskName(task),
    [SWARM_LABELS.nodeId]: task.nodeId,
    [SWARM_LABELS.serviceId]: task.serviceId,
    [SWARM_LABELS.serviceName]: task.serviceName,
    [SHOAL_LABELS.taskId]: task.id,
    [SHOAL_LABELS.nodeId]: task.nodeId,
    [SHOAL_LABELS.serviceId]: task.serviceId,
    [SHOAL_LABELS.serviceName]: task.serviceName,
    [SHOAL_LABELS.slot]: String(task.slot),
  };
}

/** Where a secret is mounted: `/run/secrets/<target>`, or its target if absolute. */
export function secretMountPath(target: string): string {
  return target.startsWith("/") ? target : `/run/secrets/${target}`;
}

/** Where a config is mounted: its target, default `/<name>`; a relative one from `/`. */
export function configMountPath(target: string): string {
  return target.startsWith("/") ? target : `/${target}`;
}

/** Milliseconds as Docker's nanoseconds. */
const nanos = (ms: number) => Math.round(ms * 1e6);

/**
 * The body of `POST /containers/create` for `task` (a container task), whose secret and config
 * files are in `dir`. See the module documentation for what goes where.
 */
export function containerBody(
  task: ExecutorTask,
  dir: TaskDir,
  settings: RuntimeSettings = runtimeSettings(task),
  dns: readonly string[] = [],
): ContainerCreateBody {
  const runtime = task.spec.runtime;
  if (runtime.kind !== "container") {
    throw new TaskFailure(`task: the Docker executor cannot run a ${runtime.kind} task`);
  }
  const env = runtime.env.filter((entry) => entry.indexOf("=") > 0);
  // Host networking: the container can bind its task address as a process does.
  for (const [k, v] of Object.entries(addressingEnv(task.addressing))) env.push(`${k}=${v}`);
  env.push(
    `SHOAL_TASK_ID=${task.id}`,
    `SHOAL_TASK_NAME=${taskName(task)}`,
    `SHOAL_TASK_SLOT=${task.slot}`,
    `SHOAL_SERVICE_ID=${task.serviceId}`,
    `SHOAL_SERVICE_NAME=${task.serviceName}`,
    `SHOAL_NODE_ID=${task.nodeId}`,
  );
  const mounts: DockerMount[] = runtime.mounts.map((mount) => ({
    Type: mount.type,
    ...(mount.source ? { Source: mount.source } : {}),
    Target: mount.target,
    ReadOnly: mount.readOnly,
  }));
  for (const ref of task.spec.secrets) {
    const file = fileTarget(ref);
    if (file === undefined) continue; // prepareTaskDir refused it already
    mounts.push({
      Type: "bind",
      Source: join(dir.secrets, file),
      Target: secretMountPath(ref.target || ref.name),
      ReadOnly: true,
    });
  }
  for (const ref of task.spec.configs) {
    const file = fileTarget(ref);
    if (file === undefined) continue;
    mounts.push({
      Type: "bind",
      Source: join(dir.configs, file),
      Target: configMountPath(ref.target || ref.name),
      ReadOnly: true,
    });
  }
  const check = settings.healthcheck;
  let healthcheck: DockerHealthConfig | undefined;
  if (check !== undefined) {
    healthcheck = isHealthCheckEnabled(check) && check.test[0] !== "HTTP"
      ? {
        Test: [...check.test],
        Interval: nanos(check.interval),
        Timeout: nanos(check.timeout),
        Retries: check.retries,
        StartPeriod: nanos(check.startPeriod),
      }
      // Disabled, or probed by the agent: the image's own check must not run either.
      : { Test: ["NONE"] };
  }
  const { limits, reservations } = task.spec.resources;
  const exposed: Record<string, Record<string, never>> = {};
  for (const port of hostPorts((task as DockerExecutorTask).ports ?? [])) {
    exposed[`${port.targetPort}/${port.protocol}`] = {};
  }
  return {
    Image: runtime.image,
    ...(runtime.command.length > 0 ? { Entrypoint: [...runtime.command] } : {}),
    ...(runtime.args.length > 0 ? { Cmd: [...runtime.args] } : {}),
    Env: env,
    ...(runtime.hostname ? { Hostname: runtime.hostname } : {}),
    ...(runtime.user ? { User: runtime.user } : {}),
    ...(runtime.dir ? { WorkingDir: runtime.dir } : {}),
    Labels: containerLabels(task),
    StopSignal: settings.stopSignal,
    StopTimeout: Math.ceil(settings.stopGracePeriodMs / 1000),
    ...(healthcheck ? { Healthcheck: healthcheck } : {}),
    ...(Object.keys(exposed).length > 0 ? { ExposedPorts: exposed } : {}),
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      NetworkMode: "host",
      ...(dns.length > 0 ? { Dns: [...dns] } : {}),
      Mounts: mounts,
      RestartPolicy: { Name: "no" },
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
      ...(limits.nanoCPUs > 0 ? { NanoCpus: limits.nanoCPUs } : {}),
      ...(limits.memoryBytes > 0 ? { Memory: limits.memoryBytes } : {}),
      ...(reservations.memoryBytes > 0 ? { MemoryReservation: reservations.memoryBytes } : {}),
    },
  };
}

/** Gives each secret and config file its reference's uid and gid, when the agent may (root). */
async function ownFiles(dir: TaskDir, task: ExecutorTask): Promise<void> {
  if (Deno.uid() !== 0) return;
  const refs = [
    ...task.spec.secrets.map((ref) => [dir.secrets, ref] as const),
    ...task.spec.configs.map((ref) => [dir.configs, ref] as const),
  ];
  for (const [base, ref] of refs) {
    const file = fileTarget(ref);
    const uid = Number(ref.uid);
    const gid = Number(ref.gid);
    if (file === undefined || !Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    if (uid === 0 && gid === 0) continue; // already the agent's (root's)
    await Deno.chown(join(base, file), uid, gid);
  }
}

const NEWLINE = 0x0a;
const SPACE = 0x20;

/**
 * A container's output as lines, from Docker's log API with timestamps: each frame is
 * `<RFC 3339 time> <bytes>`; a line may span frames (Docker splits lines longer than 16 KiB),
 * and is stamped with the time of the frame that completed it. Output without a final newline
 * is a line when the output ends. Ends quietly when the container is gone.
 */
export async function* containerLogLines(
  api: DockerApi,
  id: string,
  options: LogReadOptions = {},
): AsyncGenerator<LogLine> {
  const pending: Record<LogStream, { bytes: Uint8Array[]; time: number }> = {
    stdout: { bytes: [], time: 0 },
    stderr: { bytes: [], time: 0 },
  };
  const decoder = new TextDecoder();
  const since = options.since;
  const take = (stream: LogStream): LogLine | undefined => {
    const part = pending[stream];
    const text = decoder.decode(joinBytes(part.bytes));
    part.bytes = [];
    return since !== undefined && part.time < since ? undefined : { time: part.time, stream, text };
  };
  const frames = api.containerLogs(id, {
    follow: options.follow,
    timestamps: true,
    tail: options.tail === undefined ? "all" : Math.max(0, Math.trunc(options.tail)),
    since,
    signal: options.signal,
  });
  try {
    for await (const frame of frames) {
      if (frame.stream === "stdin") continue;
      const data = frame.data;
      const space = data.indexOf(SPACE);
      const time = space > 0 ? parseDockerTime(decoder.decode(data.subarray(0, space))) : NaN;
      const body = Number.isNaN(time) ? data : data.subarray(space + 1);
      const part = pending[frame.stream];
      part.time = Number.isNaN(time) ? Date.now() : time;
      let at = 0;
      while (at <= body.length) {
        const end = body.indexOf(NEWLINE, at);
        if (end === -1) {
          if (at < body.length) part.bytes.push(body.slice(at));
          break;
        }
        part.bytes.push(body.slice(at, end));
        const line = take(frame.stream);
        if (line) yield line;
        at = end + 1;
      }
    }
  } catch (error) {
    if (isNotFound(error)) return;
    throw error;
  }
  for (const stream of ["stdout", "stderr"] as const) {
    if (pending[stream].bytes.length === 0) continue;
    const line = take(stream);
    if (line) yield line;
  }
}

/** Docker's RFC 3339 time with nanoseconds, as ms since the epoch (truncated); NaN if not one. */
export function parseDockerTime(text: string): number {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!match) return NaN;
  const ms = (match[2] ?? "").padEnd(3, "0").slice(0, 3);
  return Date.parse(`${match[1]}.${ms}${match[3]}`);
}

function joinBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const size = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// After an agent restart

/** A container Shoal left on this node, as {@linkcode adoptOrRemove} found it. */
export interface LeftoverContainer {
  readonly id: string;
  /** Without Docker's leading slash: `<service>.<slot>.<task id>`. */
  readonly name: string;
  readonly taskId: string;
  readonly serviceId: string;
  readonly serviceName: string;
  readonly slot: number;
  /** Docker's state: created, running, exited... */
  readonly state: string;
  /** Its exit code, once it has stopped. */
  readonly exitCode?: number;
  /** Docker's health status, for a container with a health check. */
  readonly health?: string;
}

/** What {@linkcode adoptOrRemove} did. */
export interface AdoptOrRemoveResult {
  /** Containers kept, for the agent to take over with {@linkcode DockerExecutor.adopt}. */
  readonly adopted: LeftoverContainer[];
  /** Containers removed (with their task directories, when `root` is given). */
  readonly removed: LeftoverContainer[];
}

/**
 * After an agent restart: finds the containers Shoal made for node `nodeId` (by their
 * `io.shoal.node.id` label), keeps those `keep` says the agent still runs (default: those still
 * running) and removes the rest, with their anonymous volumes and, given `root`, their task
 * directories. Returns what it found: the stopped ones removed carry their exit code, so the
 * agent can report how the task ended while it was away.
 */
export async function adoptOrRemove(
  api: DockerApi,
  nodeId: string,
  options: {
    keep?: (container: LeftoverContainer) => boolean | Promise<boolean>;
    root?: string;
  } = {},
): Promise<AdoptOrRemoveResult> {
  const keep = options.keep ?? ((container) => container.state === "running");
  const found = await api.listContainers({ labels: { [SHOAL_LABELS.nodeId]: nodeId }, all: true });
  const adopted: LeftoverContainer[] = [];
  const removed: LeftoverContainer[] = [];
  for (const summary of found) {
    const info = await api.inspectContainer(summary.Id);
    if (info === undefined) continue; // removed meanwhile
    const labels = info.Config.Labels ?? {};
    const container: LeftoverContainer = {
      id: info.Id,
      name: info.Name.replace(/^\//, ""),
      taskId: labels[SHOAL_LABELS.taskId] ?? "",
      serviceId: labels[SHOAL_LABELS.serviceId] ?? "",
      serviceName: labels[SHOAL_LABELS.serviceName] ?? "",
      slot: Number(labels[SHOAL_LABELS.slot] ?? 0),
      state: info.State.Status,
      ...(info.State.Status === "exited" || info.State.Status === "dead"
        ? { exitCode: info.State.ExitCode }
        : {}),
      ...(info.State.Health ? { health: info.State.Health.Status } : {}),
    };
    if (container.taskId !== "" && await keep(container)) {
      adopted.push(container);
      continue;
    }
    await removeLeftover(api, container, options.root);
    removed.push(container);
  }
  return { adopted, removed };
}

/**
 * Removes a container an earlier agent left (force, with its anonymous volumes) and, given
 * `root`, its task's directory. A container already gone is not an error.
 */
export async function removeLeftover(
  api: DockerApi,
  container: LeftoverContainer,
  root?: string,
): Promise<void> {
  await api.removeContainer(container.id, { force: true, volumes: true });
  if (root !== undefined && /^[0-9a-z]+$/.test(container.taskId)) {
    await removeTaskDir(taskDirPaths(root, container.taskId)).catch(() => {});
  }
}
