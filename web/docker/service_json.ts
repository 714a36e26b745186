/**
 * Services as Docker's API shows them (v1.41 `swarm.Service`, `swarm.ServiceSpec`) and the
 * conversion of a Docker service spec, as the `docker` CLI sends it, into Shoal's
 * {@linkcode ServiceSpec}.
 *
 * Units: Docker durations are nanoseconds, Shoal's milliseconds; Docker names task states in
 * lower case, Shoal stores their numbers.
 *
 * ## Shoal's extension: the process runtime
 *
 * Docker's task spec runs a container (`ContainerSpec`) or a plugin. Shoal adds plain programs,
 * run by the agent without Docker:
 *
 * ```json
 * "TaskTemplate": {
 *   "Runtime": "process",
 *   "ProcessSpec": {
 *     "Command": "/usr/bin/python3",          // the program (required)
 *     "Args": ["-m", "http.server", "8080"],
 *     "Env": ["PORT=8080"],
 *     "Dir": "/srv/www",
 *     "StopSignal": "SIGTERM",
 *     "StopGracePeriod": 10000000000,         // nanoseconds, as every Docker duration
 *     "Healthcheck": { "Test": ["CMD", "curl", "-f", "http://127.0.0.1:8080/"] },
 *     "Secrets": [{ "SecretID": "…", "SecretName": "db", "File": { "Name": "db", "UID": "0", "GID": "0", "Mode": 292 } }],
 *     "Configs": [{ "ConfigID": "…", "ConfigName": "app", "File": { "Name": "app.toml" } }]
 *   }
 * }
 * ```
 *
 * `Runtime` may be left out when `ProcessSpec` is given and `ContainerSpec` is not. A client that
 * does not know `ProcessSpec` (the `docker` CLI decodes services into Go structs and drops it)
 * still manages a process service: to it (its `User-Agent` is `Docker-Client/…`) reads show no
 * `Runtime` and the program also as a `ContainerSpec` whose `Image` is the program (with `Args`,
 * `Env`, `Dir`, the stop settings, the health check, the secrets and configs), so `docker service
 * update`, `inspect --pretty` and `service logs` work (see {@linkcode forDockerClient}). An update
 * of a process service with no `Runtime` (or `"process"`), no `ProcessSpec` and such a
 * `ContainerSpec`, changed or not, sets the program from it (`--image` names a new program;
 * `Hostname`, `User`, `Mounts` and container labels are refused); one with neither keeps the
 * current program. Given with `ProcessSpec`, a `ContainerSpec` is an error.
 *
 * @module
 */
import { z } from "zod";
import {
  Constraint,
  type FileReference,
  type HealthCheck,
  Name,
  ServiceSpec,
  type TaskSpec,
  TaskState,
  type UpdateConfig,
} from "../../events/schema.ts";
import type { ClusterState, ServiceRecord } from "../../actors/state.ts";
import { resolve } from "../../actors/lookup.ts";
import { EventRejected } from "../../actors/entities/rejection.ts";
import { ApiError, describeIssues, parseWith } from "../http.ts";
import {
  compact,
  Duration,
  isZero,
  meta,
  msToNs,
  nonBlank,
  nonEmpty,
  nonEmptyMap,
  nonZero,
  nsToMs,
  OptBool,
  OptLabels,
  OptString,
  OptStrings,
  rfc3339,
  Uint,
  unsupported,
} from "./fields.ts";
import { randomName } from "./names.ts";
import { addrWithPrefix } from "./network_json.ts";

// ---------------------------------------------------------------------------------------------
// The request body: Docker's ServiceSpec, strict (see fields.ts)

const FileTarget = z.strictObject({
  Name: OptString,
  UID: OptString,
  GID: OptString,
  Mode: z.number().int("must be a whole number").min(0, "must not be negative").max(
    0o777,
    "must be a file mode no higher than 0777 (511)",
  ).nullish(),
});

const SecretReference = z.strictObject({
  File: FileTarget.nullish(),
  SecretID: OptString,
  SecretName: OptString,
});

const ConfigReference = z.strictObject({
  File: FileTarget.nullish(),
  Runtime: unsupported("a runtime config target (credential specs)"),
  ConfigID: OptString,
  ConfigName: OptString,
});

const HealthConfig = z.strictObject({
  Test: OptStrings,
  Interval: Duration.nullish(),
  Timeout: Duration.nullish(),
  StartPeriod: Duration.nullish(),
  StartInterval: unsupported("StartInterval"),
  Retries: Uint.nullish(),
});

