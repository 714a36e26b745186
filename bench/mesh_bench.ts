/**
 * `deno task bench mesh`: requests per second and p99 latency through a service VIP to 3
 * backend tasks on another node (client → mesh of node A on the VIP → mutual TLS → mesh
 * endpoint of node B → task), against the same client talking to one backend directly, in one
 * run. Goal (issue #8): the mesh keeps at least 70 % of direct throughput and adds at most 1 ms
 * at p99, on loopback.
 *
 * Every party is its own process, as on real nodes: the backends (three echo servers at their
 * own 127.x addresses), node B's mesh, node A's mesh, and the client (this process). The client
 * keeps `CONNECTIONS` connections open on each path, each sending a 64-byte request and waiting
 * for its echo, in alternating rounds of direct and VIP; connections are opened before timing
 * starts (so TLS handshakes are not counted: the connection rate row measures those). The
 * latency added by the mesh is also measured with one request in flight, where queueing in a
 * busy client does not hide or inflate it.
 *
 * @module
 */
import { createNodeCSR, createRootCA, issueNodeCertificate } from "../node/ca.ts";
import type { MeshMap } from "../node/mesh/mesh_map.ts";
import { type BenchRow, median, report } from "./report.ts";

const CONNECTIONS = 16;
const ROUNDS = 5;
const ROUND_MS = 800;
const REQUEST_BYTES = 64;
const VIP = "127.40.0.2";
const TASK_ADDRS = ["127.40.0.11", "127.40.0.12", "127.40.0.13"];
const PORT = 8080;

interface ChildConfig {
  role: "backends" | "mesh";
  nodeId?: string;
  creds?: { key: string; cert: string; ca: string };
  map?: MeshMap;
  meshPort?: number;
}

/** What a child process does: serve echo backends, or run one node's mesh. */
async function child(config: ChildConfig): Promise<void> {
  if (config.role === "backends") {
    for (const addr of TASK_ADDRS) {
      const listener = Deno.listen({ hostname: addr, port: PORT });
      (async () => {
        for await (const conn of listener) {
          conn.setNoDelay(true);
          conn.readable.pipeTo(conn.writable).catch(() => {});
        }
      })();
    }
  } else {
    const { startMesh } = await import("../node/mesh/mesh.ts");
    const map = config.map!;
    await startMesh({
      nodeId: config.nodeId!,
      source: { current: () => map, subscribe: () => () => {} },
      credentials: () => config.creds!,
      meshPort: config.meshPort,
      dns: false,
      discoverPorts: false,
      isolate: false,
    });
  }
  console.log("ready");
  await new Promise(() => {});
}

async function spawnChild(config: ChildConfig): Promise<Deno.ChildProcess> {
  // A mesh runs inside a node, which the `shoal` launcher starts with a larger young generation:
  // the mesh processes get the same V8 flag; the tasks' stand-in does not.
  // SHOAL_BENCH_V8_FLAGS: more V8 flags for every child, to profile them (`--perf-basic-prof`).
  const v8 = [
    ...(config.role === "mesh" ? ["--max-semi-space-size=64"] : []),
    ...(Deno.env.get("SHOAL_BENCH_V8_FLAGS") ? [Deno.env.get("SHOAL_BENCH_V8_FLAGS")!] : []),
  ];
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(v8.length > 0 ? [`--v8-flags=${v8.join(",")}`] : []),
      new URL(import.meta.url).pathname,
      "--child",
    ],
    env: { SHOAL_MESH_BENCH: JSON.stringify(config) },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`a ${config.role} process of the mesh benchmark exited early`);
    out += value;
  }
  reader.releaseLock();
  proc.stdout.cancel().catch(() => {});
  return proc;
}

/** Open connections to one path, warmed up (the mesh's onward connections are open). */
async function openConns(host: string, port: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const c = await Deno.connect({ hostname: host, port });
    c.setNoDelay(true);
    conns.push(c);
  }
  const request = new Uint8Array(REQUEST_BYTES).fill(0x61);
  await Promise.all(conns.map((c) => roundTrip(c, request)));
  return conns;
}

