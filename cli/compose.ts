/**
 * Compose files (version 3) for `shoal stack deploy`: parsed with the `yaml` package, variables
 * interpolated (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`), every key
 * checked (an unknown or invalid one is an error naming its path: `services.web.deploy.replicas:
 * must be a whole number`), and converted into Docker API bodies the way `docker stack deploy`
 * converts them: names prefixed with the stack (`<stack>_<name>`), everything labelled
 * `com.docker.stack.namespace=<stack>`, services on `<stack>_default` unless they name networks.
 *
 * Supported per service: `image`, `command`, `entrypoint`, `environment`, `env_file`, `ports`,
 * `networks`, `secrets`, `configs`, `healthcheck`, `labels`, `hostname`, `user`, `working_dir`,
 * `stop_signal`, `stop_grace_period`, and `deploy` (`mode`, `replicas`, `placement`, `resources`,
 * `restart_policy`, `update_config`, `rollback_config`, `labels`, `endpoint_mode: vip`). Keys
 * `docker stack deploy` ignores (`build`, `depends_on`, `links`, `restart`, `container_name`, ...)
 * are ignored with the same warning. Top level: `version`, `services`, `networks`, `secrets`,
 * `configs` (from `file`, or `external`), and `x-*` extension fields.
 *
 * **Shoal's process runtime**: a service with `x-shoal: {runtime: process}` (or every service,
 * with a top-level `x-shoal: {runtime: process}`) runs a plain program with no image: `entrypoint`
 * (else `command`) names the program and its arguments, and `environment`, `working_dir`,
 * `stop_signal`, `stop_grace_period`, `healthcheck`, `secrets` and `configs` apply as to a
 * container. A service may say `x-shoal: {runtime: container}` to opt out of a file default.
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { dirname, isAbsolute, join } from "node:path";
import type {
  ConfigReference,
  HealthConfig,
  PortConfig,
  SecretReference,
  ServiceSpec,
  UpdateConfig,
} from "./docker_types.ts";
import { parseCpus, parseDuration, parseMemory } from "./units.ts";
import { shellSplit } from "./service_spec.ts";

/** The label that ties objects to their stack (Docker's). */
export const STACK_LABEL = "com.docker.stack.namespace";
/** The image label Docker puts on stack services. */
export const STACK_IMAGE_LABEL = "com.docker.stack.image";

/** A compose file that is not valid: the message names the key and the problem. */
export class ComposeError extends Error {
  /** `path`: the key, dotted (`services.web.ports.0`). */
  constructor(path: string, problem: string) {
    super(path ? `${path}: ${problem}` : problem);
    this.name = "ComposeError";
  }
}

/** A network the stack uses. */
export interface StackNetwork {
  /** The full name (`<stack>_<name>`, or the external name). */
  name: string;
  external: boolean;
  /** The `POST /networks/create` body (not for external networks). */
  spec?: Record<string, unknown>;
}

/** A secret or config the stack uses. */
export interface StackFile {
  name: string;
  external: boolean;
  /** Contents (not for external ones). */
  data?: Uint8Array;
  labels: Record<string, string>;
}

/** A service of the stack: its Docker spec, with secret and config references by name only. */
export interface StackService {
  name: string;
  spec: ServiceSpec;
}

/** Everything a deploy creates or updates. */
export interface StackPlan {
  networks: StackNetwork[];
  secrets: StackFile[];
  configs: StackFile[];
  services: StackService[];
  /** Warnings to print, as Docker's (`Ignoring unsupported options: build`). */
  warnings: string[];
}

/** What converting a compose file needs. */
export interface ComposeContext {
  /** The stack's name. */
  stack: string;
  /** Directory relative paths (`file:`, `env_file:`) start from. */
  workingDir: string;
  /** Environment for interpolation. */
  env: (name: string) => string | undefined;
  /** Reads a file (secrets, configs, env files). */
  readFile: (path: string) => Promise<Uint8Array>;
}

type Obj = Record<string, unknown>;

