/**
 * Raft snapshots under real managers, as separate `shoal` processes on loopback: three managers
 * with a tiny snapshot interval (`SHOAL_RAFT_SNAPSHOT_ENTRIES`) compact their logs as services
 * are created; a fourth manager that joins then catches up from a snapshot of the manager's state
 * (its log starts after it), and every manager lists the same services; restarted, it starts from
 * its snapshot and still does; the log tools read its compacted log offline.
 */
import assert from "node:assert/strict";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, until } from "./_processes.ts";

interface Timeline {
  firstIndex: number;
  lastIndex: number;
}

/** Snapshot every 20 Raft entries, keeping 5 behind it. */
const ENV = { SHOAL_RAFT_SNAPSHOT_ENTRIES: "20", SHOAL_RAFT_KEEP_ENTRIES: "5" };
const SERVICES = 8;

Deno.test({
  name: "raft snapshots: managers compact their logs; a new manager catches up from a snapshot",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-raft-snapshot-" });
  const api = freePorts(4);
  const host = (i: number) => ["--host", `tcp://127.0.0.1:${api[i]}`];
  const procs: (NodeProcess | undefined)[] = [];
  const get = async <T>(i: number, path: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${api[i]}${path}`);
    const body = await res.json();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body as T;
  };
  const services = async (i: number) =>
    (await get<{ Spec: { Name: string } }[]>(i, "/services")).map((s) => s.Spec.Name).sort();
  const start = (i: number, args: string[]) => {
    const p = new NodeProcess(`m${i + 1}`, args, ENV);
    procs[i] = p;
    return p;
  };
  const managerJoinArgs = (i: number, token: string, addr: string) =>
    joinArgs({
      dataDir: `${dir}/m${i + 1}`,
      token,
      addr,
      extra: ["--listen-addr", "127.0.0.1:0", "--api-addr", `127.0.0.1:${api[i]}`],
    });
  const expected = Array.from({ length: SERVICES }, (_, i) => `svc${i}`);
  const sameServices = async (i: number) => {
    let last: string[] = [];
    await until(() => `manager ${i + 1} lists every service (it lists ${last})`, async () => {
      last = await services(i);
      return JSON.stringify(last) === JSON.stringify(expected);
    }, 30_000);
  };
  try {
    let token = "";
    let firstAddr = "";

    await t.step("three managers: init, then two join", async () => {
      const m1 = start(
        0,
        initArgs({ dataDir: `${dir}/m1`, listen: "127.0.0.1:0", apiPort: api[0] }),
      );
      const [, addr] = await m1.waitFor(/shoal swarm join --token \S+ (127\.0\.0\.1:\d+)/);
      firstAddr = addr;
      await m1.waitFor(/Press Ctrl-C to stop/);
      const mt = await shoal([...host(0), "swarm", "join-token", "-q", "manager"]);
      assert.equal(mt.code, 0, mt.stderr);
      token = mt.stdout.trim();
      for (const i of [1, 2]) {
        const m = start(i, managerJoinArgs(i, token, firstAddr));
        await m.waitFor(/This node joined a swarm as a manager/);
        await m.waitFor(/Press Ctrl-C to stop/);
      }
    });

    await t.step("writes compact every manager's log", async () => {
      for (const name of expected) {
        const r = await shoal([
          ...host(0),
          "service",
          "create",
          "--detach",
          "--name",
          name,
          "--replicas",
          "0",
          "--runtime",
          "process",
          "/bin/sleep",
          "600",
        ]);
        assert.equal(r.code, 0, r.stderr);
      }
      for (const i of [0, 1, 2]) {
        await sameServices(i);
        await until(`manager ${i + 1} compacted its log`, async () => {
          const tl = await get<Timeline>(i, "/shoal/v1/timeline");
          return tl.firstIndex > 1;
        }, 30_000);
      }
    });

    await t.step("a new manager joins and catches up from a snapshot", async () => {
      const m4 = start(3, managerJoinArgs(3, token, firstAddr));
      await m4.waitFor(/This node joined a swarm as a manager/, 60_000);
      await m4.waitFor(/Press Ctrl-C to stop/);
      // Its log starts after a snapshot: it never received the early entries.
      const tl = await get<Timeline>(3, "/shoal/v1/timeline");
      assert.ok(tl.firstIndex > 1, `the new manager's log starts at ${tl.firstIndex}`);
      for (const i of [0, 1, 2, 3]) await sameServices(i);
      // It folds live entries on top of the snapshot.
      const r = await shoal([...host(3), "service", "rm", "svc0"]);
      assert.equal(r.code, 0, r.stderr);
      expected.shift();
      for (const i of [0, 1, 2, 3]) await sameServices(i);
    });

    await t.step("restarted, the new manager starts from its snapshot", async () => {
      const m4 = procs[3]!;
      m4.kill("SIGTERM");
      await m4.done;
      procs[3] = undefined;
      const again = start(3, ["start", "--data-dir", `${dir}/m4`]);
      await again.waitFor(/Press Ctrl-C to stop/, 60_000);
      const tl = await get<Timeline>(3, "/shoal/v1/timeline");
      assert.ok(tl.firstIndex > 1, `its log still starts at ${tl.firstIndex}`);
      await sameServices(3);
    });

    await t.step("the log tools read its compacted log and snapshot offline", async () => {
      const m4 = procs[3]!;
      m4.kill("SIGTERM");
      await m4.done;
      procs[3] = undefined;
      const v = await shoal(["log", "verify", "--data-dir", `${dir}/m4`]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /log ok: \d+ entries \((\d+) to \d+\)/);
      assert.doesNotMatch(
        v.stdout,
        /log ok: \d+ entries \(1 to/,
        "the log starts after a snapshot",
      );
      const d = await shoal(["log", "dump-snapshot", "--data-dir", `${dir}/m4`]);
      assert.equal(d.code, 0, d.stderr);
      // The snapshot it was sent: the manager's state then, with every service created.
      assert.match(d.stdout, /^snapshot at index \d+ \(raft index \d+\)/m);
      assert.match(d.stdout, new RegExp(`state: 1 cluster, 4 nodes, ${SERVICES} services`));
    });
  } catch (err) {
    for (const p of procs) {
      if (p) console.error(`--- ${p.name} stderr\n${p.stderr.slice(-4000)}`);
    }
    throw err;
  } finally {
    await Promise.all(procs.map(async (p) => {
      if (!p) return;
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 15_000);
      await p.done;
      clearTimeout(timer);
    }));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
