/**
 * A swarm in one process for the dispatcher, join and session tests: a manager over a MemoryLog
 * with the real projections, a real root CA, and the real dispatcher on a loopback port; workers
 * join over TLS and run fake executors through real {@linkcode RemoteSession}s.
 *
 * @module
 */
import { ClusterSpec, TaskState } from "../events/schema.ts";
import { MemoryLog } from "../events/log.ts";
import { newId } from "../events/ids.ts";
import { Manager } from "../actors/manager.ts";
import { orchestrator } from "../actors/projections/orchestrator/decide.ts";
import { allocator } from "../actors/projections/allocator/decide.ts";
import { createScheduler } from "../actors/projections/scheduler/decide.ts";
import { Agent } from "../actors/agent/agent.ts";
import { FakeExecutor } from "../actors/agent/executors/fake.ts";
import { RemoteSession, type RemoteSessionOptions } from "../actors/agent/remote_session.ts";
import type { Logger } from "../actors/runtime.ts";
import { nodeDescription } from "../tests/_harness/events.ts";
import { createNodeCSR, createRootCA, issueNodeCertificate, newJoinToken } from "./ca.ts";
import { Dispatcher, type DispatcherOptions } from "./dispatcher.ts";
import { type Joined, requestToJoin } from "./join.ts";

/** Polls `fn` until it returns something truthy. */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A logger that keeps what it is told. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
}

/** A running test swarm. */
export interface TestSwarm {
  manager: Manager;
  log: MemoryLog;
  managerId: string;
  dispatcher: Dispatcher;
  /** The dispatcher's address. */
  addr: string;
  logger: Logger & { lines: string[] };
  /** Restarts the dispatcher on the same port (a manager restart, as agents see it). */
  restartDispatcher(): Promise<void>;
  stopDispatcher(): Promise<void>;
  workerToken(): string;
  managerToken(): string;
  close(): Promise<void>;
}

/** Starts a swarm whose manager runs no tasks itself (its node never becomes ready). */
export async function testSwarm(
  heartbeatPeriod = 5_000,
  /** More options of the dispatcher (`taskLogs`, ...). */
  dispatcherOptions: Partial<DispatcherOptions> = {},
): Promise<TestSwarm> {
  const log = new MemoryLog();
  const logger = memoryLogger();
  const manager = new Manager({
    log,
    projections: [orchestrator, allocator, createScheduler()],
  });
  await manager.start();
  await manager.setLeader(true);
  const clusterId = newId();
  const managerId = newId();
  const rootCA = await createRootCA({ clusterId, now: Date.now() });
  await manager.execute({
    kind: "InitCluster",
    clusterId,
    spec: ClusterSpec.parse({ dispatcher: { heartbeatPeriod } }),
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
  const credentials = { key: csr.keyPem, cert: cert.certPem };
  const make = (listenAddr: string) =>
    new Dispatcher({
      manager,
      nodeId: managerId,
      listenAddr,
      credentials,
      logger,
      ...dispatcherOptions,
    });
  let dispatcher = make("127.0.0.1:0");
  const addr = await dispatcher.start();
  const swarm: TestSwarm = {
    manager,
    log,
    managerId,
    get dispatcher() {
      return dispatcher;
    },
    addr,
    logger,
    async restartDispatcher() {
      await dispatcher.stop();
      dispatcher = make(addr);
      await dispatcher.start();
    },
    stopDispatcher: () => dispatcher.stop(),
    workerToken: () => manager.state.cluster!.joinTokens.worker,
    managerToken: () => manager.state.cluster!.joinTokens.manager,
    async close() {
      await dispatcher.stop();
      await manager.stop();
    },
  };
  return swarm;
}

/** Joins a worker called `hostname`. */
export function join(swarm: TestSwarm, hostname: string, token = swarm.workerToken()) {
  return requestToJoin({
    token,
    manager: swarm.addr,
    description: nodeDescription(hostname),
    timeoutMs: 5_000,
  });
}

/** A worker's agent over a remote session, with fake executors that run until stopped. */
export interface TestWorker {
  joined: Joined;
  session: RemoteSession;
  agent: Agent;
  executors: FakeExecutor[];
  refused: string[];
  stop(): Promise<void>;
}

/** Starts the agent of a joined node. */
export function runWorker(
  swarm: TestSwarm,
  joined: Joined,
  hostname: string,
  options: Partial<RemoteSessionOptions> = {},
): TestWorker {
  const refused: string[] = [];
  const executors: FakeExecutor[] = [];
  const session = new RemoteSession({
    managers: [swarm.addr],
    credentials: () => joined.credentials,
    description: () => nodeDescription(hostname),
    initialBackoffMs: 20,
    maxBackoffMs: 200,
    onRefused: (err) => refused.push(`${err.code}: ${err.message}`),
    ...options,
  });
  const agent = new Agent({
    nodeId: joined.nodeId,
    session,
    executors: (_task, onStatus) => {
      const e = new FakeExecutor({ onStatus, behaviour: { runsUntilStopped: true } });
      executors.push(e);
      return e;
    },
  });
  session.ready.then(() => agent.start(), () => {});
  session.start();
  return {
    joined,
    session,
    agent,
    executors,
    refused,
    async stop() {
      session.drain();
      await agent.stop();
      session.close();
    },
  };
}

/** Tasks of a service running and meant to run, by node. */
export function runningByNode(manager: Manager, service: string): Map<string, number> {
  const out = new Map<string, number>();
  const svc = manager.state.serviceByName(service);
  if (!svc) return out;
  for (const t of manager.state.tasksOf(svc.id)) {
    if (t.status.state === TaskState.running && t.desiredState === TaskState.running) {
      out.set(t.nodeId, (out.get(t.nodeId) ?? 0) + 1);
    }
  }
  return out;
}
