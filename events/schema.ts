/**
 * The contract of Shoal: zod schemas for every object, spec and event, with the TypeScript types
 * inferred from them. Everything that enters the log is described here (DESIGN.md contract 7).
 *
 * Rules that keep the log readable forever:
 * - times are integer milliseconds since the epoch, durations integer milliseconds;
 * - no `Date`, no `.transform()`: a schema must describe the stored bytes in both directions;
 * - an event type, once written, keeps its shape; a new shape gets a new `v` and an upcaster in
 *   `upcast.ts`.
 *
 * @module
 */
import { z } from "zod";

// ---------------------------------------------------------------------------------------------
// Small pieces

/** An object id: 25 lowercase base-36 characters, as SwarmKit's (see `ids.ts`). */
export const Id = z.string().regex(/^[0-9a-z]{1,64}$/, "must be a lowercase alphanumeric id");

/** A user-chosen object name, as Docker accepts them. */
export const Name = z.string().min(1, "must not be empty").max(63, "must be at most 63 characters")
  .regex(
    /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/,
    "must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
  );

/** Free-form key/value labels. */
export const Labels = z.record(z.string(), z.string());
/** Free-form key/value labels. */
export type Labels = z.infer<typeof Labels>;

/** A non-negative whole number of milliseconds. */
export const Millis = z.number().int().nonnegative();

/** Operating system and CPU architecture, as Go names them (`linux`, `x86_64`). */
export const Platform = z.object({
  os: z.string(),
  architecture: z.string(),
});
/** Operating system and CPU architecture. */
export type Platform = z.infer<typeof Platform>;

/** CPU (in billionths of a CPU, as Docker counts them) and memory, in bytes. */
export const Resources = z.object({
  nanoCPUs: z.number().int().nonnegative().default(0),
  memoryBytes: z.number().int().nonnegative().default(0),
});
/** CPU and memory amounts. */
export type Resources = z.infer<typeof Resources>;

// ---------------------------------------------------------------------------------------------
// Task states: SwarmKit's values, which are ordered (a task only ever moves to a higher value).

/** Task states by name, with SwarmKit's numeric values (64 apart, ordered). */
export const TaskState = {
  new: 0,
  pending: 64,
  assigned: 192,
  accepted: 256,
  preparing: 320,
  ready: 384,
  starting: 448,
  running: 512,
  complete: 576,
  shutdown: 640,
  failed: 704,
  rejected: 768,
  remove: 800,
  orphaned: 832,
} as const;
/** A task state's name. */
export type TaskStateName = keyof typeof TaskState;
/** A task state's numeric value. */
export type TaskStateValue = (typeof TaskState)[TaskStateName];

const taskStateValues = Object.values(TaskState) as [TaskStateValue, ...TaskStateValue[]];
const taskStateNames = new Map<number, TaskStateName>(
  Object.entries(TaskState).map(([name, value]) => [value, name as TaskStateName]),
);

/** A task state, as stored: its numeric value. */
export const TaskStateSchema = z.literal(taskStateValues);

/** The name of a numeric task state (`512` → `"running"`). */
export function taskStateName(state: number): TaskStateName {
  const name = taskStateNames.get(state);
  if (name === undefined) throw new RangeError(`Unknown task state ${state}`);
  return name;
}

/** True for states a task never leaves (complete and everything after it). */
export function isTerminalTaskState(state: number): boolean {
  return state >= TaskState.complete;
}

// ---------------------------------------------------------------------------------------------
// Cluster

