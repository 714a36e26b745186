/**
 * `deno task bench raft`: Shoal's Raft log under load, for real (issue 3, "Benchmark").
 *
 * - Three managers as separate processes on loopback (`tests/cluster/raft_node.ts`: a
 *   RaftDriver on SqliteStorage, `synchronous` FULL), 100 ms ticks.
 * - Load from a separate client process (this file, run with `--client`) over TCP: C concurrent
 *   clients (1, 64 and 1,000; over min(C, 100) connections, like etcd's benchmark with
 *   `--conns`), each proposing one ~200-byte entry at the leader and waiting for its commit,
 *   again and again, for a few seconds after a warm-up. Committed entries/s, p50 and p99 commit
 *   latency.
 * - Then open loops (proposals at a fixed rate, latency from when each was due) at half the
 *   goal's load (the goal is twice etcd's 1,000-client rate, so half of it is etcd's rate; the
 *   issue's 4,200/s when etcd is absent), where the p99 goal applies, and at half Shoal's own
 *   1,000-client rate; etcd gets the first open loop too.
 * - What the machine allows at that rate apart from Shoal: the same open loop against three
 *   managers that never sync (the CPU's share) and against one (the client and one process),
 *   and `fdatasync` with three writers at once (the managers share one disk here).
 * - Leader failover, over 20 `kill -9`s of the leader: from the kill to the first commit by the
 *   new leader (the bench proposes at the survivors every 5 ms), p50 and p99. The killed
 *   manager is restarted and caught up before the next kill.
 * - When Debian's `etcd` is installed, the same client counts against a 3-member etcd on
 *   loopback (gRPC `KV.Put` over HTTP/2 at the leader, 16-byte keys and 184-byte values,
 *   default etcd settings) in the same run, and the ratio.
 *
 * Run alone with `deno run -A bench/raft_bench.ts [--json] [--no-leader-sends-before-persist]`;
 * the flag runs the managers without the driver's `leaderSendsBeforePersist` (on by default).
 * Figures depend heavily on fsync latency and on other load on the machine.
 *
 * @module
 */
import * as http2 from "node:http2";
import { type BenchRow, median, report } from "./report.ts";
import { NodeClient, NodeError } from "../tests/cluster/raft_protocol.ts";
import { freePorts, RaftProcesses } from "../tests/cluster/raft_processes.ts";

const CLIENT_COUNTS = [1, 64, 1000];
const PAYLOAD_BYTES = 200;
const WARMUP_MS = 1_000;
const MEASURE_MS = 5_000;
const KILLS = 20;
/** etcd's writes/s at 1,000 clients on a machine of this kind (the figure), when etcd is absent. */
const ETCD_REFERENCE = 4_200;

/** What a load run measured. */
interface LoadResult {
  ops: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
}

