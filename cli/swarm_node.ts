/**
 * The commands that run or change the node on this machine, as Docker's do through the local
 * daemon: `shoal swarm init`, `shoal swarm join`, `shoal swarm leave`, `shoal info`, and the
 * node-running part of `shoal start`.
 *
 * - `init` and `join` run the node in the foreground (Ctrl-C stops it; `shoal start --data-dir`
 *   runs it again). `init` listens on the cluster port (default `0.0.0.0:4377`: Docker's 2377,
 *   7946 and 4789 may belong to a real Docker here) with mutual TLS, and serves the API on
 *   loopback (`--api-addr`, default `127.0.0.1:4375`: it has no authentication yet).
 * - A running node answers on its data dir's control socket (mode 0600): `leave` and
 *   `info --data-dir` go through it. A node that is not running is handled from its files.
 * - Several nodes run on one machine with different data dirs and ports.
 *
 * @module
 */
import { runSubcommand, str, type Subcommand } from "./command.ts";
import { CliError } from "./format.ts";
import { UsageError } from "./flags.ts";
import { humanDuration, parseDuration, parseInt64 } from "./units.ts";
import { DETACH_FLAG, runDetached } from "./detach.ts";
import type { SyncMode } from "../events/sqlite_log.ts";
import type { Logger } from "../actors/runtime.ts";
import type { RunningNode } from "../node/daemon.ts";
import type { RunningWorker } from "../node/worker.ts";
import type { NodeConfig } from "../node/identity.ts";

/** Shoal's default cluster port (node/agent_protocol.ts), kept here so help loads nothing. */
const DEFAULT_CLUSTER_PORT = 4377;

// The node's modules (the log, the dispatcher, TLS, executors) load only when a command runs.
const daemon = () => import("../node/daemon.ts");
const workerModule = () => import("../node/worker.ts");
const identity = () => import("../node/identity.ts");
const control = () => import("../node/control.ts");

/** The API address when nothing says otherwise (the CLI's default `--host`). */
export const DEFAULT_API_ADDR = "127.0.0.1:4375";
/** Where a node keeps its state when nothing says otherwise. */
export const DEFAULT_DATA_DIR = ".shoal";

const DATA_DIR_FLAG = {
  name: "data-dir",
  kind: "string",
  description: "Where the node keeps its state",
  default: DEFAULT_DATA_DIR,
} as const;
const LOG_LEVEL_FLAG = {
  name: "log-level",
  kind: "string",
  description: 'Node log level on stderr ("info"|"warn"|"error"|"none")',
  default: "info",
} as const;

/**
 * Docker's daemon log lines (logrus text format), on stderr, at or above `level`.
 */
export function stderrLogger(level: string): Logger | undefined {
  const levels = ["info", "warn", "error", "none"];
  const min = levels.indexOf(level);
  if (min < 0) {
    throw new UsageError(
      `invalid argument "${level}" for "--log-level" flag: use info, warn, error or none`,
    );
  }
  if (level === "none") return undefined;
  const line = (lvl: string, i: number) => (message: string) => {
    if (i < min) return;
    console.error(`time="${new Date().toISOString()}" level=${lvl} msg=${JSON.stringify(message)}`);
  };
  return { info: line("info", 0), warn: line("warning", 1), error: line("error", 2) };
}

/**
 * A `--listen-addr` or `--advertise-addr` value (`<ip|interface>[:port]`) as `host:port`, the
 * port defaulting to `defaultPort`; an interface name stands for its first IPv4 address.
 */
