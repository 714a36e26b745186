/**
 * A real Manager on a MemoryLog, with the projections and a one-manager swarm, and the API
 * handler over it: requests go straight to the handler, no socket.
 */
import { MemoryLog } from "../../events/log.ts";
import { ClusterSpec, type NodeDescription } from "../../events/schema.ts";
import { newId } from "../../events/ids.ts";
import { Manager } from "../../actors/manager.ts";
import { orchestrator } from "../../actors/projections/orchestrator/decide.ts";
import { allocator } from "../../actors/projections/allocator/decide.ts";
import { scheduler } from "../../actors/projections/scheduler/decide.ts";
import { createRootCA, newJoinToken } from "../../node/ca.ts";
import { type ApiHandler, createApiHandler } from "../../web/api.ts";

/** What `call` answers. */
export interface Answer {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
  text: string;
}

/** A running manager and its API. */
export interface ApiFixture {
  manager: Manager;
  handler: ApiHandler;
  nodeId: string;
  /** Sends a request to the handler; `body` is sent as JSON unless it is a string. */
  call(method: string, path: string, body?: unknown): Promise<Answer>;
  close(): Promise<void>;
}

/** The node's description: it runs processes only (no container runtime here). */
export const DESCRIPTION: NodeDescription = {
  hostname: "node-1",
  platform: { os: "linux", architecture: "x86_64" },
  resources: { nanoCPUs: 4e9, memoryBytes: 8 * 2 ** 30 },
  engine: { engineVersion: "", labels: { disk: "ssd" } },
  runtimes: ["process"],
};

let rootCA: Awaited<ReturnType<typeof createRootCA>> | undefined;

/** Starts a manager with a one-node swarm (leader, ready) and the API over it. */
export async function startApi(options: { projections?: boolean } = {}): Promise<ApiFixture> {
  const log = new MemoryLog();
  const manager = new Manager({
    log,
    projections: options.projections === false ? [] : [orchestrator, allocator, scheduler],
  });
  await manager.start();
  await manager.setLeader(true);
  const clusterId = newId();
  rootCA ??= await createRootCA({ clusterId, now: Date.now() });
  const nodeId = newId();
  const handler = createApiHandler(manager, { nodeId });
  await manager.execute({
    kind: "InitCluster",
    clusterId,
    spec: ClusterSpec.parse({}),
    rootCA,
    joinTokens: { worker: newJoinToken(rootCA), manager: newJoinToken(rootCA) },
    node: { id: nodeId, description: DESCRIPTION, addr: "127.0.0.1:4375" },
  }, { by: "user:swarm.init" });
  const by = `node:${nodeId}`;
  await manager.propose([
    {
      type: "NodeStatusChanged",
      v: 1,
      data: { id: nodeId, status: { state: "ready", message: "", addr: "127.0.0.1" } },
      meta: { by, reason: "test" },
    },
    {
      type: "NodeManagerStatusChanged",
      v: 1,
      data: {
        id: nodeId,
        managerStatus: {
          raftId: "1",
          addr: "127.0.0.1:4375",
          leader: true,
          reachability: "reachable",
        },
      },
      meta: { by, reason: "test" },
    },
  ], by);
  return {
    manager,
    handler,
    nodeId,
    async call(method, path, body) {
      const init: RequestInit = { method };
      if (body !== undefined) {
        init.body = typeof body === "string" ? body : JSON.stringify(body);
        init.headers = { "content-type": "application/json" };
      }
      const res = await handler(new Request(`http://shoal.test${path}`, init));
      const text = await res.text();
      let parsed: unknown = undefined;
      if (text !== "" && (res.headers.get("content-type") ?? "").includes("json")) {
        parsed = JSON.parse(text);
      }
      return { status: res.status, headers: res.headers, body: parsed, text };
    },
    async close() {
      handler.close();
      await manager.stop();
      await log.close();
    },
  };
}

/** Runs `fn` with a fresh fixture, closing it afterwards. */
export async function withApi(
  fn: (api: ApiFixture) => void | Promise<void>,
  options: { projections?: boolean } = {},
): Promise<void> {
  const api = await startApi(options);
  try {
    await fn(api);
  } finally {
    await api.close();
  }
}

/** `filters` as the docker CLI encodes them. */
export function filters(f: Record<string, string[]>): string {
  const obj: Record<string, Record<string, boolean>> = {};
  for (const [k, vs] of Object.entries(f)) obj[k] = Object.fromEntries(vs.map((v) => [v, true]));
  return encodeURIComponent(JSON.stringify(obj));
}

/** Waits until `fn` returns something truthy. */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false,
  ms = 5_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
