/**
 * `service logs` with several managers, as separate `shoal` processes: a leader, a follower
 * manager and a worker each run one task of a service, and the real `shoal service logs` against
 * EITHER manager's API shows all three tasks' output. The follower reaches the worker's task
 * through the leader (which holds the worker's session) and the leader's own task by asking the
 * leader; the leader reaches the follower's own task by asking the follower. Following works
 * across those hops too.
 */
import assert from "node:assert/strict";
import {
  freePorts,
  initArgs,
  initOutput,
  joinArgs,
  NodeProcess,
  shoal,
  until,
} from "./_processes.ts";

interface ApiNode {
  ID: string;
  Status: { State: string };
  ManagerStatus?: { Leader?: boolean; Reachability: string };
}
interface ApiTask {
  ID: string;
  NodeID: string;
  DesiredState: string;
  Status: { State: string };
}

Deno.test({
  name: "service logs on any manager shows the tasks of the leader, a follower and a worker",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-logs-managers-" });
  const api = freePorts(2);
  const host = (i: number) => ["--host", `tcp://127.0.0.1:${api[i]}`];
  const get = async <T>(i: number, path: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${api[i]}${path}`);
    const body = await res.json();
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body as T;
  };
  const procs: NodeProcess[] = [];
  try {
    const ids: string[] = []; // leader, follower, worker
    /** The task of each node (by node id): its id. */
    const taskOf = new Map<string, string>();

    await t.step("a leader, a follower manager and a worker", async () => {
      const m1 = new NodeProcess(
        "m1",
        initArgs({
          dataDir: `${dir}/m1`,
          listen: "127.0.0.1:0",
          apiPort: api[0],
          heartbeat: "500ms",
        }),
      );
      procs.push(m1);
      const { id, token: workerToken, addr } = await initOutput(m1);
      ids.push(id);
      await m1.waitFor(/Press Ctrl-C to stop/);
      const mt = await shoal([...host(0), "swarm", "join-token", "-q", "manager"]);
      assert.equal(mt.code, 0, mt.stderr);
      const m2 = new NodeProcess(
        "m2",
        joinArgs({
          dataDir: `${dir}/m2`,
          token: mt.stdout.trim(),
          addr,
          extra: ["--listen-addr", "127.0.0.1:0", "--api-addr", `127.0.0.1:${api[1]}`],
        }),
      );
      procs.push(m2);
      const [, m2id] = await m2.waitFor(
        /This node joined a swarm as a manager\.\n\n {2}node {7}([0-9a-z]{25}), manager/,
      );
      ids.push(m2id);
      await m2.waitFor(/Press Ctrl-C to stop/);
      const w = new NodeProcess(
        "w",
        joinArgs({ dataDir: `${dir}/w`, token: workerToken, addr }),
      );
      procs.push(w);
      const [, wid] = await w.waitFor(/joined a swarm as a worker\.\n\n {2}node {7}([0-9a-z]{25})/);
      ids.push(wid);
      for (const i of [0, 1]) {
        await until(`manager ${i + 1} sees 3 ready nodes, m1 leading`, async () => {
          const nodes = await get<ApiNode[]>(i, "/nodes").catch(() => []);
          return nodes.length === 3 && nodes.every((n) => n.Status.State === "ready") &&
            nodes.find((n) => n.ManagerStatus?.Leader)?.ID === ids[0];
        });
      }
    });

    await t.step("one task on each node", async () => {
      const r = await shoal([
        ...host(1),
        "service",
        "create",
        "--detach",
        "--name",
        "hello",
        "--replicas",
        "3",
        "--replicas-max-per-node",
        "1",
        "--runtime",
        "process",
        "/bin/sh",
        "-c",
        "echo hello-$SHOAL_TASK_ID; i=0; while true; do i=$((i+1)); echo tick-$i-$SHOAL_TASK_ID; sleep 0.3; done",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const tasks = await until("3 running tasks", async () => {
        const all = await get<ApiTask[]>(0, "/tasks");
        const up = all.filter((x) => x.Status.State === "running" && x.DesiredState === "running");
        return up.length === 3 && up;
      });
      for (const task of tasks) taskOf.set(task.NodeID, task.ID);
      assert.deepEqual(new Set(taskOf.keys()), new Set(ids), "one task on each node");
    });

    for (const [i, name] of [[0, "the leader"], [1, "the follower"]] as const) {
      await t.step(`service logs on ${name} shows all three tasks`, async () => {
        let last = "";
        await until(() => `every task's line on ${name}:\n${last}`, async () => {
          const r = await shoal([...host(i), "service", "logs", "--no-resolve", "hello"]);
          last = `${r.stdout}${r.stderr}`;
          if (r.code !== 0) return false;
          return ids.every((node) =>
            new RegExp(`@${node} +\\| hello-${taskOf.get(node)}$`, "m").test(r.stdout)
          );
        }, 20_000);
        assert.doesNotMatch(last, /cannot be read|failed/);
      });
    }

    await t.step(
      "service logs -f on the follower follows the worker's and the leader's tasks",
      async () => {
        const follower = new Deno.Command(`${new URL("../../", import.meta.url).pathname}shoal`, {
          args: [...host(1), "service", "logs", "-f", "--raw", "--tail", "0", "hello"],
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "null",
        }).spawn();
        const reader = follower.stdout.pipeThrough(new TextDecoderStream()).getReader();
        let followed = "";
        const wanted = [ids[0], ids[2]].map((node) => `-${taskOf.get(node)}\n`);
        // Past the deadline the CLI is stopped: its output ends, and the test fails below.
        const timer = setTimeout(() => follower.kill("SIGTERM"), 20_000);
        try {
          const seen = () => wanted.every((w) => new RegExp(`^tick-\\d+${w}`, "m").test(followed));
          while (!seen()) {
            const { value, done } = await reader.read();
            assert.ok(!done, `follow showed too little:\n${followed}`);
            followed += value;
          }
          assert.doesNotMatch(followed, /^hello-/m, "--tail 0: only lines written after");
        } finally {
          clearTimeout(timer);
          reader.releaseLock();
          follower.kill("SIGTERM");
          await follower.status;
          await follower.stdout.cancel().catch(() => {});
        }
      },
    );
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