/** Request/response loops on every connection for `ms`; pushes latencies (ms); returns count. */
async function load(conns: Deno.TcpConn[], ms: number, latencies: number[]): Promise<number> {
  const request = new Uint8Array(REQUEST_BYTES).fill(0x61);
  const end = performance.now() + ms;
  let count = 0;
  await Promise.all(conns.map(async (c) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await roundTrip(c, request);
      latencies.push(performance.now() - t0);
      count++;
    }
  }));
  return count;
}

/** CPU time (user + system) a process has used so far, ms, from /proc (Linux; else 0). */
function cpuMs(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime (fields 14 and 15 of the line), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function roundTrip(conn: Deno.TcpConn, request: Uint8Array): Promise<void> {
  await conn.write(request);
  const buf = new Uint8Array(REQUEST_BYTES);
  let got = 0;
  while (got < REQUEST_BYTES) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error("the connection closed mid-request");
    got += n;
  }
}

/** New connections per second through the VIP (each one a TLS handshake between the nodes). */
async function connectionRate(host: string, port: number): Promise<number> {
  const request = new Uint8Array(REQUEST_BYTES).fill(0x62);
  const end = performance.now() + 1000;
  let count = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (performance.now() < end) {
      const c = await Deno.connect({ hostname: host, port });
      await roundTrip(c, request);
      c.close();
      count++;
    }
  }));
  return count;
}

async function credentialsFor(nodeIds: string[]) {
  const now = Date.now();
  const root = await createRootCA({ clusterId: "meshbench", now });
  const out: Record<string, { key: string; cert: string; ca: string }> = {};
  for (const nodeId of nodeIds) {
    const csr = await createNodeCSR({ nodeId });
    const cert = await issueNodeCertificate({
      rootCA: root,
      csrPem: csr.csrPem,
      nodeId,
      role: "worker",
      clusterId: "meshbench",
      now,
    });
    out[nodeId] = { key: csr.keyPem, cert: cert.certPem, ca: root.certPem };
  }
  return out;
}

