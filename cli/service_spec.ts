/**
 * `shoal service create` and `shoal service update` flags, and how they become a service spec,
 * as Docker's CLI does it (docker/cli `cli/command/service/opts.go`, `update.go`): the same flag
 * names, value syntaxes (`-p 8080:80`, `--secret source=db,target=pw`, `--update-delay 10s`),
 * defaults and error messages.
 *
 * Shoal's addition: `--runtime process` runs the IMAGE argument as a program on the node, with
 * the remaining arguments as its arguments (`TaskTemplate.Runtime: "process"` and
 * `TaskTemplate.ProcessSpec`); container-only flags are refused with it.
 *
 * @module
 */
import type { FlagSpec, ParsedArgs } from "./flags.ts";
import type {
  ConfigReference,
  ContainerSpec,
  HealthConfig,
  Mount,
  PortConfig,
  ProcessSpec,
  SecretReference,
  ServiceMode,
  ServiceSpec,
  TaskSpec,
  UpdateConfig,
} from "./docker_types.ts";
import {
  parseCpus,
  parseDuration,
  parseFloat64,
  parseInt64,
  parseMemory,
  parseUint,
} from "./units.ts";
import { CliError } from "./format.ts";

const SECOND = 1_000_000_000;

/** SwarmKit's defaults for update and rollback configs. */
export const DEFAULT_UPDATE_CONFIG: Readonly<UpdateConfig> = {
  Parallelism: 1,
  Monitor: 5 * SECOND,
  FailureAction: "pause",
  MaxFailureRatio: 0,
  Order: "stop-first",
};

/** SwarmKit's default restart policy. */
export const DEFAULT_RESTART: Readonly<NonNullable<TaskSpec["RestartPolicy"]>> = {
  Condition: "any",
  Delay: 5 * SECOND,
  MaxAttempts: 0,
};

// ---------------------------------------------------------------------------------------------
// Flags

const f = (
  name: string,
  kind: FlagSpec["kind"],
  description: string,
  extra: Partial<FlagSpec> = {},
): FlagSpec => ({ name, kind, description, ...extra });

/** Flags common to create and update (Docker's `addServiceFlags`). */
const COMMON_FLAGS: FlagSpec[] = [
  f("detach", "boolean", "Exit immediately instead of waiting for the service to converge", {
    short: "d",
  }),
  f("quiet", "boolean", "Suppress progress output", { short: "q" }),
  f("workdir", "string", "Working directory inside the container (or of the process)", {
    short: "w",
  }),
  f("user", "string", "Username or UID (format: <name|uid>[:<group|gid>])", { short: "u" }),
  f("hostname", "string", "Container hostname"),
  f("entrypoint", "string", "Overwrite the default ENTRYPOINT of the image", { type: "command" }),
  f("limit-cpu", "string", "Limit CPUs", { type: "decimal" }),
  f("limit-memory", "string", "Limit Memory", { type: "bytes" }),
  f("limit-pids", "string", "Limit maximum number of processes (default 0 = unlimited)", {
    type: "int",
  }),
  f("reserve-cpu", "string", "Reserve CPUs", { type: "decimal" }),
  f("reserve-memory", "string", "Reserve Memory", { type: "bytes" }),
  f(
    "stop-grace-period",
    "string",
    "Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)",
    { type: "duration" },
  ),
  f("replicas", "string", "Number of tasks", { type: "uint" }),
  f(
    "max-concurrent",
    "string",
    "Number of job tasks to run concurrently (default equal to --replicas)",
    { type: "uint" },
  ),
  f("replicas-max-per-node", "string", "Maximum number of tasks per node (default 0 = unlimited)", {
    type: "uint",
  }),
  f(
    "restart-condition",
    "string",
    'Restart when condition is met ("none", "on-failure", "any") (default "any")',
  ),
  f("restart-delay", "string", "Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)", {
    type: "duration",
  }),
  f("restart-max-attempts", "string", "Maximum number of restarts before giving up", {
    type: "uint",
  }),
  f("restart-window", "string", "Window used to evaluate the restart policy (ns|us|ms|s|m|h)", {
    type: "duration",
  }),
  f(
    "update-parallelism",
    "string",
    "Maximum number of tasks updated simultaneously (0 to update all at once) (default 1)",
    { type: "uint" },
  ),
  f("update-delay", "string", "Delay between updates (ns|us|ms|s|m|h) (default 0s)", {
    type: "duration",
  }),
  f(
    "update-monitor",
    "string",
    "Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s)",
    { type: "duration" },
  ),
  f(
    "update-failure-action",
    "string",
    'Action on update failure ("pause", "continue", "rollback") (default "pause")',
  ),
  f("update-max-failure-ratio", "string", "Failure rate to tolerate during an update (default 0)", {
    type: "float",
  }),
  f("update-order", "string", 'Update order ("start-first", "stop-first") (default "stop-first")'),
  f(
    "rollback-parallelism",
    "string",
    "Maximum number of tasks rolled back simultaneously (0 to roll back all at once) (default 1)",
    { type: "uint" },
  ),
  f("rollback-delay", "string", "Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s)", {
    type: "duration",
  }),
  f(
    "rollback-monitor",
    "string",
    "Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s)",
    { type: "duration" },
  ),
  f(
    "rollback-failure-action",
    "string",
    'Action on rollback failure ("pause", "continue") (default "pause")',
  ),
  f(
    "rollback-max-failure-ratio",
    "string",
    "Failure rate to tolerate during a rollback (default 0)",
    { type: "float" },
  ),
  f(
    "rollback-order",
    "string",
    'Rollback order ("start-first", "stop-first") (default "stop-first")',
  ),
  f("endpoint-mode", "string", 'Endpoint mode (vip or dnsrr) (default "vip")'),
  f("with-registry-auth", "boolean", "Send registry authentication details to swarm agents"),
  f(
    "no-resolve-image",
    "boolean",
    "Do not query the registry to resolve image digest and supported platforms",
  ),
  f("health-cmd", "string", "Command to run to check health"),
  f("health-interval", "string", "Time between running the check (ms|s|m|h)", {
    type: "duration",
  }),
  f("health-timeout", "string", "Maximum time to allow one check to run (ms|s|m|h)", {
    type: "duration",
  }),
  f("health-retries", "string", "Consecutive failures needed to report unhealthy", {
    type: "int",
  }),
  f(
    "health-start-period",
    "string",
    "Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)",
    { type: "duration" },
  ),
  f("no-healthcheck", "boolean", "Disable any container-specified HEALTHCHECK"),
  f("stop-signal", "string", "Signal to stop the container (or process)"),
  f(
    "init",
    "boolean",
    "Use an init inside each service container to forward signals and reap processes",
  ),
];

