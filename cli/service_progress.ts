/**
 * Convergence progress for `service create | update | scale | rollback` without `--detach`, as
 * Docker's CLI shows it (docker/cli `cli/command/service/progress`): the service and its
 * up-to-date tasks are polled every 200 ms; one line per slot (or node) shows each task's state,
 * `overall progress: 2 out of 3 tasks` counts running ones, and once all run the command waits
 * the update monitor period (`verify: Waiting 5 seconds to verify that tasks are stable...`)
 * before `verify: Service web converged`. A paused update or rollback ends it with an error that
 * says why.
 *
 * On a terminal, lines are redrawn in place with progress bars (as Docker's `jsonmessage`
 * display); otherwise each line is printed when its text changes.
 *
 * @module
 */
import { type ApiClient, DaemonError } from "./client.ts";
import type { Io } from "./command.ts";
import type { Node, Service, Task, TaskSpec } from "./docker_types.ts";
import { CliError, truncateId } from "./format.ts";

/** Task states in order, as Docker's progress code numbers them. */
const NUMBERED: Record<string, number> = {
  new: 1,
  allocated: 2,
  pending: 3,
  assigned: 4,
  accepted: 5,
  preparing: 6,
  ready: 7,
  starting: 8,
  running: 9,
  complete: 10,
  shutdown: 11,
  failed: 12,
  rejected: 13,
};
const MAX_PROGRESS = 9;
const MAX_PROGRESS_BARS = 20;
const MAX_JOB_PROGRESS = 10;
/** The longest non-terminal state name (and `complete`), for padding: `preparing`, `allocated`. */
const LONGEST_STATE = 9;

const num = (state: string | undefined) => NUMBERED[state ?? ""] ?? 0;
const terminal = (state: string | undefined) => num(state) > NUMBERED.running;

/** One progress message (Docker's `progress.Progress`). */
export interface ProgressMsg {
  id: string;
  /** Shown after `id: `. */
  action?: string;
  /** A message without a progress record (shown on its own line, resets redrawing). */
  message?: string;
  current?: number;
  total?: number;
}

/** Docker's `JSONProgress.String()` with hidden counts: `[=====>     ] ` on wide terminals. */
export function progressBar(current: number, total: number, columns: number): string {
  if (current <= 0 && total <= 0) return "";
  if (total <= 0) return "";
  const pct = Math.min(50, Math.trunc(Math.trunc((current / total) * 100) / 2));
  if (columns <= 110) return "";
  return `[${"=".repeat(pct)}>${" ".repeat(Math.max(0, 50 - pct))}] `;
}

/** Shows progress messages: redrawn in place on a terminal, line by line otherwise. */
export class ProgressDisplay {
  readonly #io: Io;
  #ids = new Map<string, number>();
  #last = new Map<string, string>();

  /** Creates a display writing to `io`. */
  constructor(io: Io) {
    this.#io = io;
  }

