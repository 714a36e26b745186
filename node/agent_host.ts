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
import { adoptOrRemove, DockerExecutor } from "../actors/agent/executors/docker.ts";
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
}

/**
 * An agent for this node (not started), its tasks under `<data dir>/tasks`. Containers a
 * previous run left behind are removed first: the agent's first pass reports their tasks lost and
 * the orchestrator restarts them under their policy.
 */
export async function createAgent(options: AgentHostOptions): Promise<Agent> {
  const { docker, nodeId } = options;
  const tasksRoot = `${options.dataDir}/tasks`;
  await Deno.mkdir(tasksRoot, { recursive: true });
  if (docker) await adoptOrRemove(docker, nodeId, { keep: () => false, root: tasksRoot });
  return new Agent({
    nodeId,
    session: options.session,
    executors: (task, onStatus) =>
      task.spec.runtime.kind === "container" && docker
        ? new DockerExecutor({ api: docker, root: tasksRoot, onStatus })
        : new ProcessExecutor({ root: tasksRoot, onStatus }),
    reapLeftover: async (taskId) => {
      await reapLeftoverProcess(tasksRoot, taskId);
    },
    logger: options.logger,
  });
}