/** How the client process is told what to do. */
interface ClientConfig {
  target: "shoal" | "etcd";
  address: string;
  clients: number;
  conns: number;
  warmupMs: number;
  measureMs: number;
  /** Open loop: proposals per second (0: closed loop, each client waits for its commit). */
  rate: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// -------------------------------------------------------------------------------------------
// The client process

/** One way to commit a 200-byte value. */
type Put = (conn: number, n: number) => Promise<void>;

async function shoalPut(cfg: ClientConfig): Promise<{ put: Put; close(): void }> {
  const conns = await Promise.all(
    Array.from({ length: cfg.conns }, () => NodeClient.connect(cfg.address)),
  );
  const payload = new Uint8Array(PAYLOAD_BYTES);
  crypto.getRandomValues(payload);
  return {
    put: async (conn, n) => {
      const data = payload.slice();
      new DataView(data.buffer).setFloat64(0, n);
      await conns[conn].propose(data);
    },
    close: () => conns.forEach((c) => c.close()),
  };
}

function varint(n: number): number[] {
  const out = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** A gRPC `etcdserverpb.KV/Put` request frame (hand-rolled protobuf: key = 1, value = 2). */
function putRequest(key: Uint8Array, value: Uint8Array): Uint8Array {
  const pb = [0x0a, ...varint(key.length), ...key, 0x12, ...varint(value.length), ...value];
  const out = new Uint8Array(5 + pb.length);
  new DataView(out.buffer).setUint32(1, pb.length);
  out.set(pb, 5);
  return out;
}

function etcdPut(cfg: ClientConfig): { put: Put; close(): void } {
  const sessions = Array.from({ length: cfg.conns }, () => http2.connect(`http://${cfg.address}`));
  for (const s of sessions) s.on("error", () => {});
  const value = new Uint8Array(PAYLOAD_BYTES - 16).fill(0x61);
  const utf8 = new TextEncoder();
  return {
    put: (conn, n) =>
      new Promise<void>((resolve, reject) => {
        const req = sessions[conn].request({
          ":method": "POST",
          ":path": "/etcdserverpb.KV/Put",
          "content-type": "application/grpc",
          te: "trailers",
        });
        let status: string | undefined;
        req.on("response", (h) => {
          if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
        });
        req.on("trailers", (t) => (status = String(t["grpc-status"])));
        req.on("data", () => {});
        req.on("end", () => status === "0" ? resolve() : reject(new Error(`grpc ${status}`)));
        req.on("error", reject);
        req.end(putRequest(utf8.encode(`key-${n % 100_000}`.padEnd(16, "-")), value));
      }),
    close: () => sessions.forEach((s) => s.close()),
  };
}

async function runClient(cfg: ClientConfig): Promise<LoadResult> {
  const { put, close } = cfg.target === "shoal" ? await shoalPut(cfg) : etcdPut(cfg);
  const latencies: number[] = [];
  let ops = 0;
  let errors = 0;
  let n = 0;
  const t0 = performance.now();
  const measureFrom = t0 + cfg.warmupMs;
  const end = measureFrom + cfg.measureMs;
  const record = (start: number, due: number) => {
    const now = performance.now();
    if (start >= measureFrom && now <= end) {
      ops++;
      latencies.push(now - due);
    }
  };
  if (cfg.rate === 0) {
    await Promise.all(Array.from({ length: cfg.clients }, async (_, c) => {
      const conn = c % cfg.conns;
      while (performance.now() < end) {
        const start = performance.now();
        try {
          await put(conn, n++);
          record(start, start);
        } catch {
          errors++;
          await sleep(5);
        }
      }
    }));
  } else {
    // Open loop: each proposal is due at a fixed time; latency counts from then.
    const inFlight = new Set<Promise<void>>();
    let issued = 0;
    while (performance.now() < end) {
      const now = performance.now();
      // Proposals 0..due are due by now (proposal k at k / rate).
      const due = Math.floor((now - t0) * cfg.rate / 1000);
      while (issued <= due && inFlight.size < 20_000) {
        const at = t0 + issued * 1000 / cfg.rate;
        const conn = issued % cfg.conns;
        issued++;
        const p: Promise<void> = put(conn, n++).then(
          () => record(at, at),
          () => void errors++,
        ).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      await sleep(1);
    }
    await Promise.all(inFlight);
  }
  close();
  const sorted = Float64Array.from(latencies).sort();
  return {
    ops,
    opsPerSec: ops / (cfg.measureMs / 1000),
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    errors,
  };
}

/** Runs the load in a separate client process. */
async function load(cfg: ClientConfig): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL(import.meta.url).pathname,
      "--client",
      JSON.stringify(cfg),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) throw new Error(`load client failed: ${text}`);
  return JSON.parse(text.split("\n").at(-1)!);
}

// -------------------------------------------------------------------------------------------
// Failover

async function failovers(cluster: RaftProcesses, kills: number): Promise<number[]> {
  const times: number[] = [];
  const payload = new Uint8Array(PAYLOAD_BYTES);
  for (let k = 0; k < kills; k++) {
    const leader = await cluster.waitForLeader(30_000);
    const killedAt = performance.now();
    await cluster.kill(leader);
    const survivors = cluster.running();
    let committed: { index: number; seq: number } | undefined;
    while (committed === undefined) {
      const attempts = survivors.map(async (id) => {
        try {
          const client = await cluster.client(id);
          return await client.propose(payload);
        } catch (err) {
          if (!(err instanceof NodeError)) await sleep(5);
          return undefined;
        }
      });
      for (const r of await Promise.all(attempts)) committed ??= r;
      if (committed === undefined) await sleep(5);
      if (performance.now() - killedAt > 30_000) throw new Error("no new leader in 30 s");
    }
    times.push(performance.now() - killedAt);
    // Restart the killed manager and let it catch up before the next kill.
    await cluster.startNode(leader);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const st = await cluster.statuses();
      if (
        st.length === cluster.nodes.length && st.every((s) => s.appliedSeq >= committed!.seq) &&
        st.every((s) => s.members.every((m) => m.connected))
      ) break;
      if (Date.now() > deadline) throw new Error(`restarted node did not catch up`);
      await sleep(20);
    }
  }
  return times;
}

