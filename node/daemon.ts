/**
 * A Shoal node process: opens its data dir, replays its log into a manager, initialises a swarm on
 * first start, and serves the API. Today it runs the single-node cluster of `deno task start`
 * (one manager, its own log in SQLite); the Raft and join work extends it to many nodes.
 *
 * @module
 */
import {
  ClusterSpec,
  type NodeDescription,
  type RuntimeKind,
  type ShoalEvent,
} from "../events/schema.ts";
import { equalData } from "../actors/equal.ts";
import { SqliteLog, type SyncMode } from "../events/sqlite_log.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import type { Logger } from "../actors/runtime.ts";
import { createApiHandler, SHOAL_VERSION } from "../web/api.ts";
import { orchestrator } from "../actors/projections/orchestrator/decide.ts";
import { allocator } from "../actors/projections/allocator/decide.ts";
import { scheduler } from "../actors/projections/scheduler/decide.ts";
import { Agent, LocalSession } from "../actors/agent/agent.ts";
import { ProcessExecutor, reapLeftoverProcess } from "../actors/agent/executors/process.ts";
import { adoptOrRemove, DockerExecutor } from "../actors/agent/executors/docker.ts";
import { DockerApi } from "../actors/agent/docker_api.ts";
import { createRootCA, newJoinToken } from "./ca.ts";

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
}

/** A running node. */
export interface RunningNode {
  manager: Manager;
  /** The agent running this node's tasks. */
  agent: Agent;
  nodeId: string;
  /** Where the API listens, as `http://host:port`. */
  apiUrl: string;
  /** Whether this start created the swarm. */
  created: boolean;
  /** Marks the node down in the log and stops everything. */
  close(): Promise<void>;
}

interface Identity {
  nodeId: string;
}

/** Reads this node's identity from the data dir, creating it on first start. */
async function loadIdentity(dataDir: string): Promise<Identity> {
  const path = `${dataDir}/node.json`;
  try {
    const parsed = JSON.parse(await Deno.readTextFile(path)) as Identity;
    if (typeof parsed.nodeId !== "string" || !/^[0-9a-z]{25}$/.test(parsed.nodeId)) {
      throw new Error(`${path} holds no valid node id`);
    }
    return parsed;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    const identity = { nodeId: newId() };
    await Deno.writeTextFile(path, JSON.stringify(identity, null, 2) + "\n");
    return identity;
  }
}

/** What this machine is, as a node description (Go's names for os and architecture). */
export function describeThisNode(runtimes: RuntimeKind[] = ["process"]): NodeDescription {
  return {
    hostname: Deno.hostname(),
    platform: { os: Deno.build.os, architecture: Deno.build.arch },
    resources: {
      nanoCPUs: navigator.hardwareConcurrency * 1e9,
      memoryBytes: Deno.systemMemoryInfo().total,
    },
    engine: { engineVersion: `shoal ${SHOAL_VERSION}`, labels: {} },
    runtimes,
  };
}

/**
 * The Docker daemon, if one answers within a second (`DOCKER_HOST`, else the default socket):
 * then this node also runs container tasks.
 */
