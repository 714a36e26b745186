/**
 * `shoal service`: create, inspect, ls, ps, rm, rollback, scale, update, with Docker's flags,
 * columns, messages and progress display (docker/cli `cli/command/service`).
 *
 * @module
 */
import {
  FILTER_FLAG,
  INSPECT_FORMAT_FLAG,
  PRETTY_FLAG,
  QUIET_FLAG,
  TABLE_FORMAT_FLAG,
} from "./flags.ts";
import { type CommandEnv, list, runGroup, str, type Subcommand } from "./command.ts";
import { SERVICE_LOGS_COMMAND } from "./service_logs.ts";
import { type ApiClient, DaemonError, type Filters, parseFilters } from "./client.ts";
import type {
  Node,
  PortConfig,
  SecretReference,
  Service,
  ServiceSpec,
  Task,
} from "./docker_types.ts";
import {
  ago,
  CliError,
  formatContext,
  inspectOutput,
  naturalCompare,
  QUIET_FORMAT,
  renderList,
  TABLE,
  truncateId,
} from "./format.ts";
import { Template } from "./template.ts";
import { formatBytes, formatDuration, parseUint } from "./units.ts";
import {
  applyUpdate,
  configRefs,
  CREATE_FLAGS,
  createSpec,
  otherThanRollback,
  type PendingRefs,
  secretRefs,
  type SpecInputs,
  UPDATE_FLAGS,
} from "./service_spec.ts";
import { waitOnService } from "./service_progress.ts";
import { familiarImage, printTaskList } from "./tasks.ts";
import type { ParsedArgs } from "./flags.ts";

// ---------------------------------------------------------------------------------------------
// ls

/** Docker's default service table. */
export const SERVICE_TABLE =
  "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}";
const SERVICE_RAW =
  "id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\nreplicas: {{.Replicas}}\\nimage: {{.Image}}\\nports: {{.Ports}}\\n";
const SERVICE_HEADER = {
  ID: "ID",
  Name: "NAME",
  Mode: "MODE",
  Replicas: "REPLICAS",
  Image: "IMAGE",
  Ports: "PORTS",
};

/** A service's mode as `service ls` shows it. */
export function serviceMode(s: Service): string {
  const m = s.Spec.Mode ?? {};
  if (m.Global) return "global";
  if (m.Replicated) return "replicated";
  if (m.ReplicatedJob) return "replicated job";
  if (m.GlobalJob) return "global job";
  return "";
}

/** REPLICAS: `2/3`, `1/1 (max 1 per node)`, `0/2 (3/5 completed)` for jobs. */
export function serviceReplicas(s: Service): string {
  const running = s.ServiceStatus?.RunningTasks ?? 0;
  const desired = s.ServiceStatus?.DesiredTasks ?? 0;
  const completed = s.ServiceStatus?.CompletedTasks ?? 0;
  const mode = s.Spec.Mode ?? {};
  if (mode.ReplicatedJob) {
    return `${running}/${desired} (${completed}/${
      mode.ReplicatedJob.TotalCompletions ?? 0
    } completed)`;
  }
  if (mode.GlobalJob) {
    return `${running}/${desired} (${completed}/${desired + completed} completed)`;
  }
  const max = mode.Replicated ? s.Spec.TaskTemplate.Placement?.MaxReplicas ?? 0 : 0;
  if (max > 0) return `${running}/${desired} (max ${max} per node)`;
  return `${running}/${desired}`;
}

/** PORTS: ingress ports, consecutive ones grouped (`*:8080-8081->80-81/tcp`), as Docker's. */
export function servicePorts(ports: readonly PortConfig[] | undefined): string {
  if (!ports) return "";
  const sorted = [...ports].sort((a, b) =>
    (a.Protocol ?? "") === (b.Protocol ?? "")
      ? (a.PublishedPort ?? 0) - (b.PublishedPort ?? 0)
      : (a.Protocol ?? "") < (b.Protocol ?? "")
      ? -1
      : 1
  );
  const out: string[] = [];
  let pr = { pStart: 0, pEnd: 0, tStart: 0, tEnd: 0, protocol: "" };
  const show = () => {
    const pub = pr.pEnd > pr.pStart ? `${pr.pStart}-${pr.pEnd}` : `${pr.pStart}`;
    const tgt = pr.tEnd > pr.tStart ? `${pr.tStart}-${pr.tEnd}` : `${pr.tStart}`;
    out.push(`*:${pub}->${tgt}/${pr.protocol}`);
  };
  for (const p of sorted) {
    if ((p.PublishMode ?? "ingress") !== "ingress") continue;
    const published = p.PublishedPort ?? 0;
    const target = p.TargetPort ?? 0;
    const protocol = p.Protocol ?? "tcp";
    const isRange = pr.tEnd !== pr.tStart;
    const overlaps = target <= pr.tEnd;
    // Go's uint32 arithmetic: a smaller port "wraps", which also starts a new range.
    if (
      protocol !== pr.protocol || published - pr.pEnd > 1 || published < pr.pEnd ||
      target - pr.tEnd > 1 || target < pr.tEnd || (isRange && overlaps)
    ) {
      if (pr.pStart > 0) show();
      pr = { pStart: published, pEnd: published, tStart: target, tEnd: target, protocol };
      continue;
    }
    pr.pEnd = published;
    pr.tEnd = target;
  }
  if (pr.pStart > 0) show();
  return out.join(", ");
}