/** Orchestration, Raft, dispatcher, CA and encryption settings of a swarm. */
export const ClusterSpec = z.object({
  name: z.string().default("default"),
  labels: Labels.default({}),
  orchestration: z.object({
    /** Terminated tasks kept per slot (or per node for global services); negative keeps all. */
    taskHistoryRetentionLimit: z.number().int().default(5),
  }).default({ taskHistoryRetentionLimit: 5 }),
  raft: z.object({
    snapshotInterval: z.number().int().positive().default(10_000),
    keepOldSnapshots: z.number().int().nonnegative().default(0),
    logEntriesForSlowFollowers: z.number().int().nonnegative().default(500),
    heartbeatTick: z.number().int().positive().default(1),
    electionTick: z.number().int().positive().default(10),
  }).default({
    snapshotInterval: 10_000,
    keepOldSnapshots: 0,
    logEntriesForSlowFollowers: 500,
    heartbeatTick: 1,
    electionTick: 10,
  }),
  dispatcher: z.object({
    heartbeatPeriod: Millis.min(1, "must be at least 1 ms").default(5_000),
  }).default({ heartbeatPeriod: 5_000 }),
  caConfig: z.object({
    /** Validity of node certificates; SwarmKit's default is 90 days. */
    nodeCertExpiry: Millis.min(3_600_000, "must be at least 1 hour").default(7_776_000_000),
  }).default({ nodeCertExpiry: 7_776_000_000 }),
  encryption: z.object({
    autoLockManagers: z.boolean().default(false),
  }).default({ autoLockManagers: false }),
});
/** Settings of a swarm. */
export type ClusterSpec = z.infer<typeof ClusterSpec>;

/** The swarm's root certificate authority. The key is kept only in the (encrypted) log. */
export const RootCA = z.object({
  certPem: z.string(),
  keyPem: z.string(),
  /** sha256 of the DER certificate, hex: the digest in join tokens. */
  digest: z.string(),
  /**
   * A root rotation under way (`swarm ca --rotate`, SwarmKit's `RootRotation`): the new root, its
   * key and digest, and the new root cross-signed by the current one, so that nodes that trust
   * only the current root accept certificates the new one signs. Nodes trust both until every
   * node holds a certificate of the new root; then the new root replaces the current one.
   */
  rotation: z.object({
    certPem: z.string(),
    keyPem: z.string(),
    digest: z.string(),
    crossSignedPem: z.string(),
  }).optional(),
  /** Rotations asked for so far (Docker's `CAConfig.ForceRotate`). */
  lastForcedRotation: z.number().int().nonnegative().optional(),
});
/** The swarm's root certificate authority. */
export type RootCA = z.infer<typeof RootCA>;

/** The two join tokens (`SWMTKN-1-<CA digest>-<secret>`), one per role. */
export const JoinTokens = z.object({
  worker: z.string(),
  manager: z.string(),
});
/** The join tokens. */
export type JoinTokens = z.infer<typeof JoinTokens>;

// ---------------------------------------------------------------------------------------------
// Node

/** A node's role in the swarm. */
export const NodeRole = z.enum(["worker", "manager"]);
/** A node's role in the swarm. */
export type NodeRole = z.infer<typeof NodeRole>;

/** Whether the scheduler may place tasks on a node. */
export const NodeAvailability = z.enum(["active", "pause", "drain"]);
/** Whether the scheduler may place tasks on a node. */
export type NodeAvailability = z.infer<typeof NodeAvailability>;

/** Whether a node's agent is connected. */
export const NodeState = z.enum(["unknown", "down", "ready", "disconnected"]);
/** Whether a node's agent is connected. */
export type NodeState = z.infer<typeof NodeState>;

/** The runtimes an agent can run tasks with. */
export const RuntimeKind = z.enum(["process", "container"]);
/** The runtimes an agent can run tasks with. */
export type RuntimeKind = z.infer<typeof RuntimeKind>;

/** What a node says about itself when it connects. */
export const NodeDescription = z.object({
  hostname: z.string(),
  platform: Platform,
  resources: Resources,
  engine: z.object({
    engineVersion: z.string().default(""),
    labels: Labels.default({}),
  }),
  runtimes: z.array(RuntimeKind).min(1),
  /**
   * The node's TLS view (Docker's `TLSInfo`): the roots it trusts (PEM) and the subject and
   * public key (DER, base64) of the root that signed its certificate. A root rotation is over
   * once every node's issuer is the new root.
   */
  tlsInfo: z.object({
    trustRoot: z.string(),
    certIssuerSubject: z.string(),
    certIssuerPublicKey: z.string(),
  }).optional(),
});
/** What a node says about itself when it connects. */
export type NodeDescription = z.infer<typeof NodeDescription>;

