/**
 * A Shoal manager node process: opens its data dir, replays its log into a manager, initialises
 * a swarm on first start, serves the API, runs its own agent in process, and (given a cluster
 * listen address) the dispatcher: agent sessions of workers and joins, with mutual TLS. Workers
 * are `worker.ts`.
 *
 * Without a cluster listen address this is the single-node swarm of `deno task start` (one
 * manager, its own log in SQLite, no port but the API's).
 *
 * @module
 */
import {
  ClusterSpec,
  type ClusterSpec as ClusterSpecType,
  type ShoalEvent,
} from "../events/schema.ts";
import { equalData } from "../actors/equal.ts";
import { SqliteLog, type SyncMode } from "../events/sqlite_log.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import type { Logger } from "../actors/runtime.ts";
import { createApiHandler } from "../web/api.ts";
import { orchestrator } from "../actors/projections/orchestrator/decide.ts";
import { allocator } from "../actors/projections/allocator/decide.ts";
import { scheduler } from "../actors/projections/scheduler/decide.ts";
import { type Agent, LocalSession } from "../actors/agent/agent.ts";
import type { ClusterState } from "../actors/state.ts";
import {
  certificateValidity,
  createNodeCSR,
  createRootCA,
  issueNodeCertificate,
  newJoinToken,
  renewalTime,
  verifyNodeCertificate,
} from "./ca.ts";
import { Dispatcher } from "./dispatcher.ts";
import {
  type Credentials,
  readCredentials,
  readNodeConfig,
  removeSwarmState,
  writeCredentials,
  writeNodeConfig,
} from "./identity.ts";
import { createAgent, describeThisNode, findDocker, runtimesOf } from "./agent_host.ts";
import { DEFAULT_CLUSTER_PORT } from "./agent_protocol.ts";

export { describeThisNode };

/** Options of {@linkcode startNode}. */
export interface NodeOptions {
  /** Where the node keeps its log and identity. Created when missing. */
  dataDir: string;
  /** `host:port` the API listens on; port 0 picks a free one. */
  listenAddr: string;
  /** SQLite sync mode of the log (default `full`). */
  synchronous?: SyncMode;
  /** Run container tasks with the local Docker daemon when one answers (default true). */
  docker?: boolean;
  logger?: Logger;
  /**
   * `host:port` of the cluster port: agent sessions and joins (mutual TLS). Without it, no other
   * node can join.
   */
  clusterListenAddr?: string;
  /**
   * `host` or `host:port` other nodes reach the cluster port at (`--advertise-addr`); by default
   * the listen host, or this machine's first non-loopback IPv4 address when it listens on all.
   */
  advertiseAddr?: string;
  /** Settings of a swarm this start creates (`swarm init` flags). */
  spec?: ClusterSpecType;
  /**
   * `init`: create a swarm, refusing a data dir that has one; `resume`: only resume one;
   * `auto` (default): either.
   */
  mode?: "init" | "resume" | "auto";
}

/** A running node. */
export interface RunningNode {
  manager: Manager;
  /** The agent running this node's tasks. */
  agent: Agent;
  nodeId: string;
  /** Where the API listens, as `http://host:port`. */
  apiUrl: string;
  /** The dispatcher, when the node has a cluster port. */
  dispatcher: Dispatcher | undefined;
  /** The cluster address nodes join and connect to (`host:port`), if any. */
  clusterAddr: string | undefined;
  /** Whether this start created the swarm. */
  created: boolean;
  /** Resolves when the node stopped on its own (it left the swarm), with why. */
  stopped: Promise<string>;
  /** Marks the node down in the log and stops everything. */
  close(): Promise<void>;
  /**
   * Leaves the swarm. The only manager refuses without `force`; with it, the node stops and its
   * swarm state (log, certificates, identity) is deleted, as Docker's.
   */
  leave(force: boolean): Promise<void>;
}

/** Docker's words when the last manager is asked to leave without --force. */
export const LAST_MANAGER_LEAVE =
  "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.";

/** A data dir that already holds a swarm, for `swarm init` and `swarm join`. */
export class AlreadyInSwarmError extends Error {
  /** Creates the error. */
  constructor(dataDir: string) {
    super(
      `This node is already part of a swarm. Use "shoal start --data-dir ${dataDir}" to run it again, or "shoal swarm leave" to leave this swarm and join another one.`,
    );
    this.name = "AlreadyInSwarmError";
  }
}

/** Splits `host:port`, with a clear error for anything else. */
export function parseHostPort(addr: string): { hostname: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(addr);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) {
    throw new RangeError(`invalid address "${addr}": expected HOST:PORT, e.g. 127.0.0.1:4375`);
  }
  return { hostname: m[1].replace(/^\[(.*)\]$/, "$1"), port };
}

/**
 * The address to advertise for a cluster port bound to `listen`: `advertise` (a host, or
 * host:port) when given, else the listen host, else (listening on every address) this machine's
 * first non-loopback IPv4 address, else loopback.
 */
