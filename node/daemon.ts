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
import type { EventLog } from "../events/log.ts";
import { RaftLog } from "../events/raft_log.ts";
import { RaftDriver } from "../events/raft/driver.ts";
import { ClusterStateMachine } from "../actors/state_machine.ts";
import { SqliteStorage } from "../events/raft/sqlite_storage.ts";
import type { RootCA } from "../events/schema.ts";
import { issueWithSwarmCA, MANAGER_OU, signingCA, trustBundle } from "./ca.ts";
import { RootRotation } from "./ca_rotation.ts";
import { RemoteLeaderLink } from "./leader_link.ts";
import { ManagerLogLink } from "./manager_logs.ts";
import { RaftMembers } from "./raft_members.ts";
import { type DataKeys, generateUnlockKey, initKeys, openKeys, readKeyFile } from "./keys.ts";
import { lockedApi } from "./locked.ts";
import { type Mesh, type MeshOptions, startMesh, stateMeshSource } from "./mesh/mod.ts";
import { forceNewCluster } from "./force_new_cluster.ts";
import { newId } from "../events/ids.ts";
import { LeaderUnavailableError, Manager } from "../actors/manager.ts";
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
import { taskLogSource } from "./task_logs.ts";
import {
  type Credentials,
  type KeySealing,
  readCredentials,
  readNodeConfig,
  removeSwarmState,
  resealCredentials,
  writeCredentials,
  writeNodeConfig,
} from "./identity.ts";
import { createAgent, describeThisNode, findDocker, runtimesOf } from "./agent_host.ts";
import { DEFAULT_CLUSTER_PORT, MANAGER_SERVERNAME } from "./agent_protocol.ts";

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
   * `auto` (default): either; `join`: first start of a manager that just joined (its node.json
   * and certificate are written; it asks the leader to add it to the Raft group).
   */
  mode?: "init" | "resume" | "auto" | "join";
  /**
   * `host:port` the Raft transport between managers listens on (mutual TLS); by default the
   * cluster port's host and the next port (4378 for 4377), or a free loopback port without one.
   */
  raftListenAddr?: string;
  /** Settings of this node's mesh (`node/mesh`), or false to run none (default: run one). */
  mesh?: Partial<Omit<MeshOptions, "nodeId" | "source" | "credentials">> | false;
  /** The unlock key of an autolocked manager; without it, it starts locked (see `onLocked`). */
  unlockKey?: string;
  /** Called with the API address when the manager starts locked and waits for `swarm unlock`. */
  onLocked?: (apiUrl: string) => void;
  /**
   * Take the swarm over from this data dir's log as its only manager, keeping what it holds
   * committed (`swarm init --force-new-cluster`, `force_new_cluster.ts`).
   */
  forceNewCluster?: boolean;
  /** Managers' cluster addresses to ask first (a join gives them), until the state names the leader. */
  joinManagers?: string[];
  /**
   * Raft entries between snapshots of the manager's state (after which the log is compacted):
   * default the `SHOAL_RAFT_SNAPSHOT_ENTRIES` environment variable, else 10,000.
   */
  raftSnapshotEntries?: number;
  /** Entries kept behind a snapshot for slow members: default `SHOAL_RAFT_KEEP_ENTRIES`, else 500. */
  raftKeepEntries?: number;
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
  /** The Raft member (absent for a data dir whose log predates Raft). */
  raft: RaftDriver | undefined;
  /** The unlock key of a swarm this start created with autolock: to show once. */
  unlockKey: string | undefined;
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

