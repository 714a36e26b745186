/**
 * Command groups the way Docker's CLI shapes them (`shoal service ls`, `shoal node update`):
 * a group dispatches to its subcommands, each of which declares its flags, how many arguments it
 * takes, and its usage line, so that help, flag errors and argument errors read as Docker's.
 *
 * @module
 */
import { flagHelp, type FlagSpec, type ParsedArgs, parseFlags, UsageError } from "./flags.ts";
import { ApiClient, resolveHost } from "./client.ts";
import { tlsClientMaterial, type TlsFlags } from "./tls_client.ts";
import { CliError } from "./format.ts";

/** Where a command writes, and what it knows of its terminal. */
export interface Io {
  /** Writes to standard output, as is. */
  out(text: string): Promise<void>;
  /** Writes to standard error, as is. */
  err(text: string): Promise<void>;
  /** Reads all of standard input. */
  readStdin(): Promise<Uint8Array>;
  /** Standard output is a terminal (progress redraws in place). */
  isTty: boolean;
  /** The terminal's width (progress bars need more than 110 columns, as Docker's). */
  columns: number;
}

const encoder = new TextEncoder();

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let off = 0;
  try {
    while (off < data.length) off += await w.write(data.subarray(off));
  } catch (err) {
    // The reader went away (`shoal events | head`): stop quietly, as a Go program dies of SIGPIPE.
    if (err instanceof Deno.errors.BrokenPipe) Deno.exit(0);
    throw err;
  }
}

/** The process's standard streams. */
export function processIo(): Io {
  let columns = 80;
  try {
    columns = Deno.consoleSize().columns;
  } catch {
    // Not a terminal.
  }
  return {
    out: (text) => writeAll(Deno.stdout, encoder.encode(text)),
    err: (text) => writeAll(Deno.stderr, encoder.encode(text)),
    readStdin: async () => new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer()),
    isTty: Deno.stdout.isTerminal(),
    columns,
  };
}

/** Options given before the command name (`shoal -H tcp://10.0.0.1:4375 service ls`). */
export const globalOptions: { host?: string; tls?: TlsFlags } = {};

/** Where commands write and what time it is: the process's, unless a test swaps them. */
export const runtime: { makeIo: () => Io; now: () => number } = {
  makeIo: processIo,
  now: () => Date.now(),
};

/** What a running subcommand can use. */
export interface CommandEnv {
  /** The API client for the chosen manager. */
  client: ApiClient;
  io: Io;
  /** The wall clock, in ms (a seam for tests). */
  now(): number;
  /** `shoal service create`: for messages. */
  commandPath: string;
  /** Throws the usage error for a bad flag value, worded as Docker's. */
  badFlag(flag: string, value: string, err: unknown): never;
}

/** One subcommand of a group. */
export interface Subcommand {
  name: string;
  aliases?: string[];
  /** What follows the command path in the usage line: `[OPTIONS] SERVICE [SERVICE...]`. */
  use: string;
  summary: string;
  /** Extra help text shown after the summary. */
  description?: string;
  flags: FlagSpec[];
  /** How many positional arguments: `exact`, or `min`/`max`. */
  args?: { exact?: number; min?: number; max?: number };
  /** False: options end at the first positional argument (`service create IMAGE CMD --x`). */
  interspersed?: boolean;
  run(env: CommandEnv, parsed: ParsedArgs): Promise<number | void>;
}

const COMMON_FLAGS: FlagSpec[] = [
  { name: "help", short: "h", kind: "boolean", description: "Print usage", hidden: true },
  { name: "host", short: "H", kind: "string", description: "Manager to talk to", hidden: true },
];

/** Runs a command group: `args` are the words after the group's name. */
export async function runGroup(
  group: string,
  summary: string,
  subcommands: readonly Subcommand[],
  args: string[],
  io: Io = runtime.makeIo(),
): Promise<number> {
  const [name, ...rest] = args;
  const groupPath = `shoal ${group}`;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    await io.out(groupHelp(groupPath, summary, subcommands) + "\n");
    return 0;
  }
  const sub = subcommands.find((s) => s.name === name || s.aliases?.includes(name));
  if (sub === undefined) {
    throw new CliError(
      `shoal: unknown command: ${groupPath} ${name}\n\nUsage:  ${groupPath} COMMAND\n\n` +
        `Run '${groupPath} --help' for more information`,
    );
  }
  return await runSubcommand(`${groupPath} ${sub.name}`, sub, rest, io);
}

