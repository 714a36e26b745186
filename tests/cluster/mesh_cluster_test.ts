/**
 * The routing mesh through real nodes: a manager and a worker as separate `shoal` processes, each
 * on its own loopback address (Linux routes all of 127/8 to lo), a
 * process service with a published port and one replica per node. The published port answers on
 * every node, and each node's mesh spreads connections over both tasks, the remote one reached
 * through the other node's mesh endpoint over mutual TLS. The two addresses are drawn at random in
 * 127.0.0.0/24 so that nodes of other tests running at the same time (whose mesh endpoints take
 * port 4379 of their own address) are not in the way.
 */
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, until } from "./_processes.ts";

const root = new URL("../../", import.meta.url).pathname;
const deno = `${root}node_modules/deno/deno`;

/** One HTTP/1.0 request on a new connection (fetch would keep one connection, so one task). */
async function get(hostname: string, port: number): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  try {
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\nHost: x\r\n\r\n"));
    const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    const body = text.split("\r\n\r\n")[1]?.trim() ?? "";
    if (!/^HTTP\/1\.[01] 200/.test(text) || body === "") throw new Error(`bad answer: ${text}`);
    return body;
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the reader.
    }
  }
}

/** One datagram from a new socket (so a new flow: tasks are taken in turn); the answer. */
async function askUdp(host: string, port: number): Promise<string> {
  const socket = dgram.createSocket("udp4");
  try {
    const answer = new Promise<string>((resolve, reject) => {
      socket.once("message", (msg: Uint8Array) => resolve(new TextDecoder().decode(msg)));
      setTimeout(() => reject(new Error("no UDP answer in 1 s")), 1_000);
    });
    socket.send("who", port, host);
    return await answer;
  } finally {
    socket.close();
  }
}

Deno.test({
  name: "a published port (TCP and UDP) answers on every node, spread over the tasks of every node",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-mesh-cluster-" });
  const [api] = freePorts(1);
  const published = 31000 + Math.floor(Math.random() * 1500);
  const publishedUdp = published + 1500;
  const a = 20 + Math.floor(Math.random() * 110);
  const [ipM, ipW] = [`127.0.0.${a}`, `127.0.0.${a + 120}`];
  const host = ["--host", `tcp://127.0.0.1:${api}`];
  const procs: NodeProcess[] = [];
  try {
    const m = new NodeProcess(
      "m",
      initArgs({
        dataDir: `${dir}/m`,
        listen: `${ipM}:0`,
        apiPort: api,
        heartbeat: "500ms",
        extra: ["--advertise-addr", ipM, "--log-level", "info"],
      }),
    );
    procs.push(m);
    const [, token, addr] = await m.waitFor(/shoal swarm join --token (\S+) (127\.0\.0\.\d+:\d+)/);
    const w = new NodeProcess(
      "w",
      joinArgs({
        dataDir: `${dir}/w`,
        token,
        addr,
        extra: ["--listen-addr", `${ipW}:0`, "--advertise-addr", ipW, "--log-level", "info"],
      }),
    );
    procs.push(w);
    await w.waitFor(/joined a swarm as a worker/);
    await until("2 ready nodes", async () => {
      const ls = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
      return ls.stdout.split("\n").filter((l) => l === "Ready").length === 2;
    });
    const server =
      "Deno.serve({ hostname: Deno.env.get('SHOAL_TASK_ADDR'), port: 8080, onListen() {} }, " +
      "() => new Response(Deno.env.get('SHOAL_TASK_ID')))";
    const created = await shoal([
      ...host,
      "service",
      "create",
      "--detach",
      "--name",
      "web",
      "--replicas",
      "2",
      "--replicas-max-per-node",
      "1",
      "--publish",
      `${published}:8080`,
      "--runtime",
      "process",
      deno,
      "eval",
      server,
    ]);
    assert.equal(created.code, 0, created.stderr);
    // A UDP echo service, its port published for UDP: datagrams answered by the task's id.
    const udpServer = "const s = (await import('node:dgram')).createSocket('udp4');" +
      "s.on('message', (m, r) => s.send(Deno.env.get('SHOAL_TASK_ID') + ':' + m, r.port, r.address));" +
      "s.bind(5353, Deno.env.get('SHOAL_TASK_ADDR'));";
    const createdUdp = await shoal([
      ...host,
      "service",
      "create",
      "--detach",
      "--name",
      "echo-udp",
      "--replicas",
      "2",
      "--replicas-max-per-node",
      "1",
      "--publish",
      `${publishedUdp}:5353/udp`,
      "--runtime",
      "process",
      deno,
      "eval",
      udpServer,
    ]);
    assert.equal(createdUdp.code, 0, createdUdp.stderr);
    const seen = new Map<string, Set<string>>();
    for (const node of [ipM, ipW]) {
      const ids = new Set<string>();
      let last = "";
      await until(
        () => `both tasks answer through ${node} (seen ${[...ids]}; last: ${last})`,
        async () => {
          try {
            ids.add(await get(node, published));
          } catch (err) {
            last = String(err); // not listening yet
          }
          return ids.size === 2;
        },
        30_000,
      );
      seen.set(node, ids);
    }
    assert.deepEqual([...seen.get(ipM)!].sort(), [...seen.get(ipW)!].sort());
    const seenUdp = new Map<string, Set<string>>();
    for (const node of [ipM, ipW]) {
      const ids = new Set<string>();
      let last = "";
      await until(
        () => `both UDP tasks answer through ${node} (seen ${[...ids]}; last: ${last})`,
        async () => {
          try {
            const answer = await askUdp(node, publishedUdp);
            assert.match(answer, /^[^:]+:who$/);
            ids.add(answer.split(":")[0]);
          } catch (err) {
            last = String(err); // not listening yet
          }
          return ids.size === 2;
        },
        30_000,
      );
      seenUdp.set(node, ids);
    }
    assert.deepEqual([...seenUdp.get(ipM)!].sort(), [...seenUdp.get(ipW)!].sort());
    const ps = await shoal([...host, "service", "ps", "web", "--format", "{{.ID}} {{.Node}}"]);
    assert.equal(ps.stdout.trim().split("\n").length, 2, ps.stdout);
  } catch (err) {
    for (const p of procs) console.error(`--- ${p.name}\n${p.stdout}\n${p.stderr.slice(-4000)}`);
    throw err;
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await Promise.all(procs.map((p) => p.done));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
