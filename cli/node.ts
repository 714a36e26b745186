/**
 * `shoal node`: ls, ps, inspect, update, promote, demote, rm, as Docker's CLI prints them
 * (docker/cli `cli/command/node`). `self` names the node the manager runs on (from `/info`),
 * for every subcommand.
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
import { parseFilters } from "./client.ts";
import type { Node, Task } from "./docker_types.ts";
import {
  CliError,
  formatContext,
  goTimeString,
  inspectOutput,
  naturalCompare,
  prettyPrint,
  QUIET_FORMAT,
  renderList,
  TABLE,
} from "./format.ts";
import { Template } from "./template.ts";
import { formatBytes } from "./units.ts";
import { filterTasks, nodeReference } from "./service.ts";
import { printTaskList } from "./tasks.ts";

/** Docker's default node table. */
export const NODE_TABLE =
  "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}";
const NODE_RAW =
  "node_id: {{.ID}}\\nhostname: {{.Hostname}}\\nstatus: {{.Status}}\\navailability: {{.Availability}}\\nmanager_status: {{.ManagerStatus}}\\n";
const NODE_HEADER = {
  ID: "ID",
  Self: "",
  Hostname: "HOSTNAME",
  Status: "STATUS",
  Availability: "AVAILABILITY",
  ManagerStatus: "MANAGER STATUS",
  EngineVersion: "ENGINE VERSION",
  TLSStatus: "TLS STATUS",
};

/** Docker's `TLSInfo`, of a node or of the swarm. */
type TlsInfo = { TrustRoot?: string; CertIssuerSubject?: string; CertIssuerPublicKey?: string };

/**
 * Docker's `TLSStatus` of a node: `Ready` when it trusts the swarm's root and holds a certificate
 * of the root that signs now, `Needs Rotation` when not (a root rotation under way), `Unknown`
 * when either side says nothing.
 */
export function tlsStatus(node: TlsInfo | undefined, swarm: TlsInfo | undefined): string {
  const empty = (t: TlsInfo | undefined) =>
    !t?.TrustRoot && !t?.CertIssuerSubject && !t?.CertIssuerPublicKey;
  if (empty(node) || empty(swarm)) return "Unknown";
  const same = node!.TrustRoot === swarm!.TrustRoot &&
    node!.CertIssuerSubject === swarm!.CertIssuerSubject &&
    node!.CertIssuerPublicKey === swarm!.CertIssuerPublicKey;
  return same ? "Ready" : "Needs Rotation";
}

/** One node's row for `node ls`; `swarmTls` is the swarm's `TLSInfo` (for `TLSStatus`). */
export function nodeContext(n: Node, selfId: string, swarmTls?: TlsInfo) {
  let manager = "";
  if (n.ManagerStatus) {
    manager = n.ManagerStatus.Leader ? "Leader" : n.ManagerStatus.Reachability ?? "";
  }
  return formatContext("*node.nodeContext", {
    ID: n.ID,
    Self: n.ID === selfId,
    Hostname: n.Description?.Hostname ?? "",
    Status: prettyPrint(n.Status.State),
    Availability: prettyPrint(n.Spec.Availability ?? ""),
    ManagerStatus: prettyPrint(manager),
    TLSStatus: tlsStatus(n.Description?.TLSInfo, swarmTls),
    EngineVersion: n.Description?.Engine?.EngineVersion ?? "",
  });
}

/** Renders `node ls` output. */
export function renderNodes(
  nodes: readonly Node[],
  selfId: string,
  format: string,
  quiet: boolean,
  swarmTls?: TlsInfo,
) {
  let f = format || TABLE;
  if (f === TABLE) f = quiet ? QUIET_FORMAT : NODE_TABLE;
  else if (f === "raw") f = quiet ? "node_id: {{.ID}}" : NODE_RAW;
  const sorted = [...nodes].sort((a, b) =>
    naturalCompare(a.Description?.Hostname ?? "", b.Description?.Hostname ?? "")
  );
  return renderList(f, NODE_HEADER, sorted.map((n) => nodeContext(n, selfId, swarmTls)));
}