/** `shoal service create` flags. */
export const CREATE_FLAGS: FlagSpec[] = [
  f("config", "list", "Specify configurations to expose to the service", { type: "config" }),
  f("constraint", "list", "Placement constraints"),
  f("container-label", "list", "Container labels"),
  f("env", "list", "Set environment variables", { short: "e" }),
  f("env-file", "list", "Read in a file of environment variables"),
  f("label", "list", "Service labels", { short: "l" }),
  f(
    "mode",
    "string",
    'Service mode ("replicated", "global", "replicated-job", "global-job")',
    { default: "replicated" },
  ),
  f("mount", "list", "Attach a filesystem mount to the service", { type: "mount" }),
  f("name", "string", "Service name"),
  f("network", "list", "Network attachments", { type: "network" }),
  f("placement-pref", "list", "Add a placement preference", { type: "pref" }),
  f("publish", "list", "Publish a port as a node port", { short: "p", type: "port" }),
  f(
    "runtime",
    "string",
    'How tasks run: "container" (IMAGE is an image), or "process" (Shoal: IMAGE is a program run on the node, COMMAND and ARG its arguments)',
    { default: "container" },
  ),
  f("secret", "list", "Specify secrets to expose to the service", { type: "secret" }),
  ...COMMON_FLAGS,
].sort((a, b) => a.name.localeCompare(b.name));

/** `shoal service update` flags. */
export const UPDATE_FLAGS: FlagSpec[] = [
  f("image", "string", "Service image tag (for a process service: the program)"),
  f("args", "string", "Service command args", { type: "command" }),
  f("rollback", "boolean", "Rollback to previous specification"),
  f("force", "boolean", "Force update even if no changes require it"),
  f("env-add", "list", "Add or update an environment variable"),
  f("env-rm", "list", "Remove an environment variable"),
  f("label-add", "list", "Add or update a service label"),
  f("label-rm", "list", "Remove a label by its key"),
  f("container-label-add", "list", "Add or update a container label"),
  f("container-label-rm", "list", "Remove a container label by its key"),
  f("mount-add", "list", "Add or update a mount on a service", { type: "mount" }),
  f("mount-rm", "list", "Remove a mount by its target path"),
  f("publish-add", "list", "Add or update a published port", { type: "port" }),
  f("publish-rm", "list", "Remove a published port by its target port", { type: "port" }),
  f("constraint-add", "list", "Add or update a placement constraint"),
  f("constraint-rm", "list", "Remove a constraint"),
  f("placement-pref-add", "list", "Add a placement preference", { type: "pref" }),
  f("placement-pref-rm", "list", "Remove a placement preference", { type: "pref" }),
  f("secret-add", "list", "Add or update a secret on a service", { type: "secret" }),
  f("secret-rm", "list", "Remove a secret"),
  f("config-add", "list", "Add or update a config file on a service", { type: "config" }),
  f("config-rm", "list", "Remove a configuration file"),
  f("network-add", "list", "Add a network", { type: "network" }),
  f("network-rm", "list", "Remove a network"),
  ...COMMON_FLAGS,
].sort((a, b) => a.name.localeCompare(b.name));

// ---------------------------------------------------------------------------------------------
// Value syntaxes

/** Reports a bad flag value (the command turns this into Docker's usage error). */
export type BadFlag = (flag: string, value: string, err: unknown) => never;

/** Reads one record of comma-separated values, with double quotes, as Go's `encoding/csv`. */
export function readCsv(text: string): string[] {
  const fields: string[] = [];
  let i = 0;
  while (true) {
    let field = "";
    if (text[i] === '"') {
      i++;
      while (i < text.length) {
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ",") {
        throw new Error(
          `parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`,
        );
      }
    } else {
      const end = text.indexOf(",", i);
      const stop = end < 0 ? text.length : end;
      field = text.slice(i, stop);
      if (field.includes('"')) {
        throw new Error(
          `parse error on line 1, column ${i + field.indexOf('"') + 1}: bare " in non-quoted-field`,
        );
      }
      i = stop;
    }
    fields.push(field);
    if (i >= text.length) return fields;
    i++; // the comma
  }
}

const LONG_SYNTAX = /\w+=\w+(,\w+=\w+)*/;

function parsePortNumber(what: string, val: string): number {
  if (!/^\d+$/.test(val)) {
    throw new Error(`invalid ${what} (${val}): value must be an integer: invalid syntax`);
  }
  const n = Number(val);
  if (n > 65535) {
    throw new Error(`invalid ${what} (${val}): value must be an integer: value out of range`);
  }
  return n;
}

function parseRange(text: string, what: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) throw new Error(`invalid ${what}: ${text}`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535) throw new Error(`invalid ${what}: ${text}`);
  if (end < start) throw new Error(`invalid range specified for ${what}: ${text}`);
  return [start, end];
}

/**
 * Parses a `--publish` value: the short syntax (`80`, `8080:80`, `8080:80/udp`,
 * `8080-8081:80-81`) or the long one (`published=8080,target=80,protocol=udp,mode=host`).
 */
