/**
 * The cluster's state as a fold of the event log. `applyBatch(state, batch, index)` is the fold:
 * deterministic (no clock, no randomness, no I/O: time comes from `batch.at`, versions from the
 * log index) and atomic per batch (a rejected event undoes the whole batch, which is recorded as
 * rejected with its reason). Replaying the same log always yields the same state.
 *
 * Records are replaced on every change, never mutated, so a reader can keep a record it was given.
 *
 * @module
 */
import type {
  Batch,
  ClusterSpec,
  Endpoint,
  JoinTokens,
  ManagerStatus,
  NetworkAddress,
  NetworkSpec,
  NodeAvailability,
  NodeDescription,
  NodeRole,
  NodeSpec,
  NodeStatus,
  PortConfig,
  RootCA,
  SecretSpec,
  ServiceSpec,
  ShoalEvent,
  TaskSpec,
  TaskStateValue,
  TaskStatus,
  UpdateStatus,
} from "../events/schema.ts";
import { TaskState } from "../events/schema.ts";
import { Journal, MultiIndex, type ReadonlyTable, type Row, Table } from "./table.ts";
import { EventRejected } from "./entities/rejection.ts";
import { applyClusterEvent } from "./entities/cluster.ts";
import { applyNodeEvent } from "./entities/node.ts";
import { applyServiceEvent } from "./entities/service.ts";
import { applyTaskEvent } from "./entities/task.ts";
import { applyFileObjectEvent } from "./entities/file_object.ts";
import { applyNetworkEvent } from "./entities/network.ts";

/** What every record carries: its id, the log index of its last change, and when. */
export interface RecordMeta extends Row {
  /** Log index of the entry that last changed this record: the version to `expect`. */
  readonly version: number;
  /** `batch.at` of the entry that created it. */
  readonly createdAt: number;
  /** `batch.at` of the entry that last changed it. */
  readonly updatedAt: number;
}

/** The swarm itself. */
export interface ClusterRecord extends RecordMeta {
  readonly spec: ClusterSpec;
  readonly rootCA: RootCA;
  readonly joinTokens: JoinTokens;
  /** The managers' unlock key while autolock is on (never shown but by `swarm unlock-key`). */
  readonly unlockKey?: string;
}

/** A node of the swarm. */
export interface NodeRecord extends RecordMeta {
  readonly description: NodeDescription;
  readonly spec: NodeSpec;
  /** The role it has now (`spec.desiredRole` is the one asked for). */
  readonly role: NodeRole;
  readonly status: NodeStatus;
  readonly managerStatus?: ManagerStatus;
}

/** A service. */
export interface ServiceRecord extends RecordMeta {
  readonly spec: ServiceSpec;
  /** Log index at which the current spec was written; tasks record the one they run. */
  readonly specVersion: number;
  readonly previousSpec?: ServiceSpec;
  readonly previousSpecVersion?: number;
  readonly updateStatus?: UpdateStatus;
  readonly endpoint?: Endpoint;
  /**
   * Jobs only (SwarmKit's `JobStatus`): which run of the job this is, 0 at creation and one more
   * at every update or rollback (each re-runs the job), and when that run began (ms).
   */
  readonly jobIteration?: number;
  readonly lastExecution?: number;
}

/** A task: one run of a service's task spec in a slot (or on a node, for global services). */
export interface TaskRecord extends RecordMeta {
  readonly serviceId: string;
  /** 1-based slot, or 0 for global services. */
  readonly slot: number;
  /** The node it is assigned to (fixed at creation for global services), or "". */
  readonly nodeId: string;
  /** The service spec version it runs; its spec is `state.taskSpec(task)`. */
  readonly specVersion: number;
  readonly desiredState: TaskStateValue;
  /** Restart attempt in its slot under this spec (0: the first task). */
  readonly attempt: number;
  /** Time (ms) before which it must not be asked to run (a restart delay); 0: none. */
  readonly startAfter: number;
  /** Jobs only: the service's `jobIteration` when the task was created (the run it belongs to). */
  readonly jobIteration?: number;
  readonly status: TaskStatus;
  /** Ports the allocator gave it (its service's published ports). */
  readonly ports: readonly PortConfig[];
  /** The bare addresses of `networks`, in the same order (`addresses[0]` is its main one). */
  readonly addresses: readonly string[];
  /**
   * Its address on each of its networks (Docker's `NetworksAttachments`), given by the allocator
   * when it left `new`; held until the task ends (a terminal state) or is removed. Empty before
   * allocation and for tasks on no network.
   */
  readonly networks: readonly NetworkAddress[];
}