function serviceImage(s: Service): string {
  const t = s.Spec.TaskTemplate;
  if (t.Runtime === "process") return t.ProcessSpec?.Command ?? "";
  return familiarImage(t.ContainerSpec?.Image ?? "");
}

/** One service's row for `service ls`. */
export function serviceContext(s: Service) {
  return formatContext("*service.serviceContext", {
    ID: truncateId(s.ID),
    Name: s.Spec.Name ?? "",
    Mode: serviceMode(s),
    Replicas: serviceReplicas(s),
    Image: serviceImage(s),
    Ports: servicePorts(s.Endpoint?.Ports),
  });
}

/** Renders `service ls` output. */
export function renderServices(
  services: readonly Service[],
  format: string,
  quiet: boolean,
): string {
  let f = format || TABLE;
  if (f === TABLE) f = quiet ? QUIET_FORMAT : SERVICE_TABLE;
  else if (f === "raw") f = quiet ? "id: {{.ID}}" : SERVICE_RAW;
  const sorted = [...services].sort((a, b) => naturalCompare(a.Spec.Name ?? "", b.Spec.Name ?? ""));
  return renderList(f, SERVICE_HEADER, sorted.map(serviceContext));
}

/**
 * Fills in running and desired task counts for services the manager sent without them, from
 * the tasks and nodes (what Docker's CLI does against API versions before 1.41).
 */
export function fillServiceStatus(
  services: Service[],
  tasks: readonly Task[],
  nodes: readonly Node[],
) {
  const active = new Set(nodes.filter((n) => n.Status.State !== "down").map((n) => n.ID));
  const byId = new Map<string, NonNullable<Service["ServiceStatus"]>>();
  for (const s of services) {
    if (s.ServiceStatus) continue;
    s.ServiceStatus = {
      RunningTasks: 0,
      DesiredTasks: s.Spec.Mode?.Replicated?.Replicas ?? 0,
      CompletedTasks: 0,
    };
    byId.set(s.ID, s.ServiceStatus);
  }
  const global = new Set(services.filter((s) => s.Spec.Mode?.Global).map((s) => s.ID));
  for (const t of tasks) {
    const st = byId.get(t.ServiceID);
    if (!st || !t.NodeID || !active.has(t.NodeID) || t.DesiredState === "shutdown") continue;
    if (global.has(t.ServiceID)) st.DesiredTasks++;
    if (t.Status.State === "running") st.RunningTasks++;
  }
}

// ---------------------------------------------------------------------------------------------
// inspect --pretty

/**
 * Docker's `service inspect --pretty` template, verbatim for containers; a process service shows
 * a `ProcessSpec:` section in place of `ContainerSpec:`.
 */
