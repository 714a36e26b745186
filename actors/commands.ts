/**
 * Commands: what users (through the API) ask of the cluster, before anything is decided. An entity
 * actor turns a command into events with `decide`, against the current state; the events then go
 * through the log and the fold like any others. `decide` is pure: time and new ids come in the
 * context, so the same command on the same state always yields the same events.
 *
 * @module
 */
import type {
  ClusterSpec,
  NetworkSpec,
  NodeDescription,
  NodeRole,
  NodeSpec,
  RootCA,
  SecretSpec,
  ServiceSpec,
  ShoalEvent,
} from "../events/schema.ts";
import type { ClusterState } from "./state.ts";
import type { DecideContext } from "./entities/decide_context.ts";

export type { DecideContext } from "./entities/decide_context.ts";
export { userMeta } from "./entities/decide_context.ts";
import { decideClusterCommand } from "./entities/cluster.ts";
import { decideNodeCommand } from "./entities/node.ts";
import { decideServiceCommand } from "./entities/service.ts";
import { decideFileObjectCommand } from "./entities/file_object.ts";
import { decideNetworkCommand } from "./entities/network.ts";

/** Commands on the swarm itself. */
export type ClusterCommand =
  | {
    kind: "InitCluster";
    /** Chosen by the caller: the root CA names it. */
    clusterId: string;
    spec: ClusterSpec;
    rootCA: RootCA;
    joinTokens: { worker: string; manager: string };
    /** The first node: a manager. */
    node: { id: string; description: NodeDescription; addr: string };
  }
  | { kind: "UpdateCluster"; spec: ClusterSpec; version?: number }
  | { kind: "RotateJoinToken"; role: NodeRole; token: string }
  /** Sets the managers' unlock key (`SWMKEY-1-...`), or "" when autolock is off. */
  | { kind: "RotateUnlockKey"; unlockKey: string }
  /**
   * Root CA rotation (`swarm ca --rotate`): starts one (`rootCA` carries `rotation`), or, with
   * `finishes` (the digest of the rotation's new root) and new join tokens, ends it.
   */
  | {
    kind: "RotateRootCA";
    rootCA: RootCA;
    finishes?: string;
    joinTokens?: { worker: string; manager: string };
  };

/** Commands on nodes. `node` is an id, a hostname, or an id prefix. */
export type NodeCommand =
  | { kind: "UpdateNode"; node: string; spec: NodeSpec; version?: number }
  | { kind: "RemoveNode"; node: string; force: boolean };

/** Commands on services. `service` is an id, a name, or an id prefix. */
export type ServiceCommand =
  | { kind: "CreateService"; spec: ServiceSpec }
  | { kind: "UpdateService"; service: string; spec: ServiceSpec; version?: number }
  | { kind: "ScaleService"; service: string; replicas: number }
  | { kind: "RollbackService"; service: string; version?: number }
  | { kind: "RemoveService"; service: string };

/** Commands on secrets and configs (`object` is "secret" or "config"). */
export type FileObjectCommand =
  | { kind: "CreateFileObject"; object: "secret" | "config"; spec: SecretSpec }
  | {
    kind: "UpdateFileObject";
    object: "secret" | "config";
    ref: string;
    labels: Record<string, string>;
    version?: number;
  }
  | { kind: "RemoveFileObject"; object: "secret" | "config"; ref: string };

/** Commands on networks. */
export type NetworkCommand =
  | { kind: "CreateNetwork"; spec: NetworkSpec }
  | { kind: "RemoveNetwork"; ref: string };

/** Everything a user can ask of the cluster. */
export type Command =
  | ClusterCommand
  | NodeCommand
  | ServiceCommand
  | FileObjectCommand
  | NetworkCommand;

/** Every command kind, for checking a command that arrives from another process. */
export const COMMAND_KINDS = [
  "InitCluster",
  "UpdateCluster",
  "RotateJoinToken",
  "RotateUnlockKey",
  "RotateRootCA",
  "UpdateNode",
  "RemoveNode",
  "CreateService",
  "UpdateService",
  "ScaleService",
  "RollbackService",
  "RemoveService",
  "CreateFileObject",
  "UpdateFileObject",
  "RemoveFileObject",
  "CreateNetwork",
  "RemoveNetwork",
] as const satisfies readonly Command["kind"][];

// Every kind of the union is listed above (a new command kind fails to compile until it is).
const _allKindsListed: Command["kind"] extends (typeof COMMAND_KINDS)[number] ? true : never = true;

/** Turns a command into the events that carry it out, or throws `EventRejected`. */
export function decide(state: ClusterState, command: Command, ctx: DecideContext): ShoalEvent[] {
  switch (command.kind) {
    case "InitCluster":
    case "UpdateCluster":
    case "RotateJoinToken":
    case "RotateUnlockKey":
    case "RotateRootCA":
      return decideClusterCommand(state, command, ctx);
    case "UpdateNode":
    case "RemoveNode":
      return decideNodeCommand(state, command, ctx);
    case "CreateService":
    case "UpdateService":
    case "ScaleService":
    case "RollbackService":
    case "RemoveService":
      return decideServiceCommand(state, command, ctx);
    case "CreateFileObject":
    case "UpdateFileObject":
    case "RemoveFileObject":
      return decideFileObjectCommand(state, command, ctx);
    case "CreateNetwork":
    case "RemoveNetwork":
      return decideNetworkCommand(state, command, ctx);
  }
}