/** A secret or config. */
export interface FileObjectRecord extends RecordMeta {
  readonly spec: SecretSpec;
}

/** A network. */
export interface NetworkRecord extends RecordMeta {
  readonly spec: NetworkSpec;
  /**
   * The subnet the allocator gave it (CIDR inside 127.0.0.0/8, such as `127.1.0.0/16`), once
   * `NetworkAllocated`; undefined before. `spec.subnet` is only what the user asked for.
   */
  readonly subnet?: string;
  /** The subnet's first address (`127.1.0.1`), reserved: never a task's or a service's. */
  readonly gateway?: string;
}

/**
 * A task spec shared by every task created from one service spec version (keyed
 * `serviceId@specVersion`), kept while a task or the service refers to it. Sharing it keeps a
 * state of 100,000 tasks small.
 */
export interface SpecRecord extends Row {
  readonly spec: TaskSpec;
  readonly refs: number;
}

/** A batch the fold refused, and why. */
export interface Rejection {
  /** Log index of the batch. */
  readonly index: number;
  /** Position of the offending event in the batch. */
  readonly event: number;
  readonly type: string;
  /** Stable code: `version_conflict`, `not_found`, `name_conflict`, `invalid_transition`, ... */
  readonly code: string;
  readonly reason: string;
}

/** What `applyBatch` did with a batch. */
export type ApplyResult = { readonly applied: true } | {
  readonly applied: false;
  readonly rejection: Rejection;
};

/** How many recent rejections the state remembers. */
export const REJECTIONS_KEPT = 256;

/** The key of a task spec in `ClusterState.specs`. */
export function specKey(serviceId: string, specVersion: number): string {
  return `${serviceId}@${specVersion}`;
}

/** Sets a unique name → id mapping in step with a change, leaving other ids' names alone. */
function reindexName(names: Map<string, string>) {
  return <R extends Row & { spec: { name: string } }>(prev?: R, next?: R) => {
    if (prev !== undefined && names.get(prev.spec.name) === prev.id) names.delete(prev.spec.name);
    if (next !== undefined) names.set(next.spec.name, next.id);
  };
}

/**
 * The whole cluster: entity tables plus the indexes projections need. Change it only through
 * `applyBatch` (or `restore`); everything else reads.
 */
export class ClusterState {
  /** Undo journal of the batch being applied. */
  readonly journal: Journal = new Journal();
  /** Log index of the last entry applied (0: none). */
  index = 0;

  readonly clusters: Table<ClusterRecord> = new Table(this.journal);

  readonly nodesByRole: MultiIndex<NodeRole> = new MultiIndex();
  readonly nodesByAvailability: MultiIndex<NodeAvailability> = new MultiIndex();
  readonly nodesByName: MultiIndex<string> = new MultiIndex();
  readonly nodes: Table<NodeRecord> = new Table(this.journal, (prev, next) => {
    const id = (prev ?? next)!.id;
    this.nodesByRole.move(prev?.role, next?.role, id);
    this.nodesByAvailability.move(prev?.spec.availability, next?.spec.availability, id);
    this.nodesByName.move(prev && nodeName(prev), next && nodeName(next), id);
  });

  readonly serviceNames: Map<string, string> = new Map();
  readonly services: Table<ServiceRecord> = new Table(this.journal, (prev, next) => {
    reindexName(this.serviceNames)(prev, next);
    moveAddresses(
      this.addressOwners,
      (prev ?? next)!.id,
      prev?.endpoint?.virtualIPs,
      next?.endpoint?.virtualIPs,
    );
  });

  readonly tasksByService: MultiIndex<string> = new MultiIndex();
  readonly tasksByNode: MultiIndex<string> = new MultiIndex();
  readonly tasksByState: MultiIndex<number> = new MultiIndex();
  readonly tasksByDesiredState: MultiIndex<number> = new MultiIndex();
  /**
   * Every address in use, to its holder's id: services' virtual IPs and the addresses of tasks
   * that have not ended. A task's addresses are released when it reaches a terminal state or is
   * removed, a service's when its endpoint changes or it is removed. Addresses are unique across
   * networks (their subnets never overlap), so the bare address is the key.
   */
  readonly addressOwners: Map<string, string> = new Map();
  readonly tasks: Table<TaskRecord> = new Table(this.journal, (prev, next) => {
    const id = (prev ?? next)!.id;
    this.tasksByService.move(prev?.serviceId, next?.serviceId, id);
    this.tasksByNode.move(prev?.nodeId || undefined, next?.nodeId || undefined, id);
    this.tasksByState.move(prev?.status.state, next?.status.state, id);
    this.tasksByDesiredState.move(prev?.desiredState, next?.desiredState, id);
    moveAddresses(this.addressOwners, id, heldByTask(prev), heldByTask(next));
  });