  /** Shows one message. */
  async write(msg: ProgressMsg): Promise<void> {
    const io = this.#io;
    if (msg.message !== undefined) {
      this.#ids.clear();
      await io.out(`${msg.id ? `${msg.id}: ` : ""}${msg.message}\n`);
      return;
    }
    const action = msg.action ?? "";
    if (!io.isTty) {
      // Docker's non-terminal display skips messages that carry a bar; the rest are printed.
      // Repeats of the same line for the same id are left out, so a log stays readable.
      if ((msg.current ?? 0) > 0 || (msg.total ?? 0) > 0) return;
      const line = `${msg.id}: ${action}`;
      if (this.#last.get(msg.id) === line) return;
      this.#last.set(msg.id, line);
      await io.out(line + "\n");
      return;
    }
    let text = "";
    let line = this.#ids.get(msg.id);
    if (line === undefined) {
      line = this.#ids.size;
      this.#ids.set(msg.id, line);
      text += "\n";
    }
    const diff = this.#ids.size - line;
    text += `\x1b[${diff}A\x1b[2K\r${msg.id}: ${action} ${
      progressBar(msg.current ?? 0, msg.total ?? 0, io.columns)
    }\r\x1b[${diff}B`;
    await io.out(text);
  }
}

interface Updater {
  update(
    service: Service,
    tasks: Task[],
    activeNodes: Set<string>,
    rollback: boolean,
    out: ProgressMsg[],
  ): boolean;
}

function truncError(msg: string): string {
  const one = msg.replaceAll("\n", " ");
  return one.length > 75 ? one.slice(0, 74) + "\u2026" : one;
}

function overall(out: ProgressMsg[], n: number, d: number, rollback: boolean) {
  out.push({
    id: "overall progress",
    action: rollback ? `rolling back update: ${n} out of ${d} tasks` : `${n} out of ${d} tasks`,
  });
}

function taskLine(out: ProgressMsg[], id: string, task: Task, total: number) {
  if (task.Status.Err) {
    out.push({ id, action: truncError(task.Status.Err) });
    return;
  }
  out.push({
    id,
    action: task.Status.State.padEnd(LONGEST_STATE),
    current: num(task.Status.State),
    total,
  });
}

/** Replicated services: one line per slot (`1/3: running`), up to 20 slots. */
class ReplicatedUpdater implements Updater {
  #slotMap = new Map<number, number>();
  #initialized = false;
  #done = false;

  update(
    service: Service,
    tasks: Task[],
    active: Set<string>,
    rollback: boolean,
    out: ProgressMsg[],
  ) {
    const replicas = service.Spec.Mode?.Replicated?.Replicas;
    if (replicas === undefined) throw new CliError("no replica count");
    if (!this.#initialized) {
      overall(out, 0, replicas, rollback);
      if (replicas <= MAX_PROGRESS_BARS) {
        for (let i = 1; i <= replicas; i++) out.push({ id: `${i}/${replicas}`, action: " " });
      }
      this.#initialized = true;
    }
    const bySlot = new Map<number, Task>();
    for (const t of tasks) {
      if (num(t.DesiredState) === 0 || num(t.Status.State) === 0) continue;
      const slot = t.Slot ?? 0;
      const existing = bySlot.get(slot);
      if (existing) {
        if (num(existing.DesiredState) < num(t.DesiredState)) continue;
        if (
          num(existing.DesiredState) === num(t.DesiredState) &&
          num(existing.Status.State) <= num(t.Status.State)
        ) continue;
      }
      if (t.NodeID && !active.has(t.NodeID)) continue;
      bySlot.set(slot, t);
    }
    if (this.#done && [...bySlot.values()].some((t) => t.Status.State !== "running")) {
      this.#done = false;
    }
    let running = 0;
    for (const slot of [...bySlot.keys()].sort((a, b) => a - b)) {
      const t = bySlot.get(slot)!;
      let mapped = this.#slotMap.get(slot);
      if (mapped === undefined) {
        mapped = this.#slotMap.size + 1;
        this.#slotMap.set(slot, mapped);
      }
      if (!terminal(t.DesiredState) && t.Status.State === "running") running++;
      if (this.#done || replicas > MAX_PROGRESS_BARS || mapped > replicas) continue;
      if (t.Status.Err || (!terminal(t.DesiredState) && !terminal(t.Status.State))) {
        taskLine(out, `${mapped}/${replicas}`, t, MAX_PROGRESS);
      }
    }
    if (!this.#done) {
      overall(out, running, replicas, rollback);
      if (running === replicas) this.#done = true;
    }
    return running === replicas;
  }
}

/** Global services: one line per node (its id, truncated). */
class GlobalUpdater implements Updater {
  #initialized = false;
  #done = false;