export const SERVICE_PRETTY = `
ID:		{{.ID}}
Name:		{{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Service Mode:
{{- if .IsModeGlobal }}	Global
{{- else if .IsModeReplicated }}	Replicated
{{- if .ModeReplicatedReplicas }}
 Replicas:	{{ .ModeReplicatedReplicas }}
{{- end }}{{ end }}
{{- if .HasUpdateStatus }}
UpdateStatus:
 State:		{{ .UpdateStatusState }}
{{- if .HasUpdateStatusStarted }}
 Started:	{{ .UpdateStatusStarted }}
{{- end }}
{{- if .UpdateIsCompleted }}
 Completed:	{{ .UpdateStatusCompleted }}
{{- end }}
 Message:	{{ .UpdateStatusMessage }}
{{- end }}
Placement:
{{- if .TaskPlacementConstraints }}
 Constraints:	{{ .TaskPlacementConstraints }}
{{- end }}
{{- if .TaskPlacementPreferences }}
 Preferences:   {{ .TaskPlacementPreferences }}
{{- end }}
{{- if .MaxReplicas }}
 Max Replicas Per Node:   {{ .MaxReplicas }}
{{- end }}
{{- if .HasUpdateConfig }}
UpdateConfig:
 Parallelism:	{{ .UpdateParallelism }}
{{- if .HasUpdateDelay}}
 Delay:		{{ .UpdateDelay }}
{{- end }}
 On failure:	{{ .UpdateOnFailure }}
{{- if .HasUpdateMonitor}}
 Monitoring Period: {{ .UpdateMonitor }}
{{- end }}
 Max failure ratio: {{ .UpdateMaxFailureRatio }}
 Update order:      {{ .UpdateOrder }}
{{- end }}
{{- if .HasRollbackConfig }}
RollbackConfig:
 Parallelism:	{{ .RollbackParallelism }}
{{- if .HasRollbackDelay}}
 Delay:		{{ .RollbackDelay }}
{{- end }}
 On failure:	{{ .RollbackOnFailure }}
{{- if .HasRollbackMonitor}}
 Monitoring Period: {{ .RollbackMonitor }}
{{- end }}
 Max failure ratio: {{ .RollbackMaxFailureRatio }}
 Rollback order:    {{ .RollbackOrder }}
{{- end }}
{{- if .IsProcess }}
ProcessSpec:
 Command:	{{ .ProcessCommand }}
{{- else }}
ContainerSpec:
 Image:		{{ .ContainerImage }}
{{- end }}
{{- if .ContainerArgs }}
 Args:		{{ range $arg := .ContainerArgs }}{{ $arg }} {{ end }}
{{- end -}}
{{- if .ContainerEnv }}
 Env:		{{ range $env := .ContainerEnv }}{{ $env }} {{ end }}
{{- end -}}
{{- if .ContainerWorkDir }}
 Dir:		{{ .ContainerWorkDir }}
{{- end -}}
{{- if .HasContainerInit }}
 Init:		{{ .ContainerInit }}
{{- end -}}
{{- if .ContainerUser }}
 User: {{ .ContainerUser }}
{{- end }}
{{- if .ContainerMounts }}
Mounts:
{{- end }}
{{- range $mount := .ContainerMounts }}
 Target:	{{ $mount.Target }}
  Source:	{{ $mount.Source }}
  ReadOnly:	{{ $mount.ReadOnly }}
  Type:		{{ $mount.Type }}
{{- end -}}
{{- if .Configs}}
Configs:
{{- range $config := .Configs }}
 Target:	{{$config.File.Name}}
  Source:	{{$config.ConfigName}}
{{- end }}{{ end }}
{{- if .Secrets }}
Secrets:
{{- range $secret := .Secrets }}
 Target:	{{$secret.File.Name}}
  Source:	{{$secret.SecretName}}
{{- end }}{{ end }}
{{- if .HasLogDriver }}
Log Driver:
{{- if .HasLogDriverName }}
 Name:		{{ .LogDriverName }}
{{- end }}
{{- if .LogOpts }}
 LogOpts:
{{- range $k, $v := .LogOpts }}
  {{ $k }}{{if $v }}:       {{ $v }}{{ end }}
{{- end }}{{ end }}
{{ end }}
{{- if .HasResources }}
Resources:
{{- if .HasResourceReservations }}
 Reservations:
{{- if gt .ResourceReservationNanoCPUs 0.0 }}
  CPU:		{{ .ResourceReservationNanoCPUs }}
{{- end }}
{{- if .ResourceReservationMemory }}
  Memory:	{{ .ResourceReservationMemory }}
{{- end }}{{ end }}
{{- if .HasResourceLimits }}
 Limits:
{{- if gt .ResourceLimitsNanoCPUs 0.0 }}
  CPU:		{{ .ResourceLimitsNanoCPUs }}
{{- end }}
{{- if .ResourceLimitMemory }}
  Memory:	{{ .ResourceLimitMemory }}
{{- end }}{{ end }}{{ end }}
{{- if gt .ResourceLimitPids 0 }}
  PIDs:		{{ .ResourceLimitPids }}
{{- end }}
{{- if .Networks }}
Networks:
{{- range $network := .Networks }} {{ $network }}{{ end }} {{ end }}
Endpoint Mode:	{{ .EndpointMode }}
{{- if .Ports }}
Ports:
{{- range $port := .Ports }}
 PublishedPort = {{ $port.PublishedPort }}
  Protocol = {{ $port.Protocol }}
  TargetPort = {{ $port.TargetPort }}
  PublishMode = {{ $port.PublishMode }}
{{- end }} {{ end -}}
{{- if .Healthcheck }}
 Healthcheck:
  Interval = {{ .Healthcheck.Interval }}
  Retries = {{ .Healthcheck.Retries }}
  StartPeriod =	{{ .Healthcheck.StartPeriod }}
  Timeout =	{{ .Healthcheck.Timeout }}
  {{- if .Healthcheck.Test }}
  Tests:
	{{- range $test := .Healthcheck.Test }}
	 Test = {{ $test }}
  {{- end }} {{ end -}}
{{- end }}
`;

