/**
 * The `shoal` command: Docker-style command groups, one file each, loaded when used.
 *
 * @module
 */
import { UsageError } from "./flags.ts";
import { SHOAL_VERSION } from "../web/api.ts";

/** A command group: runs with the arguments after its name, resolves with the exit code. */
export type CommandMain = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandMain> }> = {
  start: {
    summary: "Run a single-node swarm in the foreground (manager and worker in one process)",
    load: async () => (await import("./start.ts")).startCommand,
  },
  version: {
    summary: "Show the Shoal version",
    load: () =>
      Promise.resolve(() => {
        console.log(`Shoal version ${SHOAL_VERSION} (Deno ${Deno.version.deno})`);
        return Promise.resolve(0);
      }),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    "Usage:  shoal COMMAND",
    "",
    "A container orchestrator in the model of Docker Swarm mode, built on an event log.",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}   ${c.summary}`),
    "",
    "Run 'shoal COMMAND --help' for more information on a command.",
  ].join("\n");
}

/** Runs the CLI with `argv` (without the program name); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 1 : 0;
  }
  if (name === "--version" || name === "-v") return COMMANDS.version.load().then((m) => m([]));
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(`shoal: '${name}' is not a shoal command.\nSee 'shoal --help'`);
    return 1;
  }
  try {
    return await (await command.load())(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\nSee 'shoal ${name} --help'.`);
      return 125;
    }
    console.error(`Error: ${(err as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