// -------------------------------------------------------------------------------------------
// etcd

interface Etcd {
  leaderAddress: string;
  stop(): Promise<void>;
}

async function startEtcd(): Promise<Etcd | undefined> {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v etcd"], stdout: "piped" })
    .output().catch(() => undefined);
  if (!which?.success) return undefined;
  const dir = await Deno.makeTempDir({ prefix: "shoal-etcd-" });
  const ports = freePorts(6);
  const names = ["e1", "e2", "e3"];
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[3 + i]}`).join(",");
  const children = names.map((name, i) =>
    new Deno.Command("etcd", {
      args: [
        "--name",
        name,
        "--data-dir",
        `${dir}/${name}`,
        "--listen-client-urls",
        `http://127.0.0.1:${ports[i]}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${ports[i]}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${ports[3 + i]}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${ports[3 + i]}`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        "shoal-bench",
        "--logger",
        "zap",
        "--log-level",
        "error",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn()
  );
  const stop = async () => {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await Promise.all(children.map((c) => c.status));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  // Find the leader with etcdctl (from etcd-client), or fall back to the first member.
  const endpoints = ports.slice(0, 3).map((p) => `127.0.0.1:${p}`);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const out = await new Deno.Command("etcdctl", {
      args: ["--endpoints", endpoints.join(","), "endpoint", "status", "-w", "json"],
      env: { ETCDCTL_API: "3" },
      stdout: "piped",
      stderr: "null",
    }).output().catch(() => undefined);
    if (out?.success) {
      const st = JSON.parse(new TextDecoder().decode(out.stdout)) as {
        Endpoint: string;
        Status: { leader: number | string; header: { member_id: number | string } };
      }[];
      const lead = st.find((s) =>
        String(s.Status.leader) !== "0" &&
        String(s.Status.leader) === String(s.Status.header.member_id)
      );
      if (lead && st.length === 3) return { leaderAddress: lead.Endpoint, stop };
    } else if (out === undefined) {
      await sleep(2_000);
      return { leaderAddress: endpoints[0], stop };
    }
    await sleep(200);
  }
  await stop();
  throw new Error("etcd did not elect a leader in 30 s");
}

// -------------------------------------------------------------------------------------------
// The disk

/** fdatasync latency with `writers` files appended to and synced at once, in rounds. */
async function fsyncProbe(
  writers: number,
  ms: number,
): Promise<{ p50: number; p99: number; max: number; secondP99: number }> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-fsync-" });
  const files = await Promise.all(
    Array.from(
      { length: writers },
      (_, i) => Deno.open(`${dir}/w${i}`, { create: true, write: true, append: true }),
    ),
  );
  const block = new Uint8Array(8 * 1024).fill(7);
  const all: number[] = [];
  const second: number[] = [];
  try {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const times = await Promise.all(files.map(async (f) => {
        const t = performance.now();
        await f.write(block);
        await f.syncData();
        return performance.now() - t;
      }));
      all.push(...times);
      second.push(times.sort((a, b) => a - b)[1] ?? times[0]);
    }
  } finally {
    files.forEach((f) => f.close());
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const sorted = Float64Array.from(all).sort();
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
    secondP99: quantile(Float64Array.from(second).sort(), 0.99),
  };
}

// -------------------------------------------------------------------------------------------

/**
 * Runs the benchmark and prints its report. `leaderSendsBeforePersist` runs the managers with
 * that driver option (the leader's disk write overlaps its followers'); on by default, as in
 * the driver.
 */