const TOP_KEYS = ["version", "services", "networks", "secrets", "configs", "volumes", "name"];
const SERVICE_KEYS = [
  "image",
  "command",
  "entrypoint",
  "environment",
  "env_file",
  "ports",
  "networks",
  "secrets",
  "configs",
  "healthcheck",
  "labels",
  "hostname",
  "user",
  "working_dir",
  "stop_signal",
  "stop_grace_period",
  "deploy",
];
/** What `docker stack deploy` ignores with "Ignoring unsupported options". */
const IGNORED_SERVICE_KEYS = [
  "build",
  "cap_add",
  "cap_drop",
  "cgroup_parent",
  "container_name",
  "depends_on",
  "devices",
  "external_links",
  "links",
  "network_mode",
  "restart",
  "security_opt",
  "userns_mode",
];
const DEPLOY_KEYS = [
  "mode",
  "replicas",
  "placement",
  "resources",
  "restart_policy",
  "update_config",
  "rollback_config",
  "labels",
  "endpoint_mode",
];

/** Parses a compose file's text (interpolating variables) into a checked plain object. */
export function parseComposeText(text: string, env: ComposeContext["env"]): Obj {
  let doc: unknown;
  try {
    // YAML 1.1, as Docker's go-yaml: `mode: 0400` is octal.
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true, version: "1.1" });
  } catch (err) {
    throw new ComposeError("", `the compose file is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) throw new ComposeError("", "the compose file is empty");
  const root = object(interpolate(doc, env, ""), "");
  for (const key of Object.keys(root)) {
    if (!TOP_KEYS.includes(key) && !key.startsWith("x-")) {
      throw new ComposeError(
        key,
        `unknown top-level key (a compose file has ${TOP_KEYS.join(", ")} and x-* extensions)`,
      );
    }
  }
  const version = root.version;
  if (version !== undefined && !/^3(\.\d+)?$/.test(String(version))) {
    throw new ComposeError(
      "version",
      `unsupported compose file version ${JSON.stringify(version)}: stacks take version 3 files`,
    );
  }
  if (root.volumes !== undefined && Object.keys(object(root.volumes, "volumes")).length > 0) {
    throw new ComposeError("volumes", "volumes are not supported by Shoal");
  }
  return root;
}

/** Replaces `${VAR}` and friends in every string of `value`. */
function interpolate(value: unknown, env: ComposeContext["env"], path: string): unknown {
  if (typeof value === "string") return interpolateString(value, env, path);
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${path}.${i}`));
  if (value !== null && typeof value === "object") {
    const out: Obj = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = interpolate(v, env, path ? `${path}.${k}` : k);
    }
    return out;
  }
  return value;
}

/** Compose's interpolation of one string. */
export function interpolateString(s: string, env: ComposeContext["env"], path = ""): string {
  return s.replace(
    /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (whole, braced?: string, op?: string, arg?: string, bare?: string) => {
      if (whole === "$$") return "$";
      const name = braced ?? bare!;
      const value = env(name);
      if (op === undefined) return value ?? "";
      const unset = op.startsWith(":") ? !value : value === undefined;
      if (op.endsWith("-")) return unset ? arg ?? "" : value!;
      if (unset) {
        throw new ComposeError(path, `required variable ${name} is missing a value: ${arg ?? ""}`);
      }
      return value!;
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Small checked readers

function object(v: unknown, path: string): Obj {
  if (v === null || v === undefined) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new ComposeError(path, "must be a mapping");
  return v as Obj;
}

function checkKeys(o: Obj, allowed: readonly string[], path: string, what: string): void {
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key) && !key.startsWith("x-")) {
      throw new ComposeError(
        `${path}.${key}`,
        `unknown key in ${what} (supported: ${allowed.join(", ")})`,
      );
    }
  }
}

function string(v: unknown, path: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new ComposeError(path, "must be a string");
}

function uint(v: unknown, path: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    throw new ComposeError(path, `must be a whole number, got ${JSON.stringify(v)}`);
  }
  return n;
}

function strings(v: unknown, path: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new ComposeError(path, "must be a list of strings");
  return v.map((x, i) => string(x, `${path}.${i}`)!);
}

/** A string (split as a shell would) or a list. */
function command(v: unknown, path: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return shellSplit(v);
  return strings(v, path);
}

function duration(v: unknown, path: string): number | undefined {
  const s = string(v, path);
  if (s === undefined) return undefined;
  try {
    return parseDuration(s);
  } catch (err) {
    throw new ComposeError(path, (err as Error).message);
  }
}