export function chooseAdvertiseAddr(listen: string, advertise: string | undefined): string {
  const { hostname, port } = parseHostPort(listen);
  const withPort = (host: string) => `${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (advertise) {
    if (/^\[.*\]:\d+$/.test(advertise) || /^[^:]+:\d+$/.test(advertise)) return advertise;
    return withPort(advertise.replace(/^\[(.*)\]$/, "$1"));
  }
  if (hostname !== "0.0.0.0" && hostname !== "::") return withPort(hostname);
  const ip = Deno.networkInterfaces().find((i) => i.family === "IPv4" && !/^127\./.test(i.address))
    ?.address;
  return withPort(ip ?? "127.0.0.1");
}

/** Starts a node; resolves once its state is replayed and its API listens. */
export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const { hostname, port } = parseHostPort(options.listenAddr);
  const mode = options.mode ?? "auto";
  await Deno.mkdir(options.dataDir, { recursive: true });
  const stored = await readNodeConfig(options.dataDir);
  if (stored?.role === "worker") {
    if (mode === "init") throw new AlreadyInSwarmError(options.dataDir);
    throw new Error(
      `${options.dataDir} belongs to worker node ${stored.nodeId}: run it with "shoal start --data-dir ${options.dataDir}"`,
    );
  }
  if (stored === undefined && mode === "resume") {
    throw new Error(`${options.dataDir} holds no swarm: create one with "shoal swarm init"`);
  }
  const nodeId = stored?.nodeId ?? newId();
  // The id is kept before the swarm is created, so a crash in between cannot orphan the log.
  if (stored === undefined) await writeNodeConfig(options.dataDir, { nodeId, role: "manager" });
  const log = new SqliteLog({
    path: `${options.dataDir}/log.db`,
    synchronous: options.synchronous,
  });
  // SwarmKit's pipeline order: orchestrator, allocator, scheduler; then the dispatcher (here,
  // this node's LocalSession and, with a cluster port, the Dispatcher).
  const manager = new Manager({
    log,
    logger: options.logger,
    projections: [orchestrator, allocator, scheduler],
  });
  let agent: Agent | undefined;
  let dispatcher: Dispatcher | undefined;
  let renewTimer: ReturnType<typeof setTimeout> | undefined;
  const docker = options.docker === false ? undefined : await findDocker(options.logger);
  const runtimes = runtimesOf(docker);
  let handler: ReturnType<typeof createApiHandler> | undefined;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  const cleanup = async () => {
    clearTimeout(renewTimer);
    await agent?.stop();
    await dispatcher?.stop();
    // Long-lived responses (an `events` stream) end first, or shutdown would wait on them.
    handler?.close();
    await server?.shutdown();
    docker?.close();
    await manager.stop();
    await log.close();
  };
  try {
    await manager.start();
    if (manager.state.cluster !== undefined && mode === "init") {
      throw new AlreadyInSwarmError(options.dataDir);
    }
    if (manager.state.cluster === undefined && mode === "resume") {
      throw new Error(`${options.dataDir} holds no swarm: create one with "shoal swarm init"`);
    }
    await manager.setLeader(true);
    handler = createApiHandler(manager, { nodeId });
    server = Deno.serve({ hostname, port, onListen: () => {} }, handler);
    const apiAddr = `${server.addr.hostname}:${server.addr.port}`;
    const by = `node:${nodeId}`;

    let created = false;
    const clusterListen = options.clusterListenAddr;
    // The advertised address is known before the port is bound only if the port is not 0.
    let clusterAddr = clusterListen && parseHostPort(clusterListen).port !== 0
      ? chooseAdvertiseAddr(clusterListen, options.advertiseAddr)
      : undefined;
    if (manager.state.cluster === undefined) {
      const clusterId = newId();
      const rootCA = await createRootCA({ clusterId, now: Date.now() });
      await manager.execute({
        kind: "InitCluster",
        clusterId,
        spec: options.spec ?? ClusterSpec.parse({}),
        rootCA,
        joinTokens: { worker: newJoinToken(rootCA), manager: newJoinToken(rootCA) },
        node: {
          id: nodeId,
          description: describeThisNode(runtimes),
          addr: clusterAddr ? hostOf(clusterAddr) : hostname,
        },
      }, { by: "user:swarm.init" });
      created = true;
    }
    const state = manager.state;
    const self = state.nodes.get(nodeId);
    if (self === undefined) {
      throw new Error(
        `this data dir belongs to node ${nodeId}, which is not a member of swarm ${state.cluster?.id}`,
      );
    }

    if (clusterListen !== undefined) {
      const credentials = await managerCredentials(options.dataDir, state, nodeId);
      dispatcher = new Dispatcher({
        manager,
        nodeId,
        listenAddr: clusterListen,
        advertiseAddr: clusterAddr,
        credentials,
        logger: options.logger,
      });
      const bound = await dispatcher.start();
      clusterAddr ??= chooseAdvertiseAddr(bound, options.advertiseAddr);
      const d = dispatcher;
      const scheduleRenewal = (cert: string, at?: number) => {
        const { notBefore, notAfter } = certificateValidity(cert);
        at ??= renewalTime(notBefore, notAfter, Math.random());
        // Timers cannot wait longer than about 24 days: wake up daily and look again.
        renewTimer = setTimeout(async () => {
          if (Date.now() < at) return scheduleRenewal(cert, at);
          try {
            const renewed = await managerCredentials(options.dataDir, manager.state, nodeId);
            d.setCredentials(renewed);
            options.logger?.info(`node ${nodeId}: manager certificate renewed`);
            scheduleRenewal(renewed.cert);
          } catch (err) {
            options.logger?.error(`node ${nodeId}: renewing the certificate failed: ${err}`);
          }
        }, Math.min(Math.max(0, at - Date.now()), 86_400_000));
      };
      scheduleRenewal(credentials.cert);
    }
    await writeNodeConfig(options.dataDir, {
      nodeId,
      role: "manager",
      clusterId: state.cluster!.id,
      ...(clusterListen ? { listenAddr: clusterListen, advertiseAddr: options.advertiseAddr } : {}),
      apiAddr: options.listenAddr,
    });

    const description = describeThisNode(runtimes);
    const statusAddr = clusterAddr ? hostOf(clusterAddr) : hostname;
    const changed: ShoalEvent[] = equalData(self.description, description) ? [] : [{
      type: "NodeDescriptionUpdated",
      v: 1,
      data: { id: nodeId, description },
      meta: { by, reason: "node description changed since the last start" },
    }];
    await manager.propose([
      ...changed,
      {
        type: "NodeStatusChanged",
        v: 1,
        data: { id: nodeId, status: { state: "ready", message: "", addr: statusAddr } },
        meta: { by, reason: "node process started" },
      },
      {
        type: "NodeManagerStatusChanged",
        v: 1,
        data: {
          id: nodeId,
          managerStatus: {
            raftId: "1",
            // What workers dial (and `swarm join-token` prints): the cluster port when there is one.
            addr: clusterAddr ?? apiAddr,
            leader: true,
            reachability: "reachable",
          },
        },
        meta: { by, reason: "only manager of the swarm" },
      },
    ], by);

    agent = await createAgent({
      nodeId,
      dataDir: options.dataDir,
      session: new LocalSession(manager, nodeId),
      docker,
      logger: options.logger,
    });
    agent.start();
    const runningAgent = agent;

    const stopped = Promise.withResolvers<string>();
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        try {
          await runningAgent.stop();
          await manager.propose([{
            type: "NodeStatusChanged",
            v: 1,
            data: {
              id: nodeId,
              status: { state: "down", message: "node shut down", addr: statusAddr },
            },
            meta: { by, reason: "node process stopping" },
          }], by);
        } finally {
          await cleanup();
        }
      })();
      return closing;
    };
    return {
      manager,
      agent: runningAgent,
      nodeId,
      apiUrl: `http://${apiAddr}`,
      dispatcher,
      clusterAddr,
      created,
      stopped: stopped.promise,
      close,
      async leave(force) {
        // Until managers replicate the log with Raft, this manager is always the last one.
        if (!force) throw new Error(LAST_MANAGER_LEAVE);
        await close();
        await removeSwarmState(options.dataDir);
        stopped.resolve("left the swarm");
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function hostOf(addr: string): string {
  return parseHostPort(addr).hostname;
}

/**
 * This manager's key and certificate for the cluster port: the stored ones while they are of
 * this swarm's root, for this node, and not yet due for renewal; else new ones, signed here
 * (the manager holds the root key) and stored.
 */
async function managerCredentials(
  dataDir: string,
  state: ClusterState,
  nodeId: string,
): Promise<Credentials> {
  const cluster = state.cluster!;
  const now = Date.now();
  const stored = await readCredentials(dataDir);
  if (stored !== undefined && stored.ca === cluster.rootCA.certPem) {
    try {
      const id = await verifyNodeCertificate({ rootCA: cluster.rootCA, certPem: stored.cert, now });
      if (
        id.nodeId === nodeId && id.role === "manager" &&
        now < renewalTime(id.notBefore, id.notAfter, 0.5)
      ) {
        return stored;
      }
    } catch {
      // Expired or not ours: issue a new one.
    }
  }
  const csr = await createNodeCSR({ nodeId });
  const issued = await issueNodeCertificate({
    rootCA: cluster.rootCA,
    csrPem: csr.csrPem,
    nodeId,
    role: "manager",
    clusterId: cluster.id,
    now,
    expiryMs: cluster.spec.caConfig.nodeCertExpiry,
  });
  const creds = { key: csr.keyPem, cert: issued.certPem, ca: cluster.rootCA.certPem };
  await writeCredentials(dataDir, creds);
  return creds;
}

/** The default cluster port, for help texts. */
export { DEFAULT_CLUSTER_PORT };
