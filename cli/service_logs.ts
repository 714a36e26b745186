/**
 * `shoal service logs [OPTIONS] SERVICE|TASK`: Docker's command, flags and output. Each line is
 * prefixed with its task, `name.slot.taskid@node    | ` (the task id cut to 12 characters unless
 * `--no-trunc`, left out with `--no-task-ids`; ids for names with `--no-resolve`), with
 * `--timestamps` before it; `--raw` prints the lines alone. The manager reads each task's output
 * on its node and streams it back (`GET /services/{id}/logs`, Docker's multiplexed stream).
 *
 * @module
 */
import type { ApiClient, DaemonError } from "./client.ts";
import { bool, type CommandEnv, str, type Subcommand } from "./command.ts";
import type { Node, Service, Task } from "./docker_types.ts";
import { eventTimestamp } from "./events.ts";
import { CliError, truncateId } from "./format.ts";
import { demultiplex, parseDetails, StreamKind } from "../web/docker/log_stream.ts";

/** The context keys the manager adds to each line with `details`. */
const NODE_KEY = "com.docker.swarm.node.id";
const SERVICE_KEY = "com.docker.swarm.service.id";
const TASK_KEY = "com.docker.swarm.task.id";

/** How `service logs` prints each line. */
export interface LogPrintOptions {
  timestamps: boolean;
  details: boolean;
  raw: boolean;
  noTaskIds: boolean;
  noTrunc: boolean;
  noResolve: boolean;
  /** Width of the widest slot number (Docker pads shorter ones after the node name). */
  padding: number;
}

/** Names a line's task as Docker does: `web.1.4kz17j0nkqa8@node-1`, plus padding. */
export class TaskPrefixer {
  readonly #client: ApiClient;
  readonly #opts: LogPrintOptions;
  readonly #cache = new Map<string, Promise<string>>();

  /** A prefixer asking `client` for names. */
  constructor(client: ApiClient, opts: LogPrintOptions) {
    this.#client = client;
    this.#opts = opts;
  }

  /** The prefix of a line of task `taskId` of service `serviceId` on node `nodeId`. */
  prefix(nodeId: string, serviceId: string, taskId: string): Promise<string> {
    const key = `${nodeId}/${serviceId}/${taskId}`;
    let p = this.#cache.get(key);
    if (p === undefined) {
      p = this.#format(nodeId, serviceId, taskId);
      this.#cache.set(key, p);
    }
    return p;
  }

  async #format(nodeId: string, serviceId: string, taskId: string): Promise<string> {
    const o = this.#opts;
    const [nodeName, serviceName, task] = await Promise.all([
      o.noResolve ? nodeId : this.#client.get<Node>(`/nodes/${encodeURIComponent(nodeId)}`).then(
        (n) => n.Spec?.Name || n.Description?.Hostname || nodeId,
        () => nodeId,
      ),
      o.noResolve ? serviceId : this.#client.get<Service>(
        `/services/${encodeURIComponent(serviceId)}`,
      ).then((s) => s.Spec?.Name || serviceId, () => serviceId),
      this.#client.get<Task>(`/tasks/${encodeURIComponent(taskId)}`).catch(() => undefined),
    ]);
    const slot = task?.Slot ?? 0;
    return formatTaskPrefix({ serviceName, slot, taskId, nodeName }, o);
  }
}

/** `name.slot[.id]@node` and the padding Docker adds for narrower slot numbers. */
export function formatTaskPrefix(
  t: { serviceName: string; slot: number; taskId: string; nodeName: string },
  opts: Pick<LogPrintOptions, "noTaskIds" | "noTrunc" | "padding">,
): string {
  let name = `${t.serviceName}.${t.slot}`;
  if (!opts.noTaskIds) name += `.${opts.noTrunc ? t.taskId : truncateId(t.taskId)}`;
  const pad = Math.max(0, opts.padding - String(t.slot).length);
  return `${name}@${t.nodeName}${" ".repeat(pad)}`;
}

/**
 * One line of the stream as Docker prints it. `payload` is the manager's line:
 * `[timestamp ][details ]text\n`.
 */