const Mount = z.strictObject({
  Type: z.enum(["bind", "volume", "tmpfs"], { error: 'must be "bind", "volume" or "tmpfs"' })
    .nullish(),
  Source: OptString,
  Target: z.string({ error: "must name a path in the container" }).min(
    1,
    "must name a path in the container",
  ),
  ReadOnly: OptBool,
  Consistency: unsupported("mount consistency", ["default"]),
  BindOptions: unsupported("bind mount options"),
  VolumeOptions: unsupported("volume options"),
  TmpfsOptions: unsupported("tmpfs options"),
  ClusterOptions: unsupported("cluster volumes"),
  ImageOptions: unsupported("image mounts"),
});

const ContainerSpec = z.strictObject({
  Image: OptString,
  Labels: OptLabels,
  Command: OptStrings,
  Args: OptStrings,
  Hostname: OptString,
  Env: OptStrings,
  Dir: OptString,
  User: OptString,
  Groups: unsupported("Groups"),
  Privileges: unsupported("Privileges"),
  Init: unsupported("Init"),
  StopSignal: OptString,
  TTY: unsupported("TTY"),
  OpenStdin: unsupported("OpenStdin"),
  ReadOnly: unsupported("ReadOnly"),
  Mounts: z.array(Mount).nullish(),
  StopGracePeriod: Duration.nullish(),
  Healthcheck: HealthConfig.nullish(),
  Hosts: unsupported("Hosts"),
  DNSConfig: unsupported("DNSConfig"),
  Secrets: z.array(SecretReference).nullish(),
  Configs: z.array(ConfigReference).nullish(),
  Isolation: unsupported("Isolation", ["default"]),
  Sysctls: unsupported("Sysctls"),
  CapabilityAdd: unsupported("CapabilityAdd"),
  CapabilityDrop: unsupported("CapabilityDrop"),
  Ulimits: unsupported("Ulimits"),
  OomScoreAdj: unsupported("OomScoreAdj"),
});

/** Shoal's extension: a program run by the agent (see the module documentation). */
const ProcessSpec = z.strictObject({
  Command: z.string({ error: "must name a program" }).min(1, "must name a program"),
  Args: OptStrings,
  Env: OptStrings,
  Dir: OptString,
  StopSignal: OptString,
  StopGracePeriod: Duration.nullish(),
  Healthcheck: HealthConfig.nullish(),
  Secrets: z.array(SecretReference).nullish(),
  Configs: z.array(ConfigReference).nullish(),
});

const Resources = z.strictObject({
  Limits: z.strictObject({
    NanoCPUs: Uint.nullish(),
    MemoryBytes: Uint.nullish(),
    Pids: unsupported("a pids limit"),
  }).nullish(),
  Reservations: z.strictObject({
    NanoCPUs: Uint.nullish(),
    MemoryBytes: Uint.nullish(),
    GenericResources: unsupported("generic resources"),
  }).nullish(),
});

const RestartPolicy = z.strictObject({
  Condition: z.enum(["", "none", "on-failure", "any"], {
    error: 'must be "none", "on-failure" or "any"',
  }).nullish(),
  Delay: Duration.nullish(),
  MaxAttempts: Uint.nullish(),
  Window: Duration.nullish(),
});

const Placement = z.strictObject({
  Constraints: z.array(Constraint).nullish(),
  Preferences: z.array(z.strictObject({
    Spread: z.strictObject({
      SpreadDescriptor: z.string({ error: "must name a label, such as node.labels.zone" }).min(
        1,
        "must name a label, such as node.labels.zone",
      ),
    }),
  })).nullish(),
  MaxReplicas: Uint.nullish(),
  Platforms: z.array(z.strictObject({ Architecture: OptString, OS: OptString })).nullish(),
});

const NetworkAttachment = z.strictObject({
  Target: z.string({ error: "must name a network" }).min(1, "must name a network"),
  Aliases: OptStrings,
  DriverOpts: unsupported("network driver options"),
});

