/**
 * The mesh between real hosts: three nodes, each in its own network namespace (`ip netns`, veth
 * pairs on a bridge, addresses 10.77.0.1-3), each running a task of the service `web` and its
 * mesh. From every node, the service's VIP and its published port reach all three tasks (two of
 * them through the other nodes' endpoints over mutual TLS, across the veths), and the resolver
 * answers `web` with the VIP; when a node dies, the others keep answering from what is left.
 *
 * Needs root and iproute2; skipped otherwise. The test creates and removes everything it uses.
 */
import assert from "node:assert/strict";
import { testCredentials } from "../../node/mesh/_test_mesh.ts";
import type { MeshMap } from "../../node/mesh/mesh_map.ts";

const canRun = Deno.build.os === "linux" && Deno.uid() === 0 &&
  (await new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" }).output()
    .then((o) => o.success, () => false));

const TAG = `shm${Deno.pid % 10000}`;
const NODES = [1, 2, 3].map((i) => ({
  id: `node${i}`,
  ns: `${TAG}-n${i}`,
  veth: `${TAG}v${i}`,
  addr: `10.77.0.${i}`,
  taskId: `t${i}`,
  taskAddr: `127.60.0.${10 + i}`,
}));
const BRIDGE = `${TAG}br`;
const VIP = "127.60.0.2";
const PUBLISHED = 30080;

async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function setUp(): Promise<void> {
  await ip("link", "add", BRIDGE, "type", "bridge");
  await ip("link", "set", BRIDGE, "up");
  for (const n of NODES) {
    await ip("netns", "add", n.ns);
    await ip("link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.ns);
    await ip("link", "set", n.veth, "master", BRIDGE, "up");
    await ip("-n", n.ns, "addr", "add", `${n.addr}/24`, "dev", "eth0");
    await ip("-n", n.ns, "link", "set", "eth0", "up");
    await ip("-n", n.ns, "link", "set", "lo", "up");
  }
}

async function tearDown(): Promise<void> {
  for (const n of NODES) {
    await ip("netns", "del", n.ns).catch(() => {});
    await ip("link", "del", n.veth).catch(() => {});
  }
  await ip("link", "del", BRIDGE).catch(() => {});
}

/** Runs a Deno program inside a namespace; resolves with its stdout. */
async function inNamespace(ns: string, code: string): Promise<string> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), "eval", code],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** Asks `host:port` `count` times (a new connection each) from a namespace; the answers. */
function askFrom(ns: string, host: string, port: number, count: number): Promise<string[]> {
  return inNamespace(
    ns,
    `
    const out = [];
    for (let i = 0; i < ${count}; i++) {
      try {
        const c = await Deno.connect({ hostname: "${host}", port: ${port} });
        await c.write(new TextEncoder().encode("q" + i + "\\n"));
        const buf = new Uint8Array(200);
        const n = await c.read(buf);
        out.push(n ? new TextDecoder().decode(buf.subarray(0, n)).trim() : "closed");
        c.close();
      } catch (e) { out.push("error:" + e.name); }
    }
    console.log(JSON.stringify(out));`,
  ).then((s) => JSON.parse(s) as string[]);
}

Deno.test({
  name: "three nodes in their own network namespaces reach a service by VIP, port and name",
  ignore: !canRun,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await tearDown();
    const { creds } = await testCredentials(NODES.map((n) => n.id));
    const map: MeshMap = {
      index: 1,
      nodes: NODES.map((n) => ({ id: n.id, addr: n.addr })),
      networks: [{ id: "net1", name: "front", subnet: "127.60.0.0/16" }],
      services: [{
        id: "web",
        name: "web",
        stack: "",
        mode: "vip",
        ports: [{
          protocol: "tcp",
          targetPort: 8080,
          publishedPort: PUBLISHED,
          publishMode: "ingress",
        }],
        vips: [{ networkId: "net1", addr: VIP }],
        networks: [{ id: "net1", aliases: [] }],
      }],
      tasks: NODES.map((n, i) => ({
        id: n.taskId,
        serviceId: "web",
        slot: i + 1,
        nodeId: n.id,
        serving: true,
        addresses: [{ networkId: "net1", addr: n.taskAddr }],
      })),
    };
    const children: Deno.ChildProcess[] = [];
    try {
      await setUp();
      for (const n of NODES) {
        const child = new Deno.Command("ip", {
          args: [
            "netns",
            "exec",
            n.ns,
            Deno.execPath(),
            "run",
            "-A",
            new URL("./_mesh_netns_node.ts", import.meta.url).pathname,
          ],
          env: {
            SHOAL_NETNS_NODE: JSON.stringify({
              nodeId: n.id,
              taskId: n.taskId,
              taskAddr: n.taskAddr,
              creds: creds.get(n.id),
              map,
              meshPort: 4379,
            }),
          },
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        children.push(child);
        const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let out = "";
        while (!out.includes("ready")) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`node ${n.id} exited before it was ready`);
          out += value;
        }
        reader.releaseLock();
      }
      for (const n of NODES) {
        const byVip = await askFrom(n.ns, VIP, 8080, 6);
        assert.deepEqual(
          [...new Set(byVip.map((a) => a.split(":")[0]))].sort(),
          ["t1", "t2", "t3"],
          `${n.id} by VIP: ${byVip}`,
        );
        const byPort = await askFrom(n.ns, n.addr, PUBLISHED, 3);
        assert.deepEqual(
          [...new Set(byPort.map((a) => a.split(":")[0]))].sort(),
          ["t1", "t2", "t3"],
          `${n.id} by published port: ${byPort}`,
        );
        const resolved = await inNamespace(
          n.ns,
          `console.log(JSON.stringify(await Deno.resolveDns("web", "A", { nameServer: { ipAddr: "127.0.0.11", port: 53 } })));`,
        );
        assert.deepEqual(JSON.parse(resolved), [VIP], `${n.id} resolves web`);
      }
      // Node 3 dies: the other two keep answering, from tasks 1 and 2.
      children[2].kill("SIGKILL");
      await children[2].status;
      const after = await askFrom(NODES[0].ns, VIP, 8080, 6);
      assert.ok(after.every((a) => /^t[12]:q\d$/.test(a)), `after node3 died: ${after}`);
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
        await c.stdout.cancel().catch(() => {});
      }
      await tearDown();
    }
  },
});