async function findDocker(logger?: Logger): Promise<DockerApi | undefined> {
  const api = new DockerApi();
  try {
    await api.ping(AbortSignal.timeout(1_000));
    return api;
  } catch (err) {
    logger?.info(`no Docker daemon (${(err as Error).message}): this node runs process tasks only`);
    api.close();
    return undefined;
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

/** Starts a node; resolves once its state is replayed and its API listens. */
export async function startNode(options: NodeOptions): Promise<RunningNode> {
  const { hostname, port } = parseHostPort(options.listenAddr);
  await Deno.mkdir(options.dataDir, { recursive: true });
  const { nodeId } = await loadIdentity(options.dataDir);
  const log = new SqliteLog({
    path: `${options.dataDir}/log.db`,
    synchronous: options.synchronous,
  });
  // SwarmKit's pipeline order: orchestrator, allocator, scheduler (the dispatcher is the agent's
  // session: in a single node, the LocalSession).
  const manager = new Manager({
    log,
    logger: options.logger,
    projections: [orchestrator, allocator, scheduler],
  });
  let agent: Agent | undefined;
  const docker = options.docker === false ? undefined : await findDocker(options.logger);
  const runtimes: RuntimeKind[] = docker ? ["process", "container"] : ["process"];
  let handler: ReturnType<typeof createApiHandler> | undefined;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    await manager.start();
    await manager.setLeader(true);
    handler = createApiHandler(manager, { nodeId });
    server = Deno.serve({ hostname, port, onListen: () => {} }, handler);
    const apiAddr = `${server.addr.hostname}:${server.addr.port}`;
    const by = `node:${nodeId}`;

    let created = false;
    if (manager.state.cluster === undefined) {
      const clusterId = newId();
      const rootCA = await createRootCA({ clusterId, now: Date.now() });
      await manager.execute({
        kind: "InitCluster",
        clusterId,
        spec: ClusterSpec.parse({}),
        rootCA,
        joinTokens: { worker: newJoinToken(rootCA), manager: newJoinToken(rootCA) },
        node: { id: nodeId, description: describeThisNode(runtimes), addr: apiAddr },
      }, { by: "user:swarm.init" });
      created = true;
    }
    const self = manager.state.nodes.get(nodeId);
    if (self === undefined) {
      throw new Error(
        `this data dir belongs to node ${nodeId}, which is not a member of swarm ${manager.state.cluster?.id}`,
      );
    }
    const description = describeThisNode(runtimes);
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
        data: { id: nodeId, status: { state: "ready", message: "", addr: hostname } },
        meta: { by, reason: "node process started" },
      },
      {
        type: "NodeManagerStatusChanged",
        v: 1,
        data: {
          id: nodeId,
          managerStatus: { raftId: "1", addr: apiAddr, leader: true, reachability: "reachable" },
        },
        meta: { by, reason: "only manager of a single-node swarm" },
      },
    ], by);

    const tasksRoot = `${options.dataDir}/tasks`;
    await Deno.mkdir(tasksRoot, { recursive: true });
    if (docker) {
      // Containers a previous run of this node left behind: their tasks are reported lost by
      // the agent's first pass and restarted under their policy, so the containers go.
      await adoptOrRemove(docker, nodeId, { keep: () => false, root: tasksRoot });
    }
    agent = new Agent({
      nodeId,
      session: new LocalSession(manager, nodeId),
      executors: (task, onStatus) =>
        task.spec.runtime.kind === "container" && docker
          ? new DockerExecutor({ api: docker, root: tasksRoot, onStatus })
          : new ProcessExecutor({ root: tasksRoot, onStatus }),
      reapLeftover: async (taskId) => {
        await reapLeftoverProcess(tasksRoot, taskId);
      },
      logger: options.logger,
    });
    agent.start();
    const runningAgent = agent;

    let closed = false;
    return {
      manager,
      agent: runningAgent,
      nodeId,
      apiUrl: `http://${apiAddr}`,
      created,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await runningAgent.stop();
          await manager.propose([{
            type: "NodeStatusChanged",
            v: 1,
            data: {
              id: nodeId,
              status: { state: "down", message: "node shut down", addr: hostname },
            },
            meta: { by, reason: "node process stopping" },
          }], by);
        } finally {
          // Long-lived responses (an `events` stream) end first, or shutdown would wait on them.
          handler?.close();
          await server?.shutdown();
          docker?.close();
          await manager.stop();
          await log.close();
        }
      },
    };
  } catch (err) {
    await agent?.stop();
    handler?.close();
    await server?.shutdown();
    docker?.close();
    await manager.stop();
    await log.close();
    throw err;
  }
}
