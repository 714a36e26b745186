/**
 * A worker node: no log and no API, only an agent that runs the tasks a manager assigns it,
 * through a {@linkcode RemoteSession} with mutual TLS (its identity comes from `swarm join`, see
 * `join.ts` and `identity.ts`).
 *
 * - The agent starts once the first full set of assignments has arrived, so that its first pass
 *   (which reports tasks lost by a restart) sees what the manager expects to run here.
 * - While the manager is unreachable the tasks keep running and the session keeps redialling.
 * - The certificate is renewed over the session at a random point between 50 % and 80 % of its
 *   validity (SwarmKit's), stored atomically, and presented from the next connection on (the
 *   session reconnects at once).
 * - A manager that refuses the node for good (it was removed) stops it: `stopped` resolves with
 *   the manager's words.
 *
 * @module
 */
import type { Logger } from "../actors/runtime.ts";
import type { Agent } from "../actors/agent/agent.ts";
import { RemoteSession, type RemoteSessionOptions } from "../actors/agent/remote_session.ts";
import {
  certificateValidity,
  createNodeCSR,
  type NodeTlsInfo,
  nodeTlsInfo,
  renewalTime,
  verifyNodeCertificate,
} from "./ca.ts";
import type { TrustInfo } from "./agent_protocol.ts";
import {
  type Credentials,
  type NodeConfig,
  readCredentials,
  readNodeConfig,
  removeSwarmState,
  writeCredentials,
  writeNodeConfig,
} from "./identity.ts";
import { createAgent, describeThisNode, findDocker, runtimesOf } from "./agent_host.ts";
import { SHOAL_VERSION } from "../web/http.ts";
import { agentTaskLogs } from "./task_logs.ts";
import { type Mesh, type MeshOptions, startMesh } from "./mesh/mesh.ts";
import { sessionMeshSource } from "./mesh/feed.ts";

/** What a worker's `stopped` resolves with when it was promoted to manager (`node promote`). */
export const PROMOTED = "promoted to manager";

/** Options of {@linkcode startWorker}. */
export interface WorkerOptions {
  /** A data dir a `swarm join` wrote. */
  dataDir: string;
  /** Run container tasks with the local Docker daemon when one answers (default true). */
  docker?: boolean;
  /** The address this node says it is reachable at. */
  advertiseAddr?: string;
  logger?: Logger;
  /** Overrides of the session's options (backoff, for tests). */
  session?: Partial<RemoteSessionOptions>;
  /** Settings of this node's mesh (`node/mesh`), or false to run none. */
  mesh?: Partial<Omit<MeshOptions, "nodeId" | "source" | "credentials">> | false;
}

/** A running worker. */
export interface RunningWorker {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly managers: string[];
  readonly session: RemoteSession;
  /** The agent, once the first assignments arrived. */
  readonly agent: Agent | undefined;
  /** This node's mesh (published ports, VIPs, resolver), unless disabled. */
  readonly mesh: Mesh | undefined;
  /** Resolves with the agent once it runs. */
  readonly agentStarted: Promise<Agent>;
  /** Resolves when the worker stopped on its own (refused by the manager), with why. */
  readonly stopped: Promise<string>;
  /** The current credentials. */
  credentials(): Credentials;
  /** Docker's `/info` shape, as this node sees itself. */
  info(): WorkerInfo;
  /** Renews the certificate now (also done on schedule). */
  renewCertificate(): Promise<void>;
  /** Stops the tasks and the session, telling the manager the node shuts down. */
  close(): Promise<void>;
  /**
   * Leaves the swarm: tells the manager (the node becomes down), stops the tasks, and removes
   * the node's swarm state from its data dir. Without `force`, an unreachable manager is an error.
   */
  leave(force: boolean): Promise<void>;
}

