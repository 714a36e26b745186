/**
 * `shoal start`: a single-node swarm in the foreground, on the embedded defaults (a SQLite log in
 * the data dir, and the API). Ctrl-C stops it cleanly; starting again resumes the same swarm.
 *
 * @module
 */
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "./flags.ts";
import { startNode } from "../node/daemon.ts";
import type { SyncMode } from "../events/sqlite_log.ts";

const FLAGS: FlagSpec[] = [
  {
    name: "data-dir",
    kind: "string",
    description: "Where the node keeps its state",
    default: ".shoal",
  },
  {
    name: "listen-addr",
    kind: "string",
    description: "Address the API listens on (HOST:PORT)",
    default: "127.0.0.1:4375",
  },
  {
    name: "sync",
    kind: "string",
    description: "How the log syncs to disk: full (survives power loss), normal, off",
    default: "full",
  },
  { name: "help", kind: "boolean", description: "Print usage" },
];

/** Runs `shoal start`. */
export async function startCommand(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, FLAGS);
  if (flags.help) {
    console.log(
      `Usage:  shoal start [OPTIONS]\n\nRun a single-node swarm in the foreground\n\nOptions:\n${
        flagHelp(FLAGS)
      }`,
    );
    return 0;
  }
  if (args.length > 0) throw new UsageError(`"shoal start" accepts no arguments, got "${args[0]}"`);
  const sync = flags.sync as string;
  if (!["full", "normal", "off"].includes(sync)) {
    throw new UsageError(`invalid argument "${sync}" for "--sync" flag: use full, normal or off`);
  }
  const dataDir = await Deno.realPath(await ensureDir(flags["data-dir"] as string));
  const node = await startNode({
    dataDir,
    listenAddr: flags["listen-addr"] as string,
    synchronous: sync as SyncMode,
  });
  const s = node.manager.state;
  const self = s.nodes.get(node.nodeId)!;
  console.log(
    [
      node.created
        ? `Swarm initialized: current node (${node.nodeId}) is now a manager.`
        : `Swarm resumed from ${dataDir}.`,
      "",
      `  swarm      ${s.cluster!.id}`,
      `  node       ${node.nodeId} (${self.description.hostname}), manager, leader`,
      `  data dir   ${dataDir}`,
      `  log        ${s.index} entries (${s.services.size} services, ${s.tasks.size} tasks)`,
      `  API        ${node.apiUrl}`,
      "",
      "Press Ctrl-C to stop.",
    ].join("\n"),
  );
  const { promise, resolve } = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((sig) => {
    const h = () => resolve(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  const sig = await promise;
  for (const [s2, h] of handlers) Deno.removeSignalListener(s2, h);
  console.log(`\n${sig}: stopping...`);
  await node.close();
  console.log("Stopped. Start again to resume this swarm.");
  return 0;
}

async function ensureDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return path;
}