/** Runs the benchmark (see the module documentation). */
export async function runMeshBench(options: { json: boolean }): Promise<unknown> {
  const creds = await credentialsFor(["a", "b"]);
  const meshPort = 43000 + Math.floor(Math.random() * 2000);
  const map: MeshMap = {
    index: 1,
    nodes: [{ id: "a", addr: "127.0.0.2" }, { id: "b", addr: "127.0.0.3" }],
    networks: [{ id: "n1", name: "bench", subnet: "127.40.0.0/16" }],
    services: [{
      id: "echo",
      name: "echo",
      stack: "",
      mode: "vip",
      ports: [{ protocol: "tcp", targetPort: PORT, publishedPort: 0, publishMode: "ingress" }],
      vips: [{ networkId: "n1", addr: VIP }],
      networks: [{ id: "n1", aliases: [] }],
    }],
    tasks: TASK_ADDRS.map((addr, i) => ({
      id: `t${i + 1}`,
      serviceId: "echo",
      slot: i + 1,
      nodeId: "b",
      serving: true,
      addresses: [{ networkId: "n1", addr }],
    })),
  };
  const children: Deno.ChildProcess[] = [];
  try {
    children.push(await spawnChild({ role: "backends" }));
    // Both nodes share this machine's loopback, and whichever mesh binds the VIP first serves
    // it: node B's map leaves the VIP out, so that the VIP is node A's and every request takes
    // the TLS hop to B (were it B's, B would forward to its own tasks in plain TCP).
    const mapB: MeshMap = {
      ...map,
      services: map.services.map((s) => ({ ...s, vips: [] })),
    };
    children.push(
      await spawnChild({ role: "mesh", nodeId: "b", creds: creds.b, map: mapB, meshPort }),
    );
    children.push(await spawnChild({ role: "mesh", nodeId: "a", creds: creds.a, map, meshPort }));
    // Direct and VIP in alternating rounds, so that load from elsewhere on the machine falls
    // on both alike; throughput is the median round, latency quantiles over every request.
    const directConns = await openConns(TASK_ADDRS[0], PORT);
    const vipConns = await openConns(VIP, PORT);
    const lat = { direct: [] as number[], vip: [] as number[] };
    const rps = { direct: [] as number[], vip: [] as number[] };
    // CPU used per request by each process on each path (µs): what the mesh costs, whatever
    // else the machine runs at the time. Processes: client, backends, mesh B, mesh A.
    const pids: (number | "self")[] = ["self", ...children.map((c) => c.pid)];
    const cpu = { direct: pids.map(() => 0), vip: pids.map(() => 0) };
    const timed = async (path: "direct" | "vip", conns: Deno.TcpConn[]) => {
      const before = pids.map(cpuMs);
      const n = await load(conns, ROUND_MS, lat[path]);
      pids.forEach((pid, i) => (cpu[path][i] += cpuMs(pid) - before[i]));
      rps[path].push(n * 1000 / ROUND_MS);
      return n;
    };
    const count = { direct: 0, vip: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      count.direct += await timed("direct", directConns);
      count.vip += await timed("vip", vipConns);
    }
    const perRequest = (path: "direct" | "vip", i: number) =>
      Math.round(cpu[path][i] * 1000 / count[path]);
    // Latency with one request in flight at a time (no queueing in the client): what one hop
    // through the mesh adds.
    const single = { direct: [] as number[], vip: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      await load(directConns.slice(0, 1), ROUND_MS / 4, single.direct);
      await load(vipConns.slice(0, 1), ROUND_MS / 4, single.vip);
    }
    single.direct.sort((a, b) => a - b);
    single.vip.sort((a, b) => a - b);
    for (const c of [...directConns, ...vipConns]) c.close();
    lat.direct.sort((a, b) => a - b);
    lat.vip.sort((a, b) => a - b);
    const direct = { rps: median(rps.direct), p99: quantile(lat.direct, 0.99) };
    const mesh = {
      rps: median(rps.vip),
      p50: quantile(lat.vip, 0.5),
      p99: quantile(lat.vip, 0.99),
    };
    const connRate = await connectionRate(VIP, PORT);
    const ratio = mesh.rps / direct.rps;
    const added = mesh.p99 - direct.p99;
    const singleAdded = quantile(single.vip, 0.99) - quantile(single.direct, 0.99);
    const rows: BenchRow[] = [
      { metric: "direct requests/s", value: Math.round(direct.rps), unit: "req/s" },
      { metric: "direct p99", value: direct.p99, unit: "ms" },
      { metric: "VIP requests/s", value: Math.round(mesh.rps), unit: "req/s" },
      { metric: "VIP p50", value: mesh.p50, unit: "ms" },
      { metric: "VIP p99", value: mesh.p99, unit: "ms" },
      {
        metric: "VIP / direct throughput",
        value: ratio * 100,
        unit: "%",
        goal: "≥ 70",
        ok: ratio >= 0.7,
      },
      { metric: "added p99", value: added, unit: "ms", goal: "≤ 1", ok: added <= 1 },
      { metric: "1 connection: direct p99", value: quantile(single.direct, 0.99), unit: "ms" },
      { metric: "1 connection: VIP p99", value: quantile(single.vip, 0.99), unit: "ms" },
      {
        metric: "1 connection: added p99",
        value: singleAdded,
        unit: "ms",
        goal: "≤ 1",
        ok: singleAdded <= 1,
      },
      { metric: "new connections via VIP", value: connRate, unit: "conn/s" },
      { metric: "CPU/request direct: client", value: perRequest("direct", 0), unit: "µs" },
      { metric: "CPU/request direct: task", value: perRequest("direct", 1), unit: "µs" },
      { metric: "CPU/request VIP: client", value: perRequest("vip", 0), unit: "µs" },
      { metric: "CPU/request VIP: mesh A", value: perRequest("vip", 3), unit: "µs" },
      { metric: "CPU/request VIP: mesh B", value: perRequest("vip", 2), unit: "µs" },
      { metric: "CPU/request VIP: task", value: perRequest("vip", 1), unit: "µs" },
    ];
    return report("mesh: VIP to 3 tasks on another node (mTLS) vs one task directly", rows, {
      json: options.json,
      extra: {
        connections: CONNECTIONS,
        rounds: ROUNDS,
        roundMs: ROUND_MS,
        requestBytes: REQUEST_BYTES,
      },
    });
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
      await c.status;
    }
  }
}

if (import.meta.main && Deno.args.includes("--child")) {
  await child(JSON.parse(Deno.env.get("SHOAL_MESH_BENCH")!) as ChildConfig);
}