  update(
    _service: Service,
    tasks: Task[],
    active: Set<string>,
    rollback: boolean,
    out: ProgressMsg[],
  ) {
    const byNode = new Map<string, Task>();
    for (const t of tasks) {
      if (num(t.DesiredState) === 0 || num(t.Status.State) === 0) continue;
      const node = t.NodeID ?? "";
      const existing = byNode.get(node);
      if (existing) {
        if (num(existing.DesiredState) < num(t.DesiredState)) continue;
        if (
          num(existing.DesiredState) === num(t.DesiredState) &&
          num(existing.Status.State) <= num(t.Status.State)
        ) continue;
      }
      byNode.set(node, t);
    }
    const nodeCount = byNode.size;
    if (!this.#initialized) {
      if (nodeCount === 0) {
        out.push({ id: "overall progress", action: "waiting for new tasks" });
        return false;
      }
      overall(out, 0, nodeCount, rollback);
      this.#initialized = true;
    }
    if (this.#done && [...byNode.values()].some((t) => t.Status.State !== "running")) {
      this.#done = false;
    }
    let running = 0;
    for (const node of [...byNode.keys()].sort()) {
      const t = byNode.get(node)!;
      if (!active.has(node)) continue;
      if (!terminal(t.DesiredState) && t.Status.State === "running") running++;
      if (this.#done || nodeCount > MAX_PROGRESS_BARS) continue;
      if (t.Status.Err || (!terminal(t.DesiredState) && !terminal(t.Status.State))) {
        taskLine(out, truncateId(node), t, MAX_PROGRESS);
      }
    }
    if (!this.#done) {
      overall(out, running, nodeCount, rollback);
      if (running === nodeCount) this.#done = true;
    }
    return running === nodeCount;
  }
}

/** Replicated jobs: completed out of total, and active tasks out of those allowed at once. */
class ReplicatedJobUpdater implements Updater {
  #initialized = false;
  readonly #total: number;
  readonly #concurrent: number;
  readonly #iteration: number;

  constructor(service: Service) {
    this.#total = service.Spec.Mode?.ReplicatedJob?.TotalCompletions ?? 1;
    this.#concurrent = service.Spec.Mode?.ReplicatedJob?.MaxConcurrent ?? this.#total;
    this.#iteration = service.JobStatus?.JobIteration?.Index ?? 0;
  }

