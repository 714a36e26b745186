/**
 * `deno task bench e2e`: the whole control loop through the real dispatcher protocol, in one
 * process. A {@linkcode Manager} over a log, with the real orchestrator, allocator and scheduler,
 * and the real {@linkcode Dispatcher} on a loopback port; simulated agents join with the real
 * join protocol (a CSR each, mutual TLS) and run real {@linkcode Agent}s over real
 * {@linkcode RemoteSession}s, with the fake executor (actors/agent/executors/fake.ts), which runs
 * nothing and moves each task through the same states a real executor reports.
 *
 * Two shapes:
 * - **throughput**: 1,000 agents; one `service create` of 15,000 tasks; assignments committed per
 *   second (TaskAssigned events in the log, from the create to the last one), and the rate at
 *   which the tasks reach running (reported by the agents through the dispatcher, committed).
 *   Goal: at least 3,750 assignments/s (Nomad's C1M rate).
 * - **latency**: 100 agents; 3,000 tasks from `service create` to all running. Goal: at most
 *   2.5 s.
 *
 * The log is chosen with `--log=raft` (default: a one-voter Raft group over SQLite storage, the
 * same {@linkcode RaftLog} managers use) or `--log=sqlite` (the single-manager
 * {@linkcode SqliteLog}); both with `synchronous = normal` (WAL: durable against a process crash,
 * not a power loss), as `shoal start --sync normal` runs. Joins and sessions are set up before the
 * clock starts; `--agents=N` and `--tasks=N` shrink the throughput shape for a quick run.
 *
 * Everything shares one process and the machine's cores: the agents' TLS and the manager compete
 * for the same CPU, which makes these figures a lower bound for a manager on its own machine.
 *
 * @module
 */
import { ClusterSpec, ServiceSpec, TaskState } from "../events/schema.ts";
import type { EventLog } from "../events/log.ts";
import { SqliteLog } from "../events/sqlite_log.ts";
import { RaftLog } from "../events/raft_log.ts";
import { RaftDriver } from "../events/raft/driver.ts";
import { SqliteStorage } from "../events/raft/sqlite_storage.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import { orchestrator } from "../actors/projections/orchestrator/decide.ts";
import { allocator } from "../actors/projections/allocator/decide.ts";
import { createScheduler } from "../actors/projections/scheduler/decide.ts";
import { Agent } from "../actors/agent/agent.ts";
import { FakeExecutor } from "../actors/agent/executors/fake.ts";
import { RemoteSession } from "../actors/agent/remote_session.ts";
import { nodeDescription } from "../tests/_harness/events.ts";
import { createNodeCSR, createRootCA, issueNodeCertificate, newJoinToken } from "../node/ca.ts";
import { Dispatcher } from "../node/dispatcher.ts";
import { type Joined, requestToJoin } from "../node/join.ts";
import { type BenchRow, report } from "./report.ts";

/** Progress on stderr with `--verbose`. */
const verbose = Deno.args.includes("--verbose");
function progress(what: string): void {
  if (verbose) console.error(`e2e: ${new Date().toISOString().slice(11, 23)} ${what}`);
}

/** Which log the manager writes to. */
export type LogKind = "raft" | "sqlite";

/** A manager, its dispatcher and its simulated agents. */
interface Swarm {
  manager: Manager;
  workers: { session: RemoteSession; agent: Agent }[];
  close(): Promise<void>;
}