export function parsePort(value: string): PortConfig[] {
  if (LONG_SYNTAX.test(value)) {
    const port: PortConfig = { Protocol: "tcp", PublishMode: "ingress" };
    for (const field of readCsv(value)) {
      const lower = field.toLowerCase();
      const eq = lower.indexOf("=");
      if (eq <= 0) throw new Error(`invalid field: ${field}`);
      const key = lower.slice(0, eq);
      const val = lower.slice(eq + 1);
      switch (key) {
        case "protocol":
          if (!["tcp", "udp", "sctp"].includes(val)) {
            throw new Error(`invalid protocol value '${val}'`);
          }
          port.Protocol = val;
          break;
        case "mode":
          if (val !== "ingress" && val !== "host") {
            throw new Error(
              `invalid publish mode value (${val}): must be either 'ingress' or 'host'`,
            );
          }
          port.PublishMode = val;
          break;
        case "target":
          port.TargetPort = parsePortNumber("target port", val);
          break;
        case "published":
          port.PublishedPort = parsePortNumber("published port", val);
          break;
        default:
          throw new Error(`invalid field key: ${key}`);
      }
    }
    if (!port.TargetPort) throw new Error("missing mandatory field 'target'");
    return [{
      Protocol: port.Protocol,
      TargetPort: port.TargetPort,
      PublishedPort: port.PublishedPort ?? 0,
      PublishMode: port.PublishMode,
    }];
  }
  let spec = value;
  let proto = "tcp";
  const slash = spec.lastIndexOf("/");
  if (slash >= 0) {
    proto = spec.slice(slash + 1).toLowerCase();
    spec = spec.slice(0, slash);
    if (!["tcp", "udp", "sctp"].includes(proto)) throw new Error(`invalid proto: ${proto}`);
  }
  const parts = spec.split(":");
  let host = "";
  let container: string;
  if (parts.length === 1) container = parts[0];
  else if (parts.length === 2) [host, container] = parts;
  else {
    if (parts.length === 3 && parts[0] !== "") throw new Error("hostip is not supported");
    [, host, container] = parts.slice(-3);
    if (parts.length > 3) throw new Error(`invalid port format for --publish: ${value}`);
  }
  if (container === "") throw new Error(`no port specified: ${value}<empty>`);
  const [cStart, cEnd] = parseRange(container, "containerPort");
  const ports: PortConfig[] = [];
  if (host === "") {
    for (let p = cStart; p <= cEnd; p++) {
      ports.push({ Protocol: proto, TargetPort: p, PublishedPort: 0, PublishMode: "ingress" });
    }
    return ports;
  }
  const [hStart, hEnd] = parseRange(host, "hostPort");
  if (hEnd - hStart !== cEnd - cStart) {
    if (cEnd !== cStart) {
      throw new Error(
        `invalid ranges specified for container and host Ports: ${container} and ${host}`,
      );
    }
    for (let p = hStart; p <= hEnd; p++) {
      ports.push({ Protocol: proto, TargetPort: cStart, PublishedPort: p, PublishMode: "ingress" });
    }
    return ports;
  }
  for (let i = 0; i <= cEnd - cStart; i++) {
    ports.push({
      Protocol: proto,
      TargetPort: cStart + i,
      PublishedPort: hStart + i,
      PublishMode: "ingress",
    });
  }
  return ports;
}

/** A `--secret` or `--config` value before its name is resolved to an id. */
export interface FileRefRequest {
  source: string;
  target: string;
  uid: string;
  gid: string;
  mode: number;
}

/** Parses `--secret`/`--config`: `NAME` or `source=NAME,target=FILE,uid=0,gid=0,mode=0444`. */
export function parseFileRef(value: string, kind: "secret" | "config"): FileRefRequest {
  const fields = readCsv(value);
  const ref: FileRefRequest = { source: "", target: "", uid: "0", gid: "0", mode: 0o444 };
  if (fields.length === 1 && !fields[0].includes("=")) {
    return { ...ref, source: fields[0], target: fields[0] };
  }
  for (const field of fields) {
    const eq = field.indexOf("=");
    if (eq <= 0) throw new Error(`invalid field '${field}' must be a key=value pair`);
    const key = field.slice(0, eq).toLowerCase();
    const val = field.slice(eq + 1);
    switch (key) {
      case "source":
      case "src":
        ref.source = val;
        break;
      case "target":
        ref.target = val;
        break;
      case "uid":
        ref.uid = val;
        break;
      case "gid":
        ref.gid = val;
        break;
      case "mode":
        try {
          ref.mode = parseUint(val);
        } catch (err) {
          throw new Error(`invalid mode specified: ${(err as Error).message}`);
        }
        break;
      default:
        throw new Error(`invalid field in ${kind} request: ${key}`);
    }
  }
  if (ref.source === "") throw new Error("source is required");
  if (ref.target === "") ref.target = ref.source;
  return ref;
}

/** Parses `--placement-pref spread=node.labels.zone`. */
export function parsePlacementPref(value: string): { Spread: { SpreadDescriptor: string } } {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new Error('placement preference must be of the format "<strategy>=<arg>"');
  const strategy = value.slice(0, eq);
  if (strategy !== "spread") {
    throw new Error(`unsupported placement preference ${strategy} (only spread is supported)`);
  }
  return { Spread: { SpreadDescriptor: value.slice(eq + 1) } };
}