/** Docker's `node inspect --pretty` template, verbatim. */
export const NODE_PRETTY = `ID:			{{.ID}}
{{- if .Name }}
Name:			{{.Name}}
{{- end }}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Hostname:              	{{.Hostname}}
Joined at:             	{{.CreatedAt}}
Status:
 State:			{{.StatusState}}
 {{- if .HasStatusMessage}}
 Message:              	{{.StatusMessage}}
 {{- end}}
 Availability:         	{{.SpecAvailability}}
 {{- if .Status.Addr}}
 Address:		{{.StatusAddr}}
 {{- end}}
{{- if .HasManagerStatus}}
Manager Status:
 Address:		{{.ManagerStatusAddr}}
 Raft Status:		{{.ManagerStatusReachability}}
 {{- if .IsManagerStatusLeader}}
 Leader:		Yes
 {{- else}}
 Leader:		No
 {{- end}}
{{- end}}
Platform:
 Operating System:	{{.PlatformOS}}
 Architecture:		{{.PlatformArchitecture}}
Resources:
 CPUs:			{{.ResourceNanoCPUs}}
 Memory:		{{.ResourceMemory}}
{{- if .HasEnginePlugins}}
Plugins:
{{- range $k, $v := .EnginePlugins }}
 {{ $k }}:{{if $v }}		{{ $v }}{{ end }}
{{- end }}
{{- end }}
Engine Version:		{{.EngineVersion}}
{{- if .EngineLabels}}
Engine Labels:
{{- range $k, $v := .EngineLabels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{- end }}
{{- if .HasTLSInfo}}
TLS Info:
 TrustRoot:
{{.TLSInfoTrustRoot}}
 Issuer Subject:	{{.TLSInfoCertIssuerSubject}}
 Issuer Public Key:	{{.TLSInfoCertIssuerPublicKey}}
{{- end}}`;

/** The fields `node inspect --pretty` shows. */
export function nodePrettyContext(n: Node) {
  const d = n.Description ?? {};
  const plugins = new Map<string, string[]>();
  for (const p of d.Engine?.Plugins ?? []) {
    plugins.set(p.Type, [...(plugins.get(p.Type) ?? []), p.Name]);
  }
  const tls = d.TLSInfo ?? {};
  return formatContext("*node.nodeInspectContext", {
    ID: n.ID,
    Name: n.Spec.Name ?? "",
    Labels: n.Spec.Labels ?? {},
    Hostname: d.Hostname ?? "",
    CreatedAt: prettyPrint(goTimeString(n.CreatedAt)),
    StatusState: prettyPrint(n.Status.State),
    HasStatusMessage: !!n.Status.Message,
    StatusMessage: prettyPrint(n.Status.Message ?? ""),
    SpecAvailability: prettyPrint(n.Spec.Availability ?? ""),
    Status: { State: n.Status.State, Message: n.Status.Message ?? "", Addr: n.Status.Addr ?? "" },
    StatusAddr: n.Status.Addr ?? "",
    HasManagerStatus: n.ManagerStatus !== undefined && n.ManagerStatus !== null,
    ManagerStatusAddr: n.ManagerStatus?.Addr ?? "",
    ManagerStatusReachability: prettyPrint(n.ManagerStatus?.Reachability ?? ""),
    IsManagerStatusLeader: n.ManagerStatus?.Leader === true,
    PlatformOS: d.Platform?.OS ?? "",
    PlatformArchitecture: d.Platform?.Architecture ?? "",
    ResourceNanoCPUs: Math.trunc((d.Resources?.NanoCPUs ?? 0) / 1e9),
    ResourceMemory: d.Resources?.MemoryBytes ? formatBytes(d.Resources.MemoryBytes) : "",
    HasEnginePlugins: plugins.size > 0,
    EnginePlugins: Object.fromEntries([...plugins].map(([k, v]) => [k, v.join(", ")])),
    EngineVersion: d.Engine?.EngineVersion ?? "",
    EngineLabels: d.Engine?.Labels ?? {},
    HasTLSInfo: !!(tls.TrustRoot || tls.CertIssuerSubject || tls.CertIssuerPublicKey),
    TLSInfoTrustRoot: tls.TrustRoot ?? "",
    TLSInfoCertIssuerSubject: tls.CertIssuerSubject ?? "",
    TLSInfoCertIssuerPublicKey: tls.CertIssuerPublicKey ?? "",
  });
}

