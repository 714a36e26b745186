/**
 * `shoal start`: runs the node of a data dir in the foreground. An empty data dir becomes a
 * single-node swarm on the embedded defaults (a SQLite log in the data dir, and the API, with no
 * cluster port: `shoal swarm init` makes a swarm others can join). A data dir that `swarm init`
 * or `swarm join` made runs that node again: a manager with its cluster port, or a worker.
 * Ctrl-C stops it cleanly; starting again resumes the same swarm.
 *
 * @module
 */
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "./flags.ts";
import { startNode } from "../node/daemon.ts";
import { startWorker } from "../node/worker.ts";
import { readNodeConfig } from "../node/identity.ts";
import type { SyncMode } from "../events/sqlite_log.ts";
import { DETACH_FLAG, runDetached } from "./detach.ts";
import {
  API_TLS_FLAG,
  lockedBanner,
  runManagerForeground,
  runWorkerForeground,
  startTlsApi,
  stderrLogger,
  tlsApiLine,
  workerBanner,
} from "./swarm_node.ts";

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
  {
    name: "log-level",
    kind: "string",
    description: 'Node log level on stderr ("info"|"warn"|"error"|"none")',
    default: "warn",
  },
  API_TLS_FLAG,
  DETACH_FLAG,
  { name: "help", kind: "boolean", description: "Print usage" },
];

/** Runs `shoal start`. */
export async function startCommand(argv: string[]): Promise<number> {
  const { flags, args, changed } = parseFlags(argv, FLAGS);
  if (flags.help) {
    console.log(
      `Usage:  shoal start [OPTIONS]\n\nRun the node of a data dir in the foreground (an empty one becomes a single-node swarm)\n\nOptions:\n${
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
  if (flags.detach === true) {
    return await runDetached({
      dataDir,
      argv: Deno.args,
      out: (t) => Promise.resolve(console.log(t.replace(/\n$/, ""))),
    });
  }
  const logger = stderrLogger(flags["log-level"] as string);
  const stored = await readNodeConfig(dataDir);
  if (stored?.role === "worker") {
    const worker = await startWorker({ dataDir, advertiseAddr: stored.advertiseAddr, logger });
    console.log(`Worker node resumed from ${dataDir}.\n\n${workerBanner(worker, dataDir)}`);
    return await runWorkerForeground(worker, dataDir, logger);
  }
  const node = await startNode({
    dataDir,
    // A swarm made by `swarm init` keeps its addresses unless told otherwise.
    listenAddr: changed.has("listen-addr") || !stored?.apiAddr
      ? flags["listen-addr"] as string
      : stored.apiAddr,
    clusterListenAddr: stored?.listenAddr,
    advertiseAddr: stored?.advertiseAddr,
    synchronous: sync as SyncMode,
    onLocked: (api) => lockedBanner(api, dataDir),
    logger,
  });
  const tlsApi = await startTlsApi(node, flags["api-tls-addr"] as string | undefined, logger);
  const s = node.manager.state;
  const self = s.nodes.get(node.nodeId)!;
  console.log(
    [
      node.created
        ? `Swarm initialized: current node (${node.nodeId}) is now a manager.`
        : `Swarm resumed from ${dataDir}.`,
      "",
      `  swarm      ${s.cluster!.id}`,
      `  node       ${node.nodeId} (${self.description.hostname}), manager${
        node.raft === undefined || node.raft.isLeader ? ", leader" : ""
      }`,
      `  data dir   ${dataDir}`,
      `  log        ${s.index} entries (${s.services.size} services, ${s.tasks.size} tasks)`,
      `  API        ${node.apiUrl}`,
      ...(tlsApi ? [tlsApiLine(tlsApi).trimEnd()] : []),
      ...(node.clusterAddr ? [`  cluster    ${node.clusterAddr} (agents and joins)`] : []),
      "",
      "Press Ctrl-C to stop.",
    ].join("\n"),
  );
  return await runManagerForeground(node, dataDir, logger, tlsApi);
}

async function ensureDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return path;
}