/** What a user controls about a node. */
export const NodeSpec = z.object({
  name: z.string().default(""),
  labels: Labels.default({}),
  /** The role the node should have; `Node.role` is the one it has now. */
  desiredRole: NodeRole,
  availability: NodeAvailability.default("active"),
});
/** What a user controls about a node. */
export type NodeSpec = z.infer<typeof NodeSpec>;

/** A node's observed status. */
export const NodeStatus = z.object({
  state: NodeState,
  message: z.string().default(""),
  addr: z.string().default(""),
});
/** A node's observed status. */
export type NodeStatus = z.infer<typeof NodeStatus>;

/** A manager's place in the Raft group. */
export const ManagerStatus = z.object({
  raftId: z.string(),
  addr: z.string(),
  leader: z.boolean(),
  reachability: z.enum(["unknown", "unreachable", "reachable"]),
});
/** A manager's place in the Raft group. */
export type ManagerStatus = z.infer<typeof ManagerStatus>;

// ---------------------------------------------------------------------------------------------
// Services and tasks

/** A mount into a container. */
export const Mount = z.object({
  type: z.enum(["bind", "volume", "tmpfs"]).default("volume"),
  source: z.string().default(""),
  target: z.string().min(1, "must name a path in the container"),
  readOnly: z.boolean().default(false),
});
/** A mount into a container. */
export type Mount = z.infer<typeof Mount>;

/** A health check, as in a Dockerfile's HEALTHCHECK, for containers and processes alike. */
export const HealthCheck = z.object({
  /**
   * `["NONE"]` disables; `["CMD", ...]` or `["CMD-SHELL", "..."]` runs a check; Shoal adds
   * `["HTTP", "http://127.0.0.1:PORT/path"]`, healthy when a GET answers 200-399.
   */
  test: z.array(z.string()).default([]),
  interval: Millis.default(30_000),
  timeout: Millis.default(30_000),
  retries: z.number().int().nonnegative().default(3),
  startPeriod: Millis.default(0),
});
/** A health check. */
export type HealthCheck = z.infer<typeof HealthCheck>;

/** A program run directly by the agent, without Docker. */
export const ProcessRuntime = z.object({
  kind: z.literal("process"),
  command: z.string().min(1, "must name a program"),
  args: z.array(z.string()).default([]),
  env: z.array(z.string()).default([]),
  dir: z.string().default(""),
  /** Signal that asks it to stop (default SIGTERM). */
  stopSignal: z.string().default(""),
  /** Time between the stop signal and SIGKILL; SwarmKit's default is 10 s. */
  stopGracePeriod: Millis.default(10_000),
  healthcheck: HealthCheck.optional(),
});

/** A Docker container. */
export const ContainerRuntime = z.object({
  kind: z.literal("container"),
  image: z.string().min(1, "must name an image"),
  labels: Labels.default({}),
  command: z.array(z.string()).default([]),
  args: z.array(z.string()).default([]),
  env: z.array(z.string()).default([]),
  hostname: z.string().default(""),
  user: z.string().default(""),
  dir: z.string().default(""),
  mounts: z.array(Mount).default([]),
  stopSignal: z.string().default(""),
  /** SwarmKit's default stop grace period is 10 s. */
  stopGracePeriod: Millis.default(10_000),
  healthcheck: HealthCheck.optional(),
});

/** How a task runs: a plain process or a container. */
export const TaskRuntime = z.discriminatedUnion("kind", [ProcessRuntime, ContainerRuntime]);
/** How a task runs: a plain process or a container. */
export type TaskRuntime = z.infer<typeof TaskRuntime>;