/** The fields `service inspect --pretty` shows, computed from a service. */
export function servicePrettyContext(
  s: Service,
  networkNames: ReadonlyMap<string, string>,
  now: number,
) {
  const spec = s.Spec;
  const t = spec.TaskTemplate;
  const isProcess = t.Runtime === "process";
  const c = t.ContainerSpec;
  const p = t.ProcessSpec;
  const run = isProcess ? p : c;
  const upd = spec.UpdateConfig;
  const rb = spec.RollbackConfig;
  const res = t.Resources;
  const resv = res?.Reservations;
  const lim = res?.Limits;
  const hc = run?.Healthcheck;
  const status = s.UpdateStatus;
  return formatContext("*service.serviceInspectContext", {
    ID: s.ID,
    Name: spec.Name ?? "",
    Labels: spec.Labels ?? {},
    IsModeGlobal: spec.Mode?.Global !== undefined,
    IsModeReplicated: spec.Mode?.Replicated !== undefined,
    // A pointer in Docker: shown whenever set, even when 0.
    ModeReplicatedReplicas: spec.Mode?.Replicated?.Replicas === undefined
      ? undefined
      : String(spec.Mode.Replicated.Replicas),
    HasUpdateStatus: !!status?.State,
    UpdateStatusState: status?.State ?? "",
    HasUpdateStatusStarted: !!status?.StartedAt,
    UpdateStatusStarted: status?.StartedAt ? ago(status.StartedAt, now) : "",
    UpdateIsCompleted: status?.State === "completed" && !!status.CompletedAt,
    UpdateStatusCompleted: status?.CompletedAt ? ago(status.CompletedAt, now) : "",
    UpdateStatusMessage: status?.Message ?? "",
    TaskPlacementConstraints: t.Placement?.Constraints ?? null,
    TaskPlacementPreferences: (t.Placement?.Preferences ?? []).filter((x) => x.Spread).map((x) =>
      `spread=${x.Spread!.SpreadDescriptor}`
    ),
    MaxReplicas: t.Placement?.MaxReplicas ?? 0,
    HasUpdateConfig: upd !== undefined,
    UpdateParallelism: upd?.Parallelism ?? 0,
    HasUpdateDelay: (upd?.Delay ?? 0) > 0,
    UpdateDelay: formatDuration(upd?.Delay ?? 0),
    UpdateOnFailure: upd?.FailureAction ?? "",
    HasUpdateMonitor: (upd?.Monitor ?? 0) > 0,
    UpdateMonitor: formatDuration(upd?.Monitor ?? 0),
    UpdateMaxFailureRatio: upd?.MaxFailureRatio ?? 0,
    UpdateOrder: upd?.Order ?? "",
    HasRollbackConfig: rb !== undefined,
    RollbackParallelism: rb?.Parallelism ?? 0,
    HasRollbackDelay: (rb?.Delay ?? 0) > 0,
    RollbackDelay: formatDuration(rb?.Delay ?? 0),
    RollbackOnFailure: rb?.FailureAction ?? "",
    HasRollbackMonitor: (rb?.Monitor ?? 0) > 0,
    RollbackMonitor: formatDuration(rb?.Monitor ?? 0),
    RollbackMaxFailureRatio: rb?.MaxFailureRatio ?? 0,
    RollbackOrder: rb?.Order ?? "",
    IsProcess: isProcess,
    ProcessCommand: p?.Command ?? "",
    ContainerImage: c?.Image ?? "",
    ContainerArgs: run?.Args ?? [],
    ContainerEnv: run?.Env ?? [],
    ContainerWorkDir: run?.Dir ?? "",
    HasContainerInit: c?.Init !== undefined && c?.Init !== null,
    ContainerInit: c?.Init ?? false,
    ContainerUser: c?.User ?? "",
    ContainerMounts: c?.Mounts ?? [],
    Configs: run?.Configs ?? [],
    Secrets: (run?.Secrets ?? []) as SecretReference[],
    HasLogDriver: t.LogDriver !== undefined,
    HasLogDriverName: !!t.LogDriver?.Name,
    LogDriverName: t.LogDriver?.Name ?? "",
    LogOpts: t.LogDriver?.Options ?? {},
    HasResources: res !== undefined,
    HasResourceReservations: (resv?.NanoCPUs ?? 0) > 0 || (resv?.MemoryBytes ?? 0) > 0,
    ResourceReservationNanoCPUs: (resv?.NanoCPUs ?? 0) / 1e9,
    ResourceReservationMemory: resv?.MemoryBytes ? formatBytes(resv.MemoryBytes) : "",
    HasResourceLimits: (lim?.NanoCPUs ?? 0) > 0 || (lim?.MemoryBytes ?? 0) > 0 ||
      (lim?.Pids ?? 0) > 0,
    ResourceLimitsNanoCPUs: (lim?.NanoCPUs ?? 0) / 1e9,
    ResourceLimitMemory: lim?.MemoryBytes ? formatBytes(lim.MemoryBytes) : "",
    ResourceLimitPids: lim?.Pids ?? 0,
    Networks: (t.Networks ?? []).map((n) => networkNames.get(n.Target) ?? n.Target),
    EndpointMode: spec.EndpointSpec?.Mode ?? "",
    Ports: s.Endpoint?.Ports ?? [],
    Healthcheck: hc
      ? {
        Interval: formatDuration(hc.Interval ?? 0),
        Retries: hc.Retries ?? 0,
        StartPeriod: formatDuration(hc.StartPeriod ?? 0),
        Timeout: formatDuration(hc.Timeout ?? 0),
        Test: hc.Test ?? [],
      }
      : null,
  });
}