const TaskTemplate = z.strictObject({
  ContainerSpec: ContainerSpec.nullish(),
  ProcessSpec: ProcessSpec.nullish(),
  PluginSpec: unsupported("plugin services"),
  NetworkAttachmentSpec: unsupported("network attachment tasks"),
  Resources: Resources.nullish(),
  RestartPolicy: RestartPolicy.nullish(),
  Placement: Placement.nullish(),
  Networks: z.array(NetworkAttachment).nullish(),
  LogDriver: unsupported("log drivers"),
  ForceUpdate: Uint.nullish(),
  Runtime: z.enum(["", "container", "process"], {
    error: 'must be "container" or "process" (Shoal runs no plugins)',
  }).nullish(),
}).superRefine((t, ctx) => {
  const runtime = runtimeOf(t);
  if (runtime === "container") {
    if (t.ProcessSpec != null) {
      ctx.addIssue({
        code: "custom",
        path: ["ProcessSpec"],
        message: 'is only for Runtime "process"; this task runs a container',
      });
    }
    if (!t.ContainerSpec?.Image) {
      ctx.addIssue({
        code: "custom",
        path: ["ContainerSpec", "Image"],
        message: "must name an image",
      });
    }
  } else if (t.ProcessSpec != null && !isZero(t.ContainerSpec)) {
    ctx.addIssue({
      code: "custom",
      path: ["ContainerSpec"],
      message: 'must not be given with Runtime "process" (describe the program in ProcessSpec)',
    });
  }
});

const Mode = z.strictObject({
  Replicated: z.strictObject({ Replicas: Uint.nullish() }).nullish(),
  Global: z.strictObject({}).nullish(),
  ReplicatedJob: z.strictObject({ MaxConcurrent: Uint.nullish(), TotalCompletions: Uint.nullish() })
    .nullish(),
  GlobalJob: z.strictObject({}).nullish(),
}).refine(
  (m) =>
    [m.Replicated, m.Global, m.ReplicatedJob, m.GlobalJob].filter((x) => x != null).length <= 1,
  { message: "must set only one of Replicated, Global, ReplicatedJob and GlobalJob" },
);

const DockerUpdateConfig = z.strictObject({
  Parallelism: Uint.nullish(),
  Delay: Duration.nullish(),
  FailureAction: z.enum(["", "pause", "continue", "rollback"], {
    error: 'must be "pause", "continue" or "rollback"',
  }).nullish(),
  Monitor: Duration.nullish(),
  MaxFailureRatio: z.number().min(0, "must be between 0 and 1").max(1, "must be between 0 and 1")
    .nullish(),
  Order: z.enum(["", "stop-first", "start-first"], {
    error: 'must be "stop-first" or "start-first"',
  })
    .nullish(),
});

const PortConfig = z.strictObject({
  Name: OptString,
  Protocol: z.enum(["", "tcp", "udp", "sctp"], { error: 'must be "tcp", "udp" or "sctp"' })
    .nullish(),
  TargetPort: z.number({ error: "must be a port between 1 and 65535" }).int().min(
    1,
    "must be a port between 1 and 65535",
  ).max(65535, "must be a port between 1 and 65535"),
  PublishedPort: z.number().int().min(0, "must be a port between 0 and 65535").max(
    65535,
    "must be a port between 0 and 65535",
  ).nullish(),
  PublishMode: z.enum(["", "ingress", "host"], { error: 'must be "ingress" or "host"' }).nullish(),
});

const EndpointSpec = z.strictObject({
  Mode: z.enum(["", "vip", "dnsrr"], { error: 'must be "vip" or "dnsrr"' }).nullish(),
  Ports: z.array(PortConfig).nullish(),
});

/** Docker's `ServiceSpec`, as a request body (plus Shoal's `ProcessSpec`). */
export const DockerServiceSpec = z.strictObject({
  Name: OptString,
  Labels: OptLabels,
  TaskTemplate: TaskTemplate,
  Mode: Mode.nullish(),
  UpdateConfig: DockerUpdateConfig.nullish(),
  RollbackConfig: DockerUpdateConfig.nullish(),
  Networks: z.array(NetworkAttachment).nullish(),
  EndpointSpec: EndpointSpec.nullish(),
});
/** Docker's `ServiceSpec`, parsed. */
export type DockerServiceSpec = z.infer<typeof DockerServiceSpec>;

type DockerTaskTemplate = z.infer<typeof TaskTemplate>;
type DockerHealthConfig = z.infer<typeof HealthConfig>;
type DockerSecretRef = z.infer<typeof SecretReference>;
type DockerConfigRef = z.infer<typeof ConfigReference>;

function runtimeOf(t: DockerTaskTemplate): "container" | "process" {
  if (t.Runtime === "process" || t.Runtime === "container") return t.Runtime;
  return t.ProcessSpec != null && isZero(t.ContainerSpec) ? "process" : "container";
}

// ---------------------------------------------------------------------------------------------
// Docker → Shoal

/** What converting a spec needs besides the body. */
export interface SpecContext {
  /** To resolve secret, config and network references. */
  readonly state: ClusterState;
  /** The service being updated (absent for a create). */
  readonly current?: ServiceRecord;
}