async function openLog(kind: LogKind, dir: string): Promise<EventLog> {
  if (kind === "sqlite") return new SqliteLog({ path: `${dir}/log.db`, synchronous: "normal" });
  const storage = new SqliteStorage({
    path: `${dir}/raft.db`,
    confState: { voters: [1], learners: [] },
    synchronous: "normal",
  });
  const driver = await RaftDriver.start({ id: 1, clusterId: "bench", storage });
  await driver.waitForLeader(10_000);
  return new RaftLog(driver);
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

/** A manager with a dispatcher, and `agents` simulated agents joined and in session. */
async function startSwarm(kind: LogKind, agents: number): Promise<Swarm> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-bench-e2e-" });
  const log = await openLog(kind, dir);
  const manager = new Manager({ log, projections: [orchestrator, allocator, createScheduler()] });
  await manager.start();
  await manager.setLeader(true);
  const clusterId = newId();
  const managerId = newId();
  const rootCA = await createRootCA({ clusterId, now: Date.now() });
  await manager.execute({
    kind: "InitCluster",
    clusterId,
    spec: ClusterSpec.parse({}),
    rootCA,
    joinTokens: { worker: newJoinToken(rootCA), manager: newJoinToken(rootCA) },
    node: { id: managerId, description: nodeDescription("manager"), addr: "127.0.0.1" },
  }, { by: "user:swarm.init" });
  const csr = await createNodeCSR({ nodeId: managerId });
  const cert = await issueNodeCertificate({
    rootCA,
    csrPem: csr.csrPem,
    nodeId: managerId,
    role: "manager",
    clusterId,
    now: Date.now(),
  });
  // The manager's own node runs no agent here: it never becomes ready and takes no task.
  const dispatcher = new Dispatcher({
    manager,
    nodeId: managerId,
    listenAddr: "127.0.0.1:0",
    credentials: { key: csr.keyPem, cert: cert.certPem },
  });
  const addr = await dispatcher.start();
  const token = manager.state.cluster!.joinTokens.worker;
  const names = Array.from({ length: agents }, (_, i) => `agent-${i}`);
  progress(`joining ${agents} agents`);
  const joined: Joined[] = await pool(names, 25, (hostname) =>
    requestToJoin({
      token,
      manager: addr,
      description: nodeDescription(hostname),
      timeoutMs: 60_000,
    }));
  const workers = joined.map((j, i) => {
    const session = new RemoteSession({
      managers: [addr],
      credentials: () => j.credentials,
      description: () => nodeDescription(names[i]),
    });
    const agent = new Agent({
      nodeId: j.nodeId,
      session,
      executors: (_task, onStatus) =>
        new FakeExecutor({ onStatus, behaviour: { runsUntilStopped: true } }),
    });
    session.ready.then(() => agent.start(), () => {});
    return { session, agent };
  });
  // Open the sessions a few at a time, as a fleet of machines would come up.
  progress(`${agents} joined; opening sessions`);
  await pool(workers, 50, async (w) => {
    w.session.start();
    await w.session.ready;
  });
  progress("sessions open; waiting for every node to be ready");
  await waitFor(
    () => {
      let ready = 0;
      for (const n of manager.state.nodes.values()) if (n.status.state === "ready") ready++;
      return ready >= agents;
    },
    60_000,
    `${agents} agents ready`,
  );
  return {
    manager,
    workers,
    async close() {
      progress("closing");
      await Promise.all(workers.map(async (w) => {
        w.session.drain();
        await w.agent.stop();
        w.session.close();
      }));
      await dispatcher.stop();
      await manager.stop();
      await log.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function waitFor(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`e2e bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** When the n-th task of a service was assigned, and when the last one ran. */
interface Timing {
  assignedMs: number;
  runningMs: number;
}

/** Creates a service of `tasks` replicas and times it until every task is assigned and running. */
async function timeService(swarm: Swarm, name: string, tasks: number): Promise<Timing> {
  const { manager } = swarm;
  let serviceId = "";
  const assigned = new Set<string>();
  const running = new Set<string>();
  let assignedAt = 0;
  let runningAt = 0;
  progress(`creating ${name}: ${tasks} tasks`);
  const start = performance.now();
  const off = manager.onApplied((entry, result) => {
    if (!result.applied) return;
    for (const e of entry.batch.events) {
      if (e.type === "ServiceCreated" && e.data.spec.name === name) serviceId = e.data.id;
      else if (e.type === "TaskAssigned") {
        assigned.add(e.data.id);
        if (assigned.size === tasks && assignedAt === 0) assignedAt = performance.now();
      } else if (
        e.type === "TaskStatusReported" && e.data.status.state === TaskState.running
      ) {
        running.add(e.data.id);
        if (running.size === tasks && runningAt === 0) runningAt = performance.now();
      }
    }
  });
  try {
    await manager.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name,
        task: { runtime: { kind: "process", command: "/bin/true" } },
        mode: { kind: "replicated", replicas: tasks },
      }),
    }, { by: "user:service.create" });
    const ticker = setInterval(
      () => progress(`${assigned.size} assigned, ${running.size} running`),
      2_000,
    );
    try {
      await waitFor(() => runningAt > 0, 120_000, `${tasks} tasks of ${name} running`);
    } finally {
      clearInterval(ticker);
    }
  } finally {
    off();
  }
  if (serviceId === "") throw new Error(`e2e bench: service ${name} was never created`);
  return { assignedMs: assignedAt - start, runningMs: runningAt - start };
}

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  return Deno.args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

/** Runs the benchmark; prints the table (and the JSON line with `json`). */
export async function runE2eBench(options: { json: boolean }): Promise<Record<string, unknown>> {
  const kind = (flag("log") ?? "raft") as LogKind;
  if (kind !== "raft" && kind !== "sqlite") {
    throw new Error(`e2e bench: --log must be raft or sqlite, not ${kind}`);
  }
  const agents = Number(flag("agents") ?? 1_000);
  const tasks = Number(flag("tasks") ?? 15_000);

  // Latency: 3,000 tasks on 100 agents.
  let swarm = await startSwarm(kind, 100);
  let latency: Timing;
  try {
    latency = await timeService(swarm, "latency", 3_000);
  } finally {
    await swarm.close();
  }

  // Throughput: `tasks` tasks on `agents` agents.
  const setupStart = performance.now();
  swarm = await startSwarm(kind, agents);
  const setupMs = performance.now() - setupStart;
  let throughput: Timing;
  try {
    throughput = await timeService(swarm, "throughput", tasks);
  } finally {
    await swarm.close();
  }

  const assignRate = tasks / (throughput.assignedMs / 1000);
  const runRate = tasks / (throughput.runningMs / 1000);
  const rows: BenchRow[] = [
    {
      metric: `assignments_per_s_${agents}_agents`,
      value: Math.round(assignRate),
      unit: "tasks/s",
      goal: "≥ 3,750",
      ok: assignRate >= 3_750,
    },
    { metric: `running_per_s_${agents}_agents`, value: Math.round(runRate), unit: "tasks/s" },
    {
      metric: `all_assigned_ms_${tasks}_tasks`,
      value: Math.round(throughput.assignedMs),
      unit: "ms",
    },
    {
      metric: `all_running_ms_${tasks}_tasks`,
      value: Math.round(throughput.runningMs),
      unit: "ms",
    },
    {
      metric: "create_to_running_ms_3000_tasks_100_agents",
      value: Math.round(latency.runningMs),
      unit: "ms",
      goal: "≤ 2,500",
      ok: latency.runningMs <= 2_500,
    },
    { metric: `setup_${agents}_agents_ms`, value: Math.round(setupMs), unit: "ms" },
  ];
  return report(`e2e (log: ${kind})`, rows, { json: options.json, extra: { log: kind } });
}
