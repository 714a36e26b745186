/**
 * `shoal network`: create, inspect, ls, rm (docker/cli `cli/command/network`). Shoal manages
 * swarm-scoped networks only, so `create` defaults to the `overlay` driver where Docker's
 * default is `bridge`.
 *
 * @module
 */
import { INSPECT_FORMAT_FLAG, TABLE_FORMAT_FLAG } from "./flags.ts";
import { list, runGroup, str, type Subcommand } from "./command.ts";
import { parseFilters } from "./client.ts";
import type { Network } from "./docker_types.ts";
import {
  CliError,
  formatContext,
  goTimeString,
  inspectOutput,
  naturalCompare,
  QUIET_FORMAT,
  renderList,
  TABLE,
  truncateId,
} from "./format.ts";
import { kvMap } from "./service_spec.ts";

/** Docker's default network table. */
export const NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
const NETWORK_RAW =
  "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n";
const NETWORK_HEADER = {
  ID: "NETWORK ID",
  Name: "NAME",
  Driver: "DRIVER",
  Scope: "SCOPE",
  IPv4: "IPV4",
  IPv6: "IPV6",
  Internal: "INTERNAL",
  Labels: "LABELS",
  CreatedAt: "CREATED AT",
};

/** One network's row for `network ls`. */
export function networkContext(n: Network, trunc: boolean) {
  return formatContext("*network.networkContext", {
    ID: trunc ? truncateId(n.Id) : n.Id,
    Name: n.Name,
    Driver: n.Driver ?? "",
    Scope: n.Scope ?? "",
    IPv4: "true",
    IPv6: String(n.EnableIPv6 === true),
    Internal: String(n.Internal === true),
    Labels: Object.entries(n.Labels ?? {}).map(([k, v]) => `${k}=${v}`).join(","),
    CreatedAt: goTimeString(n.Created),
    Label: (name: unknown) => n.Labels?.[String(name)] ?? "",
  });
}

/** Renders `network ls`. */
export function renderNetworks(
  networks: readonly Network[],
  format: string,
  quiet: boolean,
  trunc: boolean,
): string {
  let f = format || TABLE;
  if (f === TABLE) f = quiet ? QUIET_FORMAT : NETWORK_TABLE;
  else if (f === "raw") f = quiet ? "network_id: {{.ID}}" : NETWORK_RAW;
  const sorted = [...networks].sort((a, b) => naturalCompare(a.Name, b.Name));
  return renderList(f, NETWORK_HEADER, sorted.map((n) => networkContext(n, trunc)));
}

const CIDR = /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$|^[0-9a-fA-F:]+\/\d{1,3}$/;

const create: Subcommand = {
  name: "create",
  use: "[OPTIONS] NETWORK",
  summary: "Create a network",
  flags: [
    { name: "attachable", kind: "boolean", description: "Enable manual container attachment" },
    {
      name: "driver",
      short: "d",
      kind: "string",
      description: "Driver to manage the Network",
      default: "overlay",
    },
    { name: "gateway", kind: "list", description: "IPv4 or IPv6 Gateway for the master subnet" },
    { name: "ingress", kind: "boolean", description: "Create swarm routing-mesh network" },
    { name: "internal", kind: "boolean", description: "Restrict external access to the network" },
    { name: "ipv6", kind: "boolean", description: "Enable or disable IPv6 address assignment" },
    { name: "label", kind: "list", description: "Set metadata on a network" },
    {
      name: "opt",
      short: "o",
      kind: "list",
      type: "map",
      description: "Set driver specific options",
    },
    { name: "scope", kind: "string", description: "Control the network's scope" },
    {
      name: "subnet",
      kind: "list",
      type: "strings",
      description: "Subnet in CIDR format that represents a network segment",
    },
  ],
  args: { exact: 1 },
  async run(env, p) {
    const subnets = list(p, "subnet").flatMap((s) => s.split(",")).map((s) => s.trim()).filter(
      Boolean,
    );
    for (const s of subnets) {
      if (!CIDR.test(s)) env.badFlag("subnet", s, new Error(`invalid CIDR address: ${s}`));
    }
    const gateways = list(p, "gateway");
    if (gateways.length > subnets.length) {
      throw new CliError("every ip-range or gateway must have a corresponding subnet");
    }
    const res = await env.client.post<{ Id: string; Warning?: string }>("/networks/create", {
      Name: p.args[0],
      CheckDuplicate: true,
      Driver: str(p, "driver") || "overlay",
      Scope: str(p, "scope") || undefined,
      EnableIPv6: p.changed.has("ipv6") ? p.flags.ipv6 === true : undefined,
      IPAM: {
        Driver: "default",
        Config: subnets.map((
          s,
          i,
        ) => (gateways[i] ? { Subnet: s, Gateway: gateways[i] } : { Subnet: s })),
        Options: {},
      },
      Internal: p.flags.internal === true,
      Attachable: p.flags.attachable === true,
      Ingress: p.flags.ingress === true,
      ConfigOnly: false,
      Options: kvMap(list(p, "opt")),
      Labels: kvMap(list(p, "label")),
    });
    if (res.Warning) await env.io.err(`${res.Warning}\n`);
    await env.io.out(`${res.Id}\n`);
  },
};

const inspect: Subcommand = {
  name: "inspect",
  use: "[OPTIONS] NETWORK [NETWORK...]",
  summary: "Display detailed information on one or more networks",
  flags: [
    INSPECT_FORMAT_FLAG,
    { name: "verbose", short: "v", kind: "boolean", description: "Verbose output for diagnostics" },
  ],
  args: { min: 1 },
  async run(env, p) {
    const { out, errors } = await inspectOutput(
      p.args,
      str(p, "format"),
      (ref) => env.client.getRaw<Network>(`/networks/${encodeURIComponent(ref)}`),
    );
    await env.io.out(out);
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

const ls: Subcommand = {
  name: "ls",
  aliases: ["list"],
  use: "[OPTIONS]",
  summary: "List networks",
  flags: [
    {
      name: "filter",
      short: "f",
      kind: "list",
      description: 'Provide filter values (e.g. "driver=overlay")',
    },
    TABLE_FORMAT_FLAG,
    { name: "no-trunc", kind: "boolean", description: "Do not truncate the output" },
    { name: "quiet", short: "q", kind: "boolean", description: "Only display network IDs" },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const networks = await env.client.get<Network[]>("/networks", {
      filters: parseFilters(list(p, "filter")),
    });
    await env.io.out(
      renderNetworks(
        networks,
        str(p, "format"),
        p.flags.quiet === true,
        p.flags["no-trunc"] !== true,
      ),
    );
  },
};

const rm: Subcommand = {
  name: "rm",
  aliases: ["remove"],
  use: "NETWORK [NETWORK...]",
  summary: "Remove one or more networks",
  flags: [{
    name: "force",
    short: "f",
    kind: "boolean",
    description: "Do not error if the network does not exist",
  }],
  args: { min: 1 },
  async run(env, p) {
    const errors: string[] = [];
    for (const ref of p.args) {
      try {
        await env.client.delete(`/networks/${encodeURIComponent(ref)}`);
        await env.io.out(`${ref}\n`);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        if (p.flags.force === true && "httpStatus" in err && err.httpStatus === 404) continue;
        errors.push(err.message);
      }
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

/** Runs `shoal network ...`. */
export function networkCommand(args: string[]): Promise<number> {
  return runGroup("network", "Manage networks", [create, inspect, ls, rm], args);
}