  #overall(out: ProgressMsg[], active: number, completed: number) {
    const digits = String(this.#total).length;
    out.push({
      id: "job progress",
      action: `${String(completed).padStart(digits)} out of ${this.#total} complete`,
      current: completed,
      total: this.#total,
    });
    const desired = Math.min(this.#total - completed, this.#concurrent);
    const ad = String(this.#concurrent).length;
    out.push({
      id: "active tasks",
      action: `${String(active).padStart(ad)} out of ${String(desired).padStart(ad)} tasks`,
    });
  }

  update(_s: Service, tasks: Task[], _a: Set<string>, _r: boolean, out: ProgressMsg[]) {
    if (!this.#initialized) {
      this.#overall(out, 0, 0);
      if (this.#total <= MAX_PROGRESS_BARS) {
        for (let i = 1; i <= this.#total; i++) out.push({ id: `${i}/${this.#total}`, action: " " });
      }
      this.#initialized = true;
    }
    const bySlot = new Map<number, Task>();
    for (const t of tasks) {
      if ((t.JobIteration?.Index ?? 0) !== this.#iteration) continue;
      if (num(t.DesiredState) === 0 || num(t.Status.State) === 0) continue;
      const existing = bySlot.get(t.Slot ?? 0);
      if (!existing || num(existing.Status.State) > num(t.Status.State)) bySlot.set(t.Slot ?? 0, t);
    }
    let active = 0;
    let complete = 0;
    for (const slot of [...bySlot.keys()].sort((a, b) => a - b)) {
      const t = bySlot.get(slot)!;
      if (this.#total <= MAX_PROGRESS_BARS) {
        // Job slots are 0-based, as in SwarmKit: the bar of slot 0 is 1/N.
        taskLine(out, `${slot + 1}/${this.#total}`, t, MAX_JOB_PROGRESS);
      }
      if (num(t.Status.State) < NUMBERED.complete) active++;
      if (t.Status.State === "complete") complete++;
    }
    this.#overall(out, active, complete);
    return complete === this.#total;
  }
}

/** Global jobs: completed out of the nodes the job started on. */
class GlobalJobUpdater implements Updater {
  #initialized = false;
  #nodes = new Set<string>();

  update(service: Service, tasks: Task[], active: Set<string>, _r: boolean, out: ProgressMsg[]) {
    const iteration = service.JobStatus?.JobIteration?.Index ?? 0;
    const mine = tasks.filter((t) => (t.JobIteration?.Index ?? 0) === iteration);
    if (!this.#initialized) {
      if (tasks.length === 0 && active.size !== 0) {
        out.push({ id: "job progress", action: "waiting for tasks" });
        return false;
      }
      for (const t of mine) this.#nodes.add(t.NodeID ?? "");
      this.#initialized = true;
    }
    const total = this.#nodes.size;
    const byNode = new Map<string, Task>();
    for (const t of mine) {
      const node = t.NodeID ?? "";
      if (!this.#nodes.has(node)) continue;
      const old = byNode.get(node);
      if (!old || num(old.Status.State) > num(t.Status.State)) byNode.set(node, t);
    }
    let complete = 0;
    for (const node of [...byNode.keys()].sort()) {
      const t = byNode.get(node)!;
      if (total <= MAX_PROGRESS_BARS) taskLine(out, node, t, MAX_JOB_PROGRESS);
      if (t.Status.State === "complete") complete++;
    }
    out.push({
      id: "job progress",
      action: `${String(complete).padStart(String(total).length)} out of ${total} complete`,
      current: complete,
      total,
    });
    return complete === total;
  }
}

function updaterFor(service: Service): Updater {
  const mode = service.Spec.Mode ?? {};
  if (mode.Replicated?.Replicas !== undefined) return new ReplicatedUpdater();
  if (mode.Global) return new GlobalUpdater();
  if (mode.ReplicatedJob) return new ReplicatedJobUpdater(service);
  if (mode.GlobalJob) return new GlobalJobUpdater();
  throw new CliError("unrecognized service mode");
}

/** Managers that refused the `_up-to-date` filter (asked once per manager). */
const noUpToDateFilter = new Set<string>();

/**
 * The tasks of a service's current spec: Docker's `_up-to-date` task filter, or, where a manager
 * does not know it, the service's tasks whose spec equals the service's task template.
 */
export async function upToDateTasks(client: ApiClient, service: Service): Promise<Task[]> {
  const filters = { service: { [service.ID]: true } };
  if (!noUpToDateFilter.has(client.base)) {
    try {
      const tasks = await client.get<Task[]>("/tasks", {
        filters: { ...filters, "_up-to-date": { true: true } },
      });
      return tasks.filter((t) => t.ServiceID === service.ID);
    } catch (err) {
      if (!(err instanceof DaemonError) || err.httpStatus !== 400) throw err;
      noUpToDateFilter.add(client.base);
    }
  }
  const want = canonicalSpec(service.Spec.TaskTemplate);
  return (await client.get<Task[]>("/tasks", { filters })).filter((t) =>
    t.ServiceID === service.ID && canonicalSpec(t.Spec) === want
  );
}

/** A task spec as comparable text: empty values dropped, keys sorted, a process task's view of its program as an image dropped. */
function canonicalSpec(spec: TaskSpec | undefined): string {
  const s = { ...(spec ?? {}) };
  if (s.Runtime === "process") delete s.ContainerSpec;
  const norm = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(norm);
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) {
        const x = norm((v as Record<string, unknown>)[k]);
        if (x === null || x === undefined || x === "" || x === 0 || x === false) continue;
        if (Array.isArray(x) && x.length === 0) continue;
        if (typeof x === "object" && !Array.isArray(x) && Object.keys(x as object).length === 0) {
          continue;
        }
        out[k] = x;
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(norm(s));
}

/** Options of {@link waitOnService}. */
export interface WaitOptions {
  /** Show nothing, only wait (`-q`). */
  quiet?: boolean;
  /** Poll interval; Docker's is 200 ms. */
  pollMs?: number;
  /** The clock (a seam for tests). */
  now?: () => number;
}

/**
 * Waits for a service to converge, showing progress as Docker does. `serviceRef` is what the
 * user typed (an id or a name); it appears in `verify: Service <ref> converged`.
 */
export async function waitOnService(
  client: ApiClient,
  io: Io,
  serviceRef: string,
  opts: WaitOptions = {},
): Promise<void> {
  const display = new ProgressDisplay(io);
  const show = async (msgs: ProgressMsg[]) => {
    if (opts.quiet) return;
    for (const m of msgs) await display.write(m);
  };
  const now = opts.now ?? (() => Date.now());
  const pollMs = opts.pollMs ?? 200;
  let interrupted = false;
  const { promise: sigint, resolve: onSigint } = Promise.withResolvers<void>();
  const handler = () => {
    interrupted = true;
    onSigint();
  };
  try {
    Deno.addSignalListener("SIGINT", handler);
  } catch {
    // No signals here (tests on platforms without them).
  }
  try {
    let updater: Updater | undefined;
    let converged = false;
    let convergedAt = 0;
    let monitor = 5000;
    let rollback = false;
    let message: ProgressMsg | undefined;
    let completedAt = 0;
    for (;;) {
      const service = await client.get<Service>(`/services/${encodeURIComponent(serviceRef)}`);
      const m = service.Spec.UpdateConfig?.Monitor;
      if (m) monitor = m / 1e6;
      updater ??= updaterFor(service);
      const status = service.UpdateStatus;
      switch (status?.State) {
        case "updating":
          rollback = false;
          break;
        case "completed":
          // Docker stops here when the update completed before its tasks were seen running.
          // Shoal gives them one monitor period to come up, so the display ends converged.
          if (!converged) {
            completedAt ||= now();
            if (now() - completedAt > monitor) return;
          }
          break;
        case "paused":
          throw new CliError(`service update paused: ${status.Message ?? ""}`);
        case "rollback_started":
          if (!rollback && status.Message) await show([{ id: "rollback", action: status.Message }]);
          rollback = true;
          break;
        case "rollback_paused":
          throw new CliError(`service rollback paused: ${status.Message ?? ""}`);
        case "rollback_completed":
          if (!converged) message = { id: "rollback", message: status.Message ?? "" };
          rollback = true;
          break;
      }
      if (converged && now() - convergedAt >= monitor) {
        await show([{ id: "verify", action: `Service ${serviceRef} converged` }]);
        if (message) await show([message]);
        return;
      }
      const [tasks, nodes] = await Promise.all([
        upToDateTasks(client, service),
        client.get<Node[]>("/nodes"),
      ]);
      const active = new Set(nodes.filter((n) => n.Status.State !== "down").map((n) => n.ID));
      const out: ProgressMsg[] = [];
      converged = updater.update(
        service,
        tasks.filter((t) => t.ServiceID === service.ID),
        active,
        rollback,
        out,
      );
      await show(out);
      if (converged) {
        if (service.JobStatus) {
          await show([{ id: "", message: "job complete" }]);
          return;
        }
        if (convergedAt === 0) convergedAt = now();
        const wait = monitor - (now() - convergedAt);
        if (wait >= 0) {
          await show([{
            id: "verify",
            // Go's time.Since is never 0, so a full monitor period still reads as its seconds.
            action: `Waiting ${
              Math.trunc((wait - 1) / 1000) + 1
            } seconds to verify that tasks are stable...`,
          }]);
        }
      } else {
        if (convergedAt !== 0) await show([{ id: "verify", action: "Detected task failure" }]);
        convergedAt = 0;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => timer = setTimeout(r, pollMs)),
        sigint,
      ]);
      clearTimeout(timer);
      if (interrupted) {
        if (!converged) {
          await show([
            { id: "", message: "Operation continuing in background." },
            { id: "", message: `Use \`shoal service ps ${serviceRef}\` to check progress.` },
          ]);
        }
        return;
      }
    }
  } finally {
    try {
      Deno.removeSignalListener("SIGINT", handler);
    } catch {
      // Not added.
    }
  }
}