/** What `shoal info` shows of a worker (Docker's `/info` fields). */
export interface WorkerInfo {
  ID: string;
  Name: string;
  ServerVersion: string;
  Swarm: {
    NodeID: string;
    NodeAddr: string;
    LocalNodeState: "active" | "pending";
    ControlAvailable: false;
    Error: string;
    RemoteManagers: { NodeID: string; Addr: string }[];
  };
}

/** Starts the worker whose identity is in `options.dataDir`. */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { dataDir, logger } = options;
  const config = await readNodeConfig(dataDir);
  if (config === undefined || config.role !== "worker") {
    throw new Error(`${dataDir} holds no worker node (join a swarm with "shoal swarm join")`);
  }
  let creds = await readCredentials(dataDir);
  if (creds === undefined) {
    throw new Error(
      `${dataDir}/certificates is missing or incomplete: this node cannot prove who it is; leave (shoal swarm leave --force) and join again`,
    );
  }
  const managers = config.managers ?? [];
  if (managers.length === 0) throw new Error(`${dataDir}/node.json names no manager`);
  const docker = options.docker === false ? undefined : await findDocker(logger);
  const description = describeThisNode(runtimesOf(docker));
  /** What this node trusts and which root signed its certificate (sent in its description). */
  let tlsInfo: NodeTlsInfo | undefined;
  const refreshTlsInfo = async () => {
    tlsInfo = await nodeTlsInfo(creds!.cert, creds!.ca).catch(() => undefined);
  };
  await refreshTlsInfo();

  const stopped = Promise.withResolvers<string>();
  /** Resolves once certificate renewal is set up (the root CA may change before that). */
  const renewalReady = Promise.withResolvers<void>();
  /** Root CA changes the manager announced, followed one after another. */
  let following = Promise.resolve();
  let closing = false;
  let promoting = false;
  /**
   * `node promote`: the node gets a manager certificate over its session, records its raft id,
   * and stops as a worker; `stopped` resolves with {@linkcode PROMOTED} and whoever runs it
   * starts it again as a manager (`startNode` in `join` mode), which joins the Raft group.
   */
  const promote = async (raftId: number) => {
    await renewing?.catch(() => {});
    await renew();
    const id = await verifyNodeCertificate({
      rootCA: { certPem: creds!.ca },
      certPem: creds!.cert,
      now: Date.now(),
    });
    if (id.role !== "manager") throw new Error("the manager issued a worker certificate");
    await writeNodeConfig(dataDir, {
      ...config,
      role: "manager",
      raftId,
      managers: [...new Set([...(session.info?.managers ?? []), ...managers])],
    });
    logger?.info(`node ${config.nodeId}: promoted to manager (raft ${raftId}): restarting as one`);
    await shutdown(false);
    stopped.resolve(PROMOTED);
  };
  const session = new RemoteSession({
    managers,
    credentials: () => creds!,
    description: () => (tlsInfo ? { ...description, tlsInfo } : description),
    addr: options.advertiseAddr ?? "",
    logger,
    onRefused: (err) => {
      if (closing) return;
      void shutdown(false).finally(() => stopped.resolve(err.message));
    },
    onTrust: (info) => {
      following = following.then(() => renewalReady.promise).then(() => followTrust(info))
        .catch((err) =>
          logger?.warn(`node ${config.nodeId}: following the swarm's root CA: ${err}`)
        );
    },
    onPromoted: (raftId) => {
      if (closing || promoting) return;
      promoting = true;
      void promote(raftId).catch((err) => {
        promoting = false;
        logger?.warn(`node ${config.nodeId}: becoming a manager failed, will retry: ${err}`);
      });
    },
    ...options.session,
  });
  const agentStarted = Promise.withResolvers<Agent>();
  agentStarted.promise.catch(() => {});
  let agent: Agent | undefined;
  session.ready.then(async () => {
    if (closing) return;
    const a = await createAgent({
      nodeId: config.nodeId,
      dataDir,
      session,
      docker,
      logger,
      dns: () => mesh?.dnsServers ?? [],
    });
    if (closing) return;
    agent = a;
    a.start();
    session.serveLogs((taskId, readOptions) => agentTaskLogs(a, taskId, readOptions));
    agentStarted.resolve(a);
  }).catch((err) => agentStarted.reject(err));
  session.start();

  // The mesh follows the map the dispatcher sends over the session.
  let mesh: Mesh | undefined;
  if (options.mesh !== false) {
    try {
      mesh = await startMesh({
        nodeId: config.nodeId,
        source: sessionMeshSource(session, logger),
        credentials: () => creds!,
        logger,
        ...options.mesh,
      });
      if (closing) { // refused while the mesh was starting
        await mesh.close();
        mesh = undefined;
      }
    } catch (err) {
      logger?.error(`node ${config.nodeId}: the mesh did not start: ${(err as Error).message}`);
    }
  }

  // Root rotation: trust the roots the manager names, and renew at once when the certificate is
  // not from the root that signs now. The manager's word is authenticated by mutual TLS.
  const followTrust = async (info: TrustInfo): Promise<void> => {
    if (closing || promoting) return;
    let reconnect = false;
    if (info.trust !== creds!.ca) {
      const next = { ...creds!, ca: info.trust };
      await writeCredentials(dataDir, next);
      creds = next;
      mesh?.setCredentials(next);
      reconnect = true;
      logger?.info(
        `node ${config.nodeId}: the swarm's trusted root CAs changed: now trusting them`,
      );
    }
    await refreshTlsInfo();
    if (tlsInfo?.certIssuerPublicKey !== info.issuerKey) {
      logger?.info(
        `node ${config.nodeId}: the swarm's root CA is rotating: renewing this node's certificate`,
      );
      await renewing?.catch(() => {});
      renewing = renew().finally(() => (renewing = undefined));
      await renewing;
      scheduleRenewal();
      return;
    }
    // A new description (the roots trusted) goes with the next session's hello.
    if (reconnect) session.reconnect();
  };

  // Certificate renewal.
  let renewTimer: ReturnType<typeof setTimeout> | undefined;
  let renewing: Promise<void> | undefined;
  const renew = async (): Promise<void> => {
    await session.whenConnected();
    const csr = await createNodeCSR({ nodeId: config.nodeId });
    const certPem = await session.renewCertificate(csr.csrPem);
    const identity = await verifyNodeCertificate({
      rootCA: { certPem: creds!.ca },
      certPem,
      now: Date.now(),
    });
    if (identity.nodeId !== config.nodeId) {
      throw new Error(`the manager issued a certificate for node ${identity.nodeId}`);
    }
    const next = { key: csr.keyPem, cert: certPem, ca: creds!.ca };
    await writeCredentials(dataDir, next);
    creds = next;
    mesh?.setCredentials(next);
    await refreshTlsInfo();
    logger?.info(
      `node ${config.nodeId}: certificate renewed, valid until ${
        new Date(identity.notAfter).toISOString()
      }`,
    );
    session.reconnect();
  };
  const scheduleRenewal = (retryMs?: number) => {
    clearTimeout(renewTimer);
    if (closing) return;
    const { notBefore, notAfter } = certificateValidity(creds!.cert);
    const at = retryMs === undefined
      ? renewalTime(notBefore, notAfter, Math.random())
      : Date.now() + retryMs;
    // Timers cannot wait longer than about 24 days: wake up daily and look again.
    const wait = Math.min(Math.max(0, at - Date.now()), 86_400_000);
    renewTimer = setTimeout(() => {
      if (Date.now() < at) {
        scheduleRenewal(at - Date.now());
        return;
      }
      renewing = renew().then(
        () => scheduleRenewal(),
        (err) => {
          logger?.warn(`node ${config.nodeId}: certificate renewal failed: ${err.message}`);
          const left = notAfter - Date.now();
          scheduleRenewal(Math.max(1_000, Math.min(30_000, left / 10)));
        },
      ).finally(() => (renewing = undefined));
    }, wait);
  };
  scheduleRenewal();
  renewalReady.resolve();

  const shutdown = async (tellManager: false | "down" | "leave"): Promise<void> => {
    closing = true;
    clearTimeout(renewTimer);
    session.drain();
    await agent?.stop();
    await mesh?.close();
    if (tellManager !== false && session.connected) {
      try {
        await session.markDown(tellManager === "leave");
      } catch (err) {
        if (tellManager === "leave") throw err;
        logger?.warn(`node ${config.nodeId}: could not tell the manager: ${err}`);
      }
    }
    session.close();
    // A renewal under way ends with the session (or has written its files): none after this.
    await renewing?.catch(() => {});
    docker?.close();
  };

  const worker: RunningWorker = {
    nodeId: config.nodeId,
    clusterId: config.clusterId ?? "",
    managers,
    session,
    get agent() {
      return agent;
    },
    get mesh() {
      return mesh;
    },
    agentStarted: agentStarted.promise,
    stopped: stopped.promise,
    credentials: () => creds!,
    info: () => workerInfo(config, session, description.hostname),
    renewCertificate: async () => {
      await renewing?.catch(() => {});
      await renew();
      scheduleRenewal();
    },
    close: async () => {
      if (closing) return;
      await shutdown("down");
    },
    leave: async (force) => {
      if (!session.connected && !force) {
        throw new Error(
          `cannot reach a manager to leave the swarm (${
            session.lastError || "not connected"
          }): use --force to leave anyway (the manager then marks this node down when its heartbeats stop)`,
        );
      }
      try {
        await shutdown("leave");
      } catch (err) {
        if (!force) throw err;
      }
      await removeSwarmState(dataDir);
    },
  };
  return worker;
}