/** Runs one subcommand (or a command without subcommands, such as `shoal events`). */
export async function runSubcommand(
  commandPath: string,
  sub: Subcommand,
  rest: string[],
  io: Io = runtime.makeIo(),
): Promise<number> {
  const where = { usage: `${commandPath} ${sub.use}`.trim(), commandPath };
  let parsed: ParsedArgs;
  try {
    parsed = parseFlags(rest, [...sub.flags, ...COMMON_FLAGS], {
      interspersed: sub.interspersed,
    });
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(err.message, where);
    throw err;
  }
  if (parsed.flags.help) {
    await io.out(commandHelp(commandPath, sub) + "\n");
    return 0;
  }
  checkArgCount(sub, parsed.args.length, where);
  const env: CommandEnv = {
    client: new ApiClient(
      resolveHost(
        (parsed.flags.host as string | undefined) ?? globalOptions.host,
        (k) => Deno.env.get(k),
      ),
      await tlsClientMaterial(globalOptions.tls ?? {}, (k) => Deno.env.get(k)),
    ),
    io,
    now: runtime.now,
    commandPath,
    badFlag(flag, value, err) {
      const spec = sub.flags.find((f) => f.name === flag);
      const label = spec?.short ? `-${spec.short}, --${flag}` : `--${flag}`;
      throw new UsageError(
        `invalid argument "${value}" for "${label}" flag: ${(err as Error).message ?? err}`,
        where,
      );
    },
  };
  try {
    return (await sub.run(env, parsed)) ?? 0;
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) {
      throw new UsageError(err.message, where);
    }
    throw err;
  }
}

function checkArgCount(
  sub: Subcommand,
  n: number,
  where: { usage: string; commandPath: string },
): void {
  const a = sub.args ?? {};
  const plural = (k: number) => (k === 1 ? "argument" : "arguments");
  const fail = (what: string, verb = "Run") => {
    throw new CliError(
      `shoal: '${where.commandPath}' ${what}\n\nUsage:  ${where.usage}\n\n` +
        `${verb} '${where.commandPath} --help' for more information`,
    );
  };
  if (a.exact !== undefined && n !== a.exact) {
    if (a.exact === 0) fail("accepts no arguments");
    fail(`requires ${a.exact} ${plural(a.exact)}`);
  }
  if (a.min !== undefined && n < a.min) fail(`requires at least ${a.min} ${plural(a.min)}`, "See");
  if (a.max !== undefined && n > a.max) {
    if (a.max === 0) fail("accepts no arguments");
    fail(`requires at most ${a.max} ${plural(a.max)}`);
  }
}

function groupHelp(groupPath: string, summary: string, subs: readonly Subcommand[]): string {
  const width = Math.max(...subs.map((s) => s.name.length));
  return [
    "",
    `Usage:  ${groupPath} COMMAND`,
    "",
    summary,
    "",
    "Commands:",
    ...subs.map((s) => `  ${s.name.padEnd(width)}   ${s.summary}`),
    "",
    `Run '${groupPath} COMMAND --help' for more information on a command.`,
  ].join("\n");
}

function commandHelp(commandPath: string, sub: Subcommand): string {
  const lines = ["", `Usage:  ${commandPath} ${sub.use}`.trimEnd(), "", sub.summary];
  if (sub.description) lines.push("", sub.description);
  if (sub.aliases?.length) {
    const group = commandPath.slice(0, commandPath.lastIndexOf(" "));
    lines.push(
      "",
      "Aliases:",
      `  ${[sub.name, ...sub.aliases].map((a) => `${group} ${a}`).join(", ")}`,
    );
  }
  const visible = sub.flags.filter((f) => !f.hidden);
  if (visible.length > 0) lines.push("", "Options:", flagHelp(visible));
  return lines.join("\n");
}

/** The value of a string flag (empty string when unset). */
export function str(parsed: ParsedArgs, name: string): string {
  return (parsed.flags[name] as string | undefined) ?? "";
}

/** The values of a repeatable flag. */
export function list(parsed: ParsedArgs, name: string): string[] {
  return (parsed.flags[name] as string[] | undefined) ?? [];
}

/** The value of a boolean flag. */
export function bool(parsed: ParsedArgs, name: string): boolean {
  return parsed.flags[name] === true;
}