/** Parses `--mount type=bind,source=/a,target=/b,readonly`. */
export function parseMount(value: string): Mount {
  const text = value.trim();
  if (text === "") throw new Error("value is empty");
  const mount: Mount = { Type: "volume", Target: "" };
  for (const field of readCsv(text)) {
    const eq = field.indexOf("=");
    const key = (eq >= 0 ? field.slice(0, eq) : field).toLowerCase();
    const val = eq >= 0 ? field.slice(eq + 1) : undefined;
    if (val === undefined && key !== "readonly" && key !== "ro") {
      throw new Error(`invalid field '${field}' must be a key=value pair`);
    }
    switch (key) {
      case "type":
        mount.Type = val!.toLowerCase();
        break;
      case "source":
      case "src":
        mount.Source = val;
        break;
      case "target":
      case "dst":
      case "destination":
        mount.Target = val!;
        break;
      case "readonly":
      case "ro":
        if (val === undefined || ["1", "true"].includes(val.toLowerCase())) mount.ReadOnly = true;
        else if (["0", "false"].includes(val.toLowerCase())) mount.ReadOnly = false;
        else throw new Error(`invalid value for ${key}: ${val}`);
        break;
      default:
        throw new Error(`unknown option '${key}' in '${field}'`);
    }
  }
  if (mount.Target === "") throw new Error("target is required");
  if (mount.Type === "bind" && !mount.Source) {
    throw new Error("source is required when specifying bind mount");
  }
  return mount;
}

/** Parses `--network NAME` or `--network name=NAME,alias=ALIAS`. */
export function parseNetwork(value: string): { Target: string; Aliases?: string[] } {
  if (!LONG_SYNTAX.test(value)) return { Target: value };
  const out = { Target: "", Aliases: [] as string[] };
  for (const field of readCsv(value)) {
    const lower = field.toLowerCase();
    const eq = lower.indexOf("=");
    if (eq <= 0) throw new Error(`invalid field ${field}`);
    const key = lower.slice(0, eq).trim();
    const val = lower.slice(eq + 1).trim();
    if (key === "name") out.Target = val;
    else if (key === "alias") out.Aliases.push(val);
    else throw new Error(`invalid field key ${key}`);
  }
  if (out.Target === "") throw new Error("network name/id is not specified");
  return out;
}