/** Renders `node inspect --pretty` for nodes (each followed by a newline, as Docker's). */
export function renderNodePretty(nodes: readonly Node[]): string {
  const tmpl = new Template(NODE_PRETTY);
  return nodes.map((n) => tmpl.execute(nodePrettyContext(n)) + "\n").join("");
}

async function getNode(env: CommandEnv, ref: string): Promise<{ raw: string; value: Node }> {
  const id = await nodeReference(env.client, ref);
  return await env.client.getRaw<Node>(`/nodes/${encodeURIComponent(id)}`);
}

/**
 * Applies a change to nodes one by one, as Docker's `updateNodes`: inspect, change the spec,
 * post it with the version read. `change` returns false to skip a node.
 */
async function updateNodes(
  env: CommandEnv,
  refs: readonly string[],
  change: (node: Node) => Promise<boolean> | boolean,
  success: (ref: string) => Promise<void>,
) {
  for (const ref of refs) {
    const node = (await getNode(env, ref)).value;
    if (!(await change(node))) continue;
    await env.client.post(`/nodes/${node.ID}/update`, node.Spec, { version: node.Version.Index });
    await success(ref);
  }
}

const demote: Subcommand = {
  name: "demote",
  use: "NODE [NODE...]",
  summary: "Demote one or more nodes from manager in the swarm",
  flags: [],
  args: { min: 1 },
  async run(env, p) {
    await updateNodes(env, p.args, async (node) => {
      if (node.Spec.Role === "worker") {
        await env.io.out(`Node ${node.ID} is already a worker.\n`);
        return false;
      }
      node.Spec.Role = "worker";
      return true;
    }, (ref) => env.io.out(`Manager ${ref} demoted in the swarm.\n`));
  },
};

