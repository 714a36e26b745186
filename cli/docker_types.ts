/**
 * The Docker Engine API's JSON shapes (v1.41 swarm endpoints) that the CLI reads and writes,
 * plus Shoal's extension for plain programs (`TaskTemplate.Runtime: "process"` with
 * `TaskTemplate.ProcessSpec`). Durations are nanoseconds and times RFC 3339 strings, as in
 * Docker. Only the fields the CLI uses are listed; the API may send more.
 *
 * @module
 */

/** An object's version, for optimistic concurrency (`?version=` on updates). */
export interface Version {
  Index: number;
}

/** Name and labels. */
export interface Annotations {
  Name?: string;
  Labels?: Record<string, string>;
}

/** A container health check (`HEALTHCHECK`). */
export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  Retries?: number;
  StartPeriod?: number;
}

/** A secret file in a task. */
export interface SecretReference {
  File?: { Name: string; UID: string; GID: string; Mode: number };
  SecretID: string;
  SecretName: string;
}

/** A config file in a task. */
export interface ConfigReference {
  File?: { Name: string; UID: string; GID: string; Mode: number };
  Runtime?: Record<string, never>;
  ConfigID: string;
  ConfigName: string;
}

/** A mount into a container. */
export interface Mount {
  Type?: string;
  Source?: string;
  Target: string;
  ReadOnly?: boolean;
}

/** What a container task runs. */
export interface ContainerSpec {
  Image: string;
  Labels?: Record<string, string>;
  Command?: string[];
  Args?: string[];
  Hostname?: string;
  Env?: string[];
  Dir?: string;
  User?: string;
  Init?: boolean;
  Mounts?: Mount[];
  StopSignal?: string;
  StopGracePeriod?: number;
  Healthcheck?: HealthConfig;
  Secrets?: SecretReference[];
  Configs?: ConfigReference[];
  [other: string]: unknown;
}

/** Shoal: what a process task runs (no image, no container). */
export interface ProcessSpec {
  Command: string;
  Args?: string[];
  Env?: string[];
  Dir?: string;
  StopSignal?: string;
  StopGracePeriod?: number;
  Healthcheck?: HealthConfig;
  Secrets?: SecretReference[];
  Configs?: ConfigReference[];
}

/** CPU (billionths) and memory (bytes). */
export interface Resources {
  NanoCPUs?: number;
  MemoryBytes?: number;
  Pids?: number;
}

/** When tasks restart. */
export interface RestartPolicy {
  Condition?: string;
  Delay?: number;
  MaxAttempts?: number;
  Window?: number;
}

/** Where tasks may go. */
export interface Placement {
  Constraints?: string[];
  Preferences?: { Spread?: { SpreadDescriptor: string } }[];
  MaxReplicas?: number;
  Platforms?: { Architecture?: string; OS?: string }[];
}

/** What each task of a service runs. */
export interface TaskSpec {
  ContainerSpec?: ContainerSpec;
  /** Shoal's extension: `"process"` runs `ProcessSpec` directly on the node. */
  Runtime?: string;
  ProcessSpec?: ProcessSpec;
  Resources?: { Limits?: Resources; Reservations?: Resources };
  RestartPolicy?: RestartPolicy;
  Placement?: Placement;
  Networks?: { Target: string; Aliases?: string[] }[];
  LogDriver?: { Name: string; Options?: Record<string, string> };
  ForceUpdate?: number;
  [other: string]: unknown;
}

/** Rolling update or rollback settings. */
export interface UpdateConfig {
  Parallelism: number;
  Delay?: number;
  FailureAction?: string;
  Monitor?: number;
  MaxFailureRatio: number;
  Order?: string;
}

/** A port a service publishes. */
export interface PortConfig {
  Name?: string;
  Protocol?: string;
  TargetPort?: number;
  PublishedPort?: number;
  PublishMode?: string;
}

/** How many tasks a service runs. */
export interface ServiceMode {
  Replicated?: { Replicas?: number };
  Global?: Record<string, never>;
  ReplicatedJob?: { MaxConcurrent?: number; TotalCompletions?: number };
  GlobalJob?: Record<string, never>;
}