/** Splits a command line into words as a POSIX shell would (Docker's `shlex.Split`). */
export function shellSplit(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error("EOF found when expecting closing quote");
      word += text.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && j + 1 < text.length && '"\\$`\n'.includes(text[j + 1])) j++;
        word += text[j];
      }
      if (j >= text.length) throw new Error("EOF found when expecting closing quote");
      i = j;
      inWord = true;
    } else if (c === "\\") {
      if (i + 1 < text.length) word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "#" && !inWord) {
      break;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * An image reference as Docker's client sends it: `:latest` added when it has neither tag nor
 * digest, and the familiar form of Docker Hub names (`docker.io/library/busybox` → `busybox`).
 */
export function imageWithTag(image: string): string {
  if (image === "") return image;
  let name = image;
  let digest = "";
  const at = name.indexOf("@");
  if (at >= 0) {
    digest = name.slice(at);
    name = name.slice(0, at);
  }
  const slash = name.lastIndexOf("/");
  const hasTag = name.indexOf(":", slash + 1) >= 0;
  if (!hasTag && digest === "") name += ":latest";
  name = name.replace(/^docker\.io\/library\/(?=[^/]+$)/, "").replace(
    /^(?:docker\.io|index\.docker\.io)\//,
    "",
  );
  return name + digest;
}

/** `KEY=VALUE` and `KEY` (taken from the environment when set there), as Docker's `ValidateEnv`. */
function envValue(value: string, lookup: (k: string) => string | undefined): string {
  if (value.includes("=")) return value;
  const v = lookup(value);
  return v === undefined ? value : `${value}=${v}`;
}

/** `k=v` strings to a map (`k` alone maps to `""`), as Docker's `ConvertKVStringsToMap`. */
export function kvMap(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq < 0) out[v] = "";
    else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Flags to spec

/** What converting flags needs from the outside world (a seam for tests). */
export interface SpecInputs {
  bad: BadFlag;
  env: (name: string) => string | undefined;
  readTextFile: (path: string) => string;
}

/** Unresolved references a spec needs ids for (filled in by the command, via the API). */
export interface PendingRefs {
  secrets: FileRefRequest[];
  configs: FileRefRequest[];
  networks: { Target: string; Aliases?: string[] }[];
}

function value<T>(
  p: ParsedArgs,
  name: string,
  parse: (s: string) => T,
  bad: BadFlag,
): T | undefined {
  if (!p.changed.has(name)) return undefined;
  const raw = p.flags[name] as string;
  try {
    return parse(raw);
  } catch (err) {
    bad(name, raw, err);
  }
}

function values<T>(p: ParsedArgs, name: string, parse: (s: string) => T, bad: BadFlag): T[] {
  const out: T[] = [];
  for (const raw of (p.flags[name] as string[] | undefined) ?? []) {
    try {
      out.push(parse(raw));
    } catch (err) {
      bad(name, raw, err);
    }
  }
  return out;
}

const strs = (p: ParsedArgs, name: string) => (p.flags[name] as string[] | undefined) ?? [];
const positiveDuration = (s: string) => {
  const d = parseDuration(s);
  if (d < 0) throw new Error("duration cannot be negative");
  return d;
};
const intValue = (s: string) => {
  const n = parseInt64(s);
  if (!Number.isInteger(n)) throw new Error(`strconv.ParseInt: parsing "${s}": invalid syntax`);
  return n;
};

function anyChanged(p: ParsedArgs, ...names: string[]): boolean {
  return names.some((n) => p.changed.has(n));
}

const CONTAINER_ONLY = ["hostname", "user", "entrypoint", "init", "mount", "container-label"];

function serviceMode(p: ParsedArgs, bad: BadFlag): ServiceMode {
  const mode = (p.flags.mode as string | undefined) ?? "replicated";
  const replicas = value(p, "replicas", parseUint, bad);
  const maxConcurrent = value(p, "max-concurrent", parseUint, bad);
  const maxReplicas = value(p, "replicas-max-per-node", parseUint, bad) ?? 0;
  switch (mode) {
    case "global":
    case "global-job":
      if (replicas !== undefined) {
        throw new CliError("replicas can only be used with replicated or replicated-job mode");
      }
      if (maxReplicas > 0) {
        throw new CliError(
          "replicas-max-per-node can only be used with replicated or replicated-job mode",
        );
      }
      if (maxConcurrent !== undefined) {
        throw new CliError("max-concurrent can only be used with replicated-job mode");
      }
      return mode === "global" ? { Global: {} } : { GlobalJob: {} };
    case "replicated":
      if (maxConcurrent !== undefined) {
        throw new CliError("max-concurrent can only be used with replicated-job mode");
      }
      return { Replicated: { Replicas: replicas ?? 1 } };
    case "replicated-job":
      return {
        ReplicatedJob: {
          MaxConcurrent: maxConcurrent ?? replicas ?? 1,
          TotalCompletions: replicas ?? 1,
        },
      };
    default:
      throw new CliError(`unknown mode: ${mode}, only replicated and global supported`);
  }
}

function healthConfig(p: ParsedArgs, bad: BadFlag): HealthConfig | undefined {
  const cmd = (p.flags["health-cmd"] as string | undefined) ?? "";
  const interval = value(p, "health-interval", positiveDuration, bad);
  const timeout = value(p, "health-timeout", positiveDuration, bad);
  const startPeriod = value(p, "health-start-period", positiveDuration, bad);
  const retries = value(p, "health-retries", intValue, bad) ?? 0;
  const haveSettings = cmd !== "" || interval !== undefined || timeout !== undefined ||
    startPeriod !== undefined || retries !== 0;
  if (p.flags["no-healthcheck"] === true) {
    if (haveSettings) throw new CliError("--no-healthcheck conflicts with --health-* options");
    return { Test: ["NONE"] };
  }
  if (!haveSettings) return undefined;
  return {
    ...(cmd !== "" ? { Test: ["CMD-SHELL", cmd] } : {}),
    Interval: interval ?? 0,
    Timeout: timeout ?? 0,
    Retries: retries,
    StartPeriod: startPeriod ?? 0,
  };
}

function updateConfig(p: ParsedArgs, prefix: "update" | "rollback", bad: BadFlag) {
  const names = ["parallelism", "delay", "monitor", "failure-action", "max-failure-ratio", "order"]
    .map((n) => `${prefix}-${n}`);
  if (!anyChanged(p, ...names)) return undefined;
  const cfg: UpdateConfig = { ...DEFAULT_UPDATE_CONFIG };
  mergeUpdateConfig(p, prefix, cfg, bad);
  return cfg;
}

function mergeUpdateConfig(p: ParsedArgs, prefix: string, cfg: UpdateConfig, bad: BadFlag) {
  const parallelism = value(p, `${prefix}-parallelism`, parseUint, bad);
  if (parallelism !== undefined) cfg.Parallelism = parallelism;
  const delay = value(p, `${prefix}-delay`, parseDuration, bad);
  if (delay !== undefined) cfg.Delay = delay;
  if (!cfg.Delay) delete cfg.Delay; // Go's omitempty
  const monitor = value(p, `${prefix}-monitor`, parseDuration, bad);
  if (monitor !== undefined) cfg.Monitor = monitor;
  if (p.changed.has(`${prefix}-failure-action`)) {
    cfg.FailureAction = p.flags[`${prefix}-failure-action`] as string;
  }
  const ratio = value(p, `${prefix}-max-failure-ratio`, parseFloat64, bad);
  if (ratio !== undefined) cfg.MaxFailureRatio = ratio;
  if (p.changed.has(`${prefix}-order`)) cfg.Order = p.flags[`${prefix}-order`] as string;
}

function restartPolicy(p: ParsedArgs, current: TaskSpec["RestartPolicy"], bad: BadFlag) {
  if (
    !anyChanged(p, "restart-condition", "restart-delay", "restart-max-attempts", "restart-window")
  ) {
    return current;
  }
  const policy = { ...(current ?? DEFAULT_RESTART) };
  if (p.changed.has("restart-condition")) policy.Condition = p.flags["restart-condition"] as string;
  const delay = value(p, "restart-delay", parseDuration, bad);
  if (delay !== undefined) policy.Delay = delay;
  const attempts = value(p, "restart-max-attempts", parseUint, bad);
  if (attempts !== undefined) policy.MaxAttempts = attempts;
  const window = value(p, "restart-window", parseDuration, bad);
  if (window !== undefined) policy.Window = window;
  return policy;
}

/** Environment from `--env-file` files and `--env` flags, later values replacing earlier keys. */
function makeEnv(p: ParsedArgs, inputs: SpecInputs): string[] {
  const all: string[] = [];
  for (const file of strs(p, "env-file")) {
    let text: string;
    try {
      text = inputs.readTextFile(file);
    } catch (err) {
      throw new CliError(`open ${file}: ${(err as Error).message}`);
    }
    for (const line of text.split(/\r?\n/)) {
      const t = line.replace(/^\s+/, "");
      if (t === "" || t.startsWith("#")) continue;
      all.push(envValue(t, inputs.env));
    }
  }
  for (const e of strs(p, "env")) all.push(envValue(e, inputs.env));
  const out: string[] = [];
  for (const e of all) {
    if (out.includes(e)) continue;
    const key = e.split("=")[0];
    const idx = out.findIndex((x) => x.startsWith(key + "="));
    if (idx >= 0) out.splice(idx, 1);
    out.push(e);
  }
  return out;
}

/**
 * Builds the spec `service create` sends, from its flags and positional arguments (IMAGE,
 * then COMMAND and ARGs). Secrets, configs and networks come back as names, for the caller to
 * resolve to ids.
 */
export function createSpec(
  p: ParsedArgs,
  inputs: SpecInputs,
): { spec: ServiceSpec; pending: PendingRefs } {
  const { bad } = inputs;
  const [image, ...args] = p.args;
  const runtime = (p.flags.runtime as string | undefined) ?? "container";
  if (runtime !== "container" && runtime !== "process") {
    bad("runtime", runtime, new Error('must be "container" or "process"'));
  }
  const mode = serviceMode(p, bad);
  const update = updateConfig(p, "update", bad);
  const rollback = updateConfig(p, "rollback", bad);
  if ((mode.ReplicatedJob || mode.GlobalJob) && (update || rollback)) {
    throw new CliError("update and rollback configuration is not supported for jobs");
  }
  const env = makeEnv(p, inputs);
  const health = healthConfig(p, bad);
  const stopGrace = value(p, "stop-grace-period", parseDuration, bad);
  const ports = values(p, "publish", parsePort, bad).flat();
  const pending: PendingRefs = {
    secrets: values(p, "secret", (v) => parseFileRef(v, "secret"), bad),
    configs: values(p, "config", (v) => parseFileRef(v, "config"), bad),
    networks: values(p, "network", parseNetwork, bad),
  };
  const resources = {
    Limits: nonZero({
      NanoCPUs: value(p, "limit-cpu", parseCpus, bad),
      MemoryBytes: value(p, "limit-memory", parseMemory, bad),
      Pids: value(p, "limit-pids", intValue, bad),
    }),
    Reservations: nonZero({
      NanoCPUs: value(p, "reserve-cpu", parseCpus, bad),
      MemoryBytes: value(p, "reserve-memory", parseMemory, bad),
    }),
  };
  const task: TaskSpec = {
    Resources: resources,
    Placement: {
      Constraints: strs(p, "constraint"),
      Preferences: values(p, "placement-pref", parsePlacementPref, bad),
      ...nonZero({ MaxReplicas: value(p, "replicas-max-per-node", parseUint, bad) }),
    },
  };
  const restart = restartPolicy(p, undefined, bad);
  if (restart) task.RestartPolicy = restart;
  const stopSignal = (p.flags["stop-signal"] as string | undefined) ?? "";
  const dir = (p.flags.workdir as string | undefined) ?? "";
  if (runtime === "process") {
    for (const flag of CONTAINER_ONLY) {
      if (p.changed.has(flag)) {
        throw new CliError(`--${flag} cannot be used with --runtime process`);
      }
    }
    const proc: ProcessSpec = {
      Command: image,
      Args: args,
      Env: env,
      Dir: dir,
      StopSignal: stopSignal,
    };
    if (stopGrace !== undefined) proc.StopGracePeriod = stopGrace;
    if (health) proc.Healthcheck = health;
    task.Runtime = "process";
    task.ProcessSpec = proc;
  } else {
    const container: ContainerSpec = {
      Image: imageWithTag(image),
      Labels: kvMap(strs(p, "container-label")),
      Command: value(p, "entrypoint", shellSplit, bad) ?? [],
      Args: args,
      Hostname: (p.flags.hostname as string | undefined) ?? "",
      Env: env,
      Dir: dir,
      User: (p.flags.user as string | undefined) ?? "",
      Mounts: values(p, "mount", parseMount, bad),
      StopSignal: stopSignal,
      Init: p.flags.init === true,
    };
    if (stopGrace !== undefined) container.StopGracePeriod = stopGrace;
    if (health) container.Healthcheck = health;
    task.ContainerSpec = container;
  }
  const spec: ServiceSpec = {
    Name: (p.flags.name as string | undefined) ?? "",
    Labels: kvMap(strs(p, "label")),
    TaskTemplate: task,
    Mode: mode,
    EndpointSpec: {
      Mode: ((p.flags["endpoint-mode"] as string | undefined) || "vip").toLowerCase(),
      Ports: ports,
    },
  };
  if (update) spec.UpdateConfig = update;
  if (rollback) spec.RollbackConfig = rollback;
  return { spec: prune(spec) as ServiceSpec, pending };
}

/** Keeps the entries that are set and not zero (Go's `omitempty` on numbers). */
function nonZero(o: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== 0) out[k] = v;
  return out;
}