/** Environment variable `name` as a whole number from `min`, or undefined when unset. */
function countFromEnv(name: string, min: number): number | undefined {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new RangeError(`${name} must be a whole number from ${min}; got "${raw}"`);
  }
  return n;
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
    // A port of 0 (the listen port, asked of the system) is the port actually bound.
    if (/^\[.*\]:0$/.test(advertise) || /^[^:]+:0$/.test(advertise)) {
      return withPort(advertise.replace(/:0$/, "").replace(/^\[(.*)\]$/, "$1"));
    }
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
  if (stored === undefined && (mode === "resume" || mode === "join")) {
    throw new Error(`${options.dataDir} holds no swarm: create one with "shoal swarm init"`);
  }
  if (stored !== undefined && mode === "init") throw new AlreadyInSwarmError(options.dataDir);
  const nodeId = stored?.nodeId ?? newId();
  const legacy = await exists(`${options.dataDir}/log.db`) &&
    !await exists(`${options.dataDir}/raft.db`);
  const joining = mode === "join";
  const raftId = stored?.raftId ?? (legacy ? undefined : 1);
  if (!legacy && raftId === undefined) {
    throw new Error(`${options.dataDir}/node.json names no raft id for manager ${nodeId}`);
  }
  const clusterListen = options.clusterListenAddr ?? stored?.listenAddr;
  const advertiseOpt = options.advertiseAddr ?? stored?.advertiseAddr;
  // The advertised address is known before the port is bound only if the port is not 0.
  let clusterAddr = clusterListen && parseHostPort(clusterListen).port !== 0
    ? chooseAdvertiseAddr(clusterListen, advertiseOpt)
    : undefined;

  // A new swarm: its id, root CA and this manager's certificate exist before the log does,
  // because the Raft transport between managers is mutual TLS from the first byte.
  let clusterId = stored?.clusterId;
  let newRoot: RootCA | undefined;
  if (stored === undefined) {
    clusterId = newId();
    newRoot = await createRootCA({ clusterId, now: Date.now() });
    const creds = await issueManagerCredentials(newRoot, clusterId, nodeId, options.spec);
    await writeCredentials(options.dataDir, creds);
    // The id is kept before the swarm is created, so a crash in between cannot orphan the log.
    await writeNodeConfig(options.dataDir, { nodeId, role: "manager", clusterId, raftId });
  }
  // A manager's key may be sealed by autolock: it is read once the data keys are open (below).
  let credentials = legacy ? await readCredentials(options.dataDir) : undefined;

  let driver: RaftDriver | undefined;
  let keys: DataKeys | undefined;
  /** The unlock key a new autolocked swarm was made with, shown once. */
  let newUnlockKey: string | undefined;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  let delegate: (req: Request) => Response | Promise<Response> = () =>
    new Response("starting", { status: 503 });
  // The state verifies raft peers and finds the leader; it exists once the manager does.
  const ref: { manager?: Manager } = {};
  let link: RemoteLeaderLink | undefined;
  /** Other managers, for the logs of tasks this manager cannot reach itself. */
  let managerLogs: ManagerLogLink | undefined;
  let log: EventLog;
  // The manager's state, which the Raft driver snapshots and restores (actors/state_machine.ts).
  const fold = new ClusterStateMachine();
  const raftListen = legacy ? undefined : raftListenAddr(
    options.raftListenAddr ?? stored?.raftListenAddr,
    clusterListen,
  );
  if (legacy) {
    log = new SqliteLog({ path: `${options.dataDir}/log.db`, synchronous: options.synchronous });
  } else {
    const { hostname: raftHost, port: raftPort } = parseHostPort(raftListen!);
    // Encryption at rest (node/keys.ts): a new log is encrypted with a data key kept in
    // keys.json, wrapped by a stored key, or with autolock by a key derived from the unlock key,
    // which is never stored: such a manager serves only `swarm unlock` until it is given it. A
    // log written before encryption stays as it is.
    const keyFile = await readKeyFile(options.dataDir);
    if (keyFile?.autolock && options.unlockKey === undefined) {
      const locked = lockedApi(options.dataDir, nodeId);
      delegate = locked.handler;
      server = Deno.serve({ hostname, port, onListen: () => {} }, (req) => delegate(req));
      options.onLocked?.(`http://${server.addr.hostname}:${server.addr.port}`);
      keys = await locked.unlocked;
    } else if (keyFile !== undefined) {
      keys = await openKeys(options.dataDir, options.unlockKey);
    } else if (!await exists(`${options.dataDir}/raft.db`)) {
      const autolock = stored === undefined && options.spec?.encryption.autoLockManagers === true;
      newUnlockKey = autolock ? generateUnlockKey() : undefined;
      keys = (await initKeys(options.dataDir, { autolock, unlockKey: newUnlockKey })).keys;
    }
    // The TLS key is sealed while autolock is on (node/identity.ts), and stored plain otherwise.
    if (keys !== undefined) await resealCredentials(options.dataDir, keys);
    credentials = await readCredentials(options.dataDir, keys);
    if (credentials === undefined) {
      throw new Error(`${options.dataDir} holds no certificate for manager ${nodeId}`);
    }
    const storage = new SqliteStorage({
      path: `${options.dataDir}/raft.db`,
      synchronous: options.synchronous,
      cipher: keys?.cipher,
      // A new swarm's first manager is its only voter; a joining manager starts empty.
      confState: stored === undefined ? { voters: [raftId!], learners: [] } : undefined,
    });
    if (options.forceNewCluster) {
      if (stored === undefined || !await exists(`${options.dataDir}/raft.db`)) {
        storage.close();
        throw new Error(
          `${options.dataDir} holds no manager's raft log: --force-new-cluster recovers a swarm from a manager's data dir`,
        );
      }
      try {
        const forced = forceNewCluster(storage, raftId!);
        options.logger?.warn(
          `node ${nodeId}: forced a new cluster: removed raft members ${
            forced.removed.join(", ") || "(none)"
          }; dropped ${forced.dropped} uncommitted entries`,
        );
      } catch (err) {
        storage.close();
        throw err;
      }
    }
    driver = await RaftDriver.start({
      id: raftId!,
      clusterId: clusterId!,
      storage,
      host: raftHost,
      port: raftPort,
      advertiseAddress: raftPort !== 0 && clusterAddr
        ? `${bracketed(hostOf(clusterAddr))}:${raftPort}`
        : undefined,
      peers: options.forceNewCluster ? undefined : stored?.raftPeers,
      tls: {
        cert: credentials!.cert,
        key: credentials!.key,
        ca: credentials!.ca,
        servername: MANAGER_SERVERNAME,
        verifyPeer: ({ certificate }) => verifyRaftPeer(certificate, ref.manager?.state),
      },
      logger: raftLogger(options.logger),
      onFatal: (err) => options.logger?.error(`node ${nodeId}: raft stopped: ${err.message}`),
      stateMachine: fold,
      snapshotEntries: options.raftSnapshotEntries ??
        countFromEnv("SHOAL_RAFT_SNAPSHOT_ENTRIES", 1),
      keepEntries: options.raftKeepEntries ?? countFromEnv("SHOAL_RAFT_KEEP_ENTRIES", 0),
    });
    const d = driver;
    log = new RaftLog(d);
    link = new RemoteLeaderLink({
      isLeader: () => d.isLeader,
      leaderAddr: () => leaderClusterAddr(d, ref.manager?.state),
      fallback: () => stored?.managers ?? options.joinManagers ?? [],
      leaderChanged: (ms) => leaderChange(d, ms),
      credentials: () => credentials!,
      logger: options.logger,
    });
    managerLogs = new ManagerLogLink({
      nodeId,
      state: () => ref.manager?.state,
      leaderAddr: () => leaderClusterAddr(d, ref.manager?.state),
      credentials: () => credentials!,
      logger: options.logger,
    });
  }
  // SwarmKit's pipeline order: orchestrator, allocator, scheduler; then the dispatcher (here,
  // this node's LocalSession and, with a cluster port, the Dispatcher).
  const manager = new Manager({
    log,
    logger: options.logger,
    projections: [orchestrator, allocator, scheduler],
    leaderLink: link,
    stateMachine: fold,
  });
  ref.manager = manager;
  let agent: Agent | undefined;
  let dispatcher: Dispatcher | undefined;
  let members: RaftMembers | undefined;
  let rotation: RootRotation | undefined;
  let renewTimer: ReturnType<typeof setTimeout> | undefined;
  let unsubscribeRole: (() => void) | undefined;
  const docker = options.docker === false ? undefined : await findDocker(options.logger);
  const runtimes = runtimesOf(docker);
  let handler: ReturnType<typeof createApiHandler> | undefined;
  let announcing: AbortController | undefined;
  let removedWatch: ReturnType<typeof setInterval> | undefined;
  let boundClusterListen: string | undefined;
  let stopKeySync: (() => void) | undefined;
  let demoted = false;
  let mesh: Mesh | undefined;
  const cleanup = async () => {
    clearTimeout(renewTimer);
    clearInterval(removedWatch);
    stopKeySync?.();
    announcing?.abort();
    unsubscribeRole?.();
    // The log closes first: proposals still waiting for a commit (which may never come once
    // quorum is lost) fail at once, so nothing below waits on them.
    link?.close();
    managerLogs?.close();
    const logClosed = log.close();
    await members?.stop();
    await rotation?.stop();
    await agent?.stop();
    await mesh?.close();
    await dispatcher?.stop();
    // Long-lived responses (an `events` stream) end first, or shutdown would wait on them.
    handler?.close();
    await server?.shutdown();
    docker?.close();
    await manager.stop();
    await logClosed;
  };
  try {
    await manager.start();
    if (driver !== undefined) {
      const d = driver;
      const follow = (role: string) => {
        const leading = role === "leader";
        void manager.setLeader(leading);
        dispatcher?.setLeading(leading);
        members?.kick();
        rotation?.kick();
      };
      unsubscribeRole = d.onRoleChange((role) => follow(role));
    } else {
      await manager.setLeader(true);
    }

    let created = false;
    if (stored === undefined) {
      // Init: this node is the only voter and elects itself at once.
      await driver!.waitForLeader();
      await manager.setLeader(true);
      await manager.execute({
        kind: "InitCluster",
        clusterId: clusterId!,
        spec: options.spec ?? ClusterSpec.parse({}),
        rootCA: newRoot!,
        joinTokens: { worker: newJoinToken(newRoot!), manager: newJoinToken(newRoot!) },
        node: {
          id: nodeId,
          description: describeThisNode(runtimes),
          addr: clusterAddr ? hostOf(clusterAddr) : hostname,
        },
      }, { by: "user:swarm.init" });
      if (newUnlockKey !== undefined) {
        await manager.execute({ kind: "RotateUnlockKey", unlockKey: newUnlockKey }, {
          by: "user:swarm.init",
        });
      }
      created = true;
    } else if (joining) {
      // Ask the leader to add this manager to the Raft group; it then sends the log.
      const added = await link!.addMember(raftId!, driver!.address);
      for (const [id, addr] of added.peers) {
        if (id !== raftId) driver!.setPeerAddress(id, addr);
      }
      await waitUntil(
        () => manager.state.nodes.has(nodeId),
        30_000,
        "the swarm's log did not reach this manager",
      );
    } else if (manager.state.cluster === undefined) {
      throw new Error(`${options.dataDir} holds no swarm: create one with "shoal swarm init"`);
    }
    if (driver !== undefined && driver.isLeader) await manager.setLeader(true);
    const state = manager.state;
    const self = state.nodes.get(nodeId);
    if (self === undefined) {
      throw new Error(
        `this data dir belongs to node ${nodeId}, which is not a member of swarm ${state.cluster?.id}`,
      );
    }
    // What this manager reaches itself (its agent, the sessions it holds): all it serves to other
    // managers, which must not pass their requests on again.
    const ownLogs = {
      nodeId,
      agent: () => agent,
      relay: () => dispatcher?.logs,
      hasSession: (id: string) => dispatcher?.connectedNodes.includes(id) ?? false,
    };
    handler = createApiHandler(manager, {
      nodeId,
      taskLogs: taskLogSource({ ...ownLogs, managers: () => managerLogs }),
    });
    delegate = handler;
    server ??= Deno.serve({ hostname, port, onListen: () => {} }, (req) => delegate(req));
    const apiAddr = `${server.addr.hostname}:${server.addr.port}`;
    const by = `node:${nodeId}`;

    if (clusterListen !== undefined) {
      credentials = await managerCredentials(options.dataDir, state, nodeId, keys);
      const d = driver;
      dispatcher = new Dispatcher({
        manager,
        nodeId,
        listenAddr: clusterListen,
        advertiseAddr: clusterAddr,
        credentials,
        logger: options.logger,
        taskLogs: taskLogSource(ownLogs),
        leading: d === undefined || d.isLeader,
        leaderAddr: d ? () => leaderClusterAddr(d, manager.state) : undefined,
        raft: d
          ? {
            addMember: async (id, addr) => {
              const known = d.status().members.find((m) => m.id === id);
              if (known === undefined) await d.addLearner(id, addr);
              else if (known.address !== addr) d.setPeerAddress(id, addr);
              return {
                peers: d.status().members.filter((m) => m.address !== undefined).map((
                  m,
                ) => [m.id, m.address!] as [number, string]),
              };
            },
            removeMember: async (id) => {
              if (d.status().members.some((m) => m.id === id)) await d.remove(id);
            },
          }
          : undefined,
      });
      const bound = await dispatcher.start();
      clusterAddr ??= chooseAdvertiseAddr(bound, advertiseOpt);
      // A port picked by the system (0) is kept, so that a restart listens where the swarm
      // (workers, other managers) knows to find it.
      boundClusterListen = bound;
      const disp = dispatcher;
      const scheduleRenewal = (cert: string, at?: number) => {
        const { notBefore, notAfter } = certificateValidity(cert);
        at ??= renewalTime(notBefore, notAfter, Math.random());
        // Timers cannot wait longer than about 24 days: wake up daily and look again.
        renewTimer = setTimeout(async () => {
          if (Date.now() < at) return scheduleRenewal(cert, at);
          try {
            const renewed = await managerCredentials(
              options.dataDir,
              manager.state,
              nodeId,
              keys,
            );
            credentials = renewed;
            disp.setCredentials(renewed);
            mesh?.setCredentials(renewed);
            driver?.setTls(renewed);
            options.logger?.info(`node ${nodeId}: manager certificate renewed`);
            scheduleRenewal(renewed.cert);
          } catch (err) {
            options.logger?.error(`node ${nodeId}: renewing the certificate failed: ${err}`);
          }
        }, Math.min(Math.max(0, at - Date.now()), 86_400_000));
      };
      scheduleRenewal(credentials.cert);
    }
    if (driver !== undefined) {
      members = new RaftMembers({ driver, manager, logger: options.logger });
      members.start();
    }
    // Root CA rotation (`swarm ca --rotate`): this manager's certificate follows the swarm's
    // signing root, and the leader ends a rotation once every node has followed.
    rotation = new RootRotation({
      manager,
      nodeId,
      dataDir: options.dataDir,
      keySealing: keys,
      logger: options.logger,
      onCredentials: (renewed) => {
        credentials = renewed;
        dispatcher?.setCredentials(renewed);
        mesh?.setCredentials(renewed);
        driver?.setTls(renewed);
      },
    });
    rotation.start();
    if (keys !== undefined) {
      // Every manager wraps its data key with the swarm's unlock key while autolock is on (the
      // key travels in the log, itself encrypted), and with a stored key when it is off.
      const k = keys;
      let known = newUnlockKey ?? options.unlockKey;
      let syncing = Promise.resolve();
      const sync = () => {
        syncing = syncing.then(async () => {
          const want = manager.state.cluster?.unlockKey ?? "";
          if (want === "" && !k.autolock) return;
          if (want !== "" && k.autolock && want === known) return;
          await k.rotate(want === "" ? { autolock: false } : { autolock: true, unlockKey: want });
          // The TLS key follows: sealed while autolock is on, plain once it is off.
          await resealCredentials(options.dataDir, k);
          known = want || undefined;
          options.logger?.info(
            `node ${nodeId}: data key ${
              want === "" ? "no longer autolocked" : "wrapped with the swarm's unlock key"
            }`,
          );
        }).catch((err) => options.logger?.error(`node ${nodeId}: rewrapping the data key: ${err}`));
      };
      const offApplied = manager.onApplied((entry) => {
        if (entry.batch.events.some((e) => e.type === "ClusterUnlockKeyRotated")) sync();
      });
      const offRestored = manager.onRestored(() => sync());
      stopKeySync = () => {
        offApplied();
        offRestored();
      };
      sync();
    }
    const writeConfig = () =>
      writeNodeConfig(options.dataDir, {
        nodeId,
        role: "manager",
        clusterId: manager.state.cluster!.id,
        ...(clusterListen ? { listenAddr: keepPort(clusterListen, boundClusterListen) } : {}),
        ...(advertiseOpt ? { advertiseAddr: advertiseOpt } : {}),
        apiAddr: options.listenAddr,
        ...(raftId !== undefined && driver
          ? { raftId, raftListenAddr: keepPort(raftListen!, driver.address) }
          : {}),
        ...(driver
          ? {
            raftPeers: driver.status().members.filter((m) => m.address !== undefined).map((
              m,
            ) => [m.id, m.address!] as [number, string]),
            managers: managerAddrs(manager.state),
          }
          : {}),
      });
    await writeConfig();

    // The TLS info is the root CA follower's to report (ca_rotation.ts): kept as it is.
    const description = {
      ...describeThisNode(runtimes),
      ...(self.description.tlsInfo ? { tlsInfo: self.description.tlsInfo } : {}),
    };
    const statusAddr = clusterAddr ? hostOf(clusterAddr) : hostname;
    const announce: ShoalEvent[] = [
      ...(equalData(self.description, description) ? [] : [{
        type: "NodeDescriptionUpdated" as const,
        v: 1 as const,
        data: { id: nodeId, description },
        meta: { by, reason: "node description changed since the last start" },
      }]),
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
            raftId: String(raftId ?? 1),
            // What workers dial (and `swarm join-token` prints): the cluster port when there is one.
            addr: clusterAddr ?? apiAddr,
            leader: driver === undefined || driver.isLeader,
            reachability: "reachable",
          },
        },
        meta: { by, reason: driver ? "manager process started" : "only manager of the swarm" },
      },
    ];
    if (driver === undefined || driver.isLeader) {
      await manager.propose(announce, by);
    } else {
      // A follower announces itself through the leader, which may be away (quorum lost): keep
      // trying in the background rather than refuse to start.
      announcing = new AbortController();
      void retryUntilDone(() => manager.propose(announce, by), announcing.signal, options.logger);
    }

    // This node's mesh: published ports, service VIPs and names (node/mesh/), from the state.
    if (options.mesh !== false) {
      try {
        mesh = await startMesh({
          nodeId,
          source: stateMeshSource(manager),
          credentials: () => credentials,
          logger: options.logger,
          ...options.mesh,
        });
      } catch (err) {
        options.logger?.error(`node ${nodeId}: the mesh did not start: ${(err as Error).message}`);
      }
    }
    agent = await createAgent({
      nodeId,
      dataDir: options.dataDir,
      session: new LocalSession(manager, nodeId),
      docker,
      logger: options.logger,
      dns: () => mesh?.dnsServers ?? [],
    });
    agent.start();
    const runningAgent = agent;

    const stopped = Promise.withResolvers<string>();
    if (driver !== undefined) {
      const d = driver;
      // A manager taken out of the Raft group (node rm, or it left through another manager) stops.
      removedWatch = setInterval(() => {
        if (!d.status().removed) return;
        clearInterval(removedWatch);
        const me = manager.state.nodes.get(nodeId);
        if (me !== undefined && me.spec.desiredRole === "worker") {
          // `node demote`: this node carries on as a worker of the same swarm.
          options.logger?.info(`node ${nodeId}: demoted: restarting as a worker`);
          demoted = true;
          void becomeWorker(options.dataDir, manager.state, nodeId, {
            listenAddr: clusterListen,
            advertiseAddr: advertiseOpt,
            apiAddr: options.listenAddr,
            self: clusterAddr,
          }).then(() => close()).then(async () => {
            for (const f of ["raft.db", "raft.db-wal", "raft.db-shm", "keys.json"]) {
              await Deno.remove(`${options.dataDir}/${f}`).catch(() => {});
            }
          }).then(
            () => stopped.resolve(DEMOTED),
            (err) => {
              options.logger?.error(`node ${nodeId}: becoming a worker failed: ${err}`);
              void close().then(() => stopped.resolve(`demoted, but ${err}`));
            },
          );
          return;
        }
        options.logger?.warn(`node ${nodeId}: removed from the raft group: stopping`);
        void close().then(() => stopped.resolve("this manager was removed from the swarm"));
      }, 500);
    }
    let closing: Promise<void> | undefined;
    let recorded = false;
    const recordDown = async (message: string, reason: string) => {
      if (recorded) return;
      recorded = true;
      await withTimeout(
        manager.propose([{
          type: "NodeStatusChanged",
          v: 1,
          data: { id: nodeId, status: { state: "down", message, addr: statusAddr } },
          meta: { by, reason },
        }], by),
        3_000,
      ).catch((err) =>
        options.logger?.warn(`node ${nodeId}: could not record its shutdown: ${err.message}`)
      );
    };
    const close = () => {
      closing ??= (async () => {
        try {
          clearInterval(removedWatch);
          // Without a leader (or out of the group) nothing can be recorded: fail at once.
          if (driver !== undefined && (driver.leader === 0 || driver.status().removed)) {
            link?.close();
          }
          await runningAgent.stop();
          if (recorded) throw new SkipDown();
          await withTimeout(
            manager.propose([{
              type: "NodeStatusChanged",
              v: 1,
              data: {
                id: nodeId,
                status: { state: "down", message: "node shut down", addr: statusAddr },
              },
              meta: { by, reason: "node process stopping" },
            }], by),
            3_000,
          ).catch((err) =>
            options.logger?.warn(`node ${nodeId}: could not record its shutdown: ${err.message}`)
          );
          if (driver !== undefined && !demoted) await writeConfig().catch(() => {});
        } catch (err) {
          if (!(err instanceof SkipDown)) throw err;
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
      raft: driver,
      unlockKey: newUnlockKey,
      created,
      stopped: stopped.promise,
      close,
      async leave(force) {
        if (driver === undefined) {
          if (!force) throw new Error(LAST_MANAGER_LEAVE);
        } else {
          await leaveRaft(
            driver,
            link!,
            raftId!,
            force,
            manager.state,
            () => recordDown("node left the swarm", "the manager left the swarm"),
            // The group refused to let it go: it is still a running manager, and ready.
            async () => {
              recorded = false;
              await manager.propose([{
                type: "NodeStatusChanged",
                v: 1,
                data: { id: nodeId, status: { state: "ready", message: "", addr: statusAddr } },
                meta: { by, reason: "leaving the swarm failed: the manager carries on" },
              }], by).catch(() => {});
            },
          );
          // Out of the group, this node applies nothing more: nothing may wait on it.
          link!.close();
        }
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

/**
 * Takes this manager out of the Raft group: refused when it is the last manager (unless
 * `force`: the swarm's state is then erased with it) or when the managers left could not form
 * a quorum (unless `force`); a leader hands leadership to another voter first.
 */
async function leaveRaft(
  driver: RaftDriver,
  link: RemoteLeaderLink,
  raftId: number,
  force: boolean,
  state: ClusterState,
  recordDown: () => Promise<void>,
  undoDown: () => Promise<void>,
): Promise<void> {
  const status = driver.status();
  const voters = status.members.filter((m) => m.voter);
  const others = voters.filter((m) => m.id !== raftId);
  if (others.length === 0) {
    if (!force) throw new Error(LAST_MANAGER_LEAVE);
    return;
  }
  // Reachability as the leader sees it (followers do not talk to each other), from the log.
  const reachableIds = new Set<string>();
  for (const n of state.nodes.values()) {
    if (n.managerStatus?.reachability === "reachable") reachableIds.add(n.managerStatus.raftId);
  }
  const reachable = others.filter((m) => reachableIds.has(String(m.id))).length;
  const quorum = Math.floor(others.length / 2) + 1;
  if (reachable < quorum && !force) {
    throw new Error(
      `Leaving would lose the swarm's quorum: after this manager leaves, ${others.length} manager(s) remain and ${quorum} of them must be reachable, but only ${reachable} are. Bring managers back first, or use \`--force\` to leave anyway (the rest of the swarm then needs \`shoal swarm init --force-new-cluster\`).`,
    );
  }
  if (driver.isLeader) {
    const to = others.find((m) => m.connected && reachableIds.has(String(m.id))) ?? others[0];
    await driver.transferLeadership(to.id);
  }
  // Recorded while this manager still follows the log (afterwards it would not see it applied).
  await recordDown();
  // The leader takes one membership change at a time (a promotion may be under way): retry a while.
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await link.removeMember(raftId);
      return;
    } catch (err) {
      if (Date.now() < deadline && !(err instanceof LeaderUnavailableError)) {
        await new Promise((r) => setTimeout(r, 300));
        continue;
      }
      if (force) return;
      await undoDown();
      throw err;
    }
  }
}

/** What a manager's `stopped` resolves with when it was demoted to worker (`node demote`). */
export const DEMOTED = "demoted to worker";

/**
 * Turns a demoted manager's data dir into a worker's: a worker certificate (a manager holds the
 * swarm's root key), node.json naming the other managers, and no Raft log (a later promotion
 * joins the group afresh).
 */
async function becomeWorker(
  dataDir: string,
  state: ClusterState,
  nodeId: string,
  addrs: { listenAddr?: string; advertiseAddr?: string; apiAddr: string; self?: string },
): Promise<void> {
  const cluster = state.cluster!;
  const csr = await createNodeCSR({ nodeId });
  const issued = await issueNodeCertificate({
    rootCA: cluster.rootCA,
    csrPem: csr.csrPem,
    nodeId,
    role: "worker",
    clusterId: cluster.id,
    now: Date.now(),
    expiryMs: cluster.spec.caConfig.nodeCertExpiry,
  });
  await writeCredentials(dataDir, {
    key: csr.keyPem,
    cert: issued.certPem,
    ca: cluster.rootCA.certPem,
  });
  await writeNodeConfig(dataDir, {
    nodeId,
    role: "worker",
    clusterId: cluster.id,
    managers: managerAddrs(state).filter((a) => a !== addrs.self),
    ...(addrs.listenAddr ? { listenAddr: addrs.listenAddr } : {}),
    ...(addrs.advertiseAddr ? { advertiseAddr: addrs.advertiseAddr } : {}),
    apiAddr: addrs.apiAddr,
  });
}

/** Control flow: the shutdown was already recorded (a manager that left). */
class SkipDown extends Error {}

/** The raft listen address: as given, else the cluster port's host with the next port. */
function raftListenAddr(given: string | undefined, clusterListen: string | undefined): string {
  if (given) return given;
  if (clusterListen === undefined) return "127.0.0.1:0";
  const { hostname, port } = parseHostPort(clusterListen);
  return `${bracketed(hostname)}:${port === 0 ? 0 : port + 1}`;
}

/** `listen` with the port actually bound when it asked for any port (0). */
function keepPort(listen: string, bound: string | undefined): string {
  const { hostname, port } = parseHostPort(listen);
  if (port !== 0 || bound === undefined) return listen;
  return `${bracketed(hostname)}:${parseHostPort(bound).port}`;
}

function bracketed(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** The leader's cluster address, from the raft leader's id and the managers' records. */
function leaderClusterAddr(
  driver: RaftDriver,
  state: ClusterState | undefined,
): string | undefined {
  const leader = driver.leader;
  if (!leader || state === undefined || leader === driver.id) return undefined;
  for (const n of state.nodes.values()) {
    if (n.managerStatus?.raftId === String(leader) && n.managerStatus.addr) {
      return n.managerStatus.addr;
    }
  }
  return undefined;
}

/** Cluster addresses of the managers the state knows. */
function managerAddrs(state: ClusterState): string[] {
  const out: string[] = [];
  for (const n of state.nodes.values()) {
    const addr = n.managerStatus?.addr;
    if (n.role === "manager" && addr) out.push(addr);
  }
  return out;
}

/** Resolves when the raft leader changes, or after `ms`. */
function leaderChange(driver: RaftDriver, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    const off = driver.onRoleChange(done);
    function done() {
      clearTimeout(timer);
      off();
      resolve();
    }
  });
}

/**
 * Whether a raft peer's certificate may speak Raft here: a manager certificate of a node the
 * swarm knows as a manager (or, while this manager has no state yet, any manager certificate
 * of the swarm's root, which the TLS handshake has checked).
 */
function verifyRaftPeer(
  cert: { subject?: Record<string, unknown> },
  state: ClusterState | undefined,
): true | string {
  const ou = String(cert.subject?.OU ?? "");
  const cn = String(cert.subject?.CN ?? "");
  if (ou !== MANAGER_OU) {
    return `node ${cn} presented a ${ou || "non-node"} certificate: only managers speak raft`;
  }
  if (state === undefined || state.nodes.size === 0) return true;
  const node = state.nodes.get(cn);
  if (node === undefined) return `node ${cn} is not a member of this swarm (removed?)`;
  if (node.role !== "manager") return `node ${cn} is not a manager`;
  return true;
}

function raftLogger(logger: Logger | undefined) {
  return {
    debug: () => {},
    info: (m: string) => logger?.info(m),
    warn: (m: string) => logger?.warn(m),
    error: (m: string) => logger?.error(m),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(test: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function retryUntilDone(
  fn: () => Promise<unknown>,
  signal: AbortSignal,
  logger: Logger | undefined,
): Promise<void> {
  let warned = false;
  while (!signal.aborted) {
    try {
      await fn();
      return;
    } catch (err) {
      if (!warned) logger?.warn(`announcing this manager: ${(err as Error).message}: retrying`);
      warned = true;
      await new Promise((r) => setTimeout(r, 1_000));
    }
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
  sealing: KeySealing | undefined,
): Promise<Credentials> {
  const cluster = state.cluster!;
  const now = Date.now();
  const stored = await readCredentials(dataDir, sealing);
  if (stored !== undefined && stored.ca === trustBundle(cluster.rootCA)) {
    try {
      // Signed by the root that signs now (the new one during a root rotation).
      const id = await verifyNodeCertificate({
        rootCA: { certPem: signingCA(cluster.rootCA).certPem },
        certPem: stored.cert,
        now,
      });
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
  const issued = await issueWithSwarmCA(cluster.rootCA, {
    csrPem: csr.csrPem,
    nodeId,
    role: "manager",
    clusterId: cluster.id,
    now,
    expiryMs: cluster.spec.caConfig.nodeCertExpiry,
  });
  const creds = { key: csr.keyPem, cert: issued.certPem, ca: trustBundle(cluster.rootCA) };
  await writeCredentials(dataDir, creds, sealing);
  return creds;
}

/** A manager certificate for the first node of a new swarm, before its log exists. */
async function issueManagerCredentials(
  rootCA: RootCA,
  clusterId: string,
  nodeId: string,
  spec: ClusterSpecType | undefined,
): Promise<Credentials> {
  const csr = await createNodeCSR({ nodeId });
  const issued = await issueNodeCertificate({
    rootCA,
    csrPem: csr.csrPem,
    nodeId,
    role: "manager",
    clusterId,
    now: Date.now(),
    expiryMs: (spec ?? ClusterSpec.parse({})).caConfig.nodeCertExpiry,
  });
  return { key: csr.keyPem, cert: issued.certPem, ca: rootCA.certPem };
}

/** The default cluster port, for help texts. */
export { DEFAULT_CLUSTER_PORT };