export function normalizeAddr(value: string, defaultPort: number, flag: string): string {
  let host = value;
  let port = String(defaultPort);
  const m = /^\[(.*)\](?::(\d+))?$/.exec(value) ?? /^([^:]*)(?::(\d+))?$/.exec(value);
  if (m) {
    host = m[1];
    if (m[2] !== undefined) port = m[2];
  } else if (!value.includes("]")) {
    host = value; // a bare IPv6 address
  }
  if (host === "" || Number(port) > 65535) {
    throw new UsageError(
      `invalid argument "${value}" for "--${flag}" flag: expected <ip|interface>[:port]`,
    );
  }
  if (/^[a-zA-Z][\w.-]*$/.test(host) && host !== "localhost") {
    const nic = Deno.networkInterfaces().find((i) => i.name === host && i.family === "IPv4");
    if (nic) host = nic.address;
    else if (!host.includes(".")) {
      throw new UsageError(
        `invalid argument "${value}" for "--${flag}" flag: no interface "${host}" with an IPv4 address`,
      );
    }
  }
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** `HOST:PORT` flags checked as such. */
function hostPort(value: string, flag: string): string {
  if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(value)) {
    throw new UsageError(`invalid argument "${value}" for "--${flag}" flag: expected HOST:PORT`);
  }
  return value;
}

async function absoluteDir(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true });
  return await Deno.realPath(path);
}

/** `shoal stop` (the control socket's `stop`): as Ctrl-C. */
const stopRequests = new Set<() => void>();
function requestStop(): void {
  for (const fn of stopRequests) fn();
}