  readonly specs: Table<SpecRecord> = new Table(this.journal);

  readonly secretNames: Map<string, string> = new Map();
  readonly secrets: Table<FileObjectRecord> = new Table(
    this.journal,
    reindexName(this.secretNames),
  );
  readonly configNames: Map<string, string> = new Map();
  readonly configs: Table<FileObjectRecord> = new Table(
    this.journal,
    reindexName(this.configNames),
  );
  readonly networkNames: Map<string, string> = new Map();
  readonly networks: Table<NetworkRecord> = new Table(
    this.journal,
    reindexName(this.networkNames),
  );

  /** The most recent rejected batches, oldest first (at most `REJECTIONS_KEPT`). */
  readonly rejections: Rejection[] = [];

  /** The swarm, once initialised. */
  get cluster(): ClusterRecord | undefined {
    for (const c of this.clusters.values()) return c;
    return undefined;
  }

  /** The task spec a task runs. */
  taskSpec(task: Pick<TaskRecord, "serviceId" | "specVersion">): TaskSpec {
    const rec = this.specs.get(specKey(task.serviceId, task.specVersion));
    if (rec === undefined) {
      throw new Error(`No spec ${specKey(task.serviceId, task.specVersion)} (state is corrupt)`);
    }
    return rec.spec;
  }

  /** A service by name, if any. */
  serviceByName(name: string): ServiceRecord | undefined {
    const id = this.serviceNames.get(name);
    return id === undefined ? undefined : this.services.get(id);
  }

  /** The tasks of a service. */
  *tasksOf(serviceId: string): IterableIterator<TaskRecord> {
    for (const id of this.tasksByService.get(serviceId)) yield this.tasks.get(id)!;
  }

  /** The tasks assigned to a node. */
  *tasksOn(nodeId: string): IterableIterator<TaskRecord> {
    for (const id of this.tasksByNode.get(nodeId)) yield this.tasks.get(id)!;
  }
}

/** The addresses a task holds: those it was given, until it ends. */
function heldByTask(task: TaskRecord | undefined): readonly NetworkAddress[] | undefined {
  if (task === undefined || task.status.state >= TaskState.complete) return undefined;
  return task.networks;
}

/** Moves `id`'s entries in the address index from its old addresses to its new ones. */
function moveAddresses(
  owners: Map<string, string>,
  id: string,
  prev: readonly NetworkAddress[] | undefined,
  next: readonly NetworkAddress[] | undefined,
): void {
  if (prev === next) return;
  for (const a of prev ?? []) if (owners.get(a.addr) === id) owners.delete(a.addr);
  for (const a of next ?? []) owners.set(a.addr, id);
}

/** The name a node is known by: its spec name, else its hostname. */
export function nodeName(node: NodeRecord): string {
  return node.spec.name || node.description.hostname;
}

/**
 * What an entity's apply function is given besides its event: the entry's index and time, the
 * event's position, and versions entities had when the batch started (for `expect`).
 */
export class ApplyContext {
  /** Log index of the entry being applied. */
  index = 0;
  /** `batch.at` of the entry. */
  at = 0;
  /** Position of the event being applied in its batch. */
  position = 0;
  /** The journal of the state being changed. */
  journal: Journal | undefined;

  /** Resets the context for a new batch. */
  reset(index: number, at: number, journal: Journal): void {
    this.index = index;
    this.at = at;
    this.position = 0;
    this.journal = journal;
  }

  /**
   * Rejects the event unless `record` is at the version the proposer expected (when it said). A
   * record changed earlier in the same batch is compared at the version it had before the batch.
   */
  checkVersion<R extends RecordMeta>(
    kind: string,
    table: ReadonlyTable<R>,
    record: R,
    expect: number | undefined,
  ): void {
    if (expect === undefined) return;
    let version: number | undefined = record.version;
    // Only a change made by this very entry carries its index: look up the version before it.
    if (version === this.index && this.journal !== undefined) {
      const before = this.journal.before(table as ReadonlyTable<Row>, record.id);
      if (before.found) version = (before.row as R | undefined)?.version;
    }
    if (expect !== version) {
      throw new EventRejected(
        "version_conflict",
        `Cannot change ${kind} ${record.id}: expected version ${expect}, current version is ${
          version ?? "none (created in the same batch)"
        }`,
      );
    }
  }

  /** The version/time fields of a record changed by the current entry. */
  touched<R extends RecordMeta>(record: R): R {
    return { ...record, version: this.index, updatedAt: this.at };
  }