function workerInfo(config: NodeConfig, session: RemoteSession, hostname: string): WorkerInfo {
  const info = session.info ?? session.lastInfo;
  const managers = info?.managers ?? config.managers ?? [];
  return {
    ID: config.nodeId,
    Name: hostname,
    ServerVersion: SHOAL_VERSION,
    Swarm: {
      NodeID: config.nodeId,
      NodeAddr: info?.addr ?? "",
      LocalNodeState: session.connected ? "active" : "pending",
      ControlAvailable: false,
      Error: session.connected ? "" : session.lastError,
      RemoteManagers: managers.map((addr) => ({ NodeID: "", Addr: addr })),
    },
  };
}

/**
 * `swarm leave` for a worker that is not running: tells its manager it leaves (the node becomes
 * down) without starting its agent, then removes its swarm state. Without `force`, a manager
 * that cannot be reached is an error; a manager that no longer knows the node is not.
 */
export async function leaveStoppedWorker(
  dataDir: string,
  force: boolean,
  timeoutMs = 5_000,
): Promise<void> {
  const config = await readNodeConfig(dataDir);
  const creds = await readCredentials(dataDir);
  if (config?.role !== "worker" || creds === undefined || !config.managers?.length) {
    if (!force) throw new Error(`${dataDir} holds no complete worker identity: use --force`);
    await removeSwarmState(dataDir);
    return;
  }
  const refused = Promise.withResolvers<string>();
  const session = new RemoteSession({
    managers: config.managers,
    credentials: () => creds,
    description: () => describeThisNode(),
    maxBackoffMs: 500,
    onRefused: (err) => refused.resolve(err.message),
  });
  session.start();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const outcome = await Promise.race([
      session.ready.then(() => "connected", () => "closed"),
      refused.promise.then(() => "refused"),
      new Promise<string>((r) => (timer = setTimeout(() => r("timeout"), timeoutMs))),
    ]);
    if (outcome === "connected") await session.markDown(true);
    else if (outcome !== "refused" && !force) {
      throw new Error(
        `cannot reach a manager to leave the swarm (${
          session.lastError || "no answer"
        }): use --force to leave anyway`,
      );
    }
  } finally {
    clearTimeout(timer);
    session.close();
  }
  await removeSwarmState(dataDir);
}
