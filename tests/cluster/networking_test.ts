/**
 * Service addressing with real processes on one node: two replicas of a service on a network get
 * their own loopback addresses (127.x, which Linux routes to `lo` without any setup) and both
 * listen on the same port, each on its own address, told to them in `SHOAL_TASK_ADDR`.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { NetworkSpec, ServiceSpec, TaskState } from "../../events/schema.ts";
import type { Manager } from "../../actors/manager.ts";

async function until<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function running(m: Manager, name: string) {
  const svc = m.state.serviceByName(name);
  if (!svc) return [];
  return [...m.state.tasksOf(svc.id)].filter((t) =>
    t.status.state === TaskState.running && t.desiredState === TaskState.running
  );
}

/** The environment of a running process, from /proc. */
async function environOf(pid: number): Promise<Record<string, string>> {
  const raw = await Deno.readTextFile(`/proc/${pid}/environ`);
  const env: Record<string, string> = {};
  for (const entry of raw.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** GETs `http://addr:port/`, retrying while the server starts. */
async function get(addr: string, port: number): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`http://${addr}:${port}/`);
      return await res.text();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

Deno.test("two replicas on one node both listen on one port, each on its own address", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-net-" });
  const node = await startNode({ dataDir, listenAddr: "127.0.0.1:0", synchronous: "normal" });
  const m = node.manager;
  // A port no other test is likely to use; every replica listens on it.
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const server = `Deno.serve({ hostname: Deno.env.get("SHOAL_TASK_ADDR"), port: ${port}, ` +
    `onListen() {} }, () => new Response(Deno.env.get("SHOAL_TASK_ID")))`;
  try {
    await m.execute(
      { kind: "CreateNetwork", spec: NetworkSpec.parse({ name: "appnet" }) },
      { by: "user:network.create" },
    );
    const net = await until("the network's subnet", () => {
      const n = m.state.networks.get(m.state.networkNames.get("appnet") ?? "");
      return n?.subnet !== undefined && n;
    });
    await m.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: "echo",
        task: {
          runtime: {
            kind: "process",
            command: Deno.execPath(),
            args: ["eval", server],
            stopGracePeriod: 2_000,
          },
          networks: [{ target: net.id }],
        },
        mode: { kind: "replicated", replicas: 2 },
      }),
    }, { by: "user:service.create" });
    const tasks = await until("2 running replicas", () => {
      const r = running(m, "echo");
      return r.length === 2 && r;
    });
    const svc = m.state.serviceByName("echo")!;
    const vip = svc.endpoint!.virtualIPs[0];
    assert.equal(vip.networkId, net.id);
    const addrs = tasks.map((t) => t.addresses[0]);
    assert.notEqual(addrs[0], addrs[1], "each replica has its own address");
    for (const a of [...addrs, vip.addr]) {
      assert.ok(a.startsWith(net.subnet!.split(".").slice(0, 2).join(".") + "."), a);
    }
    for (const t of tasks) {
      const pid = Number(t.status.runtimeId);
      const env = await environOf(pid);
      assert.equal(env.SHOAL_TASK_ADDR, t.addresses[0]);
      assert.equal(env.SHOAL_SERVICE_ECHO_HOST, vip.addr, "it is told its service's VIP");
      // Each answers on its own address, on the same port.
      assert.equal(await get(t.addresses[0], port), t.id);
    }
  } finally {
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