/** A secret or config made available to a task as a file. */
export const FileReference = z.object({
  /** The secret's or config's id. */
  id: Id,
  /** Its name when the service was created (for display). */
  name: Name,
  /** The file name inside the task (defaults to the name). */
  target: z.string().default(""),
  uid: z.string().default("0"),
  gid: z.string().default("0"),
  mode: z.number().int().min(0).max(0o777).default(0o444),
});
/** A secret or config made available to a task as a file. */
export type FileReference = z.infer<typeof FileReference>;

/** When and how often a task is restarted. SwarmKit: condition any, delay 5 s. */
export const RestartPolicy = z.object({
  condition: z.enum(["none", "on-failure", "any"]).default("any"),
  delay: Millis.default(5_000),
  /** 0: unlimited. */
  maxAttempts: z.number().int().nonnegative().default(0),
  /** 0: unbounded. */
  window: Millis.default(0),
});
/** When and how often a task is restarted. */
export type RestartPolicy = z.infer<typeof RestartPolicy>;

/** A constraint such as `node.role==manager` or `node.labels.zone!=east`. */
export const Constraint = z.string().regex(
  /^\s*[A-Za-z0-9_.-]+\s*(==|!=)\s*.+$/,
  "must look like 'node.labels.KEY==VALUE' (with == or !=)",
);

/** Where the scheduler may put tasks. */
export const Placement = z.object({
  constraints: z.array(Constraint).default([]),
  /** Spread descriptors such as `node.labels.zone`, highest precedence first. */
  preferences: z.array(z.object({ spread: z.string().min(1) })).default([]),
  /** 0: no limit. */
  maxReplicas: z.number().int().nonnegative().default(0),
  platforms: z.array(Platform).default([]),
});
/** Where the scheduler may put tasks. */
export type Placement = z.infer<typeof Placement>;

/** A network a task joins, with extra names for it there. */
export const NetworkAttachmentConfig = z.object({
  target: z.string().min(1),
  aliases: z.array(z.string()).default([]),
});

/** What each task of a service runs, and how. */
export const TaskSpec = z.object({
  runtime: TaskRuntime,
  secrets: z.array(FileReference).default([]),
  configs: z.array(FileReference).default([]),
  resources: z.object({
    limits: Resources.default({ nanoCPUs: 0, memoryBytes: 0 }),
    reservations: Resources.default({ nanoCPUs: 0, memoryBytes: 0 }),
  }).default({
    limits: { nanoCPUs: 0, memoryBytes: 0 },
    reservations: { nanoCPUs: 0, memoryBytes: 0 },
  }),
  restart: RestartPolicy.default({ condition: "any", delay: 5_000, maxAttempts: 0, window: 0 }),
  placement: Placement.default({ constraints: [], preferences: [], maxReplicas: 0, platforms: [] }),
  networks: z.array(NetworkAttachmentConfig).default([]),
  /** Bumped by `service update --force` to replace tasks with an unchanged spec. */
  forceUpdate: z.number().int().nonnegative().default(0),
});
/** What each task of a service runs, and how. */
export type TaskSpec = z.infer<typeof TaskSpec>;

/** How many tasks a service runs. */
export const ServiceMode = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("replicated"), replicas: z.number().int().nonnegative() }),
  z.object({ kind: z.literal("global") }),
  z.object({
    kind: z.literal("replicated-job"),
    maxConcurrent: z.number().int().positive(),
    totalCompletions: z.number().int().positive(),
  }),
  z.object({ kind: z.literal("global-job") }),
]);
/** How many tasks a service runs. */
export type ServiceMode = z.infer<typeof ServiceMode>;

/** How a rolling update (or rollback) proceeds. SwarmKit's defaults. */
export const UpdateConfig = z.object({
  /** Tasks updated at once; 0 updates all at once. */
  parallelism: z.number().int().nonnegative().default(1),
  delay: Millis.default(0),
  failureAction: z.enum(["pause", "continue", "rollback"]).default("pause"),
  monitor: Millis.default(5_000),
  maxFailureRatio: z.number().min(0).max(1).default(0),
  order: z.enum(["stop-first", "start-first"]).default("stop-first"),
});
/** How a rolling update (or rollback) proceeds. */
export type UpdateConfig = z.infer<typeof UpdateConfig>;