/** Runs until Ctrl-C (or SIGTERM, or `shoal stop`), or until the node stops on its own. */
async function untilStopped(stopped: Promise<string>): Promise<{ signal?: string; why?: string }> {
  const { promise, resolve } = Promise.withResolvers<{ signal?: string; why?: string }>();
  const onStop = () => resolve({ signal: "shoal stop" });
  stopRequests.add(onStop);
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handlers = signals.map((sig) => {
    const h = () => resolve({ signal: sig });
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  stopped.then((why) => resolve({ why }));
  const outcome = await promise;
  stopRequests.delete(onStop);
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Running a manager or a worker in the foreground

/** The `--api-tls-addr` flag of the commands that run a manager. */
export const API_TLS_FLAG = {
  name: "api-tls-addr",
  kind: "string",
  description:
    "Also serve the API on this HOST:PORT with mutual TLS: managers' certificates only (remote control)",
} as const;

/** A manager's API over mutual TLS (node/api_tls.ts), when `--api-tls-addr` asks for it. */
export interface TlsApi {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the API over mutual TLS at `addr` for `node`; undefined without an address. */
export async function startTlsApi(
  node: RunningNode,
  addr: string | undefined,
  logger: Logger | undefined,
): Promise<TlsApi | undefined> {
  if (addr === undefined || addr === "") return undefined;
  const { serveApiTls } = await import("../node/api_tls.ts");
  const server = await serveApiTls({
    listenAddr: hostPort(addr, "api-tls-addr"),
    apiAddr: node.apiUrl.replace(/^http:\/\//, ""),
    manager: node.manager,
    nodeId: node.nodeId,
    hosts: node.clusterAddr ? [node.clusterAddr.replace(/:\d+$/, "").replace(/^\[|\]$/g, "")] : [],
    logger,
  });
  return { url: `https://${server.address}`, close: () => server.close() };
}

/** The banner line of the API over mutual TLS. */
export function tlsApiLine(api: TlsApi | undefined): string {
  return api
    ? `  API (TLS)  ${api.url}   (shoal --tlsverify --host ${
      api.url.replace("https://", "tcp://")
    } ..., managers' certificates only)\n`
    : "";
}

/** Serves the control socket of a manager node, runs it until stopped, and stops it. */
export async function runManagerForeground(
  node: RunningNode,
  dataDir: string,
  logger: Logger | undefined,
  tlsApi?: TlsApi,
): Promise<number> {
  let left = false;
  const { serveControl } = await control();
  const socket = await serveControl(dataDir, {
    info: async () => {
      const res = await fetch(`${node.apiUrl}/info`);
      return await res.json();
    },
    leave: async (force) => {
      await node.leave(force);
      left = true;
    },
    stop: requestStop,
  }, logger);
  try {
    const outcome = await untilStopped(node.stopped);
    if (outcome.signal) {
      console.log(`\n${outcome.signal}: stopping...`);
      await tlsApi?.close();
      await node.close();
      console.log(`Stopped. Run "shoal start --data-dir ${dataDir}" to resume this swarm.`);
      return 0;
    }
    if (outcome.why === (await daemon()).DEMOTED) {
      await tlsApi?.close();
      await socket.close();
      // `node demote`: the same node carries on as a worker.
      const worker = await (await workerModule()).startWorker({ dataDir, logger });
      console.log(`This node was demoted to a worker.\n\n${workerBanner(worker, dataDir)}`);
      return await runWorkerForeground(worker, dataDir, logger);
    }
    console.log(left ? "Node left the swarm." : `Stopped: ${outcome.why}`);
    return 0;
  } finally {
    await tlsApi?.close();
    await socket.close();
    await (await import("./detach.ts")).removeOwnPidFile(dataDir);
  }
}

/** Serves the control socket of a worker, runs it until stopped, and stops it. */
export async function runWorkerForeground(
  worker: RunningWorker,
  dataDir: string,
  logger: Logger | undefined,
): Promise<number> {
  const left = Promise.withResolvers<string>();
  const { serveControl } = await control();
  const socket = await serveControl(dataDir, {
    info: () => worker.info(),
    leave: async (force) => {
      await worker.leave(force);
      return () => left.resolve("left");
    },
    stop: requestStop,
  }, logger);
  try {
    const outcome = await untilStopped(Promise.race([worker.stopped, left.promise]));
    if (outcome.signal) {
      console.log(`\n${outcome.signal}: stopping...`);
      await worker.close();
      console.log(`Stopped. Run "shoal start --data-dir ${dataDir}" to run this node again.`);
      return 0;
    }
    if (outcome.why === "left") {
      console.log("Node left the swarm.");
      return 0;
    }
    if (outcome.why === (await workerModule()).PROMOTED) {
      await socket.close();
      // `node promote`: the same node comes back as a manager and joins the Raft group.
      const config = (await (await identity()).readNodeConfig(dataDir))!;
      const node = await (await daemon()).startNode({
        dataDir,
        listenAddr: config.apiAddr ?? DEFAULT_API_ADDR,
        clusterListenAddr: config.listenAddr,
        advertiseAddr: config.advertiseAddr,
        mode: "join",
        joinManagers: config.managers,
        logger,
      });
      console.log(
        "This node was promoted to a manager.\n\n" +
          `  node       ${node.nodeId}, manager\n` +
          `  API        ${node.apiUrl}\n` +
          `  data dir   ${dataDir}\n\n` +
          "Press Ctrl-C to stop.",
      );
      return await runManagerForeground(node, dataDir, logger);
    }
    console.error(`Error: ${outcome.why}`);
    return 1;
  } finally {
    await socket.close();
    await (await import("./detach.ts")).removeOwnPidFile(dataDir);
  }
}

/** What a locked manager prints while it waits for `shoal swarm unlock`. */
export function lockedBanner(apiUrl: string, dataDir: string): void {
  console.log(
    `Swarm is locked: ${dataDir} is encrypted with the swarm's unlock key.\n` +
      `Run "shoal --host ${apiUrl.replace("http://", "tcp://")} swarm unlock" and give it the key.`,
  );
}

/** The banner lines of a running worker. */
export function workerBanner(worker: RunningWorker, dataDir: string): string {
  return [
    `  node       ${worker.nodeId}, worker`,
    `  swarm      ${worker.clusterId}`,
    `  managers   ${worker.managers.join(", ")}`,
    `  data dir   ${dataDir}`,
    "",
    "Press Ctrl-C to stop.",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// swarm init

const init: Subcommand = {
  name: "init",
  use: "[OPTIONS]",
  summary: "Initialize a swarm",
  description:
    "Creates a swarm with this node as its manager, and runs the node in the foreground\n" +
    '(Ctrl-C stops it; "shoal start --data-dir DIR" runs it again).',
  flags: [
    {
      name: "advertise-addr",
      kind: "string",
      description: "Advertised address (format: <ip|interface>[:port])",
    },
    {
      name: "listen-addr",
      kind: "string",
      description: "Listen address for agents and joins (format: <ip|interface>[:port])",
      default: `0.0.0.0:${DEFAULT_CLUSTER_PORT}`,
    },
    {
      name: "api-addr",
      kind: "string",
      description:
        "Address the API listens on (HOST:PORT; it has no authentication: keep it local)",
      default: DEFAULT_API_ADDR,
    },
    DATA_DIR_FLAG,
    {
      name: "task-history-limit",
      kind: "string",
      type: "int",
      description: "Task history retention limit",
      default: "5",
    },
    {
      name: "dispatcher-heartbeat",
      kind: "string",
      type: "duration",
      description: "Dispatcher heartbeat period (ns|us|ms|s|m|h)",
      default: "5s",
    },
    {
      name: "cert-expiry",
      kind: "string",
      type: "duration",
      description: "Validity period for node certificates (ns|us|ms|s|m|h)",
      default: "2160h0m0s",
    },
    {
      name: "sync",
      kind: "string",
      description: "How the log syncs to disk: full (survives power loss), normal, off",
      default: "full",
    },
    {
      name: "autolock",
      kind: "boolean",
      description:
        "Enable manager autolocking (requiring an unlock key to start a stopped manager)",
    },
    {
      name: "force-new-cluster",
      kind: "boolean",
      description: "Force create a new cluster from current state",
    },
    API_TLS_FLAG,
    DETACH_FLAG,
    LOG_LEVEL_FLAG,
  ],
  args: { exact: 0 },
  async run(env, p) {
    const parse = <T>(name: string, fn: (s: string) => T): T => {
      const raw = p.flags[name] as string;
      try {
        return fn(raw);
      } catch (err) {
        return env.badFlag(name, raw, err);
      }
    };
    const { ClusterSpec } = await import("../events/schema.ts");
    const spec = ClusterSpec.safeParse({
      orchestration: { taskHistoryRetentionLimit: parse("task-history-limit", parseInt64) },
      dispatcher: {
        heartbeatPeriod: Math.round(parse("dispatcher-heartbeat", parseDuration) / 1e6),
      },
      caConfig: { nodeCertExpiry: Math.round(parse("cert-expiry", parseDuration) / 1e6) },
      encryption: { autoLockManagers: p.flags.autolock === true },
    });
    if (!spec.success) {
      const issue = spec.error.issues[0];
      const flag = issue.path[0] === "dispatcher"
        ? "dispatcher-heartbeat"
        : issue.path[0] === "caConfig"
        ? "cert-expiry"
        : "task-history-limit";
      throw new UsageError(
        `invalid argument "${p.flags[flag]}" for "--${flag}" flag: ${issue.message}`,
      );
    }
    const listen = normalizeAddr(str(p, "listen-addr"), DEFAULT_CLUSTER_PORT, "listen-addr");
    const listenPort = Number(/:(\d+)$/.exec(listen)![1]);
    const advertise = p.changed.has("advertise-addr")
      ? normalizeAddr(str(p, "advertise-addr"), listenPort, "advertise-addr")
      : undefined;
    const apiAddr = hostPort(str(p, "api-addr"), "api-addr");
    const sync = syncMode(str(p, "sync"));
    const logger = stderrLogger(str(p, "log-level"));
    const dataDir = await absoluteDir(str(p, "data-dir"));
    if (p.flags.detach === true) {
      return await runDetached({ dataDir, argv: Deno.args, out: (t) => env.io.out(t) });
    }
    const { AlreadyInSwarmError, startNode } = await daemon();
    const force = p.flags["force-new-cluster"] === true;
    const stored = force ? await (await identity()).readNodeConfig(dataDir) : undefined;
    if (force && stored?.role !== "manager") {
      throw new CliError(
        `Error response from daemon: --force-new-cluster recovers a swarm from a manager's data dir, and ${dataDir} holds none`,
      );
    }
    let node: RunningNode;
    try {
      node = await startNode({
        dataDir,
        // Recovering keeps the node's addresses unless told otherwise.
        listenAddr: force && !p.changed.has("api-addr") ? stored?.apiAddr ?? apiAddr : apiAddr,
        synchronous: sync,
        clusterListenAddr: force && !p.changed.has("listen-addr")
          ? stored?.listenAddr ?? listen
          : listen,
        advertiseAddr: advertise ?? (force ? stored?.advertiseAddr : undefined),
        spec: spec.data,
        mode: force ? "resume" : "init",
        forceNewCluster: force,
        onLocked: (api) => lockedBanner(api, dataDir),
        logger,
      });
    } catch (err) {
      if (err instanceof AlreadyInSwarmError) {
        throw new CliError(`Error response from daemon: ${err.message}`);
      }
      throw err;
    }
    const token = node.manager.state.cluster!.joinTokens.worker;
    const tlsApi = await startTlsApi(node, str(p, "api-tls-addr") || undefined, logger);
    await env.io.out(
      `Swarm initialized: current node (${node.nodeId}) is now a manager.\n\n` +
        "To add a worker to this swarm, run the following command:\n\n" +
        `    shoal swarm join --token ${token} ${node.clusterAddr}\n\n` +
        "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n\n" +
        (node.unlockKey ? (await import("./swarm.ts")).unlockKeyText(node.unlockKey) + "\n" : "") +
        `  API        ${node.apiUrl}   (shoal --host ${
          node.apiUrl.replace("http://", "tcp://")
        } ...)\n` +
        tlsApiLine(tlsApi) +
        `  data dir   ${dataDir}\n\n` +
        "Press Ctrl-C to stop.\n",
    );
    return await runManagerForeground(node, dataDir, logger, tlsApi);
  },
};

function syncMode(value: string): SyncMode {
  if (!["full", "normal", "off"].includes(value)) {
    throw new UsageError(`invalid argument "${value}" for "--sync" flag: use full, normal or off`);
  }
  return value as SyncMode;
}

// ---------------------------------------------------------------------------------------------
// swarm join

const joinCommand: Subcommand = {
  name: "join",
  use: "[OPTIONS] HOST:PORT",
  summary: "Join a swarm as a node and/or manager",
  description:
    "Joins the swarm of the manager at HOST:PORT as a worker, and runs the node in the\n" +
    'foreground (Ctrl-C stops it; "shoal start --data-dir DIR" runs it again).',
  flags: [
    { name: "token", kind: "string", description: "Token for entry into the swarm" },
    {
      name: "advertise-addr",
      kind: "string",
      description: "Advertised address (format: <ip|interface>[:port])",
    },
    {
      name: "listen-addr",
      kind: "string",
      description:
        "Listen address, for when the node becomes a manager (format: <ip|interface>[:port])",
      default: `0.0.0.0:${DEFAULT_CLUSTER_PORT}`,
    },
    {
      name: "api-addr",
      kind: "string",
      description:
        "Address the API listens on, when joining as a manager (HOST:PORT; keep it local)",
      default: DEFAULT_API_ADDR,
    },
    DATA_DIR_FLAG,
    API_TLS_FLAG,
    DETACH_FLAG,
    LOG_LEVEL_FLAG,
  ],
  args: { exact: 1 },
  async run(env, p) {
    const token = str(p, "token");
    if (token === "") throw new UsageError(`"--token" is required`);
    const manager = normalizeAddr(p.args[0], DEFAULT_CLUSTER_PORT, "manager address");
    const listen = normalizeAddr(str(p, "listen-addr"), DEFAULT_CLUSTER_PORT, "listen-addr");
    const advertise = p.changed.has("advertise-addr")
      ? normalizeAddr(
        str(p, "advertise-addr"),
        Number(/:(\d+)$/.exec(listen)![1]),
        "advertise-addr",
      )
      : undefined;
    const logger = stderrLogger(str(p, "log-level"));
    const dataDir = await absoluteDir(str(p, "data-dir"));
    if (p.flags.detach === true) {
      return await runDetached({ dataDir, argv: Deno.args, out: (t) => env.io.out(t) });
    }
    const { AlreadyInSwarmError } = await daemon();
    const { readNodeConfig, writeCredentials, writeNodeConfig } = await identity();
    const { describeThisNode, findDocker, runtimesOf } = await import("../node/agent_host.ts");
    const { JoinError, requestToJoin } = await import("../node/join.ts");
    const { startWorker } = await workerModule();
    if (await readNodeConfig(dataDir) !== undefined) {
      throw new CliError(`Error response from daemon: ${new AlreadyInSwarmError(dataDir).message}`);
    }
    const docker = await findDocker();
    docker?.close();
    let joined;
    try {
      joined = await requestToJoin({
        token,
        manager,
        description: describeThisNode(runtimesOf(docker)),
        addr: advertise ? advertise.replace(/:\d+$/, "") : "",
      });
    } catch (err) {
      if (err instanceof JoinError) {
        throw new CliError(`Error response from daemon: ${err.message}`);
      }
      throw err;
    }
    await writeCredentials(dataDir, joined.credentials);
    if (joined.role === "manager") {
      const apiAddr = hostPort(str(p, "api-addr"), "api-addr");
      await writeNodeConfig(dataDir, {
        nodeId: joined.nodeId,
        role: "manager",
        clusterId: joined.clusterId,
        managers: joined.managers,
        listenAddr: listen,
        ...(advertise ? { advertiseAddr: advertise } : {}),
        apiAddr,
        raftId: joined.raftId,
      });
      const { startNode } = await daemon();
      const node = await startNode({
        dataDir,
        listenAddr: apiAddr,
        clusterListenAddr: listen,
        advertiseAddr: advertise,
        mode: "join",
        joinManagers: joined.managers,
        logger,
      });
      const tlsApi = await startTlsApi(node, str(p, "api-tls-addr") || undefined, logger);
      await env.io.out(
        "This node joined a swarm as a manager.\n\n" +
          `  node       ${node.nodeId}, manager (raft ${joined.raftId})\n` +
          `  API        ${node.apiUrl}   (shoal --host ${
            node.apiUrl.replace("http://", "tcp://")
          } ...)\n` +
          tlsApiLine(tlsApi) +
          `  data dir   ${dataDir}\n\n` +
          "Press Ctrl-C to stop.\n",
      );
      return await runManagerForeground(node, dataDir, logger, tlsApi);
    }
    const config: NodeConfig = {
      // Where its API will listen should it be promoted to manager.
      apiAddr: hostPort(str(p, "api-addr"), "api-addr"),
      nodeId: joined.nodeId,
      role: "worker",
      clusterId: joined.clusterId,
      managers: joined.managers,
      listenAddr: listen,
      ...(advertise ? { advertiseAddr: advertise } : {}),
    };
    await writeNodeConfig(dataDir, config);
    const worker = await startWorker({ dataDir, advertiseAddr: config.advertiseAddr, logger });
    await env.io.out(`This node joined a swarm as a worker.\n\n${workerBanner(worker, dataDir)}\n`);
    return await runWorkerForeground(worker, dataDir, logger);
  },
};

// ---------------------------------------------------------------------------------------------
// swarm leave

const leave: Subcommand = {
  name: "leave",
  use: "[OPTIONS]",
  summary: "Leave the swarm",
  description:
    "Leaves the swarm the node with this data dir belongs to. A worker tells its manager (the\n" +
    "node is then down), stops its tasks and forgets the swarm; the last manager needs --force,\n" +
    "and erases the swarm's state.",
  flags: [
    {
      name: "force",
      short: "f",
      kind: "boolean",
      description: "Force this node to leave the swarm, ignoring warnings",
    },
    DATA_DIR_FLAG,
  ],
  args: { exact: 0 },
  async run(env, p) {
    const dataDir = str(p, "data-dir");
    const force = p.flags.force === true;
    const { callControl, ControlRefusedError, NodeNotRunningError } = await control();
    try {
      await callControl(dataDir, { op: "leave", force });
    } catch (err) {
      if (err instanceof ControlRefusedError) {
        throw new CliError(`Error response from daemon: ${err.message}`);
      }
      if (!(err instanceof NodeNotRunningError)) throw err;
      // Nothing runs there: leave from the files.
      const { readNodeConfig, removeSwarmState } = await identity();
      const { LAST_MANAGER_LEAVE } = await daemon();
      const config = await readNodeConfig(dataDir).catch(() => undefined);
      if (config === undefined) {
        throw new CliError("Error response from daemon: This node is not part of a swarm");
      }
      if (config.role === "worker") {
        try {
          await (await workerModule()).leaveStoppedWorker(dataDir, force);
        } catch (e) {
          throw new CliError(`Error response from daemon: ${(e as Error).message}`);
        }
      } else {
        if (!force) throw new CliError(`Error response from daemon: ${LAST_MANAGER_LEAVE}`);
        await removeSwarmState(dataDir);
      }
    }
    await env.io.out("Node left the swarm.\n");
  },
};

/** `swarm init`, `swarm join`, `swarm leave`, for `shoal swarm`. */
export const nodeSubcommands: readonly Subcommand[] = [init, joinCommand, leave];

// ---------------------------------------------------------------------------------------------
// info

/** Docker's `/info`, the fields `shoal info` prints. */
interface InfoJson {
  ID?: string;
  Name?: string;
  ServerVersion?: string;
  OperatingSystem?: string;
  OSType?: string;
  Architecture?: string;
  NCPU?: number;
  MemTotal?: number;
  KernelVersion?: string;
  Swarm?: {
    NodeID?: string;
    NodeAddr?: string;
    LocalNodeState?: string;
    ControlAvailable?: boolean;
    Error?: string;
    RemoteManagers?: { NodeID?: string; Addr?: string }[] | null;
    Nodes?: number;
    Managers?: number;
    Cluster?: {
      ID?: string;
      RootRotationInProgress?: boolean;
      DataPathPort?: number;
      DefaultAddrPool?: string[] | null;
      SubnetSize?: number;
      Spec?: {
        Orchestration?: { TaskHistoryRetentionLimit?: number };
        Raft?: {
          SnapshotInterval?: number;
          KeepOldSnapshots?: number;
          HeartbeatTick?: number;
          ElectionTick?: number;
        };
        Dispatcher?: { HeartbeatPeriod?: number };
        CAConfig?: { NodeCertExpiry?: number; ForceRotate?: number };
        EncryptionConfig?: { AutoLockManagers?: boolean };
      };
    };
  };
}

/** The `Swarm:` section of `docker info` (docker/cli `printSwarmInfo`), for `info`. */
export function formatSwarmInfo(info: InfoJson): string {
  const sw = info.Swarm ?? {};
  const lines = [` Swarm: ${sw.LocalNodeState ?? "inactive"}`];
  if (
    sw.LocalNodeState === undefined || sw.LocalNodeState === "inactive" ||
    sw.LocalNodeState === "locked"
  ) {
    return lines.join("\n") + "\n";
  }
  lines.push(`  NodeID: ${sw.NodeID ?? ""}`);
  if (sw.Error) lines.push(`  Error: ${sw.Error}`);
  lines.push(`  Is Manager: ${sw.ControlAvailable === true}`);
  const c = sw.Cluster;
  if (c && sw.ControlAvailable && !sw.Error && sw.LocalNodeState !== "error") {
    const spec = c.Spec ?? {};
    lines.push(`  ClusterID: ${c.ID ?? ""}`);
    lines.push(`  Managers: ${sw.Managers ?? 0}`);
    lines.push(`  Nodes: ${sw.Nodes ?? 0}`);
    if (c.DefaultAddrPool) {
      lines.push(`  Default Address Pool: ${c.DefaultAddrPool.map((p) => p + "  ").join("")}`);
      lines.push(`  SubnetSize: ${c.SubnetSize ?? 0}`);
    }
    if ((c.DataPathPort ?? 0) > 0) lines.push(`  Data Path Port: ${c.DataPathPort}`);
    lines.push("  Orchestration:");
    lines.push(
      `   Task History Retention Limit: ${spec.Orchestration?.TaskHistoryRetentionLimit ?? 0}`,
    );
    lines.push("  Raft:");
    lines.push(`   Snapshot Interval: ${spec.Raft?.SnapshotInterval ?? 0}`);
    if (spec.Raft?.KeepOldSnapshots !== undefined) {
      lines.push(`   Number of Old Snapshots to Retain: ${spec.Raft.KeepOldSnapshots}`);
    }
    lines.push(`   Heartbeat Tick: ${spec.Raft?.HeartbeatTick ?? 0}`);
    lines.push(`   Election Tick: ${spec.Raft?.ElectionTick ?? 0}`);
    lines.push("  Dispatcher:");
    lines.push(
      `   Heartbeat Period: ${humanDuration((spec.Dispatcher?.HeartbeatPeriod ?? 0) / 1e6)}`,
    );
    lines.push("  CA Configuration:");
    lines.push(`   Expiry Duration: ${humanDuration((spec.CAConfig?.NodeCertExpiry ?? 0) / 1e6)}`);
    lines.push(`   Force Rotate: ${spec.CAConfig?.ForceRotate ?? 0}`);
    lines.push(`  Autolock Managers: ${spec.EncryptionConfig?.AutoLockManagers === true}`);
    lines.push(`  Root Rotation In Progress: ${c.RootRotationInProgress === true}`);
  }
  lines.push(`  Node Address: ${sw.NodeAddr ?? ""}`);
  const managers = (sw.RemoteManagers ?? []).map((m) => m.Addr ?? "").sort();
  if (managers.length > 0) {
    lines.push("  Manager Addresses:");
    for (const m of managers) lines.push(`   ${m}`);
  }
  return lines.join("\n") + "\n";
}

const info: Subcommand = {
  name: "info",
  use: "[OPTIONS]",
  summary: "Display swarm-wide information",
  description:
    "Shows the swarm as a node sees it, as the Swarm section of `docker info`: the manager's\n" +
    "(--host), or the local node's with --data-dir (a worker has no API).",
  flags: [{
    name: "data-dir",
    kind: "string",
    description: "Ask the node running with this data dir",
  }],
  args: { exact: 0 },
  async run(env, p) {
    let data: InfoJson;
    if (p.changed.has("data-dir")) {
      const { callControl, NodeNotRunningError } = await control();
      try {
        data = await callControl(str(p, "data-dir"), { op: "info" }, 10_000) as InfoJson;
      } catch (err) {
        if (!(err instanceof NodeNotRunningError)) throw err;
        throw new CliError(
          `Cannot connect to the Shoal node with data dir ${str(p, "data-dir")}. Is it running?`,
        );
      }
    } else data = await env.client.get<InfoJson>("/info");
    const out = ["Server:"];
    if (data.ServerVersion) out.push(` Server Version: ${data.ServerVersion}`);
    let text = out.join("\n") + "\n" + formatSwarmInfo(data);
    const tail: string[] = [];
    if (data.KernelVersion) tail.push(` Kernel Version: ${data.KernelVersion}`);
    if (data.OperatingSystem) tail.push(` Operating System: ${data.OperatingSystem}`);
    if (data.OSType) tail.push(` OSType: ${data.OSType}`);
    if (data.Architecture) tail.push(` Architecture: ${data.Architecture}`);
    if (data.NCPU) tail.push(` CPUs: ${data.NCPU}`);
    if (data.Name) tail.push(` Name: ${data.Name}`);
    if (data.ID) tail.push(` ID: ${data.ID}`);
    if (tail.length > 0) text += tail.join("\n") + "\n";
    await env.io.out(text);
  },
};

/** Runs `shoal info`. */
export function infoCommand(args: string[]): Promise<number> {
  return runSubcommand("shoal info", info, args);
}
