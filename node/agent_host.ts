/**
 * What every node runs tasks with, manager or worker: its description, the executors (processes
 * always, containers when a Docker daemon answers), and the agent over a session.
 *
 * @module
 */
import type { NodeDescription, RuntimeKind } from "../events/schema.ts";
import type { Logger } from "../actors/runtime.ts";
import { Agent, type AgentSession } from "../actors/agent/agent.ts";
import { ProcessExecutor, reapLeftoverProcess } from "../actors/agent/executors/process.ts";
import {
  adoptOrRemove,
  DockerExecutor,
  type LeftoverContainer,
  removeLeftover,
} from "../actors/agent/executors/docker.ts";
import { DockerApi } from "../actors/agent/docker_api.ts";
import { SHOAL_VERSION } from "../web/http.ts";

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
export async function findDocker(logger?: Logger): Promise<DockerApi | undefined> {
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

/** The runtimes a node offers. */
export function runtimesOf(docker: DockerApi | undefined): RuntimeKind[] {
  return docker ? ["process", "container"] : ["process"];
}

/** Options of {@linkcode createAgent}. */
export interface AgentHostOptions {
  nodeId: string;
  dataDir: string;
  session: AgentSession;
  docker: DockerApi | undefined;
  logger?: Logger;
  /** Name servers for containers (the node's mesh resolver, see `Mesh.dnsServers`). */
  dns?: () => readonly string[];
}

/**
 * An agent for this node (not started), its tasks under `<data dir>/tasks`.
 *
 * After a restart, containers a previous run left behind (found by their `io.shoal.node.id`
 * label) are adopted by the agent's first pass when their task should still run here: the
 * container keeps running (or its exit while the agent was away is reported), nothing restarts.
 * The others (tasks removed, moved or stopped meanwhile) are removed with their task directories
 * before any new task starts. Processes are not adopted (see agent.ts): their tasks are reported
 * failed and their leftover process is killed.
 */
export async function createAgent(options: AgentHostOptions): Promise<Agent> {
  const { docker, nodeId } = options;
  const tasksRoot = `${options.dataDir}/tasks`;
  await Deno.mkdir(tasksRoot, { recursive: true });
  // Listed now, before the agent creates anything: only these are candidates for adoption or
  // removal, never a container the new agent made.
  const leftovers = new Map<string, LeftoverContainer>();
  if (docker) {
    const found = await adoptOrRemove(docker, nodeId, { keep: () => true, root: tasksRoot });
    for (const c of found.adopted) leftovers.set(c.taskId, c);
  }
  return new Agent({
    nodeId,
    session: options.session,
    executors: (task, onStatus) =>
      task.spec.runtime.kind === "container" && docker
        ? new DockerExecutor({ api: docker, root: tasksRoot, onStatus, dns: options.dns?.() })
        : new ProcessExecutor({ root: tasksRoot, onStatus, dns: options.dns?.() }),
    reapLeftover: async (taskId) => {
      await reapLeftoverProcess(tasksRoot, taskId);
    },
    adopt: async (task, onStatus) => {
      const left = leftovers.get(task.id);
      if (!docker || left === undefined || task.spec.runtime.kind !== "container") return undefined;
      const executor = new DockerExecutor({
        api: docker,
        root: tasksRoot,
        onStatus,
        dns: options.dns?.(),
      });
      await executor.adopt(task, left.id);
      return executor;
    },
    afterFirstPass: async (adopted) => {
      if (!docker) return;
      for (const c of leftovers.values()) {
        if (!adopted.has(c.taskId)) await removeLeftover(docker, c, tasksRoot);
      }
      leftovers.clear();
    },
    logger: options.logger,
  });
}