/** Drops empty strings, lists and maps, as Go's `omitempty` does (keeps numbers and booleans). */
export function prune(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(prune);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined || x === "") continue;
      if (Array.isArray(x) && x.length === 0) continue;
      const pruned = prune(x);
      if (
        pruned !== null && typeof pruned === "object" && !Array.isArray(pruned) &&
        Object.keys(pruned).length === 0 && k !== "Limits" && k !== "Reservations" &&
        k !== "Placement" && k !== "Global" && k !== "GlobalJob"
      ) continue;
      out[k] = pruned;
    }
    return out;
  }
  return v;
}

/** Whether `service update` was given anything besides `--rollback`, `--detach` and `--quiet`. */
export function otherThanRollback(p: ParsedArgs): boolean {
  return [...p.changed].some((n) => !["rollback", "detach", "quiet", "host"].includes(n));
}

function envKey(e: string): string {
  const eq = e.indexOf("=");
  return eq < 0 ? e : e.slice(0, eq);
}

function portKey(p: PortConfig): string {
  return `${p.PublishedPort ?? 0}:${p.TargetPort ?? 0}/${p.Protocol ?? ""}/${p.PublishMode ?? ""}`;
}

/**
 * Applies `service update` flags to a service's current spec, in place, as Docker's
 * `updateService` does. Secrets, configs and networks to add come back for resolving.
 */
