/**
 * `shoal debug`: time travel through the manager's API (`/shoal/v1/`): the cluster as it was at
 * any index or time (`state`), what changed between two points (`diff`), why an object is what it
 * is (`why`), each entry's changes (`replay`), and the first index at which a condition held
 * (`bisect`, syntax in `actors/bisect_expr.ts`).
 *
 * @module
 */
import { runGroup, str, type Subcommand } from "./command.ts";
import type { ApiClient } from "./client.ts";
import { DaemonError } from "./client.ts";
import { CliError } from "./format.ts";
import { tabwrite } from "./tabwriter.ts";
import type { StateView } from "../web/shoal/state_json.ts";

/** GETs text (`format=text` routes), with the manager's errors as {@link DaemonError}s. */
async function getText(
  client: ApiClient,
  path: string,
  query: Record<string, string | undefined>,
): Promise<string> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") params.set(k, v);
  const qs = params.toString();
  const url = `${client.base}${path}${qs ? `?${qs}` : ""}`;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new CliError(
      `Cannot connect to the Shoal manager at ${client.base}. Is the manager running?\n(${
        (err as Error).message
      })`,
    );
  }
  const body = await res.text();
  if (!res.ok) {
    let message = body.trim() || `${res.status} ${res.statusText}`;
    let code = "";
    try {
      const parsed = JSON.parse(body);
      if (typeof parsed?.message === "string") message = parsed.message;
      if (typeof parsed?.code === "string") code = parsed.code;
    } catch {
      // Not JSON: keep the text.
    }
    throw new DaemonError(res.status, code, message);
  }
  return body.endsWith("\n") ? body : body + "\n";
}

/** `I` (an index) or an ISO time, as the state route takes it. */
function pointQuery(at: string): Record<string, string> {
  if (at === "") return {};
  return /^\d+$/.test(at) ? { at } : { time: at };
}

function iso(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : "-";
}

/** Renders a state view as three tables, like `node ls`, `service ls` and `service ps`. */
export function renderState(view: StateView): string {
  const out: string[] = [
    `State at index ${view.index} (${iso(view.at)}); last index ${view.lastIndex}${
      view.live ? " (live)" : ""
    }`,
    "",
    "NODES",
  ];
  const table = (rows: string[][]) =>
    tabwrite(rows.map((r) => r.join("\t") + "\n").join("")).replace(/[ \t]+$/gm, "");
  out.push(
    table([
      ["ID", "HOSTNAME", "ROLE", "STATUS", "AVAILABILITY"],
      ...view.nodes.map((n) => [
        n.id + (n.leader ? " *" : ""),
        n.hostname || n.name,
        n.role,
        n.status,
        n.availability,
      ]),
    ]).trimEnd(),
    "",
    "SERVICES",
    table([
      ["ID", "NAME", "MODE", "REPLICAS", "IMAGE"],
      ...view.services.map((s) => [
        s.id.slice(0, 12),
        s.name,
        s.mode,
        `${s.running}/${s.desired}`,
        s.image,
      ]),
    ]).trimEnd(),
    "",
    "TASKS",
    table([
      ["ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"],
      ...view.tasks.map((t) => [
        t.id.slice(0, 12),
        t.name,
        t.node,
        t.desired,
        t.state,
        t.err,
      ]),
    ]).trimEnd(),
  );
  return out.join("\n") + "\n";
}

const state: Subcommand = {
  name: "state",
  use: "[OPTIONS]",
  summary: "Show nodes, services and tasks as they were at a log index or time",
  flags: [
    {
      name: "at",
      kind: "string",
      description: "Log index or ISO 8601 time (default: now)",
    },
    { name: "format", kind: "string", description: 'Output format: "table" or "json"' },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const format = str(p, "format") || "table";
    if (format !== "table" && format !== "json") {
      env.badFlag("format", format, new Error('expected "table" or "json"'));
    }
    const view = await env.client.get<StateView>("/shoal/v1/state", pointQuery(str(p, "at")));
    await env.io.out(format === "json" ? JSON.stringify(view, null, 2) + "\n" : renderState(view));
  },
};

