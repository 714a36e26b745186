/**
 * A fake Docker Engine API (v1.41 swarm endpoints) serving fixed objects: nodes, services of
 * every mode (and a Shoal process service), tasks with history, secrets, configs, networks. The
 * CLI's format tests run both the real `docker` CLI (to record golden outputs, see
 * `capture_golden.ts`) and `shoal` against it, so Shoal's output can be compared byte for byte.
 *
 * Times are offsets from `base` (ms), so relative times (`2 hours ago`) read the same whenever
 * the outputs are produced, as long as the clock used is `base` plus a little.
 */

const NODE_LEADER = "jujz4fgfcrycjefgfplbtdtw7";
const NODE_WORKER = "k8m2v0yq1xg6bq4n0s3wz7c9e";
const NODE_DOWN = "p3q9r5t1u7w2y4a6c8e0g2i4k";

const HOUR = 3_600_000;
const MIN = 60_000;

/** A recorded write, for tests that check what the CLI sent. */
export interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1456789Z");
}

/** The objects the fake serves, with times relative to `base`. */
export function fixtures(base: number) {
  const t = (offsetMs: number) => iso(base - offsetMs);
  const tls = {
    TrustRoot:
      "-----BEGIN CERTIFICATE-----\nMIIBaTCCARCgAwIBAgIUNm2yhNMd4x+1JQXf8+94MWtxUYEwCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAxMIc3dhcm0tY2EwHhcNMjYxMTIyMTQ0MzAwWhcNNDYxMTE3MTQ0\n-----END CERTIFICATE-----\n",
    CertIssuerSubject: "MBMxETAPBgNVBAMTCHN3YXJtLWNh",
    CertIssuerPublicKey:
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmonXAJdpzbCAnc6zGjsYO2s9L9oLs8M6Brgs2NxiRsIWncdjjOx+o0n+91VUVFv5q1T100SCtvXfC/Av0aZ4ug==",
  };
  const engine = {
    EngineVersion: "20.10.24+dfsg1",
    Plugins: [
      { Type: "Log", Name: "json-file" },
      { Type: "Log", Name: "local" },
      { Type: "Network", Name: "overlay" },
      { Type: "Volume", Name: "local" },
    ],
  };
  const nodes = [
    {
      ID: NODE_LEADER,
      Version: { Index: 9 },
      CreatedAt: "2026-11-22T14:48:17.334614788Z",
      UpdatedAt: t(2 * HOUR),
      Spec: { Labels: {}, Role: "manager", Availability: "active" },
      Description: {
        Hostname: "vm",
        Platform: { Architecture: "x86_64", OS: "linux" },
        Resources: { NanoCPUs: 2_000_000_000, MemoryBytes: 25_276_829_696 },
        Engine: engine,
        TLSInfo: tls,
      },
      Status: { State: "ready", Addr: "127.0.0.1" },
      ManagerStatus: { Leader: true, Reachability: "reachable", Addr: "127.0.0.1:2377" },
    },
    {
      ID: NODE_WORKER,
      Version: { Index: 12 },
      CreatedAt: "2026-11-22T15:01:02Z",
      UpdatedAt: t(HOUR),
      Spec: {
        Name: "edge",
        Labels: { zone: "east", ssd: "" },
        Role: "worker",
        Availability: "drain",
      },
      Description: {
        Hostname: "worker-10",
        Platform: { Architecture: "aarch64", OS: "linux" },
        Resources: { NanoCPUs: 4_000_000_000, MemoryBytes: 8_589_934_592 },
        Engine: { EngineVersion: "20.10.24+dfsg1", Labels: { disk: "ssd" } },
        TLSInfo: tls,
      },
      Status: { State: "ready", Addr: "10.0.0.10" },
    },
    {
      ID: NODE_DOWN,
      Version: { Index: 15 },
      CreatedAt: "2026-11-22T15:05:00.5Z",
      UpdatedAt: t(HOUR),
      Spec: { Labels: {}, Role: "manager", Availability: "pause" },
      Description: {
        Hostname: "worker-2",
        Platform: { Architecture: "x86_64", OS: "linux" },
        Resources: { NanoCPUs: 1_000_000_000, MemoryBytes: 1_073_741_824 },
        Engine: { EngineVersion: "20.10.24+dfsg1" },
      },
      Status: { State: "down", Message: "heartbeat failure", Addr: "10.0.0.2" },
      ManagerStatus: { Leader: false, Reachability: "unreachable", Addr: "10.0.0.2:2377" },
    },
  ];
  const defaults = {
    UpdateConfig: {
      Parallelism: 1,
      FailureAction: "pause",
      Monitor: 5_000_000_000,
      MaxFailureRatio: 0,
      Order: "stop-first",
    },
    RollbackConfig: {
      Parallelism: 1,
      FailureAction: "pause",
      Monitor: 5_000_000_000,
      MaxFailureRatio: 0,
      Order: "stop-first",
    },
  };
  const web = {
    ID: "drb4ba2hsbrkykux0gi2g042p",
    Version: { Index: 40 },
    CreatedAt: t(3 * HOUR),
    UpdatedAt: t(2 * HOUR),
    Spec: {
      Name: "web",
      Labels: { tier: "front", team: "" },
      TaskTemplate: {
        ContainerSpec: {
          Image:
            "localbusybox:1@sha256:2d2e2a5e9c1f6b6a4c0ef5c5f6f21cb7b0a1f1c3e1d7e0f3a6b1c2d3e4f5a6b7",
          Args: ["sleep", "100000"],
          Env: ["A=1", "B=two words"],
          Dir: "/srv",
          Init: false,
          StopGracePeriod: 10_000_000_000,
          Healthcheck: {
            Test: ["CMD-SHELL", "wget -q localhost"],
            Interval: 30_000_000_000,
            Timeout: 3_000_000_000,
            Retries: 3,
          },
          Secrets: [{
            File: { Name: "pw", UID: "0", GID: "0", Mode: 292 },
            SecretID: "igkzvpfr6lc75ndfxpxr2v287",
            SecretName: "dbpass",
          }],
          Configs: [{
            File: { Name: "/etc/app.conf", UID: "0", GID: "0", Mode: 292 },
            ConfigID: "qo3x0yvtj8x3yr8x2m7c1a9zq",
            ConfigName: "appconf",
          }],
        },
        Resources: {
          Limits: { NanoCPUs: 500_000_000, MemoryBytes: 536_870_912 },
          Reservations: { MemoryBytes: 134_217_728 },
        },
        RestartPolicy: { Condition: "any", Delay: 5_000_000_000, MaxAttempts: 0 },
        Placement: {
          Constraints: ["node.role==manager", "node.labels.zone!=west"],
          Preferences: [{ Spread: { SpreadDescriptor: "node.labels.zone" } }],
        },
        Networks: [{ Target: "x7v0n6b8l3m1k9j4h2g5f0d8s" }],
        ForceUpdate: 0,
        Runtime: "container",
      },
      Mode: { Replicated: { Replicas: 3 } },
      UpdateConfig: {
        Parallelism: 2,
        Delay: 10_000_000_000,
        FailureAction: "rollback",
        Monitor: 15_000_000_000,
        MaxFailureRatio: 0.2,
        Order: "start-first",
      },
      RollbackConfig: defaults.RollbackConfig,
      EndpointSpec: {
        Mode: "vip",
        Ports: [
          { Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress" },
          { Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: "ingress" },
          { Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: "ingress" },
          { Protocol: "tcp", TargetPort: 9000, PublishedPort: 9000, PublishMode: "host" },
        ],
      },
    },
    Endpoint: {
      Spec: { Mode: "vip" },
      Ports: [
        { Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress" },
        { Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: "ingress" },
        { Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: "ingress" },
        { Protocol: "tcp", TargetPort: 9000, PublishedPort: 9000, PublishMode: "host" },
      ],
    },
    UpdateStatus: {
      State: "completed",
      StartedAt: t(2 * HOUR + 10 * MIN),
      CompletedAt: t(2 * HOUR),
      Message: "update completed",
    },
    ServiceStatus: { RunningTasks: 2, DesiredTasks: 3, CompletedTasks: 0 },
  };
  const pinger = {
    ID: "8ajlobtmrchbp01v4zya0rgnt",
    Version: { Index: 22 },
    CreatedAt: t(3 * HOUR),
    UpdatedAt: t(3 * HOUR),
    Spec: {
      Name: "pinger",
      Labels: {},
      TaskTemplate: {
        ContainerSpec: {
          Image: "docker.io/library/busybox:latest",
          Args: ["ping", "localhost"],
          Init: false,
        },
        Resources: { Limits: {}, Reservations: {} },
        Placement: {},
        ForceUpdate: 0,
      },
      Mode: { Global: {} },
      ...defaults,
      EndpointSpec: { Mode: "vip" },
    },
    Endpoint: { Spec: {} },
    ServiceStatus: { RunningTasks: 1, DesiredTasks: 2, CompletedTasks: 0 },
  };
  const batch = {
    ID: "mlfzoddikenjvnm4lc17ze7lt",
    Version: { Index: 30 },
    CreatedAt: t(HOUR),
    UpdatedAt: t(HOUR),
    Spec: {
      Name: "batch",
      TaskTemplate: {
        ContainerSpec: { Image: "localbusybox:1", Args: ["true"], Init: false },
        Resources: { Limits: {}, Reservations: {} },
        Placement: { MaxReplicas: 2 },
        ForceUpdate: 0,
      },
      Mode: { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 5 } },
      EndpointSpec: { Mode: "vip" },
    },
    Endpoint: { Spec: {} },
    JobStatus: { JobIteration: { Index: 30 }, LastExecution: t(HOUR) },
    ServiceStatus: { RunningTasks: 1, DesiredTasks: 2, CompletedTasks: 3 },
  };
  const capped = {
    ID: "pp1j9j7r6mvfyv697bnuk5lbl",
    Version: { Index: 33 },
    CreatedAt: t(HOUR),
    UpdatedAt: t(HOUR),
    Spec: {
      Name: "web10",
      TaskTemplate: {
        ContainerSpec: {
          Image: "nginx@sha256:0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080706050403020100",
          Init: false,
        },
        Resources: { Limits: {}, Reservations: {} },
        Placement: { MaxReplicas: 1 },
        ForceUpdate: 0,
      },
      Mode: { Replicated: { Replicas: 0 } },
      ...defaults,
      EndpointSpec: { Mode: "dnsrr" },
    },
    Endpoint: { Spec: {} },
    ServiceStatus: { RunningTasks: 0, DesiredTasks: 0, CompletedTasks: 0 },
  };
  const small = (id: string, name: string, extra: Record<string, unknown>) => ({
    ID: id,
    Version: { Index: 60 },
    CreatedAt: t(HOUR),
    UpdatedAt: t(HOUR),
    Spec: {
      Name: name,
      TaskTemplate: {
        ContainerSpec: { Image: "localbusybox:1", Args: ["sleep", "1000"], Init: false },
        Resources: { Limits: {}, Reservations: {} },
        Placement: {},
        ForceUpdate: 0,
      },
      Mode: { Replicated: { Replicas: 2 } },
      UpdateConfig: { ...defaults.UpdateConfig, Monitor: 1_000_000_000 },
      RollbackConfig: defaults.RollbackConfig,
      EndpointSpec: { Mode: "vip" },
    },
    Endpoint: { Spec: {} },
    ServiceStatus: { RunningTasks: 2, DesiredTasks: 2, CompletedTasks: 0 },
    ...extra,
  });
  // Converges at once (for progress output); and one whose update is paused.
  const conv = small("c0nv3rg3s0000000000000000", "conv", {});
  const stuck = small("stuck000000000000000000000".slice(0, 25), "stuck", {
    UpdateStatus: {
      State: "paused",
      StartedAt: t(10 * MIN),
      Message:
        "update paused due to failure or early termination of task q1w2e3r4t5y6u7i8o9p0a1s2d",
    },
  });
  const services = [web, pinger, batch, capped, conv, stuck];

  const task = (
    id: string,
    service: { ID: string; Spec: { TaskTemplate: unknown } },
    slot: number,
    node: string,
    desired: string,
    state: string,
    createdAgo: number,
    stateAgo: number,
    err = "",
    ports: unknown[] = [],
  ) => ({
    ID: id,
    Version: { Index: 50 },
    CreatedAt: t(createdAgo),
    UpdatedAt: t(stateAgo),
    Spec: service.Spec.TaskTemplate,
    ServiceID: service.ID,
    ...(slot ? { Slot: slot } : {}),
    ...(node ? { NodeID: node } : {}),
    Status: {
      Timestamp: t(stateAgo),
      State: state,
      Message: state,
      ...(err ? { Err: err } : {}),
      ...(ports.length ? { PortStatus: { Ports: ports } } : { PortStatus: {} }),
    },
    DesiredState: desired,
  });
  const tasks = [
    task(
      "m6pagq699yj9r1d1s5nxg8l2a",
      web,
      1,
      NODE_LEADER,
      "running",
      "running",
      2 * HOUR,
      2 * HOUR,
    ),
    task(
      "jwzzzp3tkmhe8x4k1n4c3p9z0",
      web,
      1,
      NODE_LEADER,
      "shutdown",
      "shutdown",
      3 * HOUR,
      2 * HOUR + 5 * MIN,
    ),
    task(
      "w0dw5uzqnyai5o3w2t2s9n3b1",
      web,
      2,
      NODE_WORKER,
      "running",
      "running",
      2 * HOUR,
      2 * HOUR,
      "",
      [
        { Protocol: "tcp", TargetPort: 9000, PublishedPort: 9000, PublishMode: "host" },
      ],
    ),
    task(
      "07shytqrtnqs0c4j9y8x6w2v3",
      web,
      3,
      "",
      "running",
      "pending",
      20 * MIN,
      20 * MIN,
      "no suitable node (scheduling constraints not satisfied on 3 nodes)",
    ),
    task(
      "ozz5kh3np48e2y7u5i3o1p9a8",
      web,
      3,
      NODE_LEADER,
      "shutdown",
      "failed",
      3 * HOUR,
      2 * HOUR,
      "task: non-zero exit (3)",
    ),
    task(
      "23ez64ubdocd9q8w7e6r5t4y3",
      web,
      3,
      NODE_LEADER,
      "shutdown",
      "failed",
      4 * HOUR,
      3 * HOUR,
      "task: non-zero exit (3)",
    ),
    task(
      "st6ecpnanly5q1w2e3r4t5y6u",
      pinger,
      0,
      NODE_LEADER,
      "running",
      "running",
      3 * HOUR,
      3 * HOUR,
    ),
    task(
      "a9s8d7f6g5h4j3k2l1z0x9c8v",
      pinger,
      0,
      NODE_DOWN,
      "running",
      "preparing",
      3 * HOUR,
      90 * MIN,
    ),
    task(
      "b1n2m3q4w5e6r7t8y9u0i1o2p",
      batch,
      1,
      NODE_LEADER,
      "complete",
      "complete",
      HOUR,
      50 * MIN,
    ),
    task(
      "c3v4b5n6m7q8w9e0r1t2y3u4i",
      batch,
      2,
      NODE_LEADER,
      "running",
      "running",
      40 * MIN,
      40 * MIN,
    ),
    task("d1d2d3d4d5d6d7d8d9d0e1e2e", conv, 1, NODE_LEADER, "running", "running", HOUR, HOUR),
    task("f1f2f3f4f5f6f7f8f9f0g1g2g", conv, 2, NODE_WORKER, "running", "running", HOUR, HOUR),
    task("h1h2h3h4h5h6h7h8h9h0i1i2i", conv, 2, NODE_WORKER, "shutdown", "shutdown", 2 * HOUR, HOUR),
  ];

  const secrets = [
    {
      ID: "igkzvpfr6lc75ndfxpxr2v287",
      Version: { Index: 11 },
      CreatedAt: t(5 * HOUR),
      UpdatedAt: t(5 * HOUR),
      Spec: { Name: "dbpass", Labels: { env: "prod" } },
    },
    {
      ID: "e8f7g6h5j4k3l2m1n0p9q8r7s",
      Version: { Index: 13 },
      CreatedAt: t(26 * HOUR),
      UpdatedAt: t(25 * HOUR),
      Spec: { Name: "api-key10", Labels: {}, Driver: { Name: "vault" } },
    },
    {
      ID: "t6u5v4w3x2y1z0a9b8c7d6e5f",
      Version: { Index: 14 },
      CreatedAt: t(90 * MIN),
      UpdatedAt: t(90 * MIN),
      Spec: { Name: "api-key2" },
    },
  ];
  const configs = [
    {
      ID: "qo3x0yvtj8x3yr8x2m7c1a9zq",
      Version: { Index: 16 },
      CreatedAt: t(4 * HOUR),
      UpdatedAt: t(4 * HOUR),
      Spec: { Name: "appconf", Labels: { app: "web" }, Data: btoa("listen 80;\nworkers 4;\n") },
    },
  ];
  const networks = [
    {
      Name: "ingress",
      Id: "r9w8t7y6u5i4o3p2a1s0d9f8g",
      Created: "2026-11-22T14:48:17.5Z",
      Scope: "swarm",
      Driver: "overlay",
      EnableIPv6: false,
      IPAM: { Driver: "default", Config: [{ Subnet: "10.0.0.0/24", Gateway: "10.0.0.1" }] },
      Internal: false,
      Attachable: false,
      Ingress: true,
      Options: {},
      Labels: {},
    },
    {
      Name: "backend",
      Id: "x7v0n6b8l3m1k9j4h2g5f0d8s",
      Created: "2026-11-22T16:00:00Z",
      Scope: "swarm",
      Driver: "overlay",
      EnableIPv6: false,
      IPAM: { Driver: "default", Config: [{ Subnet: "10.0.9.0/24" }] },
      Internal: false,
      Attachable: true,
      Ingress: false,
      Options: { encrypted: "" },
      Labels: { team: "db" },
    },
  ];
  const swarm = {
    ID: "p0d3k9x8c7v6b5n4m3q2w1e0r",
    Version: { Index: 3 },
    CreatedAt: "2026-11-22T14:48:17Z",
    UpdatedAt: t(HOUR),
    Spec: {
      Name: "default",
      Labels: {},
      Orchestration: { TaskHistoryRetentionLimit: 5 },
      Raft: {
        SnapshotInterval: 10000,
        KeepOldSnapshots: 0,
        LogEntriesForSlowFollowers: 500,
        ElectionTick: 10,
        HeartbeatTick: 1,
      },
      Dispatcher: { HeartbeatPeriod: 5_000_000_000 },
      CAConfig: { NodeCertExpiry: 7_776_000_000_000_000 },
      TaskDefaults: {},
      EncryptionConfig: { AutoLockManagers: false },
    },
    TLSInfo: tls,
    RootRotationInProgress: false,
    JoinTokens: {
      Worker:
        "SWMTKN-1-2g03hvf7vubzb8e63iz9p6b5rq7yek8mgzn83j4pbrrk7i3bzt-0qwe6dg3tsr5yd2w8bzzfd3ey",
      Manager:
        "SWMTKN-1-2g03hvf7vubzb8e63iz9p6b5rq7yek8mgzn83j4pbrrk7i3bzt-8xc0ma8ta2kf4f8d9xzaf8toa",
    },
  };
  return { nodes, services, tasks, secrets, configs, networks, swarm };
}

function findBy<T extends { ID?: string; Id?: string }>(
  items: T[],
  ref: string,
  names: (x: T) => (string | undefined)[],
): T | undefined {
  const id = (x: T) => x.ID ?? x.Id ?? "";
  return items.find((x) => id(x) === ref) ?? items.find((x) => names(x).includes(ref)) ??
    (() => {
      const p = items.filter((x) => id(x).startsWith(ref));
      return p.length === 1 ? p[0] : undefined;
    })();
}

/** A running fake API. */
export interface FakeApi {
  url: string;
  recorded: Recorded[];
  close(): Promise<void>;
}

/** Starts the fake API on a free port of 127.0.0.1. */
export function startFakeApi(base: number): FakeApi {
  const data = fixtures(base);
  const recorded: Recorded[] = [];
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", "api-version": "1.41" },
    });
  const notFound = (what: string, ref: string) =>
    json({ message: `${what} ${ref} not found`, code: "not_found" }, 404);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const path = url.pathname.replace(/^\/v\d+\.\d+/, "");
    const query = Object.fromEntries(url.searchParams);
    const filters: Record<string, Record<string, boolean> | string[]> = query.filters
      ? JSON.parse(query.filters)
      : {};
    const fvals = (k: string) => {
      const f = filters[k];
      return f === undefined ? undefined : Array.isArray(f) ? f : Object.keys(f);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      const text = await req.text();
      recorded.push({ method: req.method, path, query, body: text ? JSON.parse(text) : null });
    }
    const parts = path.split("/").filter(Boolean);
    if (path === "/_ping") {
      return new Response(req.method === "HEAD" ? null : "OK", {
        headers: { "api-version": "1.41", "content-type": "text/plain", ostype: "linux" },
      });
    }
    if (path === "/version") {
      return json({
        Version: "0.1.0",
        ApiVersion: "1.41",
        MinAPIVersion: "1.24",
        Os: "linux",
        Arch: "amd64",
      });
    }
    if (path === "/info") {
      return json({
        Name: "vm",
        Swarm: {
          NodeID: NODE_LEADER,
          NodeAddr: "127.0.0.1",
          LocalNodeState: "active",
          ControlAvailable: true,
        },
      });
    }
    if (path === "/swarm") return json(data.swarm);
    if (path === "/events") {
      const events = [
        {
          Type: "service",
          Action: "create",
          Actor: { ID: "c0nv3rg3s0000000000000000", Attributes: { name: "conv" } },
          scope: "swarm",
          time: 1795100000,
          timeNano: 1795100000123456789,
        },
        {
          Type: "node",
          Action: "update",
          Actor: {
            ID: NODE_WORKER,
            Attributes: { name: "edge", "availability.new": "drain", "availability.old": "active" },
          },
          scope: "swarm",
          time: 1795100001,
          timeNano: 1795100001000000000,
        },
      ];
      return new Response(events.map((e) => JSON.stringify(e) + "\n").join(""), {
        headers: { "content-type": "application/json" },
      });
    }
    if (parts[0] === "nodes") {
      if (parts.length === 1) return json(data.nodes);
      const node = findBy(data.nodes, parts[1], (n) => [n.Spec.Name, n.Description.Hostname]);
      if (!node) return notFound("node", parts[1]);
      if (req.method === "POST" || req.method === "DELETE") return json({});
      return json(node);
    }
    if (parts[0] === "services") {
      if (parts.length === 1) {
        let out = data.services;
        const ids = fvals("id");
        if (ids) out = out.filter((s) => ids.some((i) => s.ID.startsWith(i)));
        const names = fvals("name");
        if (names) out = out.filter((s) => names.includes(s.Spec.Name));
        if (query.status !== "true") out = out.map(({ ServiceStatus: _, ...s }) => s) as typeof out;
        return json(out);
      }
      if (parts[1] === "create") return json({ ID: "newservice0000000000000000" });
      const svc = findBy(data.services, parts[1], (s) => [s.Spec.Name]);
      if (!svc) return notFound("service", parts[1]);
      if (req.method === "POST") return json({ Warnings: null });
      if (req.method === "DELETE") return new Response(null, { status: 200 });
      const { ServiceStatus: _, ...rest } = svc;
      return json(rest);
    }
    if (path === "/tasks") {
      let out = data.tasks;
      const svc = fvals("service");
      if (svc) out = out.filter((t) => svc.includes(t.ServiceID));
      const node = fvals("node");
      if (node) out = out.filter((t) => node.includes(t.NodeID ?? ""));
      const desired = fvals("desired-state");
      if (desired) out = out.filter((t) => desired.includes(t.DesiredState));
      return json(out);
    }
    for (const [kind, items] of [["secrets", data.secrets], ["configs", data.configs]] as const) {
      if (parts[0] !== kind) continue;
      if (parts.length === 1) {
        const names = fvals("name");
        return json(names ? items.filter((s) => names.includes(s.Spec.Name)) : items);
      }
      if (parts[1] === "create") return json({ ID: `new${kind}00000000000000000000`.slice(0, 25) });
      const item = findBy([...items], parts[1], (s) => [s.Spec.Name]);
      if (!item) return notFound(kind.slice(0, -1), parts[1]);
      if (req.method === "DELETE") {
        if (item.Spec.Name === "dbpass") {
          return json({
            message:
              `rpc error: code = InvalidArgument desc = secret 'dbpass' is in use by the following service: web`,
            code: "in_use",
          }, 400);
        }
        return new Response(null, { status: 204 });
      }
      return json(item);
    }
    if (parts[0] === "networks") {
      if (parts.length === 1) return json(data.networks);
      if (parts[1] === "create") return json({ Id: "n0e1w2n3e4t5w6o7r8k9a0b1c", Warning: "" });
      const net = findBy(data.networks, parts[1], (n) => [n.Name]);
      if (!net) return notFound("network", parts[1]);
      if (req.method === "DELETE") return new Response(null, { status: 204 });
      return json(net);
    }
    return json(
      { message: `page not found: ${req.method} ${url.pathname}`, code: "not_found" },
      404,
    );
  });
  const addr = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    recorded,
    close: () => server.shutdown(),
  };
}
