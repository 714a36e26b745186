/**
 * `shoal stack deploy | ls | ps | services | rm`: Docker's stack commands, with their flags and
 * output. A stack is the services, networks, secrets and configs labelled
 * `com.docker.stack.namespace=<stack>`; `deploy` reads a compose file (`compose.ts`), creates what
 * is missing (`Creating network demo_default`), updates the services that exist (`Updating
 * service demo_api (id: …)`: an unchanged service restarts nothing), and with `--prune` removes
 * the stack's services the file no longer has.
 *
 * @module
 */
import type { ApiClient, DaemonError, Filters } from "./client.ts";
import { parseFilters } from "./client.ts";
import { bool, type CommandEnv, list, runGroup, str, type Subcommand } from "./command.ts";
import { ComposeError, loadComposeFile, STACK_LABEL, type StackPlan } from "./compose.ts";
import type { FileObject, Network, Node, Service, ServiceSpec, Task } from "./docker_types.ts";
import { FILTER_FLAG, QUIET_FLAG, TABLE_FORMAT_FLAG } from "./flags.ts";
import { CliError, formatContext, naturalCompare, renderList, TABLE } from "./format.ts";
import { fillServiceStatus, filterTasks, renderServices } from "./service.ts";
import { printTaskList } from "./tasks.ts";

/** Docker's rule for stack names. */
const STACK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function checkStackName(name: string): void {
  if (!STACK_NAME.test(name)) {
    throw new CliError(
      `invalid stack name "${name}": a stack name starts with a letter or digit and has only letters, digits, "_", "." and "-"`,
    );
  }
}

function stackFilter(stack: string, filters: Filters = {}): Filters {
  return { ...filters, label: { ...filters.label, [`${STACK_LABEL}=${stack}`]: true } };
}

async function stackServices(client: ApiClient, stack: string): Promise<Service[]> {
  return await client.get<Service[]>("/services", { filters: stackFilter(stack) });
}

