/**
 * Tasks as Docker's API shows them (v1.41 `swarm.Task`): states by lower-case name, the task's
 * spec in Docker's shape, and the runtime's status as `ContainerStatus` (`ContainerID` for a
 * container, `PID` for a process).
 *
 * A process task's spec also carries a read-only `ContainerSpec: {Image: <program>}` beside its
 * `ProcessSpec`: Docker clients assume every task has one (`docker service ps` dereferences
 * `ContainerSpec.Image` unchecked and would crash), and this way they show the program where
 * they show an image. Tasks are never sent back, so the view cannot leak into a spec; Shoal's
 * own clients read `Runtime` first.
 *
 * @module
 */
import { taskStateName } from "../../events/schema.ts";
import type { ClusterState, TaskRecord } from "../../actors/state.ts";
import { compact, meta, nonBlank, nonEmpty, nonZero, rfc3339 } from "./fields.ts";
import { portToDocker, taskSpecToDocker } from "./service_json.ts";
import { networkAttachmentsToDocker } from "./network_json.ts";

/** The name `docker service ps` shows: `service.slot`, or `service.node` for global services. */
export function taskName(state: ClusterState, task: TaskRecord): string {
  const service = state.services.get(task.serviceId)?.spec.name ?? task.serviceId;
  const slot = dockerSlot(state, task);
  return `${service}.${slot > 0 ? slot : task.nodeId}`;
}

/** A task as Docker's `GET /tasks/{id}` shows it. */
export function taskToDocker(state: ClusterState, task: TaskRecord) {
  const spec = state.taskSpec(task);
  const st = task.status;
  const process = spec.runtime.kind === "process";
  const hasRuntime = st.runtimeId !== undefined || st.exitCode !== undefined;
  return compact({
    ...meta(task),
    Labels: {},
    Spec: process
      ? { ...taskSpecToDocker(spec), ContainerSpec: { Image: spec.runtime.command } }
      : taskSpecToDocker(spec),
    ServiceID: task.serviceId,
    Slot: nonZero(dockerSlot(state, task)),
    NodeID: nonBlank(task.nodeId),
    Status: compact({
      Timestamp: rfc3339(st.timestamp),
      State: taskStateName(st.state),
      Message: st.message,
      Err: nonBlank(st.err),
      ContainerStatus: !hasRuntime ? undefined : {
        ContainerID: process ? "" : st.runtimeId ?? "",
        PID: process ? Number(st.runtimeId ?? 0) || 0 : 0,
        ExitCode: st.exitCode ?? 0,
      },
      PortStatus: compact({ Ports: nonEmpty(st.ports?.map(portToDocker)) }),
    }),
    DesiredState: taskStateName(task.desiredState),
    NetworksAttachments: nonEmpty(networkAttachmentsToDocker(state, task.networks ?? [])),
    JobIteration: task.jobIteration === undefined ? undefined : { Index: task.jobIteration },
  });
}

/**
 * The slot Docker shows. A replicated job's slots are 0-based in SwarmKit (0 to
 * TotalCompletions-1) and Docker's CLI relies on it (its job progress walks slots from 0), while
 * Shoal numbers every replicated slot from 1: a job's slot is shown one lower.
 */
export function dockerSlot(state: ClusterState, task: TaskRecord): number {
  const mode = state.services.get(task.serviceId)?.spec.mode.kind;
  return mode === "replicated-job" && task.slot > 0 ? task.slot - 1 : task.slot;
}