/** What a user asks of a service. */
export interface ServiceSpec extends Annotations {
  TaskTemplate: TaskSpec;
  Mode?: ServiceMode;
  UpdateConfig?: UpdateConfig;
  RollbackConfig?: UpdateConfig;
  EndpointSpec?: { Mode?: string; Ports?: PortConfig[] };
  [other: string]: unknown;
}

/** A service, as `GET /services` returns it. */
export interface Service {
  ID: string;
  Version: Version;
  CreatedAt?: string;
  UpdatedAt?: string;
  Spec: ServiceSpec;
  PreviousSpec?: ServiceSpec;
  Endpoint?: { Spec?: unknown; Ports?: PortConfig[]; VirtualIPs?: unknown[] };
  UpdateStatus?: { State?: string; StartedAt?: string; CompletedAt?: string; Message?: string };
  ServiceStatus?: { RunningTasks: number; DesiredTasks: number; CompletedTasks?: number };
  JobStatus?: { JobIteration: Version; LastExecution?: string };
}

/** A task's observed status. */
export interface TaskStatus {
  Timestamp?: string;
  State: string;
  Message?: string;
  Err?: string;
  ContainerStatus?: { ContainerID?: string; PID?: number; ExitCode?: number };
  PortStatus?: { Ports?: PortConfig[] };
}

/** A task, as `GET /tasks` returns it. */
export interface Task {
  ID: string;
  Version?: Version;
  CreatedAt?: string;
  UpdatedAt?: string;
  Name?: string;
  Labels?: Record<string, string>;
  Spec: TaskSpec;
  ServiceID: string;
  Slot?: number;
  NodeID?: string;
  Status: TaskStatus;
  DesiredState: string;
  JobIteration?: Version;
}

/** A node, as `GET /nodes` returns it. */
export interface Node {
  ID: string;
  Version: Version;
  CreatedAt?: string;
  UpdatedAt?: string;
  Spec: Annotations & { Role?: string; Availability?: string; [other: string]: unknown };
  Description?: {
    Hostname?: string;
    Platform?: { Architecture?: string; OS?: string };
    Resources?: Resources;
    Engine?: {
      EngineVersion?: string;
      Labels?: Record<string, string>;
      Plugins?: { Type: string; Name: string }[];
    };
    TLSInfo?: { TrustRoot?: string; CertIssuerSubject?: string; CertIssuerPublicKey?: string };
  };
  Status: { State: string; Message?: string; Addr?: string };
  ManagerStatus?: { Leader?: boolean; Reachability?: string; Addr?: string };
}

/** A secret or config, as `GET /secrets` and `GET /configs` return them. */
export interface FileObject {
  ID: string;
  Version: Version;
  CreatedAt?: string;
  UpdatedAt?: string;
  Spec: Annotations & { Data?: string; Driver?: { Name: string }; Templating?: { Name: string } };
}

/** A network, as `GET /networks` returns it. */
export interface Network {
  Name: string;
  Id: string;
  Created?: string;
  Scope?: string;
  Driver?: string;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string; Config?: { Subnet?: string; Gateway?: string }[] };
  Internal?: boolean;
  Attachable?: boolean;
  Ingress?: boolean;
  Options?: Record<string, string>;
  Labels?: Record<string, string>;
}

/** The swarm, as `GET /swarm` returns it. */
export interface Swarm {
  ID: string;
  Version: Version;
  CreatedAt?: string;
  UpdatedAt?: string;
  Spec: {
    Name?: string;
    Labels?: Record<string, string>;
    Orchestration?: { TaskHistoryRetentionLimit?: number };
    Raft?: Record<string, unknown>;
    Dispatcher?: { HeartbeatPeriod?: number };
    CAConfig?: { NodeCertExpiry?: number; [other: string]: unknown };
    EncryptionConfig?: { AutoLockManagers?: boolean };
    [other: string]: unknown;
  };
  JoinTokens: { Worker: string; Manager: string };
  TLSInfo?: { TrustRoot?: string };
}

/** What `GET /info` says (the parts the CLI uses). */
export interface Info {
  Name?: string;
  Swarm?: {
    NodeID?: string;
    NodeAddr?: string;
    LocalNodeState?: string;
    ControlAvailable?: boolean;
  };
}

/** One event from `GET /events`. */
export interface EventMessage {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  scope?: string;
  time?: number;
  timeNano?: number;
  [other: string]: unknown;
}