/**
 * Converts a Docker service spec (a request body) into Shoal's, or throws a 400 naming the field
 * (`invalid service spec: TaskTemplate.ContainerSpec.Image: must name an image`) or a 404 naming
 * a missing secret, config or network.
 */
export function serviceSpecFromDocker(body: unknown, ctx: SpecContext): ServiceSpec {
  const d = parseWith(DockerServiceSpec, body ?? {}, "service spec");
  const t = d.TaskTemplate;
  let name = d.Name ?? "";
  if (name === "") {
    name = ctx.current?.spec.name ??
      randomName((n) => ctx.state.serviceNames.has(n));
  }
  const nameCheck = Name.safeParse(name);
  if (!nameCheck.success) {
    throw invalid(`Name: ${describeIssues(nameCheck.error.issues)}`);
  }

  let runtime: Record<string, unknown>;
  let secrets: FileReference[];
  let configs: FileReference[];
  // The docker CLI sends a process service back with no Runtime and its program as a
  // ContainerSpec (see `forDockerClient`): it stays a process service.
  const keepsProcess = !t.Runtime && t.ProcessSpec == null && !isZero(t.ContainerSpec) &&
    ctx.current?.spec.task.runtime.kind === "process";
  if (runtimeOf(t) === "container" && !keepsProcess) {
    const c = t.ContainerSpec!;
    runtime = {
      kind: "container",
      image: c.Image!,
      labels: c.Labels ?? undefined,
      command: c.Command ?? undefined,
      args: c.Args ?? undefined,
      env: c.Env ?? undefined,
      hostname: c.Hostname ?? undefined,
      user: c.User ?? undefined,
      dir: c.Dir ?? undefined,
      mounts: c.Mounts?.map((m) => ({
        type: m.Type ?? undefined,
        source: m.Source ?? undefined,
        target: m.Target,
        readOnly: m.ReadOnly ?? undefined,
      })),
      stopSignal: c.StopSignal ?? undefined,
      stopGracePeriod: optMs(c.StopGracePeriod),
      healthcheck: healthFromDocker(c.Healthcheck),
    };
    secrets = fileRefs(ctx.state, "secret", c.Secrets, "TaskTemplate.ContainerSpec.Secrets");
    configs = fileRefs(ctx.state, "config", c.Configs, "TaskTemplate.ContainerSpec.Configs");
  } else if (t.ProcessSpec != null) {
    const p = t.ProcessSpec;
    runtime = {
      kind: "process",
      command: p.Command,
      args: p.Args ?? undefined,
      env: p.Env ?? undefined,
      dir: p.Dir ?? undefined,
      stopSignal: p.StopSignal ?? undefined,
      stopGracePeriod: optMs(p.StopGracePeriod),
      healthcheck: healthFromDocker(p.Healthcheck),
    };
    secrets = fileRefs(ctx.state, "secret", p.Secrets, "TaskTemplate.ProcessSpec.Secrets");
    configs = fileRefs(ctx.state, "config", p.Configs, "TaskTemplate.ProcessSpec.Configs");
  } else if (!isZero(t.ContainerSpec)) {
    // A client that does not know ProcessSpec (the docker CLI) sent back the ContainerSpec that
    // mirrors the program, perhaps changed (`service update --env-add`): the program is in it.
    const c = t.ContainerSpec!;
    runtime = processFromContainerSpec(c);
    secrets = fileRefs(ctx.state, "secret", c.Secrets, "TaskTemplate.ContainerSpec.Secrets");
    configs = fileRefs(ctx.state, "config", c.Configs, "TaskTemplate.ContainerSpec.Configs");
  } else if (ctx.current?.spec.task.runtime.kind === "process") {
    // A client that does not know ProcessSpec sent the service back without it: keep the program.
    runtime = ctx.current.spec.task.runtime;
    secrets = ctx.current.spec.task.secrets;
    configs = ctx.current.spec.task.configs;
  } else {
    throw invalid('TaskTemplate.ProcessSpec: must be given for Runtime "process"');
  }

  const networks = [...(t.Networks ?? []), ...(d.Networks ?? [])].map((n, i) => ({
    target: resolveRef(ctx.state, "network", n.Target, `Networks.${i}.Target`).id,
    aliases: n.Aliases ?? undefined,
  }));

  const r = t.Resources;
  const rp = t.RestartPolicy;
  const pl = t.Placement;
  const task = {
    runtime,
    secrets,
    configs,
    resources: {
      limits: {
        nanoCPUs: r?.Limits?.NanoCPUs ?? undefined,
        memoryBytes: r?.Limits?.MemoryBytes ?? undefined,
      },
      reservations: {
        nanoCPUs: r?.Reservations?.NanoCPUs ?? undefined,
        memoryBytes: r?.Reservations?.MemoryBytes ?? undefined,
      },
    },
    restart: rp == null ? undefined : {
      condition: rp.Condition || undefined,
      delay: optMs(rp.Delay),
      maxAttempts: rp.MaxAttempts ?? undefined,
      window: optMs(rp.Window),
    },
    placement: pl == null ? undefined : {
      constraints: pl.Constraints ?? undefined,
      preferences: pl.Preferences?.map((p) => ({ spread: p.Spread.SpreadDescriptor })),
      maxReplicas: pl.MaxReplicas ?? undefined,
      platforms: pl.Platforms?.map((p) => ({
        os: p.OS ?? "",
        architecture: p.Architecture ?? "",
      })),
    },
    networks,
    forceUpdate: t.ForceUpdate ?? undefined,
  };

  const spec = {
    name,
    labels: d.Labels ?? undefined,
    task,
    mode: modeFromDocker(d.Mode),
    update: updateConfigFromDocker(d.UpdateConfig),
    rollback: updateConfigFromDocker(d.RollbackConfig),
    endpoint: d.EndpointSpec == null ? undefined : {
      mode: d.EndpointSpec.Mode || undefined,
      ports: d.EndpointSpec.Ports?.map((p) => ({
        name: p.Name ?? undefined,
        protocol: p.Protocol || undefined,
        targetPort: p.TargetPort,
        publishedPort: p.PublishedPort ?? undefined,
        publishMode: p.PublishMode || undefined,
      })),
    },
  };
  // The Docker schema above checks everything the Shoal one does; this applies its defaults
  // (and would still name the field, in Shoal's terms, if the two ever drifted apart).
  const parsed = ServiceSpec.safeParse(stripUndefined(spec));
  if (!parsed.success) throw invalid(describeIssues(parsed.error.issues));
  return parsed.data;
}