/** `KEY=VALUE` pairs from a mapping or a list (Docker's sorted order for a mapping). */
function keyValues(v: unknown, path: string, env: ComposeContext["env"]): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) {
    return v.flatMap((x, i) => {
      const s = string(x, `${path}.${i}`)!;
      if (s.includes("=")) return [s];
      const value = env(s);
      return value === undefined ? [] : [`${s}=${value}`];
    });
  }
  const o = object(v, path);
  return Object.keys(o).sort().flatMap((k) => {
    const value = o[k];
    if (value === null || value === undefined) {
      const fromEnv = env(k);
      return fromEnv === undefined ? [] : [`${k}=${fromEnv}`];
    }
    return [`${k}=${string(value, `${path}.${k}`)}`];
  });
}

function labels(v: unknown, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      const s = string(x, `${path}.${i}`)!;
      const eq = s.indexOf("=");
      out[eq < 0 ? s : s.slice(0, eq)] = eq < 0 ? "" : s.slice(eq + 1);
    });
    return out;
  }
  for (const [k, value] of Object.entries(object(v, path))) {
    out[k] = string(value, `${path}.${k}`) ?? "";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Conversion

/** Converts a parsed compose file into what a deploy creates (reading secret and config files). */
export async function composePlan(root: Obj, ctx: ComposeContext): Promise<StackPlan> {
  const stack = ctx.stack;
  const scoped = (name: string) => `${stack}_${name}`;
  const stackLabels = { [STACK_LABEL]: stack };
  const warnings: string[] = [];
  const services = object(root.services, "services");
  if (Object.keys(services).length === 0) {
    throw new ComposeError("services", "a stack needs at least one service");
  }
  const fileDefaults = object(root["x-shoal"], "x-shoal");
  checkKeys(fileDefaults, ["runtime"], "x-shoal", "x-shoal");

  // Networks.
  const declaredNetworks = object(root.networks, "networks");
  const networks = new Map<string, StackNetwork>();
  for (const [key, raw] of Object.entries(declaredNetworks)) {
    const path = `networks.${key}`;
    const n = object(raw, path);
    checkKeys(
      n,
      ["driver", "driver_opts", "attachable", "internal", "labels", "external", "name", "ipam"],
      path,
      "a network",
    );
    const external = externalOf(n.external, path);
    const name = string(n.name, `${path}.name`) ?? external.name ??
      (external.is ? key : scoped(key));
    if (external.is) {
      networks.set(key, { name, external: true });
      continue;
    }
    const driver = string(n.driver, `${path}.driver`) ?? "overlay";
    const spec: Record<string, unknown> = {
      Name: name,
      Driver: driver,
      Labels: { ...labels(n.labels, `${path}.labels`), ...stackLabels },
      Scope: "swarm",
    };
    if (n.attachable !== undefined) spec.Attachable = n.attachable === true;
    if (n.internal !== undefined) spec.Internal = n.internal === true;
    if (n.driver_opts !== undefined) spec.Options = labels(n.driver_opts, `${path}.driver_opts`);
    if (n.ipam !== undefined) {
      const ipam = object(n.ipam, `${path}.ipam`);
      checkKeys(ipam, ["driver", "config"], `${path}.ipam`, "ipam");
      const config = (Array.isArray(ipam.config) ? ipam.config : []).map((c, i) => {
        const o = object(c, `${path}.ipam.config.${i}`);
        checkKeys(o, ["subnet"], `${path}.ipam.config.${i}`, "an ipam config");
        return { Subnet: string(o.subnet, `${path}.ipam.config.${i}.subnet`) };
      });
      spec.IPAM = { Config: config };
    }
    networks.set(key, { name, external: false, spec });
  }

  // Secrets and configs.
  const files = async (kind: "secrets" | "configs") => {
    const out = new Map<string, StackFile>();
    for (const [key, raw] of Object.entries(object(root[kind], kind))) {
      const path = `${kind}.${key}`;
      const o = object(raw, path);
      checkKeys(o, ["file", "external", "name", "labels"], path, `a ${kind.slice(0, -1)}`);
      const external = externalOf(o.external, path);
      const name = string(o.name, `${path}.name`) ?? external.name ??
        (external.is ? key : scoped(key));
      if (external.is) {
        out.set(key, { name, external: true, labels: {} });
        continue;
      }
      const file = string(o.file, `${path}.file`);
      if (file === undefined) {
        throw new ComposeError(path, "must name a file (file: ./path) or be external: true");
      }
      const full = isAbsolute(file) ? file : join(ctx.workingDir, file);
      let data: Uint8Array;
      try {
        data = await ctx.readFile(full);
      } catch (err) {
        throw new ComposeError(`${path}.file`, `cannot read ${full}: ${(err as Error).message}`);
      }
      out.set(key, {
        name,
        external: false,
        data,
        labels: { ...labels(o.labels, `${path}.labels`), ...stackLabels },
      });
    }
    return out;
  };
  const secrets = await files("secrets");
  const configs = await files("configs");

  // Services.
  const out: StackService[] = [];
  const ignored = new Set<string>();
  let usesDefault = false;
  for (const key of Object.keys(services).sort()) {
    const path = `services.${key}`;
    const s = object(services[key], path);
    for (const k of Object.keys(s)) if (IGNORED_SERVICE_KEYS.includes(k)) ignored.add(k);
    checkKeys(s, [...SERVICE_KEYS, ...IGNORED_SERVICE_KEYS], path, "a service");
    const ext = object(s["x-shoal"], `${path}.x-shoal`);
    checkKeys(ext, ["runtime"], `${path}.x-shoal`, "x-shoal");
    const runtime = string(ext.runtime, `${path}.x-shoal.runtime`) ??
      string(fileDefaults.runtime, "x-shoal.runtime") ?? "container";
    if (runtime !== "container" && runtime !== "process") {
      throw new ComposeError(`${path}.x-shoal.runtime`, 'must be "container" or "process"');
    }

    // Networks of the service.
    const attachments: { Target: string; Aliases?: string[] }[] = [];
    if (s.networks === undefined || s.networks === null) {
      usesDefault = true;
      attachments.push({ Target: scoped("default"), Aliases: [key] });
    } else {
      const entries: [string, unknown][] = Array.isArray(s.networks)
        ? s.networks.map((n, i) => [string(n, `${path}.networks.${i}`)!, null])
        : Object.entries(object(s.networks, `${path}.networks`));
      for (const [net, opts] of entries) {
        const np = `${path}.networks.${net}`;
        const o = object(opts, np);
        checkKeys(o, ["aliases"], np, "a service network");
        let target: string;
        if (net === "default" && !networks.has("default")) {
          usesDefault = true;
          target = scoped("default");
        } else {
          const n = networks.get(net);
          if (n === undefined) {
            throw new ComposeError(np, `service "${key}" refers to undefined network ${net}`);
          }
          target = n.name;
        }
        attachments.push({
          Target: target,
          Aliases: [key, ...(strings(o.aliases, `${np}.aliases`) ?? [])],
        });
      }
    }

    const fileRefs = <R extends SecretReference | ConfigReference>(
      kind: "secrets" | "configs",
      declared: Map<string, StackFile>,
    ): R[] | undefined => {
      const list = s[kind];
      if (list === undefined || list === null) return undefined;
      if (!Array.isArray(list)) throw new ComposeError(`${path}.${kind}`, "must be a list");
      return list.map((item, i) => {
        const ip = `${path}.${kind}.${i}`;
        const long = typeof item === "object" && item !== null;
        const o = long ? object(item, ip) : { source: string(item, ip) };
        if (long) checkKeys(o, ["source", "target", "uid", "gid", "mode"], ip, `a ${kind} entry`);
        const source = string(o.source, `${ip}.source`);
        if (source === undefined) throw new ComposeError(`${ip}.source`, "must be given");
        const f = declared.get(source);
        if (f === undefined) {
          throw new ComposeError(
            ip,
            `service "${key}" refers to undefined ${kind.slice(0, -1)} ${source}`,
          );
        }
        const target = string(o.target, `${ip}.target`) ??
          (kind === "configs" ? `/${source}` : source);
        const mode = o.mode === undefined ? 0o444 : uint(o.mode, `${ip}.mode`)!;
        const fileSpec = {
          Name: target,
          UID: string(o.uid, `${ip}.uid`) ?? "0",
          GID: string(o.gid, `${ip}.gid`) ?? "0",
          Mode: mode,
        };
        return (kind === "secrets"
          ? { File: fileSpec, SecretID: "", SecretName: f.name }
          : { File: fileSpec, ConfigID: "", ConfigName: f.name }) as R;
      });
    };
    const secretRefs = fileRefs<SecretReference>("secrets", secrets);
    const configRefs = fileRefs<ConfigReference>("configs", configs);

    const env = keyValues(s.environment, `${path}.environment`, ctx.env);
    const envFiles = s.env_file === undefined
      ? []
      : typeof s.env_file === "string"
      ? [s.env_file]
      : strings(s.env_file, `${path}.env_file`)!;
    const envFromFiles: string[] = [];
    for (const f of envFiles) {
      const full = isAbsolute(f) ? f : join(ctx.workingDir, f);
      let text: string;
      try {
        text = new TextDecoder().decode(await ctx.readFile(full));
      } catch (err) {
        throw new ComposeError(
          `${path}.env_file`,
          `cannot read ${full}: ${(err as Error).message}`,
        );
      }
      for (const line of text.split("\n")) {
        const t = line.trim();
        if (t !== "" && !t.startsWith("#")) envFromFiles.push(t);
      }
    }
    const allEnv = [...envFromFiles, ...(env ?? [])];
    const health = healthcheck(s.healthcheck, `${path}.healthcheck`);
    const stopGrace = duration(s.stop_grace_period, `${path}.stop_grace_period`);
    const stopSignal = string(s.stop_signal, `${path}.stop_signal`);
    const dir = string(s.working_dir, `${path}.working_dir`);
    const entrypoint = command(s.entrypoint, `${path}.entrypoint`);
    const cmd = command(s.command, `${path}.command`);
    const image = string(s.image, `${path}.image`);
    const containerLabels = { ...labels(s.labels, `${path}.labels`), ...stackLabels };

    const deploy = object(s.deploy, `${path}.deploy`);
    checkKeys(deploy, DEPLOY_KEYS, `${path}.deploy`, "deploy");
    const dp = `${path}.deploy`;
    const mode = string(deploy.mode, `${dp}.mode`) ?? "replicated";
    if (mode !== "replicated" && mode !== "global") {
      throw new ComposeError(`${dp}.mode`, `must be "replicated" or "global", got "${mode}"`);
    }
    const replicas = uint(deploy.replicas, `${dp}.replicas`);
    if (mode === "global" && replicas !== undefined) {
      throw new ComposeError(`${dp}.replicas`, "cannot be set for a global service");
    }
    const endpointMode = string(deploy.endpoint_mode, `${dp}.endpoint_mode`);
    if (endpointMode !== undefined && endpointMode !== "vip") {
      throw new ComposeError(`${dp}.endpoint_mode`, `only "vip" is supported by Shoal`);
    }

    const spec: ServiceSpec = {
      Name: scoped(key),
      Labels: {
        ...labels(deploy.labels, `${dp}.labels`),
        ...stackLabels,
        ...(image !== undefined && runtime === "container" ? { [STACK_IMAGE_LABEL]: image } : {}),
      },
      TaskTemplate: {},
      Mode: mode === "global" ? { Global: {} } : { Replicated: { Replicas: replicas ?? 1 } },
    };
    const t = spec.TaskTemplate;
    if (runtime === "process") {
      if (image !== undefined) {
        throw new ComposeError(
          `${path}.image`,
          "a process service (x-shoal runtime process) has no image",
        );
      }
      for (const k of ["hostname", "user", "labels"] as const) {
        if (s[k] !== undefined) {
          throw new ComposeError(`${path}.${k}`, "is not supported by the process runtime");
        }
      }
      const argv = [...(entrypoint ?? []), ...(cmd ?? [])];
      if (argv.length === 0) {
        throw new ComposeError(
          `${path}.command`,
          "a process service needs a command (the program and its arguments)",
        );
      }
      t.Runtime = "process";
      t.ProcessSpec = prune({
        Command: argv[0],
        Args: argv.slice(1),
        Env: allEnv,
        Dir: dir,
        StopSignal: stopSignal,
        StopGracePeriod: stopGrace,
        Healthcheck: health,
        Secrets: secretRefs,
        Configs: configRefs,
      }) as NonNullable<typeof t.ProcessSpec>;
    } else {
      if (image === undefined) {
        throw new ComposeError(
          `${path}.image`,
          'must be given (or run a program with "x-shoal: {runtime: process}")',
        );
      }
      t.ContainerSpec = prune({
        Image: image,
        Labels: containerLabels,
        Command: entrypoint,
        Args: cmd,
        Hostname: string(s.hostname, `${path}.hostname`),
        Env: allEnv,
        Dir: dir,
        User: string(s.user, `${path}.user`),
        StopSignal: stopSignal,
        StopGracePeriod: stopGrace,
        Healthcheck: health,
        Secrets: secretRefs,
        Configs: configRefs,
      }) as NonNullable<typeof t.ContainerSpec>;
    }
    t.Networks = attachments;

    const placement = object(deploy.placement, `${dp}.placement`);
    checkKeys(
      placement,
      ["constraints", "preferences", "max_replicas_per_node"],
      `${dp}.placement`,
      "placement",
    );
    const prefs = placement.preferences === undefined
      ? undefined
      : (Array.isArray(placement.preferences) ? placement.preferences : [placement.preferences])
        .map((p, i) => {
          const pp = `${dp}.placement.preferences.${i}`;
          const o = object(p, pp);
          checkKeys(o, ["spread"], pp, "a placement preference");
          const spread = string(o.spread, `${pp}.spread`);
          if (!spread) throw new ComposeError(`${pp}.spread`, "must name a label");
          return { Spread: { SpreadDescriptor: spread } };
        });
    t.Placement = prune({
      Constraints: strings(placement.constraints, `${dp}.placement.constraints`),
      Preferences: prefs,
      MaxReplicas: uint(placement.max_replicas_per_node, `${dp}.placement.max_replicas_per_node`),
    }) as typeof t.Placement;

    const resources = object(deploy.resources, `${dp}.resources`);
    checkKeys(resources, ["limits", "reservations"], `${dp}.resources`, "resources");
    const res = (kind: "limits" | "reservations") => {
      const rp = `${dp}.resources.${kind}`;
      const o = object(resources[kind], rp);
      checkKeys(o, ["cpus", "memory"], rp, kind);
      const cpus = string(o.cpus, `${rp}.cpus`);
      const memory = string(o.memory, `${rp}.memory`);
      const wrap = <T>(p: string, f: () => T) => {
        try {
          return f();
        } catch (err) {
          throw new ComposeError(p, (err as Error).message);
        }
      };
      return prune({
        NanoCPUs: cpus === undefined ? undefined : wrap(`${rp}.cpus`, () => parseCpus(cpus)),
        MemoryBytes: memory === undefined
          ? undefined
          : wrap(`${rp}.memory`, () => parseMemory(memory)),
      });
    };
    t.Resources = prune({
      Limits: res("limits"),
      Reservations: res("reservations"),
    }) as typeof t.Resources;

    if (deploy.restart_policy !== undefined) {
      const rp = `${dp}.restart_policy`;
      const o = object(deploy.restart_policy, rp);
      checkKeys(o, ["condition", "delay", "max_attempts", "window"], rp, "restart_policy");
      const condition = string(o.condition, `${rp}.condition`);
      if (condition !== undefined && !["none", "on-failure", "any"].includes(condition)) {
        throw new ComposeError(`${rp}.condition`, 'must be "none", "on-failure" or "any"');
      }
      t.RestartPolicy = prune({
        Condition: condition,
        Delay: duration(o.delay, `${rp}.delay`),
        MaxAttempts: uint(o.max_attempts, `${rp}.max_attempts`),
        Window: duration(o.window, `${rp}.window`),
      }) as typeof t.RestartPolicy;
    }
    spec.UpdateConfig = updateConfig(deploy.update_config, `${dp}.update_config`);
    spec.RollbackConfig = updateConfig(deploy.rollback_config, `${dp}.rollback_config`);

    const ports = portsOf(s.ports, `${path}.ports`);
    if (ports !== undefined) spec.EndpointSpec = { Mode: "vip", Ports: ports };
    // After pruning, which would drop the empty `Global: {}`.
    out.push({ name: scoped(key), spec: { ...prune(spec), Mode: spec.Mode } as ServiceSpec });
  }
  if (ignored.size > 0) {
    warnings.push(`Ignoring unsupported options: ${[...ignored].sort().join(", ")}`);
  }
  const allNetworks = [...networks.values()];
  if (usesDefault && !networks.has("default")) {
    allNetworks.unshift({
      name: scoped("default"),
      external: false,
      spec: { Name: scoped("default"), Driver: "overlay", Labels: stackLabels, Scope: "swarm" },
    });
  }
  // Only what the services use, as Docker's.
  const usedNetworks = new Set(
    out.flatMap((s) => s.spec.TaskTemplate.Networks ?? []).map((n) => n.Target),
  );
  const used = <R>(refs: (svc: StackService) => R[] | undefined, name: (r: R) => string) =>
    new Set(out.flatMap((s) => refs(s) ?? []).map(name));
  const usedSecrets = used(
    (s) => s.spec.TaskTemplate.ContainerSpec?.Secrets ?? s.spec.TaskTemplate.ProcessSpec?.Secrets,
    (r) => r.SecretName,
  );
  const usedConfigs = used(
    (s) => s.spec.TaskTemplate.ContainerSpec?.Configs ?? s.spec.TaskTemplate.ProcessSpec?.Configs,
    (r) => r.ConfigName,
  );
  return {
    networks: allNetworks.filter((n) => usedNetworks.has(n.name)),
    secrets: [...secrets.values()].filter((f) => usedSecrets.has(f.name)),
    configs: [...configs.values()].filter((f) => usedConfigs.has(f.name)),
    services: out,
    warnings,
  };
}

/** Reads, parses and converts the compose file at `path`. */
export async function loadComposeFile(
  path: string,
  stack: string,
  env: ComposeContext["env"] = (name) => Deno.env.get(name),
): Promise<StackPlan> {
  let text: string;
  try {
    text = path === "-"
      ? new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer())
      : await Deno.readTextFile(path);
  } catch (err) {
    throw new ComposeError("", `cannot read the compose file ${path}: ${(err as Error).message}`);
  }
  const root = parseComposeText(text, env);
  return await composePlan(root, {
    stack,
    workingDir: path === "-" ? Deno.cwd() : dirname(path),
    env,
    readFile: (p) => Deno.readFile(p),
  });
}

