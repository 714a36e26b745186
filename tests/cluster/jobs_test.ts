/**
 * Jobs on a real swarm of processes: `shoal swarm init` and a `shoal swarm join` worker, each
 * running its tasks as real processes. A replicated job of process tasks runs to its total of
 * completions, never more at once than max-concurrent; a global job runs once on each node; a
 * failing task is retried under the restart policy; `service update --force` runs the job again.
 */
import assert from "node:assert/strict";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, until } from "./_processes.ts";

interface DockerTask {
  ID: string;
  NodeID: string;
  Slot?: number;
  DesiredState: string;
  JobIteration?: { Index?: number };
  Status: { State: string };
}

Deno.test("jobs of process tasks run to completion on a manager and a worker", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-jobs-" });
  const [clusterPort, apiPort] = freePorts(2);
  const api = `http://127.0.0.1:${apiPort}`;
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const nodes: NodeProcess[] = [];
  const tasksOf = async (service: string): Promise<DockerTask[]> => {
    const filters = encodeURIComponent(JSON.stringify({ service: { [service]: true } }));
    const res = await fetch(`${api}/tasks?filters=${filters}`);
    assert.equal(res.status, 200);
    return await res.json();
  };
  const lsRow = async (name: string) => {
    const r = await shoal([...host, "service", "ls", "--filter", `name=${name}`]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trimEnd().split("\n")[1].trim().split(/\s{2,}/);
  };
  try {
    const m = new NodeProcess(
      "manager",
      initArgs({
        dataDir: `${dir}/m`,
        listen: `127.0.0.1:${clusterPort}`,
        apiPort,
        heartbeat: "500ms",
      }),
    );
    nodes.push(m);
    const [, token, addr] = await m.waitFor(/--token (SWMTKN-\S+) (127\.0\.0\.1:\d+)/);
    const w = new NodeProcess("worker", joinArgs({ dataDir: `${dir}/w`, token, addr }));
    nodes.push(w);
    await w.waitFor(/Press Ctrl-C to stop/);
    await until("2 ready nodes", async () => {
      const r = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
      const lines = r.stdout.trim().split("\n");
      return lines.length === 2 && lines.every((l) => l === "Ready");
    });

    // Each task appends "start" and "end" lines to one file: the file shows how many ran at once.
    const trace = `${dir}/trace`;
    await Deno.writeTextFile(trace, "");
    const script = `echo start >> ${trace}; sleep 0.3; echo end >> ${trace}`;
    const created = await shoal([
      ...host,
      "service",
      "create",
      "--detach",
      "--name",
      "batch",
      "--mode",
      "replicated-job",
      "--replicas",
      "6",
      "--max-concurrent",
      "2",
      "--runtime",
      "process",
      "/bin/sh",
      "-c",
      script,
    ]);
    assert.equal(created.code, 0, created.stderr);
    await until("6 completions", async () => (await lsRow("batch"))[3] === "0/0 (6/6 completed)");
    const tasks = await tasksOf("batch");
    assert.equal(tasks.length, 6, "one task per completion, none restarted");
    assert.ok(tasks.every((t) => t.Status.State === "complete" && t.DesiredState === "complete"));
    assert.deepEqual(tasks.map((t) => t.Slot ?? 0).sort(), [0, 1, 2, 3, 4, 5], "0-based slots");
    assert.equal(new Set(tasks.map((t) => t.NodeID)).size, 2, "spread over both nodes");
    const lines = (await Deno.readTextFile(trace)).trim().split("\n");
    assert.equal(lines.filter((l) => l === "start").length, 6);
    let atOnce = 0;
    let most = 0;
    for (const l of lines) {
      atOnce += l === "start" ? 1 : -1;
      most = Math.max(most, atOnce);
    }
    assert.ok(most <= 2, `at most 2 ran at once (max-concurrent), saw ${most}`);

    // Re-run with --force: a new job iteration, 6 more completions.
    const forced = await shoal([...host, "service", "update", "--detach", "--force", "batch"]);
    assert.equal(forced.code, 0, forced.stderr);
    await until("the second run", async () => {
      const t = await tasksOf("batch");
      return t.filter((x) => x.JobIteration?.Index === 1 && x.Status.State === "complete")
        .length === 6;
    });

    // A global job whose first try fails (later ones succeed): the failure is retried in place.
    const flag = `${dir}/failed-once`;
    const once = await shoal([
      ...host,
      "service",
      "create",
      "--detach",
      "--name",
      "setup",
      "--mode",
      "global-job",
      "--restart-delay",
      "100ms",
      "--runtime",
      "process",
      "/bin/sh",
      "-c",
      `test -e ${flag} && exit 0; touch ${flag}; exit 3`,
    ]);
    assert.equal(once.code, 0, once.stderr);
    await until("global job done", async () => (await lsRow("setup"))[3] === "0/0 (2/2 completed)");
    const setup = await tasksOf("setup");
    assert.equal(
      new Set(setup.filter((t) => t.Status.State === "complete").map((t) => t.NodeID)).size,
      2,
    );
    assert.ok(setup.some((t) => t.Status.State === "failed"), "the first try failed");
    assert.equal((await lsRow("setup"))[2], "global job");
  } finally {
    for (const n of nodes.reverse()) await n.stop();
  }
});