/** Renders `service inspect --pretty` for services (each followed by a newline, as Docker's). */
export function renderServicePretty(
  services: readonly Service[],
  networkNames: ReadonlyMap<string, string>,
  now: number,
): string {
  const tmpl = new Template(SERVICE_PRETTY);
  return services.map((s) => tmpl.execute(servicePrettyContext(s, networkNames, now)) + "\n")
    .join("");
}

// ---------------------------------------------------------------------------------------------
// Commands

function specInputs(env: CommandEnv): SpecInputs {
  return {
    bad: env.badFlag,
    env: (k) => Deno.env.get(k),
    readTextFile: (path) => Deno.readTextFileSync(path),
  };
}

/** Resolves secret, config and network names to ids, through the API. */
async function resolveRefs(client: ApiClient, pending: PendingRefs) {
  const byName = async (path: string) => {
    const items = await client.get<{ ID: string; Spec: { Name?: string } }[]>(path);
    return new Map(items.map((i) => [i.Spec.Name ?? "", i.ID]));
  };
  const secrets = pending.secrets.length > 0
    ? secretRefs(pending.secrets, await byName("/secrets"))
    : [];
  const configs = pending.configs.length > 0
    ? configRefs(pending.configs, await byName("/configs"))
    : [];
  const networks = [];
  for (const n of pending.networks) {
    const net = await client.get<{ Id: string }>(`/networks/${encodeURIComponent(n.Target)}`);
    networks.push({ ...n, Target: net.Id });
  }
  networks.sort((a, b) => (a.Target < b.Target ? -1 : a.Target > b.Target ? 1 : 0));
  return { secrets, configs, networks };
}

async function printWarnings(env: CommandEnv, res: { Warnings?: string[] | null } | null) {
  for (const w of res?.Warnings ?? []) await env.io.err(w + "\n");
}

const create: Subcommand = {
  name: "create",
  use: "[OPTIONS] IMAGE [COMMAND] [ARG...]",
  summary: "Create a new service",
  description: [
    "With --runtime process (Shoal), IMAGE is the program to run on the node and COMMAND and",
    "ARG are its arguments; no container is involved. For example:",
    "",
    "  shoal service create --name web --runtime process --replicas 3 \\",
    "    -e PORT=8080 python3 -m http.server 8080",
  ].join("\n"),
  flags: CREATE_FLAGS,
  args: { min: 1 },
  interspersed: false,
  async run(env, p) {
    const { spec, pending } = createSpec(p, specInputs(env));
    const refs = await resolveRefs(env.client, pending);
    const run = spec.TaskTemplate.Runtime === "process"
      ? spec.TaskTemplate.ProcessSpec!
      : spec.TaskTemplate.ContainerSpec!;
    if (refs.secrets.length > 0) run.Secrets = refs.secrets;
    if (refs.configs.length > 0) run.Configs = refs.configs;
    if (refs.networks.length > 0) spec.TaskTemplate.Networks = refs.networks;
    const res = await env.client.post<{ ID: string; Warnings?: string[] }>(
      "/services/create",
      spec,
    );
    await printWarnings(env, res);
    await env.io.out(`${res.ID}\n`);
    if (p.flags.detach === true) return;
    await waitOnService(env.client, env.io, res.ID, { quiet: p.flags.quiet === true });
  },
};

