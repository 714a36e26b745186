/**
 * Three managers replicating the log with Raft, as separate `shoal` processes on loopback, formed
 * with `swarm init` and `swarm join` (manager token): commands work on any manager (followers
 * forward them to the leader), a worker that dials a follower is sent to the leader, `kill -9`
 * of the leader elects another that keeps the service's replicas, losing quorum makes writes fail
 * with Docker's message while reads still work, everything committed is on every manager after
 * restarts, and a manager leaves the Raft group cleanly.
 */
import assert from "node:assert/strict";
import {
  freePorts,
  initArgs,
  initOutput,
  joinArgs,
  NodeProcess,
  shoal,
  sleep,
  until,
} from "./_processes.ts";

interface ApiNode {
  ID: string;
  Status: { State: string };
  Spec: { Role: string };
  ManagerStatus?: { Leader?: boolean; Reachability: string; Addr: string };
}
interface ApiTask {
  ID: string;
  NodeID: string;
  DesiredState: string;
  Status: { State: string };
}

/** `service create` of a small process service named `name`. */
function createArgs(name: string): string[] {
  return [
    "service",
    "create",
    "--detach",
    "--name",
    name,
    "--runtime",
    "process",
    "/bin/sleep",
    "600",
  ];
}

Deno.test({
  name: "three managers on Raft: join, forward, failover, quorum, restart, leave",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-managers-" });
  const api = freePorts(3);
  const host = (i: number) => ["--host", `tcp://127.0.0.1:${api[i]}`];
  const url = (i: number) => `http://127.0.0.1:${api[i]}`;
  const procs: (NodeProcess | undefined)[] = [];
  const ids: string[] = [];
  const get = async <T>(i: number, path: string): Promise<T> => {
    const res = await fetch(`${url(i)}${path}`);
    const body = await res.json();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body as T;
  };
  const running = async (i: number, service: string) =>
    (await get<ApiTask[]>(
      i,
      `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [service] }))}`,
    ))
      .filter((task) => task.Status.State === "running" && task.DesiredState === "running");
  const leaderOf = async (i: number) => {
    const nodes = await get<ApiNode[]>(i, "/nodes");
    return nodes.find((n) => n.ManagerStatus?.Leader)?.ID;
  };
  const start = (i: number, args: string[]) => {
    const p = new NodeProcess(`m${i + 1}`, args);
    procs[i] = p;
    return p;
  };
  try {
    let workerToken = "";
    let managerToken = "";
    let firstAddr = "";

    await t.step("init, then two managers join with the manager token", async () => {
      const m1 = start(
        0,
        initArgs({
          dataDir: `${dir}/m1`,
          listen: "127.0.0.1:0",
          apiPort: api[0],
          heartbeat: "500ms",
        }),
      );
      const { id, token, addr } = await initOutput(m1);
      ids.push(id);
      workerToken = token;
      firstAddr = addr;
      await m1.waitFor(/Press Ctrl-C to stop/);
      const mt = await shoal([...host(0), "swarm", "join-token", "-q", "manager"]);
      assert.equal(mt.code, 0, mt.stderr);
      managerToken = mt.stdout.trim();
      for (const i of [1, 2]) {
        const m = start(
          i,
          joinArgs({
            dataDir: `${dir}/m${i + 1}`,
            token: managerToken,
            addr: firstAddr,
            extra: ["--listen-addr", "127.0.0.1:0", "--api-addr", `127.0.0.1:${api[i]}`],
          }),
        );
        const [, nid] = await m.waitFor(
          /This node joined a swarm as a manager\.\n\n {2}node {7}([0-9a-z]{25}), manager/,
        );
        ids.push(nid);
        await m.waitFor(/Press Ctrl-C to stop/);
      }
      // Every manager sees three managers: one leader, all reachable.
      for (const i of [0, 1, 2]) {
        await until(`manager ${i + 1} sees 3 reachable managers`, async () => {
          const nodes = await get<ApiNode[]>(i, "/nodes");
          const managers = nodes.filter((n) => n.ManagerStatus?.Reachability === "reachable");
          return managers.length === 3 && managers.filter((n) => n.ManagerStatus?.Leader)
                .length === 1 &&
            nodes.every((n) => n.Status.State === "ready");
        }, 30_000);
      }
      assert.equal(await leaderOf(2), ids[0]);
      const ls = await shoal([...host(1), "node", "ls", "--format", "{{.ID}} {{.ManagerStatus}}"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, new RegExp(`^${ids[0]} Leader$`, "m"));
      assert.match(ls.stdout, new RegExp(`^${ids[1]} Reachable$`, "m"));
    });

    await t.step("a command on a follower is carried out by the leader", async () => {
      const r = await shoal([
        ...host(2),
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "--runtime",
        "process",
        "/bin/sleep",
        "600",
      ]);
      assert.equal(r.code, 0, r.stderr);
      // The follower answered after applying the write: it reads it at once.
      const ls = await shoal([...host(2), "service", "ls", "--format", "{{.Name}}"]);
      assert.equal(ls.stdout.trim(), "web");
      const tasks = await until("3 running", async () => {
        const t = await running(1, "web");
        return t.length === 3 && t;
      }, 30_000);
      assert.deepEqual(new Set(tasks.map((t) => t.NodeID)).size, 3, "one replica per manager");
    });

    await t.step("a worker that dials a follower is sent to the leader", async () => {
      const followerAddr = (await get<ApiNode[]>(1, "/nodes")).find((n) => n.ID === ids[1])!
        .ManagerStatus!.Addr;
      const w = new NodeProcess(
        "w",
        joinArgs({ dataDir: `${dir}/w`, token: workerToken, addr: followerAddr }),
      );
      procs[3] = w;
      const [, wid] = await w.waitFor(/joined a swarm as a worker\.\n\n {2}node {7}([0-9a-z]{25})/);
      await until("the worker is ready", async () => {
        const nodes = await get<ApiNode[]>(0, "/nodes");
        return nodes.find((n) => n.ID === wid)?.Status.State === "ready";
      });
      ids.push(wid);
    });

    await t.step(
      "kill -9 of the leader: another leads, and the service keeps 3 replicas",
      async () => {
        procs[0]!.kill("SIGKILL");
        await procs[0]!.done;
        procs[0] = undefined;
        const newLeader = await until("a new leader", async () => {
          const l = await leaderOf(1).catch(() => undefined);
          return l !== undefined && l !== ids[0] && l;
        }, 30_000);
        assert.ok([ids[1], ids[2]].includes(newLeader));
        // The dead manager's replica is placed again on a live node (managers have no agent
        // heartbeat: the leader marks a manager down when Raft cannot reach it).
        await until("3 replicas on the live nodes", async () => {
          const t = await running(2, "web");
          return t.length === 3 && t.every((task) => task.NodeID !== ids[0]);
        }, 60_000);
        const created = await shoal([...host(1), ...createArgs("after-failover")]);
        assert.equal(created.code, 0, created.stderr);
      },
    );

    await t.step("quorum lost: writes fail with Docker's message, reads still work", async () => {
      procs[2]!.kill("SIGKILL");
      await procs[2]!.done;
      procs[2] = undefined;
      await sleep(500);
      const r = await shoal([...host(1), ...createArgs("no-quorum")]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stderr,
        /The swarm does not have a leader\. It's possible that too few managers are online/,
      );
      const ls = await shoal([...host(1), "service", "ls", "--format", "{{.Name}} {{.Replicas}}"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^web 3\/3$/m);
    });

    await t.step(
      "the killed managers restart: quorum is back, nothing committed is lost",
      async () => {
        for (const i of [0, 2]) {
          const m = start(i, ["start", "--data-dir", `${dir}/m${i + 1}`, "--log-level", "info"]);
          await m.waitFor(/Press Ctrl-C to stop|API/);
        }
        await until("a leader again", () => leaderOf(1).catch(() => undefined), 30_000);
        const r = await until("a write succeeds", async () => {
          const s = await shoal([...host(1), ...createArgs("after-restart")]);
          return s.code === 0 && s;
        }, 30_000);
        assert.ok(r);
        for (const i of [0, 1, 2]) {
          let last = "";
          await until(
            () => `manager ${i + 1} has every service, once (it says: ${last})`,
            async () => {
              const ls = await shoal([...host(i), "service", "ls", "--format", "{{.Name}}"]);
              last = ls.stdout + ls.stderr;
              // "no-quorum" was proposed by a leader that had just lost its quorum: the client was
              // told the outcome is unknown, and Raft may commit it once the quorum is back.
              return ls.stdout.split("\n").filter((n) => n && n !== "no-quorum").sort().join(
                ",",
              ) ===
                "after-failover,after-restart,web";
            },
            30_000,
          );
        }
        // The same log everywhere: each manager's history ends at the same index.
        const heads = await Promise.all([0, 1, 2].map(async (i) => {
          const info = await get<{ Swarm: { Cluster: { Version: { Index: number } } } }>(
            i,
            "/info",
          );
          return info.Swarm.Cluster.Version.Index;
        }));
        assert.ok(heads.every((h) => h > 0), JSON.stringify(heads));
      },
    );

    await t.step("a manager leaves the Raft group cleanly", async () => {
      const r = await shoal(["swarm", "leave", "--data-dir", `${dir}/m3`]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      await procs[2]!.done;
      procs[2] = undefined;
      await until("two reachable managers", async () => {
        const nodes = await get<ApiNode[]>(0, "/nodes");
        return nodes.filter((n) => n.ManagerStatus?.Reachability === "reachable").length === 2 &&
          nodes.find((n) => n.ID === ids[2])?.Status.State === "down";
      }, 30_000);
      // Two managers still make a quorum: writes work.
      const s = await shoal([...host(0), ...createArgs("after-leave")]);
      assert.equal(s.code, 0, s.stderr);
      // As with Docker, the node that left is removed once demoted.
      const rm = await shoal([...host(0), "node", "rm", ids[2]]);
      assert.equal(rm.code, 1);
      assert.match(rm.stderr, /must be demoted to worker before removal/);
      const demote = await shoal([...host(0), "node", "demote", ids[2]]);
      assert.equal(demote.code, 0, demote.stderr);
      await until("the demoted node can be removed", async () => {
        const r = await shoal([...host(0), "node", "rm", ids[2]]);
        return r.code === 0;
      });
      const left = await get<ApiNode[]>(0, "/nodes");
      assert.equal(left.some((n) => n.ID === ids[2]), false);
    });

    await t.step("--force-new-cluster recovers the swarm from one survivor", async () => {
      // Two managers left; kill one: the other alone has no quorum.
      procs[1]!.kill("SIGKILL");
      await procs[1]!.done;
      procs[1] = undefined;
      procs[0]!.kill("SIGTERM");
      await procs[0]!.done;
      procs[0] = undefined;
      const m = start(0, [
        "swarm",
        "init",
        "--force-new-cluster",
        "--data-dir",
        `${dir}/m1`,
        "--log-level",
        "info",
      ]);
      await m.waitFor(/Swarm initialized: current node \(([0-9a-z]{25})\) is now a manager/);
      await until(
        "it leads alone",
        async () => (await leaderOf(0).catch(() => undefined)) === ids[0],
      );
      const ls = await shoal([...host(0), "service", "ls", "--format", "{{.Name}}"]);
      const names = ls.stdout.split("\n").filter((n) => n && n !== "no-quorum").sort();
      assert.deepEqual(names, ["after-failover", "after-leave", "after-restart", "web"]);
      const s = await shoal([...host(0), ...createArgs("after-recovery")]);
      assert.equal(s.code, 0, s.stderr);
    });
  } catch (err) {
    for (const p of procs) {
      if (p) console.error(`--- ${p.name} stderr\n${p.stderr.slice(-4000)}`);
    }
    throw err;
  } finally {
    if (Deno.env.get("SHOAL_TEST_LOGS")) {
      for (const p of procs) if (p) console.error(`--- ${p.name}\n${p.stdout}\n${p.stderr}`);
    }
    // Ctrl-C stops a node cleanly; one that has not stopped after 15 s is a failure, killed.
    const hung: string[] = [];
    await Promise.all(procs.map(async (p) => {
      if (!p) return;
      p.kill("SIGTERM");
      const timer = setTimeout(() => {
        hung.push(`${p.name}:\n${p.stderr.slice(-3000)}`);
        p.kill("SIGKILL");
      }, 15_000);
      await p.done;
      clearTimeout(timer);
    }));
    assert.deepEqual(hung, [], "every node stops on SIGTERM");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