const defaultUpdateConfig: UpdateConfig = {
  parallelism: 1,
  delay: 0,
  failureAction: "pause",
  monitor: 5_000,
  maxFailureRatio: 0,
  order: "stop-first",
};

/** A port a service exposes. */
export const PortConfig = z.object({
  name: z.string().default(""),
  protocol: z.enum(["tcp", "udp", "sctp"]).default("tcp"),
  targetPort: z.number().int().min(1).max(65535),
  /** 0: let the allocator choose (30000-32767) for ingress ports. */
  publishedPort: z.number().int().min(0).max(65535).default(0),
  publishMode: z.enum(["ingress", "host"]).default("ingress"),
});
/** A port a service exposes. */
export type PortConfig = z.infer<typeof PortConfig>;

/** How a service is reached: a virtual IP or DNS round robin, and its ports. */
export const EndpointSpec = z.object({
  mode: z.enum(["vip", "dnsrr"]).default("vip"),
  ports: z.array(PortConfig).default([]),
});
/** How a service is reached. */
export type EndpointSpec = z.infer<typeof EndpointSpec>;

/** What a user asks of a service. */
export const ServiceSpec = z.object({
  name: Name,
  labels: Labels.default({}),
  task: TaskSpec,
  mode: ServiceMode.default({ kind: "replicated", replicas: 1 }),
  update: UpdateConfig.default(defaultUpdateConfig),
  rollback: UpdateConfig.default(defaultUpdateConfig),
  endpoint: EndpointSpec.default({ mode: "vip", ports: [] }),
});
/** What a user asks of a service. */
export type ServiceSpec = z.infer<typeof ServiceSpec>;

/** Progress of a rolling update or rollback. */
export const UpdateStatus = z.object({
  state: z.enum([
    "updating",
    "paused",
    "completed",
    "rollback_started",
    "rollback_paused",
    "rollback_completed",
  ]),
  startedAt: Millis,
  completedAt: Millis.default(0),
  message: z.string().default(""),
});
/** Progress of a rolling update or rollback. */
export type UpdateStatus = z.infer<typeof UpdateStatus>;

/**
 * An address the allocator gave on one network (a service's virtual IP, or a task's address, as
 * Docker's `Endpoint.VirtualIPs` and `NetworksAttachments`): the network's id and a bare IPv4
 * address inside its subnet (`127.1.0.2`, no prefix length; the network's `subnet` has it).
 */
export const NetworkAddress = z.object({ networkId: z.string(), addr: z.string() });
/** An address on one network. */
export type NetworkAddress = z.infer<typeof NetworkAddress>;

/** What the allocator gave a service: its published ports and virtual IPs. */
export const Endpoint = z.object({
  ports: z.array(PortConfig),
  /** The service's virtual IP on each network it is on (none in `dnsrr` mode). */
  virtualIPs: z.array(NetworkAddress).default([]),
});
/** What the allocator gave a service. */
export type Endpoint = z.infer<typeof Endpoint>;

/** What an agent last reported about a task (or a manager, before one was assigned). */
export const TaskStatus = z.object({
  state: TaskStateSchema,
  /** When the state was observed, in ms. */
  timestamp: Millis,
  message: z.string(),
  err: z.string().default(""),
  exitCode: z.number().int().optional(),
  /** Process id or container id on the node. */
  runtimeId: z.string().optional(),
  /** Host ports the task is actually reachable on. */
  ports: z.array(PortConfig).optional(),
});
/** What an agent last reported about a task. */
export type TaskStatus = z.infer<typeof TaskStatus>;