export function applyUpdate(
  spec: ServiceSpec,
  p: ParsedArgs,
  inputs: SpecInputs,
): PendingRefs & { removeSecrets: string[]; removeConfigs: string[]; removeNetworks: string[] } {
  const { bad } = inputs;
  const task = spec.TaskTemplate;
  const isProcess = task.Runtime === "process";
  if (isProcess) {
    for (
      const flag of [
        ...CONTAINER_ONLY,
        "mount-add",
        "mount-rm",
        "container-label-add",
        "container-label-rm",
      ]
    ) {
      if (p.changed.has(flag)) {
        throw new CliError(`--${flag} cannot be used with a service of runtime process`);
      }
    }
  }
  const proc = isProcess ? (task.ProcessSpec ??= { Command: "" }) : undefined;
  const cspec = isProcess ? undefined : (task.ContainerSpec ??= { Image: "" });
  const target: ContainerSpec | ProcessSpec = (proc ?? cspec)!;

  // Labels.
  if (spec.Labels && p.changed.has("label-rm")) {
    for (const k of strs(p, "label-rm")) delete spec.Labels[k];
  }
  if (p.changed.has("label-add")) {
    spec.Labels = { ...(spec.Labels ?? {}), ...kvMap(strs(p, "label-add")) };
  }
  if (cspec) {
    if (cspec.Labels && p.changed.has("container-label-rm")) {
      for (const k of strs(p, "container-label-rm")) delete cspec.Labels[k];
    }
    if (p.changed.has("container-label-add")) {
      cspec.Labels = { ...(cspec.Labels ?? {}), ...kvMap(strs(p, "container-label-add")) };
    }
  }

  // What runs.
  if (p.changed.has("image")) {
    if (proc) proc.Command = p.flags.image as string;
    else cspec!.Image = imageWithTag(p.flags.image as string);
  }
  const args = value(p, "args", shellSplit, bad);
  if (args !== undefined) target.Args = args;
  const entrypoint = value(p, "entrypoint", shellSplit, bad);
  if (entrypoint !== undefined && cspec) cspec.Command = entrypoint;

  // Environment: removals, then additions replacing a key in place or appending it.
  const envRm = new Set(strs(p, "env-rm"));
  let env = (target.Env ?? []).filter((e) => !envRm.has(envKey(e)));
  for (const raw of strs(p, "env-add")) {
    const e = envValue(raw, inputs.env);
    const idx = env.findIndex((x) => envKey(x) === envKey(e));
    if (idx >= 0) env[idx] = e;
    else env = [...env, e];
  }
  if (anyChanged(p, "env-add", "env-rm")) target.Env = env;

  if (p.changed.has("workdir")) target.Dir = p.flags.workdir as string;
  if (cspec) {
    if (p.changed.has("user")) cspec.User = p.flags.user as string;
    if (p.changed.has("hostname")) cspec.Hostname = p.flags.hostname as string;
    if (p.changed.has("init")) cspec.Init = p.flags.init === true;
    if (anyChanged(p, "mount-add", "mount-rm")) {
      const byTarget = new Map<string, Mount>();
      for (const m of values(p, "mount-add", parseMount, bad)) {
        if (byTarget.has(m.Target)) throw new CliError("duplicate mount target");
        byTarget.set(m.Target, m);
      }
      for (const m of cspec.Mounts ?? []) if (!byTarget.has(m.Target)) byTarget.set(m.Target, m);
      const rm = new Set(strs(p, "mount-rm"));
      cspec.Mounts = [...byTarget.values()].filter((m) => !rm.has(m.Target)).sort((a, b) =>
        (a.Source ?? "") === (b.Source ?? "")
          ? a.Target.localeCompare(b.Target)
          : (a.Source ?? "").localeCompare(b.Source ?? "")
      );
    }
  }

  // Resources.
  if (anyChanged(p, "limit-cpu", "limit-memory", "limit-pids")) {
    task.Resources ??= {};
    const limits = (task.Resources.Limits ??= {});
    const cpu = value(p, "limit-cpu", parseCpus, bad);
    if (cpu !== undefined) limits.NanoCPUs = cpu;
    const mem = value(p, "limit-memory", parseMemory, bad);
    if (mem !== undefined) limits.MemoryBytes = mem;
    const pids = value(p, "limit-pids", intValue, bad);
    if (pids !== undefined) limits.Pids = pids;
  }
  if (anyChanged(p, "reserve-cpu", "reserve-memory")) {
    task.Resources ??= {};
    const res = (task.Resources.Reservations ??= {});
    const cpu = value(p, "reserve-cpu", parseCpus, bad);
    if (cpu !== undefined) res.NanoCPUs = cpu;
    const mem = value(p, "reserve-memory", parseMemory, bad);
    if (mem !== undefined) res.MemoryBytes = mem;
  }

  const stopGrace = value(p, "stop-grace-period", parseDuration, bad);
  if (stopGrace !== undefined) target.StopGracePeriod = stopGrace;
  if (p.changed.has("stop-signal")) target.StopSignal = p.flags["stop-signal"] as string;

  const restart = restartPolicy(p, task.RestartPolicy, bad);
  if (restart) task.RestartPolicy = restart;

  // Placement.
  if (anyChanged(p, "constraint-add", "constraint-rm")) {
    const placement = (task.Placement ??= {});
    const rm = new Set(strs(p, "constraint-rm"));
    placement.Constraints = [...(placement.Constraints ?? []), ...strs(p, "constraint-add")]
      .filter((c) => !rm.has(c)).sort();
  }
  if (anyChanged(p, "placement-pref-add", "placement-pref-rm")) {
    const placement = (task.Placement ??= {});
    const rm = values(p, "placement-pref-rm", parsePlacementPref, bad).map((x) =>
      x.Spread.SpreadDescriptor
    );
    placement.Preferences = [
      ...(placement.Preferences ?? []).filter((x) =>
        !(x.Spread && rm.includes(x.Spread.SpreadDescriptor))
      ),
      ...values(p, "placement-pref-add", parsePlacementPref, bad),
    ];
  }
  const maxReplicas = value(p, "replicas-max-per-node", parseUint, bad);
  if (maxReplicas !== undefined) (task.Placement ??= {}).MaxReplicas = maxReplicas;

  // Mode.
  const replicas = value(p, "replicas", parseUint, bad);
  if (replicas !== undefined) {
    if (!spec.Mode?.Replicated) {
      throw new CliError("replicas can only be used with replicated mode");
    }
    spec.Mode.Replicated.Replicas = replicas;
  }
  const maxConcurrent = value(p, "max-concurrent", parseUint, bad);
  if (maxConcurrent !== undefined) {
    if (!spec.Mode?.ReplicatedJob) {
      throw new CliError("max-concurrent can only be used with replicated-job mode");
    }
    spec.Mode.ReplicatedJob.MaxConcurrent = maxConcurrent;
  }

  // Update and rollback configs.
  for (const prefix of ["update", "rollback"] as const) {
    const names = [
      "parallelism",
      "delay",
      "monitor",
      "failure-action",
      "max-failure-ratio",
      "order",
    ]
      .map((n) => `${prefix}-${n}`);
    if (!anyChanged(p, ...names)) continue;
    const key = prefix === "update" ? "UpdateConfig" : "RollbackConfig";
    const cfg: UpdateConfig = { ...DEFAULT_UPDATE_CONFIG, ...(spec[key] ?? {}) };
    mergeUpdateConfig(p, prefix, cfg, bad);
    spec[key] = cfg;
  }

  if (p.changed.has("endpoint-mode")) {
    (spec.EndpointSpec ??= {}).Mode = p.flags["endpoint-mode"] as string;
  }

  // Ports: Docker keys them by "published:target/protocol/mode".
  if (anyChanged(p, "publish-add", "publish-rm")) {
    const endpoint = (spec.EndpointSpec ??= {});
    const set = new Map<string, PortConfig>();
    for (const port of endpoint.Ports ?? []) {
      if (!set.has(portKey(port))) set.set(portKey(port), port);
    }
    const rm = values(p, "publish-rm", parsePort, bad).flat();
    const kept = [...set.values()].filter((port) =>
      !rm.some((r) =>
        (port.Protocol || "tcp") === (r.Protocol || "tcp") && port.TargetPort === r.TargetPort &&
        (port.PublishMode || "ingress") === (r.PublishMode || "ingress")
      )
    );
    for (const port of values(p, "publish-add", parsePort, bad).flat()) {
      if (!set.has(portKey(port))) kept.push(port);
    }
    endpoint.Ports = kept.sort((
      a,
      b,
    ) => (portKey(a) < portKey(b) ? -1 : portKey(a) > portKey(b) ? 1 : 0));
  }

  if (p.flags.force === true) task.ForceUpdate = (task.ForceUpdate ?? 0) + 1;

  // Health check.
  if (
    anyChanged(
      p,
      "no-healthcheck",
      "health-cmd",
      "health-interval",
      "health-retries",
      "health-timeout",
      "health-start-period",
    )
  ) {
    const hc: HealthConfig = { ...(target.Healthcheck ?? {}) };
    if (p.flags["no-healthcheck"] === true) {
      if (
        anyChanged(
          p,
          "health-cmd",
          "health-interval",
          "health-retries",
          "health-timeout",
          "health-start-period",
        )
      ) {
        throw new CliError("--no-healthcheck conflicts with --health-* options");
      }
      target.Healthcheck = { Test: ["NONE"] };
    } else {
      if (hc.Test?.[0] === "NONE") delete hc.Test;
      const interval = value(p, "health-interval", positiveDuration, bad);
      if (interval !== undefined) hc.Interval = interval;
      const timeout = value(p, "health-timeout", positiveDuration, bad);
      if (timeout !== undefined) hc.Timeout = timeout;
      const start = value(p, "health-start-period", positiveDuration, bad);
      if (start !== undefined) hc.StartPeriod = start;
      const retries = value(p, "health-retries", intValue, bad);
      if (retries !== undefined) hc.Retries = retries;
      if (p.changed.has("health-cmd")) {
        const cmd = p.flags["health-cmd"] as string;
        if (cmd !== "") hc.Test = ["CMD-SHELL", cmd];
        else delete hc.Test;
      }
      target.Healthcheck = hc;
    }
  }

  return {
    secrets: values(p, "secret-add", (v) => parseFileRef(v, "secret"), bad),
    configs: values(p, "config-add", (v) => parseFileRef(v, "config"), bad),
    networks: values(p, "network-add", parseNetwork, bad),
    removeSecrets: strs(p, "secret-rm"),
    removeConfigs: strs(p, "config-rm"),
    removeNetworks: strs(p, "network-rm"),
  };
}

