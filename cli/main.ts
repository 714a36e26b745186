/**
 * The `shoal` command: Docker-style command groups, one file each, loaded when used.
 *
 * @module
 */
import { UsageError } from "./flags.ts";
import { CliError } from "./format.ts";
import { globalOptions, runtime } from "./command.ts";
import { takeTlsFlag } from "./tls_client.ts";
import { SHOAL_VERSION } from "../web/api.ts";

/** A command group: runs with the arguments after its name, resolves with the exit code. */
export type CommandMain = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandMain> }> = {
  start: {
    summary: "Run a single-node swarm in the foreground (manager and worker in one process)",
    load: async () => (await import("./start.ts")).startCommand,
  },
  config: {
    summary: "Manage Swarm configs",
    load: async () => (await import("./config.ts")).configCommand,
  },
  debug: {
    summary: "Inspect the cluster at any point of its log (time travel)",
    load: async () => (await import("./debug.ts")).debugCommand,
  },
  events: {
    summary: "Get real time events from the server",
    load: async () => (await import("./events.ts")).eventsCommand,
  },
  info: {
    summary: "Display swarm-wide information",
    load: async () => (await import("./swarm_node.ts")).infoCommand,
  },
  log: {
    summary: "Inspect and check a stopped node's log (offline)",
    load: async () => (await import("./log.ts")).logCommand,
  },
  network: {
    summary: "Manage networks",
    load: async () => (await import("./network.ts")).networkCommand,
  },
  node: {
    summary: "Manage Swarm nodes",
    load: async () => (await import("./node.ts")).nodeCommand,
  },
  secret: {
    summary: "Manage Swarm secrets",
    load: async () => (await import("./secret.ts")).secretCommand,
  },
  service: {
    summary: "Manage Swarm services",
    load: async () => (await import("./service.ts")).serviceCommand,
  },
  stop: {
    summary: "Stop the node running with a data dir (one started with --detach)",
    load: async () => (await import("./detach.ts")).stopCommand,
  },
  stack: {
    summary: "Manage Swarm stacks",
    load: async () => (await import("./stack.ts")).stackCommand,
  },
  swarm: {
    summary: "Manage Swarm",
    load: async () => (await import("./swarm.ts")).swarmCommand,
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
    "Global options:",
    "  -H, --host string   Manager to talk to: tcp://HOST:PORT (default: $SHOAL_HOST, then",
    "                      $DOCKER_HOST, then tcp://127.0.0.1:4375)",
    "      --tlsverify     Use TLS with a client certificate, to a manager's --api-tls-addr",
    "                      (also $DOCKER_TLS_VERIFY)",
    "      --tlscacert string  Trust certs signed only by this CA (default $DOCKER_CERT_PATH/ca.pem)",
    "      --tlscert string    Path to TLS certificate file (default $DOCKER_CERT_PATH/cert.pem)",
    "      --tlskey string     Path to TLS key file (default $DOCKER_CERT_PATH/key.pem)",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}   ${c.summary}`),
    "",
    "Run 'shoal COMMAND --help' for more information on a command.",
  ].join("\n");
}

/** Runs the CLI with `argv` (without the program name); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  // Global options come before the command name, as Docker's (`shoal -H tcp://h:4375 node ls`).
  argv = [...argv];
  while (argv.length > 0) {
    const a = argv[0];
    if ((a === "-H" || a === "--host") && argv.length > 1) {
      globalOptions.host = argv[1];
      argv.splice(0, 2);
    } else if (a.startsWith("--host=") || (a.startsWith("-H") && a.length > 2)) {
      globalOptions.host = a.startsWith("--host=") ? a.slice(7) : a.slice(2).replace(/^=/, "");
      argv.splice(0, 1);
    } else if (a.startsWith("--tls")) {
      // Docker's TLS options (cli/tls_client.ts): the manager's API over mutual TLS.
      const used = takeTlsFlag(argv, globalOptions.tls ??= {});
      if (used === 0) break;
      argv.splice(0, used);
    } else break;
  }
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
    const io = runtime.makeIo();
    if (err instanceof UsageError) {
      if (err.usage !== undefined) {
        await io.err(
          `${err.message}\n\nUsage:  ${err.usage}\n\nRun '${err.commandPath} --help' for more information\n`,
        );
      } else await io.err(`${err.message}\nSee 'shoal ${name} --help'.\n`);
      return 125;
    }
    if (err instanceof CliError) {
      await io.err(err.message + "\n");
      return err.status;
    }
    await io.err(`Error: ${(err as Error).message}\n`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