function externalOf(v: unknown, path: string): { is: boolean; name?: string } {
  if (v === undefined || v === null || v === false) return { is: false };
  if (v === true) return { is: true };
  const o = object(v, `${path}.external`);
  checkKeys(o, ["name"], `${path}.external`, "external");
  return { is: true, name: string(o.name, `${path}.external.name`) };
}

function healthcheck(v: unknown, path: string): HealthConfig | undefined {
  if (v === undefined || v === null) return undefined;
  const o = object(v, path);
  checkKeys(
    o,
    ["test", "interval", "timeout", "retries", "start_period", "disable"],
    path,
    "healthcheck",
  );
  if (o.disable === true) return { Test: ["NONE"] };
  let test: string[] | undefined;
  if (typeof o.test === "string") test = ["CMD-SHELL", o.test];
  else test = strings(o.test, `${path}.test`);
  if (test !== undefined && test.length > 0 && !["CMD", "CMD-SHELL", "NONE"].includes(test[0])) {
    throw new ComposeError(`${path}.test`, 'a list must start with "CMD", "CMD-SHELL" or "NONE"');
  }
  return prune({
    Test: test,
    Interval: duration(o.interval, `${path}.interval`),
    Timeout: duration(o.timeout, `${path}.timeout`),
    Retries: uint(o.retries, `${path}.retries`),
    StartPeriod: duration(o.start_period, `${path}.start_period`),
  }) as HealthConfig;
}

