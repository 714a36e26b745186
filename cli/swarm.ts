/**
 * `shoal swarm`: `join-token` (show or rotate the worker and manager join tokens, printing the
 * command that joins a node, as Docker's with `shoal` for `docker`) and `update` (task history
 * retention, dispatcher heartbeat, certificate expiry, autolock, Raft snapshots), after
 * docker/cli `cli/command/swarm`.
 *
 * @module
 */
import { runGroup, type Subcommand } from "./command.ts";
import type { Info, Node, Swarm } from "./docker_types.ts";
import { CliError } from "./format.ts";
import { parseDuration, parseInt64, parseUint } from "./units.ts";

const joinToken: Subcommand = {
  name: "join-token",
  use: "[OPTIONS] (worker|manager)",
  summary: "Manage join tokens",
  flags: [
    { name: "quiet", short: "q", kind: "boolean", description: "Only display token" },
    { name: "rotate", kind: "boolean", description: "Rotate join token" },
  ],
  args: { exact: 1 },
  async run(env, p) {
    const role = p.args[0];
    const worker = role === "worker";
    const manager = role === "manager";
    if (!worker && !manager) throw new CliError(`unknown role ${role}`);
    const quiet = p.flags.quiet === true;
    if (p.flags.rotate === true) {
      const sw = await env.client.get<Swarm>("/swarm");
      await env.client.post("/swarm/update", sw.Spec, {
        version: sw.Version.Index,
        rotateWorkerToken: worker,
        rotateManagerToken: manager,
      });
      if (!quiet) await env.io.out(`Successfully rotated ${role} join token.\n\n`);
    }
    const sw = await env.client.get<Swarm>("/swarm");
    const token = worker ? sw.JoinTokens.Worker : sw.JoinTokens.Manager;
    if (quiet) {
      await env.io.out(`${token}\n`);
      return;
    }
    const info = await env.client.get<Info>("/info");
    const node = await env.client.get<Node>(
      `/nodes/${encodeURIComponent(info.Swarm?.NodeID ?? "")}`,
    );
    if (node.ManagerStatus) {
      await env.io.out(
        `To add a ${role} to this swarm, run the following command:\n\n` +
          `    shoal swarm join --token ${token} ${node.ManagerStatus.Addr ?? ""}\n\n`,
      );
    }
  },
};

/** Docker's text around an unlock key. */
export function unlockKeyText(key: string): string {
  return "To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\n" +
    "command and provide the following key:\n\n" +
    `    ${key}\n\n` +
    "Please remember to store this key in a password manager, since without it you\n" +
    "will not be able to restart the manager.\n";
}

const unlockKey: Subcommand = {
  name: "unlock-key",
  use: "[OPTIONS]",
  summary: "Manage the unlock key",
  flags: [
    { name: "quiet", short: "q", kind: "boolean", description: "Only display token" },
    { name: "rotate", kind: "boolean", description: "Rotate unlock key" },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const quiet = p.flags.quiet === true;
    if (p.flags.rotate === true) {
      const sw = await env.client.get<Swarm>("/swarm");
      if (sw.Spec.EncryptionConfig?.AutoLockManagers !== true) {
        throw new CliError(
          "Error response from daemon: cannot rotate because autolock is not turned on",
        );
      }
      await env.client.post("/swarm/update", sw.Spec, {
        version: sw.Version.Index,
        rotateManagerUnlockKey: true,
      });
      if (!quiet) await env.io.out("Successfully rotated manager unlock key.\n\n");
    }
    const { UnlockKey: key } = await env.client.get<{ UnlockKey: string }>("/swarm/unlockkey");
    if (key === "") {
      throw new CliError(
        'no unlock key is set: turn autolock on with "shoal swarm update --autolock=true"',
      );
    }
    await env.io.out(quiet ? `${key}\n` : unlockKeyText(key));
  },
};

const unlock: Subcommand = {
  name: "unlock",
  use: "",
  summary: "Unlock swarm",
  description:
    "Unlocks a locked manager (one restarted while autolock is on): reads the unlock key from\n" +
    "standard input.",
  flags: [],
  args: { exact: 0 },
  async run(env) {
    if (Deno.stdin.isTerminal()) await env.io.out("Please enter unlock key: ");
    const key = new TextDecoder().decode(await env.io.readStdin()).trim().split("\n")[0] ?? "";
    if (key === "") throw new CliError("Error: no unlock key given on standard input");
    await env.client.post("/swarm/unlock", { UnlockKey: key });
  },
};

