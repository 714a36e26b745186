/**
 * A real multi-node swarm: `shoal swarm init` and two `shoal swarm join` workers as separate
 * processes on loopback, each with its own data dir and ports, driven by the real `shoal` CLI.
 * Tasks are real processes run by each node's own agent; a worker is killed with SIGKILL and its
 * tasks move; joins with bad tokens and a removed node's certificate are refused.
 */
import assert from "node:assert/strict";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, sleep, until } from "./_processes.ts";

const HEARTBEAT_MS = 500;

interface DockerTask {
  ID: string;
  NodeID: string;
  DesiredState: string;
  Status: { State: string; ContainerStatus?: { PID?: number } };
}

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

Deno.test("one manager and two workers as processes: spread, kill -9, refusals", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-multi-" });
  const [clusterPort, apiPort] = freePorts(2);
  const api = `http://127.0.0.1:${apiPort}`;
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const nodes: NodeProcess[] = [];
  const leftovers: number[] = [];
  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${api}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.status}`);
    return await res.json() as T;
  };
  const tasksOf = (service: string) =>
    get<DockerTask[]>(
      `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { [service]: true } }))}`,
    );
  const running = async (service: string) =>
    (await tasksOf(service)).filter((t) =>
      t.Status.State === "running" && t.DesiredState === "running"
    );
  const nodeLs = async () => {
    const r = await shoal([
      ...host,
      "node",
      "ls",
      "--format",
      "{{.ID}} {{.Status}} [{{.ManagerStatus}}]",
    ]);
    assert.equal(r.code, 0, r.stderr);
    return new Map(
      r.stdout.trim().split("\n").map((l) => {
        const [id, ...rest] = l.split(" ");
        return [id, rest.join(" ")] as const;
      }),
    );
  };

  try {
    let token = "";
    let managerAddr = "";
    let managerId = "";
    const workerIds: string[] = [];
    const dataDirOf = new Map<string, string>();

    await t.step("swarm init prints Docker's text and runs the manager", async () => {
      const m = new NodeProcess(
        "manager",
        initArgs({
          dataDir: `${dir}/m`,
          listen: `127.0.0.1:${clusterPort}`,
          apiPort,
          heartbeat: `${HEARTBEAT_MS}ms`,
        }),
      );
      nodes.push(m);
      await m.waitFor(/Press Ctrl-C to stop/);
      const match = m.stdout.match(
        /^Swarm initialized: current node \(([0-9a-z]{25})\) is now a manager\.\n\nTo add a worker to this swarm, run the following command:\n\n {4}shoal swarm join --token (SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}) (127\.0\.0\.1:\d+)\n\nTo add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions\.\n/,
      );
      assert.ok(match, `unexpected banner:\n${m.stdout}`);
      [, managerId, token, managerAddr] = match;
      assert.equal(managerAddr, `127.0.0.1:${clusterPort}`);
      dataDirOf.set(managerId, `${dir}/m`);
    });

    await t.step("two workers join as separate processes", async () => {
      for (const name of ["w1", "w2"]) {
        const w = new NodeProcess(
          name,
          joinArgs({ dataDir: `${dir}/${name}`, token, addr: managerAddr }),
        );
        nodes.push(w);
        const [, id] = await w.waitFor(
          /This node joined a swarm as a worker\.\n\n {2}node {7}([0-9a-z]{25}), worker/,
        );
        await w.waitFor(/Press Ctrl-C to stop/);
        workerIds.push(id);
        dataDirOf.set(id, `${dir}/${name}`);
      }
      const mode = (await Deno.stat(`${dir}/w1/certificates/swarm-node.key`)).mode! & 0o777;
      assert.equal(mode, 0o600, "the node key is private");
      const ls = await until("3 nodes ready", async () => {
        const ls = await nodeLs();
        return ls.size === 3 && [...ls.values()].every((v) => v.startsWith("Ready")) && ls;
      });
      assert.equal(ls.get(managerId), "Ready [Leader]");
      for (const id of workerIds) {
        assert.equal(ls.get(id), "Ready []", "a worker has no manager status");
      }
      const info = await shoal(["info", "--data-dir", `${dir}/w1`]);
      assert.equal(info.code, 0, info.stderr);
      assert.match(
        info.stdout,
        new RegExp(
          `Swarm: active\n  NodeID: ${
            workerIds[0]
          }\n  Is Manager: false\n  Node Address: 127\\.0\\.0\\.1\n  Manager Addresses:\n   ${managerAddr}\n`,
        ),
      );
      const minfo = await shoal([...host, "info"]);
      assert.match(
        minfo.stdout,
        /Is Manager: true\n {2}ClusterID: \w+\n {2}Managers: 1\n {2}Nodes: 3\n/,
      );
      assert.match(minfo.stdout, /Heartbeat Period: Less than a second/);
    });

    await t.step("6 replicas spread 2/2/2, each a real process of its node's agent", async () => {
      const r = await shoal([
        ...host,
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--replicas",
        "6",
        "--runtime",
        "process",
        "/bin/sleep",
        "600",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const tasks = await until("6 running", async () => {
        const t = await running("spread");
        return t.length === 6 && t;
      });
      const perNode = new Map<string, number>();
      for (const task of tasks) perNode.set(task.NodeID, (perNode.get(task.NodeID) ?? 0) + 1);
      assert.deepEqual([...perNode.values()], [2, 2, 2], JSON.stringify([...perNode]));
      assert.deepEqual([...perNode.keys()].sort(), [managerId, ...workerIds].sort());
      for (const task of tasks) {
        const pid = task.Status.ContainerStatus?.PID ?? 0;
        assert.ok(pid > 1 && alive(pid), `task ${task.ID}: pid ${pid} is alive`);
        // The process runs in its own node's task directory: that node's agent started it.
        const cwd = await Deno.readLink(`/proc/${pid}/cwd`);
        assert.equal(cwd, `${dataDirOf.get(task.NodeID)}/tasks/${task.ID}`);
        if (task.NodeID === workerIds[1]) leftovers.push(pid);
      }
    });

    await t.step("the manager restarts: workers keep their tasks and reconnect", async () => {
      const before = (await running("spread")).filter((t) => t.NodeID !== managerId);
      nodes[0].kill("SIGINT");
      assert.equal((await nodes[0].done).code, 0, nodes[0].stderr);
      await sleep(3 * HEARTBEAT_MS); // the workers redial meanwhile, with backoff
      for (const task of before) assert.ok(alive(task.Status.ContainerStatus!.PID!));
      const m = new NodeProcess("manager (resumed)", ["start", "--data-dir", `${dir}/m`]);
      nodes[0] = m;
      await m.waitFor(/Press Ctrl-C to stop/);
      assert.match(m.stdout, /^Swarm resumed from /);
      assert.match(m.stdout, new RegExp(`API {8}${api}\n`), "the same API address");
      assert.match(m.stdout, new RegExp(`cluster {4}${managerAddr} `), "the same cluster port");
      await until("3 nodes ready again", async () => {
        const ls = await nodeLs();
        return [...ls.values()].every((v) => v.startsWith("Ready"));
      });
      const after = await until("6 running", async () => {
        const t = await running("spread");
        return t.length === 6 && t;
      });
      for (const task of before) {
        const same = after.find((t) => t.ID === task.ID);
        assert.ok(same, `task ${task.ID} on a worker kept running`);
        assert.equal(same.Status.ContainerStatus?.PID, task.Status.ContainerStatus?.PID);
      }
      for (const task of after) {
        if (task.NodeID === workerIds[1]) leftovers.push(task.Status.ContainerStatus!.PID!);
      }
    });

    await t.step("kill -9 a worker: down within 3 heartbeats, its tasks rescheduled", async () => {
      const victim = workerIds[1];
      nodes[2].kill("SIGKILL");
      await nodes[2].done;
      const t0 = Date.now();
      await until("the worker down", async () => {
        const n = await get<{ Status: { State: string } }>(`/nodes/${victim}`);
        return n.Status.State === "down";
      });
      const took = Date.now() - t0;
      // Three periods of 500 ms, plus the time its last heartbeat was already waiting.
      assert.ok(took < 3 * HEARTBEAT_MS + 2_500, `down after ${took} ms`);
      const ls = await nodeLs();
      assert.equal(ls.get(victim), "Down []");
      const tasks = await until("6 running again, on the others", async () => {
        const t = await running("spread");
        return t.length === 6 && t.every((x) => x.NodeID !== victim) && t;
      });
      for (const task of tasks) assert.ok(alive(task.Status.ContainerStatus!.PID!));
    });

    await t.step("a wrong token and a rotated token are refused", async () => {
      const digest = token.split("-")[2];
      const wrong = await shoal(
        joinArgs({
          dataDir: `${dir}/x`,
          token: `SWMTKN-1-${digest}-${"0".repeat(25)}`,
          addr: managerAddr,
        }),
      );
      assert.equal(wrong.code, 1);
      assert.match(
        wrong.stderr,
        /^Error response from daemon: .*A valid join token is necessary to join this cluster/,
      );
      const rotated = await shoal([...host, "swarm", "join-token", "--rotate", "-q", "worker"]);
      assert.equal(rotated.code, 0, rotated.stderr);
      const fresh = rotated.stdout.trim();
      assert.notEqual(fresh, token);
      const old = await shoal(joinArgs({ dataDir: `${dir}/x`, token, addr: managerAddr }));
      assert.equal(old.code, 1);
      assert.match(old.stderr, /A valid join token is necessary.*it may have been rotated/);
      // A rotated manager token is refused the same way (joining as a manager works: see
      // managers_test.ts).
      const manager = await shoal([...host, "swarm", "join-token", "-q", "manager"]);
      const rotatedManager = await shoal([
        ...host,
        "swarm",
        "join-token",
        "-q",
        "--rotate",
        "manager",
      ]);
      assert.equal(rotatedManager.code, 0, rotatedManager.stderr);
      assert.notEqual(rotatedManager.stdout.trim(), manager.stdout.trim());
      const asManager = await shoal(
        joinArgs({ dataDir: `${dir}/x`, token: manager.stdout.trim(), addr: managerAddr }),
      );
      assert.equal(asManager.code, 1);
      assert.match(asManager.stderr, /A valid join token is necessary.*it may have been rotated/);
      assert.equal((await nodeLs()).size, 3, "no node registered by a refused join");
      const banner = await shoal([...host, "swarm", "join-token", "worker"]);
      assert.match(banner.stdout, new RegExp(`shoal swarm join --token ${fresh} ${managerAddr}`));
    });

    await t.step("a removed worker's certificate no longer opens a session", async () => {
      const victim = workerIds[1];
      const rm = await shoal([...host, "node", "rm", "--force", victim]);
      assert.equal(rm.code, 0, rm.stderr);
      const again = await shoal(["start", "--data-dir", `${dir}/w2`]);
      assert.equal(again.code, 1, again.stdout + again.stderr);
      assert.match(again.stderr, /not a member of this swarm: it was removed/);
      const m = nodes[0];
      await until(
        "logged by the manager",
        () =>
          Promise.resolve(
            /ended the session of node \w+ .*not a member of this swarm/.test(m.stderr),
          ),
      );
    });

    await t.step("a worker leaves; the manager refuses to leave without --force", async () => {
      const r = await shoal(["swarm", "leave", "--data-dir", `${dir}/w1`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "Node left the swarm.\n");
      const status = await nodes[1].done;
      assert.equal(status.code, 0);
      assert.match(nodes[1].stdout, /Node left the swarm\.\n$/);
      const n = await get<{ Status: { State: string; Message: string } }>(`/nodes/${workerIds[0]}`);
      assert.deepEqual([n.Status.State, n.Status.Message], ["down", "node left the swarm"]);
      await assert.rejects(Deno.stat(`${dir}/w1/node.json`), Deno.errors.NotFound);
      const m = await shoal(["swarm", "leave", "--data-dir", `${dir}/m`]);
      assert.equal(m.code, 1);
      assert.match(m.stderr, /participating as a manager.*Use `--force` to ignore this message/);
      await until("6 running on the manager", async () => (await running("spread")).length === 6);
    });

    await t.step("the manager stops on Ctrl-C", async () => {
      nodes[0].kill("SIGINT");
      const status = await nodes[0].done;
      assert.equal(status.code, 0, nodes[0].stderr);
      assert.match(nodes[0].stdout, /SIGINT: stopping\.\.\.\nStopped\./);
    });
  } finally {
    for (const n of nodes) n.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.done));
    // What the SIGKILLed worker left running (its agent never came back to stop it).
    for (const pid of leftovers) {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});