  /** The version/time fields for a record created by the current entry. */
  created(id: string): RecordMeta {
    return { id, version: this.index, createdAt: this.at, updatedAt: this.at };
  }
}

const sharedContext = new ApplyContext();

/**
 * Applies one committed log entry to the state: all of its events, or none of them. Throws only on
 * misuse (an index that does not move forward); a bad event is a recorded rejection.
 */
export function applyBatch(state: ClusterState, batch: Batch, index: number): ApplyResult {
  if (!(index > state.index)) {
    throw new RangeError(`Cannot apply entry ${index}: state is already at index ${state.index}`);
  }
  const ctx = sharedContext;
  ctx.reset(index, batch.at, state.journal);
  state.journal.begin();
  const events = batch.events;
  try {
    for (let i = 0; i < events.length; i++) {
      ctx.position = i;
      applyEvent(state, events[i], ctx);
    }
  } catch (err) {
    state.journal.rollback();
    if (!(err instanceof EventRejected)) throw err;
    state.index = index;
    const event = events[ctx.position];
    const rejection: Rejection = {
      index,
      event: ctx.position,
      type: event?.type ?? "unknown",
      code: err.code,
      reason: err.message,
    };
    state.rejections.push(rejection);
    if (state.rejections.length > REJECTIONS_KEPT) state.rejections.shift();
    return { applied: false, rejection };
  }
  state.journal.commit();
  state.index = index;
  return APPLIED;
}

const APPLIED: ApplyResult = { applied: true };

type EntityApply = (state: ClusterState, event: never, ctx: ApplyContext) => void;

/**
 * Which entity applies each event type. A map, not a switch: decoded type strings are not
 * internalised, so one hash lookup beats a chain of string comparisons on the replay path.
 */
const APPLY_BY_TYPE: ReadonlyMap<string, EntityApply> = new Map<ShoalEvent["type"], EntityApply>([
  ["TaskCreated", applyTaskEvent],
  ["TaskAllocated", applyTaskEvent],
  ["TaskAssigned", applyTaskEvent],
  ["TaskUnschedulable", applyTaskEvent],
  ["TaskStatusReported", applyTaskEvent],
  ["TaskDesiredStateChanged", applyTaskEvent],
  ["TaskRemoved", applyTaskEvent],
  ["ServiceCreated", applyServiceEvent],
  ["ServiceUpdated", applyServiceEvent],
  ["ServiceRolledBack", applyServiceEvent],
  ["ServiceUpdateStatusChanged", applyServiceEvent],
  ["ServiceEndpointAllocated", applyServiceEvent],
  ["ServiceRemoved", applyServiceEvent],
  ["NodeRegistered", applyNodeEvent],
  ["NodeDescriptionUpdated", applyNodeEvent],
  ["NodeSpecUpdated", applyNodeEvent],
  ["NodeRoleChanged", applyNodeEvent],
  ["NodeStatusChanged", applyNodeEvent],
  ["NodeManagerStatusChanged", applyNodeEvent],
  ["NodeRemoved", applyNodeEvent],
  ["ClusterCreated", applyClusterEvent],
  ["ClusterSpecUpdated", applyClusterEvent],
  ["ClusterJoinTokenRotated", applyClusterEvent],
  ["ClusterRootCARotated", applyClusterEvent],
  ["ClusterUnlockKeyRotated", applyClusterEvent],
  ["SecretCreated", applyFileObjectEvent],
  ["SecretUpdated", applyFileObjectEvent],
  ["SecretRemoved", applyFileObjectEvent],
  ["ConfigCreated", applyFileObjectEvent],
  ["ConfigUpdated", applyFileObjectEvent],
  ["ConfigRemoved", applyFileObjectEvent],
  ["NetworkCreated", applyNetworkEvent],
  ["NetworkAllocated", applyNetworkEvent],
  ["NetworkRemoved", applyNetworkEvent],
]);

function applyEvent(state: ClusterState, event: ShoalEvent, ctx: ApplyContext): void {
  const apply = APPLY_BY_TYPE.get(event.type);
  if (apply === undefined) {
    throw new EventRejected(
      "unknown_event",
      `Unknown event type "${(event as { type: string }).type}"`,
    );
  }
  apply(state, event as never, ctx);
}

/** Read-only view of the tables, for code that must not change state. */
export type StateView = Pick<ClusterState, "index" | "cluster" | "taskSpec" | "serviceByName"> & {
  readonly nodes: ReadonlyTable<NodeRecord>;
  readonly services: ReadonlyTable<ServiceRecord>;
  readonly tasks: ReadonlyTable<TaskRecord>;
};