/** Why the scheduler chose a node, or found none: what `debug why` shows. */
export const SchedulingDecision = z.object({
  nodesConsidered: z.number().int().nonnegative(),
  /** Nodes that passed every filter (at most a few dozen are listed). */
  passed: z.array(z.string()),
  /** Nodes filtered out and by which filter (at most a few dozen are listed). */
  rejected: z.array(z.object({ node: z.string(), filter: z.string(), reason: z.string() })),
  /** How many nodes each filter rejected, over all nodes. */
  rejectedCounts: z.record(z.string(), z.number().int()),
  /** Why the chosen node won, in words. */
  reason: z.string(),
});
/** Why the scheduler chose a node, or found none. */
export type SchedulingDecision = z.infer<typeof SchedulingDecision>;

// ---------------------------------------------------------------------------------------------
// Secrets, configs, networks

/** A secret: data given only to the tasks that reference it. */
export const SecretSpec = z.object({
  name: Name,
  labels: Labels.default({}),
  /** Base64 of the secret's bytes (at most 500 KiB, as Docker). */
  data: z.string().max(700_000, "must be at most 500 KiB"),
});
/** A secret. */
export type SecretSpec = z.infer<typeof SecretSpec>;

/** A config: non-secret data given to the tasks that reference it. */
export const ConfigSpec = SecretSpec;
/** A config. */
export type ConfigSpec = z.infer<typeof ConfigSpec>;

/** A network services can join. */
export const NetworkSpec = z.object({
  name: Name,
  labels: Labels.default({}),
  driver: z.string().default("overlay"),
  scope: z.enum(["swarm", "local"]).default("swarm"),
  attachable: z.boolean().default(false),
  internal: z.boolean().default(false),
  ingress: z.boolean().default(false),
  /** Requested subnet (CIDR); empty: the allocator picks one. */
  subnet: z.string().default(""),
  options: Labels.default({}),
});
/** A network services can join. */
export type NetworkSpec = z.infer<typeof NetworkSpec>;

// ---------------------------------------------------------------------------------------------
// Events

/**
 * Provenance (DESIGN.md contract 4): who proposed an event, why, and what caused it. `expect` is the
 * entity's version the proposer read (optimistic concurrency, contract 3); the fold rejects the
 * batch when the entity has moved on.
 */
export const EventMeta = z.object({
  /** `user:<api call>`, `orchestrator`, `scheduler`, `allocator`, `dispatcher`, `agent:<node id>`. */
  by: z.string().min(1),
  /** A short human reason. */
  reason: z.string(),
  /** Log index of the entry whose event triggered this one. */
  cause: z.number().int().nonnegative().optional(),
  /** The entity version this event was decided against. */
  expect: z.number().int().nonnegative().optional(),
});
/** Provenance and expected version of an event. */
export type EventMeta = z.infer<typeof EventMeta>;

/** Declares an event type: its name, its shape version (1 unless superseded), and its data. */
function event<T extends string, D extends z.ZodType, V extends number = 1>(
  type: T,
  data: D,
  v: V = 1 as V,
) {
  return z.object({ type: z.literal(type), v: z.literal(v), data, meta: EventMeta });
}

const withId = <S extends z.ZodRawShape>(shape: S) => z.object({ id: Id, ...shape });

/** A swarm was initialised. */
export const ClusterCreated = event(
  "ClusterCreated",
  withId({ spec: ClusterSpec, rootCA: RootCA, joinTokens: JoinTokens }),
);
/** The swarm's settings changed (`swarm update`). */
export const ClusterSpecUpdated = event("ClusterSpecUpdated", withId({ spec: ClusterSpec }));
/** A join token was rotated; the old one stops working. */
export const ClusterJoinTokenRotated = event(
  "ClusterJoinTokenRotated",
  withId({ role: NodeRole, token: z.string() }),
);
/**
 * The managers' unlock key changed (autolock turned on, rotated, or off: ""). It lives in the log,
 * which is encrypted at rest, so that every manager wraps its data key with the same key.
 */
export const ClusterUnlockKeyRotated = event(
  "ClusterUnlockKeyRotated",
  withId({ unlockKey: z.string().max(200) }),
);
/** The root CA was replaced (`swarm ca --rotate`). */
export const ClusterRootCARotated = event("ClusterRootCARotated", withId({ rootCA: RootCA }));