const diffCmd: Subcommand = {
  name: "diff",
  use: "A [B]",
  summary: "Show objects created, changed and removed between two points (default B: now)",
  description: "A and B are log indexes or ISO 8601 times.",
  flags: [],
  args: { min: 1, max: 2 },
  async run(env, p) {
    const [from, to] = p.args;
    await env.io.out(
      await getText(env.client, "/shoal/v1/diff", { from, to, format: "text" }),
    );
  },
};

const WHY_KINDS = ["task", "service", "node", "secret", "config", "network", "cluster"];

const whyCmd: Subcommand = {
  name: "why",
  use: "[OPTIONS] task|service|node ID|NAME",
  summary: "Show the chain of causes that made an object what it is, newest first",
  flags: [
    { name: "at", kind: "string", description: "Log index or ISO 8601 time (default: now)" },
  ],
  args: { exact: 2 },
  async run(env, p) {
    const [kind, ref] = p.args;
    if (!WHY_KINDS.includes(kind)) {
      throw new CliError(`unknown kind "${kind}": use one of ${WHY_KINDS.join(", ")}`);
    }
    await env.io.out(
      await getText(
        env.client,
        `/shoal/v1/why/${encodeURIComponent(kind)}/${encodeURIComponent(ref)}`,
        { at: str(p, "at") || undefined, format: "text" },
      ),
    );
  },
};

const replayCmd: Subcommand = {
  name: "replay",
  use: "[OPTIONS]",
  summary: "Step through entries with the state change each made",
  flags: [
    { name: "from", kind: "string", description: "First log index or time (required)" },
    { name: "to", kind: "string", description: "Last log index or time" },
  ],
  args: { exact: 0 },
  async run(env, p) {
    if (str(p, "from") === "") throw new CliError("shoal debug replay: --from is required");
    await env.io.out(
      await getText(env.client, "/shoal/v1/replay", {
        from: str(p, "from"),
        to: str(p, "to") || undefined,
        format: "text",
      }),
    );
  },
};

interface BisectAnswer {
  until: string;
  from: number;
  to: number;
  found: boolean;
  index?: number;
  at?: number;
  tested: number;
}

const bisectCmd: Subcommand = {
  name: "bisect",
  use: "--until EXPR [OPTIONS]",
  summary: "Find the first log index at which a condition on the state holds",
  description: "Conditions: running(web) < 3, tasks(web, state=failed) >= 1,\n" +
    "node(worker-1).status == down, ... joined with and, or, not (see actors/bisect_expr.ts).\n" +
    "Exits 1 when the condition never holds in the range.",
  flags: [
    { name: "until", kind: "string", description: "The condition (required)" },
    { name: "from", kind: "string", description: "First log index or time to test" },
    { name: "to", kind: "string", description: "Last log index or time to test" },
    { name: "mode", kind: "string", description: '"linear" (default) or "binary"' },
  ],
  args: { exact: 0 },
  async run(env, p) {
    if (str(p, "until").trim() === "") {
      throw new CliError("shoal debug bisect: --until is required: e.g. 'running(web) < 3'");
    }
    const r = await env.client.get<BisectAnswer>("/shoal/v1/bisect", {
      until: str(p, "until"),
      from: str(p, "from") || undefined,
      to: str(p, "to") || undefined,
      mode: str(p, "mode") || undefined,
    });
    if (!r.found) {
      await env.io.out(
        `Condition ${r.until} never holds between index ${r.from} and ${r.to} ` +
          `(${r.tested} tested)\n`,
      );
      return 1;
    }
    await env.io.out(
      `Condition ${r.until} first holds at index ${r.index} (${iso(r.at ?? 0)}; ` +
        `${r.tested} tested)\n`,
    );
  },
};

/** Runs `shoal debug`. */
export function debugCommand(args: string[]): Promise<number> {
  return runGroup(
    "debug",
    "Inspect the cluster at any point of its log",
    [state, diffCmd, whyCmd, replayCmd, bisectCmd],
    args,
  );
}