/** Secret or config ids by name. */
async function idsByName(client: ApiClient, kind: "secrets" | "configs") {
  const objects = await client.get<FileObject[]>(`/${kind}`);
  return new Map(objects.map((o) => [o.Spec.Name ?? "", o.ID]));
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Carries out a deploy plan, printing what Docker prints. */
export async function deployStack(
  env: CommandEnv,
  stack: string,
  plan: StackPlan,
  options: { prune: boolean },
): Promise<void> {
  const { client, io } = env;
  const existing = await stackServices(client, stack);
  const planned = new Set(plan.services.map((s) => s.name));
  if (options.prune) {
    for (const svc of existing.sort((a, b) => naturalCompare(a.Spec.Name!, b.Spec.Name!))) {
      if (planned.has(svc.Spec.Name ?? "")) continue;
      await io.out(`Removing service ${svc.Spec.Name}\n`);
      await client.delete(`/services/${svc.ID}`);
    }
  }

  const networks = await client.get<Network[]>("/networks");
  const networkNames = new Set(networks.map((n) => n.Name));
  for (const n of plan.networks) {
    if (n.external) {
      if (!networkNames.has(n.name)) {
        throw new CliError(
          `network "${n.name}" is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed`,
        );
      }
      continue;
    }
    if (networkNames.has(n.name)) continue;
    await io.out(`Creating network ${n.name}\n`);
    await client.post("/networks/create", n.spec);
  }

  for (const kind of ["secrets", "configs"] as const) {
    const ids = await idsByName(client, kind);
    for (const f of plan[kind]) {
      if (f.external) {
        if (!ids.has(f.name)) {
          throw new CliError(
            `${kind.slice(0, -1)} "${f.name}" is declared as external, but could not be found`,
          );
        }
        continue;
      }
      // As Docker's: an existing one is kept (its data cannot change; only labels could).
      if (ids.has(f.name)) continue;
      await io.out(`Creating ${kind.slice(0, -1)} ${f.name}\n`);
      await client.post(`/${kind}/create`, {
        Name: f.name,
        Labels: f.labels,
        Data: toBase64(f.data!),
      });
    }
  }
  const secretIds = await idsByName(client, "secrets");
  const configIds = await idsByName(client, "configs");

  const byName = new Map(existing.map((s) => [s.Spec.Name ?? "", s]));
  for (const { name, spec } of plan.services) {
    const run = spec.TaskTemplate.ContainerSpec ?? spec.TaskTemplate.ProcessSpec;
    for (const r of run?.Secrets ?? []) r.SecretID = secretIds.get(r.SecretName) ?? r.SecretName;
    for (const r of run?.Configs ?? []) r.ConfigID = configIds.get(r.ConfigName) ?? r.ConfigName;
    const current = byName.get(name);
    if (current !== undefined) {
      await io.out(`Updating service ${name} (id: ${current.ID})\n`);
      const next: ServiceSpec = {
        ...spec,
        TaskTemplate: { ...spec.TaskTemplate, ForceUpdate: current.Spec.TaskTemplate.ForceUpdate },
      };
      await client.post(`/services/${current.ID}/update`, next, {
        version: current.Version.Index,
      });
    } else {
      await io.out(`Creating service ${name}\n`);
      await client.post("/services/create", spec);
    }
  }
}

const deploy: Subcommand = {
  name: "deploy",
  aliases: ["up"],
  use: "[OPTIONS] STACK",
  summary: "Deploy a new stack or update an existing stack",
  args: { exact: 1 },
  flags: [
    {
      name: "compose-file",
      short: "c",
      kind: "list",
      description: 'Path to a Compose file, or "-" to read from stdin',
    },
    {
      name: "detach",
      short: "d",
      kind: "boolean",
      description:
        "Exit immediately instead of waiting for the stack services to converge (default true)",
    },
    { name: "prune", kind: "boolean", description: "Prune services that are no longer referenced" },
    { name: "quiet", short: "q", kind: "boolean", description: "Suppress progress output" },
    {
      name: "resolve-image",
      kind: "string",
      description:
        'Query the registry to resolve image digest and supported platforms ("always", "changed", "never") (default "always")',
    },
    {
      name: "with-registry-auth",
      kind: "boolean",
      description: "Send registry authentication details to Swarm agents",
    },
  ],
  async run(env, p) {
    const stack = p.args[0];
    checkStackName(stack);
    const files = list(p, "compose-file");
    if (files.length === 0) {
      throw new CliError("Please specify a Compose file (with --compose-file).");
    }
    if (files.length > 1) {
      throw new CliError(
        "Shoal reads one Compose file per deploy (--compose-file given more than once)",
      );
    }
    let plan: StackPlan;
    try {
      plan = await loadComposeFile(files[0], stack);
    } catch (err) {
      if (err instanceof ComposeError) {
        throw new CliError(`invalid compose file ${files[0]}: ${err.message}`);
      }
      throw err;
    }
    for (const w of plan.warnings) await env.io.err(`${w}\n`);
    if (!p.changed.has("detach")) {
      await env.io.err(
        "Since --detach=false was not specified, tasks will be created in the background.\nIn a future release, --detach=false will become the default.\n",
      );
    }
    await deployStack(env, stack, plan, { prune: bool(p, "prune") });
  },
};

const ls: Subcommand = {
  name: "ls",
  aliases: ["list"],
  use: "[OPTIONS]",
  summary: "List stacks",
  args: { exact: 0 },
  flags: [{
    name: "format",
    kind: "string",
    description: "Pretty-print stacks using a Go template",
  }],
  async run(env, p) {
    const services = await env.client.get<Service[]>("/services", {
      filters: { label: { [STACK_LABEL]: true } },
    });
    const counts = new Map<string, number>();
    for (const s of services) {
      const stack = s.Spec.Labels?.[STACK_LABEL];
      if (stack !== undefined) counts.set(stack, (counts.get(stack) ?? 0) + 1);
    }
    const rows = [...counts.keys()].sort(naturalCompare).map((name) =>
      formatContext("*stack.stackContext", { Name: name, Services: String(counts.get(name)) })
    );
    let f = str(p, "format") || TABLE;
    if (f === TABLE) f = "table {{.Name}}\t{{.Services}}";
    await env.io.out(renderList(f, { Name: "NAME", Services: "SERVICES" }, rows));
  },
};

const services: Subcommand = {
  name: "services",
  use: "[OPTIONS] STACK",
  summary: "List the services in the stack",
  args: { exact: 1 },
  flags: [FILTER_FLAG, TABLE_FORMAT_FLAG, QUIET_FLAG],
  async run(env, p) {
    const stack = p.args[0];
    const quiet = bool(p, "quiet");
    const filters = stackFilter(stack, parseFilters(list(p, "filter")));
    const found = await env.client.get<Service[]>("/services", { filters, status: true });
    if (found.length === 0) {
      await env.io.err(`Nothing found in stack: ${stack}\n`);
      return;
    }
    if (!quiet && found.some((s) => !s.ServiceStatus)) {
      const [tasks, nodes] = await Promise.all([
        env.client.get<Task[]>("/tasks"),
        env.client.get<Node[]>("/nodes"),
      ]);
      fillServiceStatus(found, tasks, nodes);
    }
    await env.io.out(renderServices(found, str(p, "format"), quiet));
  },
};

const ps: Subcommand = {
  name: "ps",
  use: "[OPTIONS] STACK",
  summary: "List the tasks in the stack",
  args: { exact: 1 },
  flags: [
    FILTER_FLAG,
    { name: "format", kind: "string", description: "Pretty-print tasks using a Go template" },
    { name: "no-resolve", kind: "boolean", description: "Do not map IDs to Names" },
    { name: "no-trunc", kind: "boolean", description: "Do not truncate output" },
    { name: "quiet", short: "q", kind: "boolean", description: "Only display task IDs" },
  ],
  async run(env, p) {
    const stack = p.args[0];
    const filters = stackFilter(stack, parseFilters(list(p, "filter")));
    const tasks = filterTasks(await env.client.get<Task[]>("/tasks", { filters }), filters);
    if (tasks.length === 0) throw new CliError(`nothing found in stack: ${stack}`);
    await printTaskList(env, p, tasks);
  },
};

const rm: Subcommand = {
  name: "rm",
  aliases: ["remove", "down"],
  use: "[OPTIONS] STACK [STACK...]",
  summary: "Remove one or more stacks",
  args: { min: 1 },
  flags: [{
    name: "detach",
    short: "d",
    kind: "boolean",
    description: "Do not wait for stack removal (default true)",
  }],
  async run(env, p) {
    const { client, io } = env;
    const errors: string[] = [];
    for (const stack of p.args) {
      const filters = stackFilter(stack);
      const [svcs, secrets, configs, networks] = await Promise.all([
        client.get<Service[]>("/services", { filters }),
        client.get<FileObject[]>("/secrets", { filters }),
        client.get<FileObject[]>("/configs", { filters }),
        client.get<Network[]>("/networks", { filters }),
      ]);
      const mine = <T>(items: T[], labels: (t: T) => Record<string, string> | undefined) =>
        items.filter((i) => labels(i)?.[STACK_LABEL] === stack);
      const s = mine(svcs, (x) => x.Spec.Labels);
      const sec = mine(secrets, (x) => x.Spec.Labels);
      const cfg = mine(configs, (x) => x.Spec.Labels);
      const net = mine(networks, (x) => x.Labels);
      if (s.length + sec.length + cfg.length + net.length === 0) {
        await io.err(`Nothing found in stack: ${stack}\n`);
        continue;
      }
      const byName = <T>(items: T[], name: (t: T) => string) =>
        items.sort((a, b) => naturalCompare(name(a), name(b)));
      const remove = async (what: string, name: string, path: string) => {
        await io.out(`Removing ${what} ${name}\n`);
        try {
          await client.delete(path);
        } catch (err) {
          errors.push(
            `Failed to remove ${what} ${name}: ${(err as DaemonError).daemonMessage ?? err}`,
          );
        }
      };
      for (const x of byName(s, (x) => x.Spec.Name ?? "")) {
        await remove("service", x.Spec.Name ?? x.ID, `/services/${x.ID}`);
      }
      for (const x of byName(sec, (x) => x.Spec.Name ?? "")) {
        await remove("secret", x.Spec.Name ?? x.ID, `/secrets/${x.ID}`);
      }
      for (const x of byName(cfg, (x) => x.Spec.Name ?? "")) {
        await remove("config", x.Spec.Name ?? x.ID, `/configs/${x.ID}`);
      }
      for (const x of byName(net, (x) => x.Name)) {
        await remove("network", x.Name, `/networks/${x.Id}`);
      }
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

/** The `stack` subcommands. */
export const STACK_COMMANDS: Subcommand[] = [deploy, ls, ps, rm, services];

/** Runs `shoal stack ...`. */
export function stackCommand(args: string[]): Promise<number> {
  return runGroup("stack", "Manage Swarm stacks", STACK_COMMANDS, args);
}