/** A node joined the swarm and was given a certificate. */
export const NodeRegistered = event(
  "NodeRegistered",
  withId({ description: NodeDescription, spec: NodeSpec, role: NodeRole, addr: z.string() }),
);
/** A node reported a new description (hostname, resources, engine labels, runtimes). */
export const NodeDescriptionUpdated = event(
  "NodeDescriptionUpdated",
  withId({ description: NodeDescription }),
);
/** A user changed a node's spec (availability, labels, desired role, name). */
export const NodeSpecUpdated = event("NodeSpecUpdated", withId({ spec: NodeSpec }));
/** A node's current role changed (a promotion or demotion completed). */
export const NodeRoleChanged = event("NodeRoleChanged", withId({ role: NodeRole }));
/** A node's status changed (ready, down, disconnected). Heartbeats themselves are not logged. */
export const NodeStatusChanged = event("NodeStatusChanged", withId({ status: NodeStatus }));
/** A manager's Raft membership or reachability changed. */
export const NodeManagerStatusChanged = event(
  "NodeManagerStatusChanged",
  withId({ managerStatus: ManagerStatus.optional() }),
);
/** A node left or was removed from the swarm. */
export const NodeRemoved = event("NodeRemoved", withId({}));

/** A service was created. */
export const ServiceCreated = event("ServiceCreated", withId({ spec: ServiceSpec }));
/** A service's spec was replaced; the old spec becomes the previous spec, for rollback. */
export const ServiceUpdated = event("ServiceUpdated", withId({ spec: ServiceSpec }));
/** A service went back to its previous spec. */
export const ServiceRolledBack = event("ServiceRolledBack", withId({}));
/** A rolling update or rollback moved on (started, paused, completed). */
export const ServiceUpdateStatusChanged = event(
  "ServiceUpdateStatusChanged",
  withId({ updateStatus: UpdateStatus.optional() }),
);
/** The allocator gave a service its ports and virtual IPs. */
export const ServiceEndpointAllocated = event(
  "ServiceEndpointAllocated",
  withId({ endpoint: Endpoint }),
);
/** A service was removed; its tasks are shut down and reaped by the orchestrator. */
export const ServiceRemoved = event("ServiceRemoved", withId({}));

/** The orchestrator created a task for a slot (replicated) or a node (global). */
export const TaskCreated = event(
  "TaskCreated",
  withId({
    serviceId: Id,
    /** 1-based slot for replicated services and jobs; 0 for global ones. */
    slot: z.number().int().nonnegative(),
    /** Fixed at creation for global services; empty otherwise. */
    nodeId: z.string(),
    /** The service spec version this task runs (see `ServiceRecord.specVersion`). */
    specVersion: z.number().int().nonnegative(),
    desiredState: TaskStateSchema,
    /** 0 for a slot's first task; n for its n-th restart under the same spec. */
    attempt: z.number().int().nonnegative().default(0),
    /**
     * A restart delay as a fact (DESIGN.md contract 8): the task waits at ready until this time
     * (ms), then the orchestrator asks it to run. 0: no delay.
     */
    startAfter: Millis.default(0),
  }),
);
/** The allocator gave a task its resources; the task now waits for a node (pending). */
export const TaskAllocated = event(
  "TaskAllocated",
  withId({
    ports: z.array(PortConfig),
    /** The bare addresses of `networks`, in the same order (older entries: empty). */
    addresses: z.array(z.string()),
    /** The task's address on each of its networks (absent in entries written before IPAM). */
    networks: z.array(NetworkAddress).optional(),
  }),
);
/** The scheduler placed a task on a node (assigned). */
export const TaskAssigned = event(
  "TaskAssigned",
  withId({ nodeId: Id, decision: SchedulingDecision }),
);
/** The scheduler found no node for a task; it stays pending with this message. */
export const TaskUnschedulable = event(
  "TaskUnschedulable",
  withId({ message: z.string(), decision: SchedulingDecision }),
);
/** The observed state of a task moved on (reported by its agent, or set by a manager). */
export const TaskStatusReported = event("TaskStatusReported", withId({ status: TaskStatus }));
/** A manager changed the state a task should reach (running, shutdown, remove...). */
export const TaskDesiredStateChanged = event(
  "TaskDesiredStateChanged",
  withId({ desiredState: TaskStateSchema }),
);
/** A task was deleted from the state (reaped). */
export const TaskRemoved = event("TaskRemoved", withId({}));