function updateConfig(v: unknown, path: string): UpdateConfig | undefined {
  if (v === undefined || v === null) return undefined;
  const o = object(v, path);
  checkKeys(
    o,
    ["parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"],
    path,
    path.endsWith("rollback_config") ? "rollback_config" : "update_config",
  );
  const action = string(o.failure_action, `${path}.failure_action`);
  if (action !== undefined && !["pause", "continue", "rollback"].includes(action)) {
    throw new ComposeError(`${path}.failure_action`, 'must be "pause", "continue" or "rollback"');
  }
  const order = string(o.order, `${path}.order`);
  if (order !== undefined && !["stop-first", "start-first"].includes(order)) {
    throw new ComposeError(`${path}.order`, 'must be "stop-first" or "start-first"');
  }
  let ratio: number | undefined;
  if (o.max_failure_ratio !== undefined) {
    ratio = Number(o.max_failure_ratio);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      throw new ComposeError(`${path}.max_failure_ratio`, "must be a number from 0 to 1");
    }
  }
  return prune({
    Parallelism: uint(o.parallelism, `${path}.parallelism`) ?? 1,
    Delay: duration(o.delay, `${path}.delay`),
    FailureAction: action,
    Monitor: duration(o.monitor, `${path}.monitor`),
    MaxFailureRatio: ratio,
    Order: order,
  }) as UpdateConfig;
}