/** Whether a request comes from Docker's own client (its `User-Agent` is `Docker-Client/…`). */
export function isDockerClient(req: Request): boolean {
  return req.headers.get("user-agent")?.startsWith("Docker-Client/") ?? false;
}

/**
 * A service or task as Docker's own client sees it: a process task spec names no `Runtime` and
 * shows its program also as a `ContainerSpec` whose `Image` is the program (the docker CLI
 * dereferences `ContainerSpec` unchecked in `service update`, `inspect --pretty` and `service
 * logs`, and refuses to send one with a runtime other than "container"). An update of a process
 * service that names no runtime stays a process service (see `serviceSpecFromDocker`).
 */
export function forDockerClient<T>(value: T): T {
  const strip = (t: unknown) => {
    const template = t as { Runtime?: string; ContainerSpec?: unknown; ProcessSpec?: unknown };
    if (t === null || typeof t !== "object" || template.Runtime !== "process") return;
    delete template.Runtime;
    // The program as a container spec: the same fields, the program as the image.
    const { Command, ...rest } = (template.ProcessSpec ?? {}) as Record<string, unknown>;
    template.ContainerSpec = { Image: Command, ...rest };
  };
  const v = value as {
    Spec?: { TaskTemplate?: unknown };
    PreviousSpec?: { TaskTemplate?: unknown };
  };
  strip(v.Spec?.TaskTemplate);
  strip(v.PreviousSpec?.TaskTemplate);
  strip(v.Spec);
  return value;
}

/**
 * A process service's program from the `ContainerSpec` that mirrors it (see
 * {@linkcode taskSpecToDocker}): `Image` is the program, or `Command` with its first word.
 */
function processFromContainerSpec(c: z.infer<typeof ContainerSpec>): Record<string, unknown> {
  const fields = { Hostname: c.Hostname, User: c.User, Mounts: c.Mounts, Labels: c.Labels };
  const notForProcesses = Object.entries(fields).find(([, v]) => !isZero(v));
  if (notForProcesses) {
    throw invalid(
      `TaskTemplate.ContainerSpec.${notForProcesses[0]}: is not supported by the process runtime`,
    );
  }
  const command = c.Command?.length ? c.Command : undefined;
  const program = command?.[0] ?? c.Image ?? "";
  if (program === "") {
    throw invalid(
      "TaskTemplate.ContainerSpec.Image: must name the program of this process service (or give ProcessSpec)",
    );
  }
  return {
    kind: "process",
    command: program,
    args: command ? [...command.slice(1), ...(c.Args ?? [])] : c.Args ?? undefined,
    env: c.Env ?? undefined,
    dir: c.Dir ?? undefined,
    stopSignal: c.StopSignal ?? undefined,
    stopGracePeriod: optMs(c.StopGracePeriod),
    healthcheck: healthFromDocker(c.Healthcheck),
  };
}