const inspect: Subcommand = {
  name: "inspect",
  use: "[OPTIONS] SERVICE [SERVICE...]",
  summary: "Display detailed information on one or more services",
  flags: [
    INSPECT_FORMAT_FLAG,
    PRETTY_FLAG,
  ],
  args: { min: 1 },
  async run(env, p) {
    let format = str(p, "format");
    if (p.flags.pretty) format = "pretty";
    if (format.startsWith("pretty") && format !== "pretty") {
      throw new CliError("cannot supply extra formatting options to the pretty template");
    }
    const get = async (ref: string) => {
      try {
        return await env.client.getRaw<Service>(`/services/${encodeURIComponent(ref)}`, {
          insertDefaults: true,
        });
      } catch (err) {
        if (err instanceof DaemonError && err.httpStatus === 404) {
          throw new CliError(`Error: no such service: ${ref}`);
        }
        throw err;
      }
    };
    if (format === "pretty") {
      const services: Service[] = [];
      for (const ref of p.args) services.push((await get(ref)).value);
      const networkNames = new Map<string, string>();
      if (services.some((s) => (s.Spec.TaskTemplate.Networks ?? []).length > 0)) {
        for (const n of await env.client.get<{ Id: string; Name: string }[]>("/networks")) {
          networkNames.set(n.Id, n.Name);
        }
      }
      await env.io.out(renderServicePretty(services, networkNames, env.now()));
      return;
    }
    const { out, errors } = await inspectOutput(p.args, format === "raw" ? "" : format, get);
    await env.io.out(out);
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

const ls: Subcommand = {
  name: "ls",
  aliases: ["list"],
  use: "[OPTIONS]",
  summary: "List services",
  flags: [
    FILTER_FLAG,
    TABLE_FORMAT_FLAG,
    QUIET_FLAG,
  ],
  args: { exact: 0 },
  async run(env, p) {
    const quiet = p.flags.quiet === true;
    const filters = parseFilters(list(p, "filter"));
    const services = await env.client.get<Service[]>("/services", {
      filters,
      status: quiet ? undefined : true,
    });
    if (!quiet && services.some((s) => !s.ServiceStatus)) {
      const [tasks, nodes] = await Promise.all([
        env.client.get<Task[]>("/tasks"),
        env.client.get<Node[]>("/nodes"),
      ]);
      fillServiceStatus(services, tasks, nodes);
    }
    await env.io.out(renderServices(services, str(p, "format"), quiet));
  },
};

/** Finds services by full id, then full name, then unique id prefix (Docker's `service ps`). */
export function matchServices(
  refs: readonly string[],
  services: readonly Service[],
): { ids: string[]; notFound: string[] } {
  const ids: string[] = [];
  const notFound: string[] = [];
  for (const ref of refs) {
    const exact = services.find((s) => s.ID === ref) ?? services.find((s) => s.Spec.Name === ref);
    if (exact) {
      ids.push(exact.ID);
      continue;
    }
    const prefixed = services.filter((s) => s.ID.startsWith(ref));
    if (prefixed.length > 1) {
      throw new CliError(`multiple services found with provided prefix: ${ref}`);
    }
    if (prefixed.length === 1) ids.push(prefixed[0].ID);
    else notFound.push(`no such service: ${ref}`);
  }
  return { ids, notFound };
}

/** Resolves a node reference for filters and `node ps`: `self` is the node the manager runs on. */
export async function nodeReference(client: ApiClient, ref: string): Promise<string> {
  if (ref !== "self") return ref;
  const info = await client.get<{ Swarm?: { NodeID?: string } }>("/info");
  if (!info.Swarm?.NodeID) throw new CliError("node ID not found in /info");
  return info.Swarm.NodeID;
}

/** Applies the filters Docker's task list understands, on the client (in case the API does not). */
export function filterTasks(tasks: readonly Task[], filters: Filters): Task[] {
  const has = (key: string, value: string | undefined) =>
    !filters[key] || (value !== undefined && filters[key][value] === true);
  return tasks.filter((t) =>
    has("service", t.ServiceID) && has("node", t.NodeID ?? "") &&
    has("desired-state", t.DesiredState)
  );
}

const ps: Subcommand = {
  name: "ps",
  use: "[OPTIONS] SERVICE [SERVICE...]",
  summary: "List the tasks of one or more services",
  flags: [
    FILTER_FLAG,
    { name: "format", kind: "string", description: "Pretty-print tasks using a Go template" },
    { name: "no-resolve", kind: "boolean", description: "Do not map IDs to Names" },
    { name: "no-trunc", kind: "boolean", description: "Do not truncate output" },
    { name: "quiet", short: "q", kind: "boolean", description: "Only display task IDs" },
  ],
  args: { min: 1 },
  async run(env, p) {
    const filters = parseFilters(list(p, "filter"));
    const services = await env.client.get<Service[]>("/services");
    const { ids, notFound } = matchServices(p.args, services);
    if (ids.length === 0) throw new CliError(notFound.join("\n"));
    for (const id of ids) (filters.service ??= {})[id] = true;
    if (filters.node) {
      const resolved: Record<string, boolean> = {};
      for (const n of Object.keys(filters.node)) {
        const ref = await nodeReference(env.client, n);
        const node = await env.client.get<Node>(`/nodes/${encodeURIComponent(ref)}`);
        resolved[node.ID] = true;
      }
      filters.node = resolved;
    }
    const tasks = filterTasks(await env.client.get<Task[]>("/tasks", { filters }), filters);
    await printTaskList(env, p, tasks);
    if (notFound.length > 0) throw new CliError(notFound.join("\n"));
  },
};

const rm: Subcommand = {
  name: "rm",
  aliases: ["remove"],
  use: "SERVICE [SERVICE...]",
  summary: "Remove one or more services",
  flags: [],
  args: { min: 1 },
  async run(env, p) {
    const errors: string[] = [];
    for (const ref of p.args) {
      try {
        await env.client.delete(`/services/${encodeURIComponent(ref)}`);
        await env.io.out(`${ref}\n`);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        errors.push(err.message);
      }
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

/** Posts a service's new spec, with the version it was read at (Docker's query parameters). */
async function postUpdate(
  env: CommandEnv,
  service: Service,
  spec: ServiceSpec,
  opts: { rollback?: boolean; registryAuthFrom?: boolean } = {},
) {
  return await env.client.post<{ Warnings?: string[] | null }>(
    `/services/${service.ID}/update`,
    spec,
    {
      version: service.Version.Index,
      rollback: opts.rollback ? "previous" : undefined,
      registryAuthFrom: opts.registryAuthFrom === false ? undefined : "spec",
    },
  );
}

const detachFlags = [
  {
    name: "detach",
    short: "d",
    kind: "boolean" as const,
    description: "Exit immediately instead of waiting for the service to converge",
  },
  { name: "quiet", short: "q", kind: "boolean" as const, description: "Suppress progress output" },
];

const rollback: Subcommand = {
  name: "rollback",
  use: "[OPTIONS] SERVICE",
  summary: "Revert changes to a service's configuration",
  flags: detachFlags,
  args: { exact: 1 },
  async run(env, p) {
    const ref = p.args[0];
    const service = await env.client.get<Service>(`/services/${encodeURIComponent(ref)}`);
    await printWarnings(
      env,
      await postUpdate(env, service, service.Spec, { rollback: true, registryAuthFrom: false }),
    );
    await env.io.out(`${ref}\n`);
    if (p.flags.detach === true) return;
    await waitOnService(env.client, env.io, ref, { quiet: p.flags.quiet === true });
  },
};

const scale: Subcommand = {
  name: "scale",
  use: "SERVICE=REPLICAS [SERVICE=REPLICAS...]",
  summary: "Scale one or multiple replicated services",
  flags: [detachFlags[0]],
  args: { min: 1 },
  async run(env, p) {
    for (const arg of p.args) {
      const eq = arg.indexOf("=");
      if (eq <= 0 || eq === arg.length - 1) {
        throw new CliError(
          `invalid scale specifier '${arg}'.\nSee '${env.commandPath} --help'.\n\nUsage:  ${env.commandPath} SERVICE=REPLICAS [SERVICE=REPLICAS...]\n\nScale one or multiple replicated services`,
        );
      }
    }
    const errors: string[] = [];
    const scaled: string[] = [];
    for (const arg of p.args) {
      const eq = arg.indexOf("=");
      const ref = arg.slice(0, eq);
      const raw = arg.slice(eq + 1);
      let n: number;
      try {
        if (!/^\d+$/.test(raw)) {
          throw new Error(`strconv.ParseUint: parsing "${raw}": invalid syntax`);
        }
        n = parseUint(raw);
      } catch (err) {
        errors.push(`${ref}: invalid replicas value ${raw}: ${(err as Error).message}`);
        continue;
      }
      try {
        const service = await env.client.get<Service>(`/services/${encodeURIComponent(ref)}`);
        const spec = service.Spec;
        if (spec.Mode?.Replicated) spec.Mode.Replicated.Replicas = n;
        else if (spec.Mode?.ReplicatedJob) spec.Mode.ReplicatedJob.TotalCompletions = n;
        else throw new CliError("scale can only be used with replicated or replicated-job mode");
        await printWarnings(env, await postUpdate(env, service, spec, { registryAuthFrom: false }));
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        errors.push(`${ref}: ${err.message}`);
        continue;
      }
      await env.io.out(`${ref} scaled to ${n}\n`);
      scaled.push(ref);
    }
    if (p.flags.detach !== true) {
      for (const ref of scaled) {
        try {
          await waitOnService(env.client, env.io, ref);
        } catch (err) {
          if (!(err instanceof CliError)) throw err;
          errors.push(`${ref}: ${err.message}`);
        }
      }
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

function keepRefs<T extends { SecretName?: string; ConfigName?: string }>(
  refs: readonly T[] | undefined,
  remove: readonly string[],
): T[] {
  return (refs ?? []).filter((r) => !remove.includes(r.SecretName ?? r.ConfigName ?? ""));
}

const update: Subcommand = {
  name: "update",
  use: "[OPTIONS] SERVICE",
  summary: "Update a service",
  flags: UPDATE_FLAGS,
  args: { exact: 1 },
  async run(env, p: ParsedArgs) {
    const ref = p.args[0];
    const service = await env.client.get<Service>(`/services/${encodeURIComponent(ref)}`);
    const isRollback = p.flags.rollback === true;
    if (isRollback && otherThanRollback(p)) {
      throw new CliError("other flags may not be combined with --rollback");
    }
    const spec = service.Spec;
    const changes = applyUpdate(spec, p, specInputs(env));
    const task = spec.TaskTemplate;
    const run = task.Runtime === "process"
      ? task.ProcessSpec!
      : (task.ContainerSpec ??= { Image: "" });
    const added = await resolveRefs(env.client, changes);
    if (p.changed.has("secret-add") || p.changed.has("secret-rm")) {
      run.Secrets = [...keepRefs(run.Secrets, changes.removeSecrets), ...added.secrets];
    }
    if (p.changed.has("config-add") || p.changed.has("config-rm")) {
      run.Configs = [...keepRefs(run.Configs, changes.removeConfigs), ...added.configs];
    }
    if (p.changed.has("network-add") || p.changed.has("network-rm")) {
      const nets = await env.client.get<{ Id: string; Name: string }[]>("/networks");
      const removeIds = new Set(
        changes.removeNetworks.map((r) => nets.find((n) => n.Name === r || n.Id === r)?.Id ?? r),
      );
      const existing = (task.Networks ?? []).filter((n) => !removeIds.has(n.Target));
      for (const n of added.networks) {
        if (existing.some((e) => e.Target === n.Target)) {
          throw new CliError(`service is already attached to network ${n.Target}`);
        }
        existing.push(n);
      }
      task.Networks = existing.sort((
        a,
        b,
      ) => (a.Target < b.Target ? -1 : a.Target > b.Target ? 1 : 0));
    }
    await printWarnings(env, await postUpdate(env, service, spec, { rollback: isRollback }));
    await env.io.out(`${ref}\n`);
    if (p.flags.detach === true) return;
    await waitOnService(env.client, env.io, ref, { quiet: p.flags.quiet === true });
  },
};

/** The `service` subcommands. */
export const SERVICE_COMMANDS: Subcommand[] = [
  create,
  inspect,
  SERVICE_LOGS_COMMAND,
  ls,
  ps,
  rm,
  rollback,
  scale,
  update,
];

/** Runs `shoal service ...`. */
export function serviceCommand(args: string[]): Promise<number> {
  return runGroup("service", "Manage Swarm services", SERVICE_COMMANDS, args);
}