const update: Subcommand = {
  name: "update",
  use: "[OPTIONS]",
  summary: "Update the swarm",
  flags: [
    {
      name: "autolock",
      kind: "boolean",
      description: "Change manager autolocking setting (true|false)",
    },
    {
      name: "cert-expiry",
      kind: "string",
      type: "duration",
      description: "Validity period for node certificates (ns|us|ms|s|m|h) (default 2160h0m0s)",
    },
    {
      name: "dispatcher-heartbeat",
      kind: "string",
      type: "duration",
      description: "Dispatcher heartbeat period (ns|us|ms|s|m|h) (default 5s)",
    },
    {
      name: "max-snapshots",
      kind: "string",
      type: "uint",
      description: "Number of additional Raft snapshots to retain",
    },
    {
      name: "snapshot-interval",
      kind: "string",
      type: "uint",
      description: "Number of log entries between Raft snapshots (default 10000)",
    },
    {
      name: "task-history-limit",
      kind: "string",
      type: "int",
      description: "Task history retention limit (default 5)",
    },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const own = [...p.changed].filter((n) => n !== "host");
    if (own.length === 0) {
      throw new CliError(
        `${env.commandPath} requires at least one flag\n\nUsage:  ${env.commandPath} [OPTIONS]\n\nRun '${env.commandPath} --help' for more information`,
      );
    }
    const parse = <T>(name: string, fn: (s: string) => T): T | undefined => {
      if (!p.changed.has(name)) return undefined;
      const raw = p.flags[name] as string;
      try {
        return fn(raw);
      } catch (err) {
        env.badFlag(name, raw, err);
      }
    };
    const history = parse("task-history-limit", parseInt64);
    const heartbeat = parse("dispatcher-heartbeat", parseDuration);
    const expiry = parse("cert-expiry", parseDuration);
    const maxSnapshots = parse("max-snapshots", parseUint);
    const interval = parse("snapshot-interval", parseUint);
    const sw = await env.client.get<Swarm>("/swarm");
    const spec = sw.Spec;
    const prevAutolock = spec.EncryptionConfig?.AutoLockManagers === true;
    if (history !== undefined) {
      spec.Orchestration = { ...spec.Orchestration, TaskHistoryRetentionLimit: history };
    }
    if (heartbeat !== undefined) {
      spec.Dispatcher = { ...spec.Dispatcher, HeartbeatPeriod: heartbeat };
    }
    if (expiry !== undefined) spec.CAConfig = { ...spec.CAConfig, NodeCertExpiry: expiry };
    if (maxSnapshots !== undefined) spec.Raft = { ...spec.Raft, KeepOldSnapshots: maxSnapshots };
    if (interval !== undefined) spec.Raft = { ...spec.Raft, SnapshotInterval: interval };
    if (p.changed.has("autolock")) {
      spec.EncryptionConfig = {
        ...spec.EncryptionConfig,
        AutoLockManagers: p.flags.autolock === true,
      };
    }
    await env.client.post("/swarm/update", spec, { version: sw.Version.Index });
    await env.io.out("Swarm updated.\n");
    if (spec.EncryptionConfig?.AutoLockManagers === true && !prevAutolock) {
      let key: string;
      try {
        key = (await env.client.get<{ UnlockKey: string }>("/swarm/unlockkey")).UnlockKey;
      } catch (err) {
        throw new CliError(`could not fetch unlock key: ${(err as Error).message}`);
      }
      if (key) await env.io.out(unlockKeyText(key));
    }
  },
};

/** Runs `shoal swarm ...` (`init`, `join` and `leave` run the local node: cli/swarm_node.ts). */
export async function swarmCommand(args: string[]): Promise<number> {
  const { nodeSubcommands } = await import("./swarm_node.ts");
  const { caCommand } = await import("./swarm_ca.ts");
  return runGroup(
    "swarm",
    "Manage Swarm",
    [...nodeSubcommands, caCommand, joinToken, unlock, unlockKey, update],
    args,
  );
}