function invalid(detail: string): ApiError {
  return new ApiError(400, "invalid_argument", `invalid service spec: ${detail}`);
}

/** Drops `undefined` values so that zod applies its defaults. */
function stripUndefined<T>(value: T): T {
  if (Array.isArray(value)) return value.map(stripUndefined) as T;
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = stripUndefined(v);
  return out as T;
}

function optMs(ns: number | null | undefined): number | undefined {
  return ns == null ? undefined : nsToMs(ns);
}

function healthFromDocker(h: DockerHealthConfig | null | undefined): unknown {
  if (h == null) return undefined;
  return {
    test: h.Test ?? undefined,
    // Docker's zero means "the image's value"; Shoal has no image to ask, so: Shoal's default.
    interval: h.Interval ? nsToMs(h.Interval) : undefined,
    timeout: h.Timeout ? nsToMs(h.Timeout) : undefined,
    retries: h.Retries || undefined,
    startPeriod: h.StartPeriod ? nsToMs(h.StartPeriod) : undefined,
  };
}

function modeFromDocker(m: z.infer<typeof Mode> | null | undefined): unknown {
  if (m == null) return undefined;
  if (m.Global != null) return { kind: "global" };
  if (m.GlobalJob != null) return { kind: "global-job" };
  if (m.ReplicatedJob != null) {
    // SwarmKit's defaults: one at a time; as many completions as may run at once.
    const maxConcurrent = m.ReplicatedJob.MaxConcurrent || 1;
    return {
      kind: "replicated-job",
      maxConcurrent,
      totalCompletions: m.ReplicatedJob.TotalCompletions || maxConcurrent,
    };
  }
  return { kind: "replicated", replicas: m.Replicated?.Replicas ?? 1 };
}

function updateConfigFromDocker(
  u: z.infer<typeof DockerUpdateConfig> | null | undefined,
): unknown {
  if (u == null) return undefined;
  return {
    parallelism: u.Parallelism ?? undefined,
    delay: optMs(u.Delay),
    failureAction: u.FailureAction || undefined,
    monitor: optMs(u.Monitor),
    maxFailureRatio: u.MaxFailureRatio ?? undefined,
    order: u.Order || undefined,
  };
}

type FileObjectKind = "secret" | "config";

/** Finds a secret, config or network by id, name or id prefix; a 404 naming it otherwise. */
function resolveRef(
  state: ClusterState,
  kind: FileObjectKind | "network",
  ref: string,
  field: string,
) {
  const [table, names] = kind === "secret"
    ? [state.secrets, state.secretNames]
    : kind === "config"
    ? [state.configs, state.configNames]
    : [state.networks, state.networkNames];
  try {
    return resolve<{ id: string; spec: { name: string } }>(kind, table, names, ref);
  } catch (err) {
    if (err instanceof EventRejected) {
      const status = err.code === "not_found" ? 404 : 400;
      throw new ApiError(status, err.code, `${err.message} (${field})`);
    }
    throw err;
  }
}

