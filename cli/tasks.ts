/**
 * Task lists, as `service ps` and `node ps` print them (docker/cli `cli/command/task`): tasks
 * named `service.slot` (or `service.node` for global services), grouped by name with the most
 * recent first and older ones indented as ` \_ web.1`, states as `Running 5 seconds ago`, errors
 * quoted and cut to 30 columns unless `--no-trunc`.
 *
 * @module
 */
import type { ApiClient } from "./client.ts";
import { type CommandEnv, str } from "./command.ts";
import type { ParsedArgs } from "./flags.ts";
import type { Node, Service, Task, TaskSpec } from "./docker_types.ts";
import {
  ellipsis,
  formatContext,
  naturalCompare,
  parseTime,
  prettyPrint,
  QUIET_FORMAT,
  renderList,
  TABLE,
  truncateId,
} from "./format.ts";
import { humanDuration } from "./units.ts";

/** Docker's default task table. */
export const TASK_TABLE =
  "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}";

const TASK_RAW =
  "id: {{.ID}}\\nname: {{.Name}}\\nimage: {{.Image}}\\nnode: {{.Node}}\\ndesired_state: {{.DesiredState}}\\ncurrent_state: {{.CurrentState}}\\nerror: {{.Error}}\\nports: {{.Ports}}\\n";

const HEADER = {
  ID: "ID",
  Name: "NAME",
  Image: "IMAGE",
  Node: "NODE",
  DesiredState: "DESIRED STATE",
  CurrentState: "CURRENT STATE",
  Error: "ERROR",
  Ports: "PORTS",
};

/** The format a task list uses for `--format` and `-q`. */
export function taskFormat(format: string, quiet: boolean): string {
  if (format === "" || format === TABLE) return quiet ? QUIET_FORMAT : TASK_TABLE;
  if (format === "raw") return quiet ? "id: {{.ID}}" : TASK_RAW;
  return format;
}

/**
 * An image as Docker lists it: without its digest when it has a tag
 * (`busybox:1@sha256:…` → `busybox:1`), and without `docker.io/library/`.
 */
export function familiarImage(image: string): string {
  const at = image.indexOf("@");
  const name = at >= 0 ? image.slice(0, at) : image;
  const slash = name.lastIndexOf("/");
  const hasTag = name.indexOf(":", slash + 1) >= 0;
  if (at >= 0 && !hasTag) return image;
  return name.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "");
}

/** What a task runs, for the IMAGE column: the image, or a process task's program. */
export function taskImage(spec: TaskSpec | undefined, trunc: boolean): string {
  if (spec?.Runtime === "process") return spec.ProcessSpec?.Command ?? "";
  const image = spec?.ContainerSpec?.Image ?? "";
  return trunc ? familiarImage(image) : image;
}

/** Options of {@link renderTasks}. */
export interface TaskListOptions {
  /** Truncate ids, images and errors (false with `--no-trunc` or `-q`). */
  trunc: boolean;
  /** The `--format` value ("" for the default table); `-q` picks ids only. */
  format: string;
  quiet: boolean;
  /** Service names by id and node names by id (ids are shown when missing). */
  serviceNames: ReadonlyMap<string, string>;
  nodeNames: ReadonlyMap<string, string>;
  now: number;
}

/** Renders tasks as `service ps` and `node ps` do. */
export function renderTasks(tasks: readonly Task[], opts: TaskListOptions): string {
  const named = tasks.map((t) => {
    const service = opts.serviceNames.get(t.ServiceID) ?? t.ServiceID;
    const name = t.Slot ? `${service}.${t.Slot}` : `${service}.${t.NodeID ?? ""}`;
    return { task: t, name };
  });
  // Same name together; within a name, the most recent first (a stable sort, as Docker's).
  named.sort((a, b) => {
    const byName = naturalCompare(a.name, b.name);
    if (byName !== 0) return byName;
    return parseTime(b.task.CreatedAt) - parseTime(a.task.CreatedAt);
  });
  const format = taskFormat(opts.format, opts.quiet);
  const indent = format.startsWith(TABLE) ? " \\_ " : "";
  let prev = "";
  const rows = named.map(({ task, name }) => {
    const shown = name === prev ? indent + name : name;
    prev = name;
    const node = task.NodeID ? (opts.nodeNames.get(task.NodeID) ?? task.NodeID) : "";
    return taskContext(task, shown, node, opts.trunc, opts.now);
  });
  return renderList(format, HEADER, rows);
}

/** One task's row: the fields a task format may use. */
export function taskContext(task: Task, name: string, node: string, trunc: boolean, now: number) {
  let err = task.Status.Err ?? "";
  if (trunc) err = ellipsis(err, 30);
  const ports = task.Status.PortStatus?.Ports ?? [];
  return formatContext("*task.taskContext", {
    ID: trunc ? truncateId(task.ID) : task.ID,
    Name: name,
    Image: taskImage(task.Spec, trunc),
    Node: node,
    DesiredState: prettyPrint(task.DesiredState),
    CurrentState: `${prettyPrint(task.Status.State)} ${
      humanDuration(now - parseTime(task.Status.Timestamp)).toLowerCase()
    } ago`,
    Error: err ? `"${err}"` : "",
    Ports: ports.map((p) =>
      `*:${p.PublishedPort ?? 0}->${p.TargetPort ?? 0}/${p.Protocol ?? "tcp"}`
    )
      .join(","),
  });
}

/** Service names by id and node names by id, for naming tasks (two list calls, not one per task). */
export async function taskNames(client: ApiClient): Promise<{
  serviceNames: Map<string, string>;
  nodeNames: Map<string, string>;
}> {
  const [services, nodes] = await Promise.all([
    client.get<Service[]>("/services"),
    client.get<Node[]>("/nodes"),
  ]);
  return {
    serviceNames: new Map(services.map((s) => [s.ID, s.Spec.Name ?? s.ID])),
    nodeNames: new Map(nodes.map((n) => [n.ID, n.Spec.Name || n.Description?.Hostname || n.ID])),
  };
}

/**
 * Prints tasks as `node ps` and `service ps` do, honouring their shared flags: `--no-trunc`,
 * `--no-resolve`, `--format` and `-q`.
 */
export async function printTaskList(
  env: CommandEnv,
  p: ParsedArgs,
  tasks: readonly Task[],
): Promise<void> {
  const quiet = p.flags.quiet === true;
  const names = p.flags["no-resolve"] === true
    ? { serviceNames: new Map(), nodeNames: new Map() }
    : await taskNames(env.client);
  await env.io.out(renderTasks(tasks, {
    trunc: !(p.flags["no-trunc"] === true || quiet),
    format: str(p, "format"),
    quiet,
    ...names,
    now: env.now(),
  }));
}