const inspect: Subcommand = {
  name: "inspect",
  use: "[OPTIONS] self|NODE [NODE...]",
  summary: "Display detailed information on one or more nodes",
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
    if (format === "pretty") {
      const nodes: Node[] = [];
      for (const ref of p.args) nodes.push((await getNode(env, ref)).value);
      await env.io.out(renderNodePretty(nodes));
      return;
    }
    const { out, errors } = await inspectOutput(p.args, format, (ref) => getNode(env, ref));
    await env.io.out(out);
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

const ls: Subcommand = {
  name: "ls",
  aliases: ["list"],
  use: "[OPTIONS]",
  summary: "List nodes in the swarm",
  flags: [
    FILTER_FLAG,
    TABLE_FORMAT_FLAG,
    QUIET_FLAG,
  ],
  args: { exact: 0 },
  async run(env, p) {
    const quiet = p.flags.quiet === true;
    const nodes = await env.client.get<Node[]>("/nodes", {
      filters: parseFilters(list(p, "filter")),
    });
    let self = "";
    let swarmTls: TlsInfo | undefined;
    if (nodes.length > 0 && !quiet) {
      const info = await env.client.get<
        { Swarm?: { NodeID?: string; Cluster?: { TLSInfo?: TlsInfo } } }
      >("/info");
      self = info.Swarm?.NodeID ?? "";
      swarmTls = info.Swarm?.Cluster?.TLSInfo;
    }
    await env.io.out(renderNodes(nodes, self, str(p, "format"), quiet, swarmTls));
  },
};

const promote: Subcommand = {
  name: "promote",
  use: "NODE [NODE...]",
  summary: "Promote one or more nodes to manager in the swarm",
  flags: [],
  args: { min: 1 },
  async run(env, p) {
    await updateNodes(env, p.args, async (node) => {
      if (node.Spec.Role === "manager") {
        await env.io.out(`Node ${node.ID} is already a manager.\n`);
        return false;
      }
      node.Spec.Role = "manager";
      return true;
    }, (ref) => env.io.out(`Node ${ref} promoted to a manager in the swarm.\n`));
  },
};

const ps: Subcommand = {
  name: "ps",
  use: "[OPTIONS] [NODE...]",
  summary: "List tasks running on one or more nodes, defaults to current node",
  flags: [
    FILTER_FLAG,
    { name: "format", kind: "string", description: "Pretty-print tasks using a Go template" },
    { name: "no-resolve", kind: "boolean", description: "Do not map IDs to Names" },
    { name: "no-trunc", kind: "boolean", description: "Do not truncate output" },
    { name: "quiet", short: "q", kind: "boolean", description: "Only display task IDs" },
  ],
  async run(env, p) {
    const refs = p.args.length > 0 ? p.args : ["self"];
    const errors: string[] = [];
    const tasks: Task[] = [];
    for (const ref of refs) {
      try {
        const node = (await getNode(env, ref)).value;
        const filters = parseFilters(list(p, "filter"));
        filters.node = { [node.ID]: true };
        tasks.push(...filterTasks(await env.client.get<Task[]>("/tasks", { filters }), filters));
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        errors.push(err.message);
      }
    }
    if (errors.length === 0 || tasks.length > 0) {
      await printTaskList(env, p, tasks);
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

const rm: Subcommand = {
  name: "rm",
  aliases: ["remove"],
  use: "[OPTIONS] NODE [NODE...]",
  summary: "Remove one or more nodes from the swarm",
  flags: [{
    name: "force",
    short: "f",
    kind: "boolean",
    description: "Force remove a node from the swarm",
  }],
  args: { min: 1 },
  async run(env, p) {
    const errors: string[] = [];
    for (const ref of p.args) {
      try {
        const id = await nodeReference(env.client, ref);
        await env.client.delete(`/nodes/${encodeURIComponent(id)}`, {
          force: p.flags.force === true ? 1 : undefined,
        });
        await env.io.out(`${ref}\n`);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        errors.push(err.message);
      }
    }
    if (errors.length > 0) throw new CliError(errors.join("\n"));
  },
};

const update: Subcommand = {
  name: "update",
  use: "[OPTIONS] NODE",
  summary: "Update a node",
  flags: [
    {
      name: "availability",
      kind: "string",
      description: 'Availability of the node ("active", "pause", "drain")',
    },
    { name: "label-add", kind: "list", description: 'Add or update a node label ("key=value")' },
    { name: "label-rm", kind: "list", description: "Remove a node label if exists" },
    { name: "role", kind: "string", description: 'Role of the node ("worker", "manager")' },
  ],
  args: { exact: 1 },
  async run(env, p) {
    await updateNodes(env, p.args, (node) => {
      const spec = node.Spec;
      if (p.changed.has("role")) spec.Role = str(p, "role");
      if (p.changed.has("availability")) spec.Availability = str(p, "availability");
      spec.Labels ??= {};
      for (const kv of list(p, "label-add")) {
        const eq = kv.indexOf("=");
        spec.Labels[eq < 0 ? kv : kv.slice(0, eq)] = eq < 0 ? "" : kv.slice(eq + 1);
      }
      for (const k of list(p, "label-rm")) {
        if (!(k in spec.Labels)) throw new CliError(`key ${k} doesn't exist in node's labels`);
        delete spec.Labels[k];
      }
      return true;
    }, (ref) => env.io.out(`${ref}\n`));
  },
};

/** The `node` subcommands. */
export const NODE_COMMANDS: Subcommand[] = [demote, inspect, ls, promote, ps, rm, update];

/** Runs `shoal node ...`. */
export function nodeCommand(args: string[]): Promise<number> {
  return runGroup("node", "Manage Swarm nodes", NODE_COMMANDS, args);
}