export async function formatLogLine(
  payload: string,
  opts: LogPrintOptions,
  prefixer: TaskPrefixer,
): Promise<string> {
  if (opts.raw) return payload;
  const parts = payload.split(" ");
  const detailsAt = opts.timestamps ? 1 : 0;
  if (parts.length < detailsAt + 2) {
    throw new CliError(`invalid context in log message: ${payload}`);
  }
  const details = parseDetails(parts[detailsAt]);
  const nodeId = details[NODE_KEY];
  const serviceId = details[SERVICE_KEY];
  const taskId = details[TASK_KEY];
  if (nodeId === undefined || serviceId === undefined || taskId === undefined) {
    throw new CliError(`missing node, service or task id in details: ${parts[detailsAt]}`);
  }
  delete details[NODE_KEY];
  delete details[SERVICE_KEY];
  delete details[TASK_KEY];
  let out = opts.timestamps ? `${parts[0]} ` : "";
  out += `${await prefixer.prefix(nodeId, serviceId, taskId)}    | `;
  if (opts.details) {
    out += `${Object.entries(details).map(([k, v]) => `${k}=${v}`).sort().join(",")} `;
  }
  return out + parts.slice(detailsAt + 1).join(" ");
}

/** `len(strconv.Itoa(n))`. */
function digits(n: number): number {
  return String(n).length;
}

const logs: Subcommand = {
  name: "logs",
  use: "[OPTIONS] SERVICE|TASK",
  summary: "Fetch the logs of a service or task",
  args: { exact: 1 },
  flags: [
    { name: "details", kind: "boolean", description: "Show extra details provided to logs" },
    { name: "follow", short: "f", kind: "boolean", description: "Follow log output" },
    { name: "no-resolve", kind: "boolean", description: "Do not map IDs to Names in output" },
    { name: "no-task-ids", kind: "boolean", description: "Do not include task IDs in output" },
    { name: "no-trunc", kind: "boolean", description: "Do not truncate output" },
    { name: "raw", kind: "boolean", description: "Do not neatly format logs" },
    {
      name: "since",
      kind: "string",
      description:
        'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)',
    },
    {
      name: "tail",
      short: "n",
      kind: "string",
      description: 'Number of lines to show from the end of the logs (default "all")',
    },
    { name: "timestamps", short: "t", kind: "boolean", description: "Show timestamps" },
  ],
  async run(env, p) {
    await runLogs(env, p.args[0], {
      details: bool(p, "details"),
      follow: bool(p, "follow"),
      noResolve: bool(p, "no-resolve"),
      noTaskIds: bool(p, "no-task-ids"),
      noTrunc: bool(p, "no-trunc"),
      raw: bool(p, "raw"),
      since: str(p, "since"),
      tail: str(p, "tail") || "all",
      timestamps: bool(p, "timestamps"),
    });
  },
};

interface LogsFlags {
  details: boolean;
  follow: boolean;
  noResolve: boolean;
  noTaskIds: boolean;
  noTrunc: boolean;
  raw: boolean;
  since: string;
  tail: string;
  timestamps: boolean;
}

async function runLogs(env: CommandEnv, target: string, f: LogsFlags): Promise<void> {
  const { client, io } = env;
  let path: string;
  let padding = 1;
  const ref = encodeURIComponent(target);
  try {
    const service = await client.get<Service>(`/services/${ref}`);
    const replicas = service.Spec.Mode?.Replicated?.Replicas;
    if (replicas !== undefined) padding = digits(replicas);
    path = `/services/${ref}/logs`;
  } catch (err) {
    if ((err as DaemonError).httpStatus !== 404) throw err;
    try {
      const task = await client.get<Task>(`/tasks/${ref}`);
      padding = digits(task.Slot ?? 0);
      path = `/tasks/${ref}/logs`;
    } catch (err) {
      if ((err as DaemonError).httpStatus === 404) {
        throw new CliError(`no such task or service: ${target}`);
      }
      throw err;
    }
  }
  const opts: LogPrintOptions = {
    timestamps: f.timestamps,
    details: f.details,
    raw: f.raw,
    noTaskIds: f.noTaskIds,
    noTrunc: f.noTrunc,
    noResolve: f.noResolve,
    padding,
  };
  const res = await client.open(path, {
    stdout: 1,
    stderr: 1,
    since: f.since ? eventTimestamp(f.since, env.now()) : undefined,
    timestamps: f.timestamps ? 1 : undefined,
    follow: f.follow ? 1 : undefined,
    tail: f.tail,
    details: f.details || !f.raw ? 1 : undefined,
  });
  const prefixer = new TaskPrefixer(client, opts);
  const decoder = new TextDecoder();
  for await (const frame of demultiplex(res.body ?? emptyBody())) {
    const text = decoder.decode(frame.payload);
    if (frame.kind === StreamKind.systemerr) {
      throw new CliError(`error from daemon in stream: ${text}`);
    }
    const line = await formatLogLine(text, opts, prefixer);
    await (frame.kind === StreamKind.stdout ? io.out(line) : io.err(line));
  }
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {}

/** The `service logs` subcommand. */
export const SERVICE_LOGS_COMMAND: Subcommand = logs;