/** Short (`"8080:80"`, `"80"`, `"8080:80/udp"`, `"127.0.0.1:8080:80"`) and long port syntax. */
function portsOf(v: unknown, path: string): PortConfig[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new ComposeError(path, "must be a list");
  const out: PortConfig[] = [];
  v.forEach((p, i) => {
    const pp = `${path}.${i}`;
    if (typeof p === "object" && p !== null) {
      const o = object(p, pp);
      checkKeys(o, ["target", "published", "protocol", "mode"], pp, "a port");
      const target = uint(o.target, `${pp}.target`);
      if (!target) throw new ComposeError(`${pp}.target`, "must be a port number");
      const protocol = string(o.protocol, `${pp}.protocol`) ?? "tcp";
      const mode = string(o.mode, `${pp}.mode`) ?? "ingress";
      if (!["tcp", "udp", "sctp"].includes(protocol)) {
        throw new ComposeError(`${pp}.protocol`, 'must be "tcp", "udp" or "sctp"');
      }
      if (!["ingress", "host"].includes(mode)) {
        throw new ComposeError(`${pp}.mode`, 'must be "ingress" or "host"');
      }
      out.push(prune({
        Protocol: protocol,
        TargetPort: target,
        PublishedPort: uint(o.published, `${pp}.published`),
        PublishMode: mode,
      }) as PortConfig);
      return;
    }
    const s = string(p, pp)!;
    const m =
      /^(?:(?:\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):)?(?:(\d+)(?:-(\d+))?:)?(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i
        .exec(s);
    if (!m) {
      throw new ComposeError(pp, `invalid port "${s}" (expected [PUBLISHED:]TARGET[/PROTOCOL])`);
    }
    const [, pubStart, pubEnd, targetStart, targetEnd, proto = "tcp"] = m;
    const targets = range(Number(targetStart), targetEnd ? Number(targetEnd) : Number(targetStart));
    const published = pubStart
      ? range(Number(pubStart), pubEnd ? Number(pubEnd) : Number(pubStart))
      : undefined;
    if (published && published.length !== targets.length) {
      throw new ComposeError(pp, `port ranges "${s}" do not have the same length`);
    }
    targets.forEach((target, j) => {
      if (target < 1 || target > 65535) throw new ComposeError(pp, `invalid port ${target}`);
      out.push(prune({
        Protocol: proto.toLowerCase(),
        TargetPort: target,
        PublishedPort: published?.[j],
        PublishMode: "ingress",
      }) as PortConfig);
    });
  });
  return out;
}

function range(from: number, to: number): number[] {
  const out = [];
  for (let p = from; p <= to; p++) out.push(p);
  return out;
}

/** Drops undefined fields, empty lists and empty objects (but keeps zero and false). */
function prune<T>(value: T): T {
  if (Array.isArray(value)) return value.map(prune) as T;
  if (value === null || typeof value !== "object") return value;
  const out: Obj = {};
  for (const [k, v] of Object.entries(value as Obj)) {
    if (v === undefined) continue;
    const p = prune(v);
    if (Array.isArray(p) && p.length === 0) continue;
    if (p !== null && typeof p === "object" && !Array.isArray(p) && Object.keys(p).length === 0) {
      continue;
    }
    out[k] = p;
  }
  return out as T;
}
