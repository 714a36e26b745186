/**
 * Where a task's output is read from, for `service logs`: the node that runs it. A task of the
 * manager's own node is read from its agent directly; a task of another node through that node's
 * agent session ({@linkcode LogRelay}) when this manager holds it (it leads); otherwise through
 * another manager ({@linkcode ManagerLogLink}): the one whose own agent runs the task, or the
 * leader for a worker's task.
 *
 * An agent keeps a task's output while the task is on the node, running or ended (its executor
 * stays until the task leaves the node's assignments, history included); once the task is gone,
 * so is its output, as with a removed container.
 *
 * @module
 */
import type { Agent } from "../actors/agent/agent.ts";
import type { LogLine, LogReadOptions } from "../actors/agent/log_capture.ts";
import type { TaskRecord } from "../actors/state.ts";
import { type LogRelay, NodeLogsUnavailable } from "./log_relay.ts";
import type { ManagerLogLink } from "./manager_logs.ts";

/** What to read of one task's output. */
export interface TaskLogOptions {
  /** The last `tail` lines only (all when absent). */
  tail?: number;
  /** Lines from this time on, ms since the epoch. */
  since?: number;
  /** Keep yielding new lines until the task's output ends or `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
}

/** Reads one task's output, wherever it runs. */
export type TaskLogSource = (task: TaskRecord, options: TaskLogOptions) => AsyncIterable<LogLine>;

/** A task's output as this node's agent has it; nothing when the agent has no such task. */
export function agentTaskLogs(
  agent: Agent | undefined,
  taskId: string,
  options: LogReadOptions,
): AsyncIterable<LogLine> {
  const executor = agent?.executor(taskId);
  if (executor === undefined) return noLines();
  return executor.logs(options);
}

/** What {@linkcode taskLogSource} reads through. */
export interface TaskLogSourceOptions {
  /** This manager's node. */
  nodeId: string;
  /** This node's agent (read when a request comes: it may start after the API). */
  agent: () => Agent | undefined;
  /** The dispatcher's relay, when the manager has a cluster port. */
  relay: () => LogRelay | undefined;
  /** Whether this manager holds an agent session of `nodeId` (its relay can reach it). */
  hasSession?: (nodeId: string) => boolean;
  /**
   * Other managers, for tasks this manager cannot reach itself. Absent for requests that another
   * manager sent: those are served here or fail, never passed on (no loops).
   */
  managers?: () => ManagerLogLink | undefined;
}

/** A {@linkcode TaskLogSource} for a manager: its own agent's tasks, and other nodes' by relay. */
export function taskLogSource(options: TaskLogSourceOptions): TaskLogSource {
  return (task, { tail, since, follow, signal }) => {
    if (task.nodeId === options.nodeId) {
      return agentTaskLogs(options.agent(), task.id, { tail, since, follow, signal });
    }
    const relay = options.relay();
    if (!task.nodeId) return unavailable(task);
    const request = { taskId: task.id, tail, since, follow };
    if (relay !== undefined && options.hasSession?.(task.nodeId)) {
      return relay.read(task.nodeId, request, signal);
    }
    const managers = options.managers?.();
    if (managers?.managerFor(task) !== undefined) {
      return managers.read(task, { tail, since, follow, signal });
    }
    if (relay === undefined) return unavailable(task);
    return relay.read(task.nodeId, request, signal);
  };
}

// deno-lint-ignore require-yield
async function* unavailable(task: TaskRecord): AsyncGenerator<LogLine> {
  throw new NodeLogsUnavailable(
    task.nodeId
      ? `node ${task.nodeId} cannot be reached from this manager: the logs of task ${task.id} cannot be read`
      : `task ${task.id} has no node yet: it has no logs`,
  );
}

async function* noLines(): AsyncGenerator<LogLine> {}