export async function runRaftBench(
  opts: { json: boolean; leaderSendsBeforePersist?: boolean },
): Promise<Record<string, unknown>> {
  const rows: BenchRow[] = [];
  const shoal = new Map<number, LoadResult>();
  const etcdClosed = new Map<number, LoadResult>();
  const cfg = (address: string, clients: number, target: "shoal" | "etcd"): ClientConfig => ({
    target,
    address,
    clients,
    conns: Math.min(clients, 100),
    warmupMs: WARMUP_MS,
    measureMs: MEASURE_MS,
    rate: 0,
  });
  const line = (what: string, r: LoadResult) =>
    console.error(
      `${what}: ${r.opsPerSec.toFixed(0)}/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms`,
    );

  // etcd first: its 1,000-client rate sets the goal's load (twice it), and half of that load
  // (etcd's own rate) is where the p99 goal applies.
  const etcd = await startEtcd();
  if (etcd === undefined) {
    console.error(
      "etcd is not installed (Debian: apt-get install etcd-server etcd-client): no comparison; " +
        `the goal load is twice the reference ${ETCD_REFERENCE}/s`,
    );
  } else {
    try {
      for (const c of CLIENT_COUNTS) {
        const r = await load(cfg(etcd.leaderAddress, c, "etcd"));
        etcdClosed.set(c, r);
        line(`etcd ${c} clients`, r);
      }
    } finally {
      await etcd.stop();
    }
  }
  const etcdRate = Math.round(etcdClosed.get(1000)?.opsPerSec ?? ETCD_REFERENCE);
  const halfGoal = etcdRate;

  const leaderSendsBeforePersist = opts.leaderSendsBeforePersist ?? true;
  const cluster = await RaftProcesses.start({ size: 3, sync: "full", leaderSendsBeforePersist });
  let atHalfGoal: LoadResult | undefined;
  let atHalfOwn: LoadResult | undefined;
  let halfOwn = 0;
  let failover: number[] = [];
  try {
    const leader = await cluster.waitForLeader();
    const address = cluster.clientAddress(leader);
    for (const c of CLIENT_COUNTS) {
      const r = await load(cfg(address, c, "shoal"));
      shoal.set(c, r);
      line(`shoal ${c} clients`, r);
    }
    atHalfGoal = await load({ ...cfg(address, 1000, "shoal"), rate: halfGoal });
    line(`shoal open loop at ${halfGoal}/s (half the goal load)`, atHalfGoal);
    halfOwn = Math.round(shoal.get(1000)!.opsPerSec / 2);
    atHalfOwn = await load({ ...cfg(address, 1000, "shoal"), rate: halfOwn });
    line(`shoal open loop at ${halfOwn}/s (half its own 1,000-client rate)`, atHalfOwn);
    failover = await failovers(cluster, KILLS);
    console.error(`failover: ${failover.map((t) => t.toFixed(0)).join(" ")} ms`);
  } finally {
    await cluster.stop();
  }

  // What the machine allows at that rate, apart from Shoal's own work: the same open loop against
  // three managers that never sync (the CPU's share: 4 processes on the cores), and against one
  // that never syncs (the client and one process); and the disk's fsync, three writers at once.
  const floor = async (size: number) => {
    const c = await RaftProcesses.start({ size, sync: "off", leaderSendsBeforePersist });
    try {
      const address = c.clientAddress(await c.waitForLeader());
      return await load({ ...cfg(address, 1000, "shoal"), rate: halfGoal });
    } finally {
      await c.stop();
    }
  };
  const noSync3 = await floor(3);
  line(`3 managers without fsync at ${halfGoal}/s`, noSync3);
  const noSync1 = await floor(1);
  line(`1 manager without fsync at ${halfGoal}/s`, noSync1);
  const disk = await fsyncProbe(3, 5_000);
  console.error(
    `fdatasync, 3 writers at once: p50 ${disk.p50.toFixed(2)} ms p99 ${
      disk.p99.toFixed(2)
    } ms max ${disk.max.toFixed(0)} ms; 2nd fastest of 3 per round: p99 ${
      disk.secondP99.toFixed(2)
    } ms`,
  );

  // etcd under the same open loop, for comparison.
  let etcdAtHalfGoal: LoadResult | undefined;
  if (etcd !== undefined) {
    const again = await startEtcd();
    if (again !== undefined) {
      try {
        etcdAtHalfGoal = await load({ ...cfg(again.leaderAddress, 1000, "etcd"), rate: halfGoal });
        line(`etcd open loop at ${halfGoal}/s`, etcdAtHalfGoal);
      } finally {
        await again.stop();
      }
    }
  }

  for (const c of CLIENT_COUNTS) {
    const r = shoal.get(c)!;
    rows.push({
      metric: `committed/s, ${c} clients`,
      value: Math.round(r.opsPerSec),
      unit: "entries/s",
    });
    rows.push({ metric: `p50 commit, ${c} clients`, value: r.p50, unit: "ms" });
    rows.push({ metric: `p99 commit, ${c} clients`, value: r.p99, unit: "ms" });
  }
  rows.push({
    metric: `p50 commit at half the goal load (${halfGoal}/s)`,
    value: atHalfGoal!.p50,
    unit: "ms",
  });
  rows.push({
    metric: `p99 commit at half the goal load (${halfGoal}/s)`,
    value: atHalfGoal!.p99,
    unit: "ms",
    goal: "≤ 10",
    ok: atHalfGoal!.p99 <= 10,
  });
  rows.push({
    metric: `p99 at ${halfGoal}/s, 3 managers without fsync`,
    value: noSync3.p99,
    unit: "ms",
  });
  rows.push({
    metric: `p99 at ${halfGoal}/s, 1 manager without fsync`,
    value: noSync1.p99,
    unit: "ms",
  });
  rows.push({ metric: "fdatasync p99, 3 writers at once", value: disk.p99, unit: "ms" });
  rows.push({ metric: "fdatasync max, 3 writers at once", value: disk.max, unit: "ms" });
  rows.push({
    metric: "fdatasync p99, 2nd fastest of 3 (a commit's wait)",
    value: disk.secondP99,
    unit: "ms",
  });
  rows.push({
    metric: `p50 commit at half its own rate (${halfOwn}/s)`,
    value: atHalfOwn!.p50,
    unit: "ms",
  });
  rows.push({
    metric: `p99 commit at half its own rate (${halfOwn}/s)`,
    value: atHalfOwn!.p99,
    unit: "ms",
  });
  const sortedFailover = Float64Array.from(failover).sort();
  rows.push({
    metric: `failover p50 (${failover.length} kills)`,
    value: median(failover),
    unit: "ms",
  });
  rows.push({
    metric: `failover p99 (${failover.length} kills)`,
    value: quantile(sortedFailover, 0.99),
    unit: "ms",
    goal: "≤ 1000",
    ok: quantile(sortedFailover, 0.99) <= 1000,
  });

  const extra: Record<string, unknown> = {
    leaderSendsBeforePersist,
    withoutFsync: { managers3: noSync3, managers1: noSync1 },
    fsync: disk,
    failoverMs: failover.map((t) => Math.round(t)),
    halfGoalRate: halfGoal,
    halfOwnRate: halfOwn,
  };
  if (etcd === undefined) extra.etcd = "not installed";
  for (const c of CLIENT_COUNTS) {
    const r = etcdClosed.get(c);
    if (r === undefined) continue;
    rows.push({
      metric: `etcd committed/s, ${c} clients`,
      value: Math.round(r.opsPerSec),
      unit: "puts/s",
    });
    rows.push({ metric: `etcd p99, ${c} clients`, value: r.p99, unit: "ms" });
    const ratio = shoal.get(c)!.opsPerSec / r.opsPerSec;
    rows.push({
      metric: `Shoal/etcd throughput, ${c} clients`,
      value: Math.round(ratio * 100) / 100,
      unit: "x",
      ...(c === 1000 ? { goal: "≥ 2", ok: ratio >= 2 } : {}),
    });
  }
  if (etcdAtHalfGoal !== undefined) {
    rows.push({ metric: `etcd p50 at ${halfGoal}/s`, value: etcdAtHalfGoal.p50, unit: "ms" });
    rows.push({ metric: `etcd p99 at ${halfGoal}/s`, value: etcdAtHalfGoal.p99, unit: "ms" });
  }
  const title = "raft (3 processes, loopback, SQLite synchronous=FULL" +
    (leaderSendsBeforePersist ? "" : ", without leaderSendsBeforePersist") + ")";
  return report(title, rows, {
    json: opts.json,
    extra,
  });
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--client");
  if (at >= 0) {
    const result = await runClient(JSON.parse(Deno.args[at + 1]) as ClientConfig);
    console.log(JSON.stringify(result));
    Deno.exit(0);
  }
  await runRaftBench({
    json: Deno.args.includes("--json"),
    leaderSendsBeforePersist: !Deno.args.includes("--no-leader-sends-before-persist"),
  });
}