/** A secret was created. */
export const SecretCreated = event("SecretCreated", withId({ spec: SecretSpec }));
/** A secret's labels changed (its data never changes, as in Docker). */
export const SecretUpdated = event("SecretUpdated", withId({ labels: Labels }));
/** A secret was removed. */
export const SecretRemoved = event("SecretRemoved", withId({}));
/** A config was created. */
export const ConfigCreated = event("ConfigCreated", withId({ spec: ConfigSpec }));
/** A config's labels changed. */
export const ConfigUpdated = event("ConfigUpdated", withId({ labels: Labels }));
/** A config was removed. */
export const ConfigRemoved = event("ConfigRemoved", withId({}));
/** A network was created. */
export const NetworkCreated = event("NetworkCreated", withId({ spec: NetworkSpec }));
/**
 * The allocator gave a network its subnet (CIDR, inside 127.0.0.0/8) and gateway (the subnet's
 * first address, never given to a task or service).
 */
export const NetworkAllocated = event(
  "NetworkAllocated",
  withId({ subnet: z.string(), gateway: z.string() }),
);
/** A network was removed. */
export const NetworkRemoved = event("NetworkRemoved", withId({}));

/** Every event Shoal logs, current versions. */
export const ShoalEvent = z.discriminatedUnion("type", [
  ClusterCreated,
  ClusterSpecUpdated,
  ClusterJoinTokenRotated,
  ClusterRootCARotated,
  ClusterUnlockKeyRotated,
  NodeRegistered,
  NodeDescriptionUpdated,
  NodeSpecUpdated,
  NodeRoleChanged,
  NodeStatusChanged,
  NodeManagerStatusChanged,
  NodeRemoved,
  ServiceCreated,
  ServiceUpdated,
  ServiceRolledBack,
  ServiceUpdateStatusChanged,
  ServiceEndpointAllocated,
  ServiceRemoved,
  TaskCreated,
  TaskAllocated,
  TaskAssigned,
  TaskUnschedulable,
  TaskStatusReported,
  TaskDesiredStateChanged,
  TaskRemoved,
  SecretCreated,
  SecretUpdated,
  SecretRemoved,
  ConfigCreated,
  ConfigUpdated,
  ConfigRemoved,
  NetworkCreated,
  NetworkAllocated,
  NetworkRemoved,
]);
/** Every event Shoal logs. */
export type ShoalEvent = z.infer<typeof ShoalEvent>;
/** The name of an event type. */
export type EventType = ShoalEvent["type"];
/** One event type's shape, by name. */
export type EventOf<T extends EventType> = Extract<ShoalEvent, { type: T }>;

/** Most events one batch may hold (DESIGN.md contract 9). */
export const MAX_BATCH_EVENTS = 500;
/** Most bytes one encoded batch may take (DESIGN.md contract 9; SwarmKit's 1.5 MiB). */
export const MAX_BATCH_BYTES = 1_572_864;

/**
 * One proposal: events applied atomically, as one log entry (DESIGN.md contract 2). `at` is the
 * proposer's clock, stamped once, so the fold never reads a clock.
 */
export const Batch = z.object({
  at: Millis,
  by: z.string().min(1),
  events: z.array(ShoalEvent).min(1, "a batch holds at least one event").max(
    MAX_BATCH_EVENTS,
    `a batch holds at most ${MAX_BATCH_EVENTS} events`,
  ),
});
/** One proposal: events applied atomically, as one log entry. */
export type Batch = z.infer<typeof Batch>;