function fileRefs(
  state: ClusterState,
  kind: FileObjectKind,
  refs: readonly (DockerSecretRef | DockerConfigRef)[] | null | undefined,
  field: string,
): FileReference[] {
  return (refs ?? []).map((r, i) => {
    const id = "SecretID" in r ? r.SecretID : (r as DockerConfigRef).ConfigID;
    const name = "SecretID" in r ? r.SecretName : (r as DockerConfigRef).ConfigName;
    const ref = id || name;
    if (!ref) {
      throw invalid(
        `${field}.${i}: must name the ${kind} (${kind === "secret" ? "SecretID" : "ConfigID"})`,
      );
    }
    const rec = resolveRef(state, kind, ref, `${field}.${i}`);
    const file = r.File;
    const target = file?.Name ?? "";
    return {
      id: rec.id,
      name: rec.spec.name,
      // A file named after the object is the default; store it as such so that round trips
      // through clients that fill it in (the docker CLI does) leave the task spec unchanged.
      target: target === rec.spec.name ? "" : target,
      uid: file?.UID || "0",
      gid: file?.GID || "0",
      mode: file?.Mode ?? 0o444,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Shoal → Docker

function healthToDocker(h: HealthCheck | undefined) {
  if (h === undefined) return undefined;
  return compact({
    Test: h.test,
    Interval: nonZero(msToNs(h.interval)),
    Timeout: nonZero(msToNs(h.timeout)),
    StartPeriod: nonZero(msToNs(h.startPeriod)),
    Retries: nonZero(h.retries),
  });
}

function fileRefsToDocker(kind: FileObjectKind, refs: readonly FileReference[]) {
  if (refs.length === 0) return undefined;
  return refs.map((r) => {
    const file = { Name: r.target || r.name, UID: r.uid, GID: r.gid, Mode: r.mode };
    return kind === "secret"
      ? { File: file, SecretID: r.id, SecretName: r.name }
      : { File: file, ConfigID: r.id, ConfigName: r.name };
  });
}

/** A Shoal task spec as Docker's `TaskSpec` (with `ProcessSpec` for the process runtime). */
export function taskSpecToDocker(task: TaskSpec) {
  const rt = task.runtime;
  const secrets = fileRefsToDocker("secret", task.secrets);
  const configs = fileRefsToDocker("config", task.configs);
  const container = rt.kind !== "container" ? undefined : compact({
    Image: rt.image,
    Labels: nonEmptyMap(rt.labels),
    Command: nonEmpty(rt.command),
    Args: nonEmpty(rt.args),
    Hostname: nonBlank(rt.hostname),
    Env: nonEmpty(rt.env),
    Dir: nonBlank(rt.dir),
    User: nonBlank(rt.user),
    Init: false,
    StopSignal: nonBlank(rt.stopSignal),
    Mounts: nonEmpty(rt.mounts.map((m) =>
      compact({
        Type: m.type,
        Source: nonBlank(m.source),
        Target: m.target,
        ReadOnly: m.readOnly || undefined,
      })
    )),
    StopGracePeriod: msToNs(rt.stopGracePeriod),
    Healthcheck: healthToDocker(rt.healthcheck),
    DNSConfig: {},
    Secrets: secrets,
    Configs: configs,
    Isolation: "default",
  });
  const process = rt.kind !== "process" ? undefined : compact({
    Command: rt.command,
    Args: nonEmpty(rt.args),
    Env: nonEmpty(rt.env),
    Dir: nonBlank(rt.dir),
    StopSignal: nonBlank(rt.stopSignal),
    StopGracePeriod: msToNs(rt.stopGracePeriod),
    Healthcheck: healthToDocker(rt.healthcheck),
    Secrets: secrets,
    Configs: configs,
  });
  const { limits, reservations } = task.resources;
  const pl = task.placement;
  return compact({
    ContainerSpec: container,
    ProcessSpec: process,
    Resources: {
      Limits: compact({
        NanoCPUs: nonZero(limits.nanoCPUs),
        MemoryBytes: nonZero(limits.memoryBytes),
      }),
      Reservations: compact({
        NanoCPUs: nonZero(reservations.nanoCPUs),
        MemoryBytes: nonZero(reservations.memoryBytes),
      }),
    },
    RestartPolicy: {
      Condition: task.restart.condition,
      Delay: msToNs(task.restart.delay),
      MaxAttempts: task.restart.maxAttempts,
      Window: msToNs(task.restart.window),
    },
    Placement: compact({
      Constraints: nonEmpty(pl.constraints),
      Preferences: nonEmpty(
        pl.preferences.map((p) => ({ Spread: { SpreadDescriptor: p.spread } })),
      ),
      MaxReplicas: nonZero(pl.maxReplicas),
      Platforms: nonEmpty(pl.platforms.map((p) => ({ Architecture: p.architecture, OS: p.os }))),
    }),
    Networks: nonEmpty(
      task.networks.map((n) => compact({ Target: n.target, Aliases: nonEmpty(n.aliases) })),
    ),
    ForceUpdate: task.forceUpdate,
    Runtime: rt.kind,
  });
}

function updateConfigToDocker(u: UpdateConfig) {
  return compact({
    Parallelism: u.parallelism,
    Delay: nonZero(msToNs(u.delay)),
    FailureAction: u.failureAction,
    Monitor: msToNs(u.monitor),
    MaxFailureRatio: u.maxFailureRatio,
    Order: u.order,
  });
}

function modeToDocker(mode: ServiceSpec["mode"]) {
  switch (mode.kind) {
    case "replicated":
      return { Replicated: { Replicas: mode.replicas } };
    case "global":
      return { Global: {} };
    case "replicated-job":
      return {
        ReplicatedJob: {
          MaxConcurrent: mode.maxConcurrent,
          TotalCompletions: mode.totalCompletions,
        },
      };
    case "global-job":
      return { GlobalJob: {} };
  }
}

/** A port as Docker shows it. */
export function portToDocker(p: ServiceSpec["endpoint"]["ports"][number]) {
  return compact({
    Name: nonBlank(p.name),
    Protocol: p.protocol,
    TargetPort: p.targetPort,
    PublishedPort: p.publishedPort,
    PublishMode: p.publishMode,
  });
}

function endpointSpecToDocker(e: ServiceSpec["endpoint"]) {
  return compact({ Mode: e.mode, Ports: nonEmpty(e.ports.map(portToDocker)) });
}

/** A Shoal service spec as Docker's `ServiceSpec`. */
export function serviceSpecToDocker(spec: ServiceSpec) {
  return {
    Name: spec.name,
    Labels: { ...spec.labels },
    TaskTemplate: taskSpecToDocker(spec.task),
    Mode: modeToDocker(spec.mode),
    UpdateConfig: updateConfigToDocker(spec.update),
    RollbackConfig: updateConfigToDocker(spec.rollback),
    EndpointSpec: endpointSpecToDocker(spec.endpoint),
  };
}

/**
 * Docker's `ServiceStatus`: running and desired tasks (what `service ls` shows as 2/3), and for
 * jobs the tasks of the current run that completed (`0/2 (3/5 completed)`), as SwarmKit's
 * `ListServiceStatuses` counts them.
 */
export function serviceStatus(state: ClusterState, svc: ServiceRecord) {
  let running = 0;
  let desired = 0;
  let completed = 0;
  const mode = svc.spec.mode;
  const job = mode.kind === "replicated-job" || mode.kind === "global-job";
  for (const t of state.tasksOf(svc.id)) {
    const node = t.nodeId ? state.nodes.get(t.nodeId) : undefined;
    const nodeUp = node !== undefined && node.status.state !== "down";
    if (t.status.state === TaskState.running && nodeUp) running++;
    // A job counts only its current run; earlier runs are history.
    if (job && (t.jobIteration ?? 0) !== (svc.jobIteration ?? 0)) continue;
    if (job && t.status.state === TaskState.complete) completed++;
    if (mode.kind === "global" && t.desiredState <= TaskState.running) {
      if (node === undefined || nodeUp) desired++;
    }
    // A global job's desired tasks are those still to complete.
    if (
      mode.kind === "global-job" && t.desiredState === TaskState.complete &&
      t.status.state < TaskState.complete && (node === undefined || nodeUp)
    ) desired++;
  }
  if (mode.kind === "replicated") desired = mode.replicas;
  if (mode.kind === "replicated-job") {
    desired = Math.max(0, Math.min(mode.maxConcurrent, mode.totalCompletions - completed));
  }
  return { RunningTasks: running, DesiredTasks: desired, CompletedTasks: completed };
}

/** A service as Docker's `GET /services/{id}` shows it. */
export function serviceToDocker(
  state: ClusterState,
  svc: ServiceRecord,
  options: { status?: boolean } = {},
) {
  const u = svc.updateStatus;
  return compact({
    ...meta(svc),
    Spec: serviceSpecToDocker(svc.spec),
    PreviousSpec: svc.previousSpec && serviceSpecToDocker(svc.previousSpec),
    Endpoint: svc.endpoint === undefined ? { Spec: {} } : compact({
      Spec: endpointSpecToDocker(svc.spec.endpoint),
      Ports: nonEmpty(svc.endpoint.ports.map(portToDocker)),
      VirtualIPs: nonEmpty(
        svc.endpoint.virtualIPs.map((v) => ({
          NetworkID: v.networkId,
          Addr: addrWithPrefix(state, v),
        })),
      ),
    }),
    UpdateStatus: u && compact({
      State: u.state,
      StartedAt: u.startedAt ? rfc3339(u.startedAt) : undefined,
      CompletedAt: u.completedAt ? rfc3339(u.completedAt) : undefined,
      Message: nonBlank(u.message),
    }),
    ServiceStatus: options.status ? serviceStatus(state, svc) : undefined,
    // Jobs: which run this is (every update re-runs the job) and when it began.
    JobStatus: svc.jobIteration === undefined ? undefined : {
      JobIteration: { Index: svc.jobIteration },
      LastExecution: rfc3339(svc.lastExecution ?? svc.createdAt),
    },
  });
}