/** Secret references for requests, given the ids of secrets by name (Docker's `ParseSecrets`). */
export function secretRefs(
  requests: readonly FileRefRequest[],
  idsByName: ReadonlyMap<string, string>,
): SecretReference[] {
  const seen = new Set<string>();
  const out: SecretReference[] = [];
  for (const r of requests) {
    if (seen.has(r.target)) {
      throw new CliError(`duplicate secret target for ${r.source} not allowed`);
    }
    seen.add(r.target);
    const id = idsByName.get(r.source);
    if (id === undefined) throw new CliError(`secret not found: ${r.source}`);
    out.push({
      File: { Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode },
      SecretID: id,
      SecretName: r.source,
    });
  }
  return out;
}

/** Config references for requests, given the ids of configs by name (Docker's `ParseConfigs`). */
export function configRefs(
  requests: readonly FileRefRequest[],
  idsByName: ReadonlyMap<string, string>,
): ConfigReference[] {
  const seen = new Set<string>();
  const out: ConfigReference[] = [];
  for (const r of requests) {
    if (seen.has(r.target)) {
      throw new CliError(`duplicate config target for ${r.source} not allowed`);
    }
    seen.add(r.target);
    const id = idsByName.get(r.source);
    if (id === undefined) throw new CliError(`config not found: ${r.source}`);
    out.push({
      File: { Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode },
      ConfigID: id,
      ConfigName: r.source,
    });
  }
  return out;
}
