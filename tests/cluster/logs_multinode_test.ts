/**
 * `service logs` across nodes: a manager (`shoal swarm init`) and a worker (`shoal swarm join`) as
 * separate processes; a task placed on the worker writes lines there, and the real `shoal service
 * logs` against the manager shows them (the manager asks the worker's agent over its session and
 * streams them back), following new lines as they are written.
 */
import assert from "node:assert/strict";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, sleep, until } from "./_processes.ts";

Deno.test("service logs: a worker's task output reaches shoal service logs on the manager", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-logs-multi-" });
  const [clusterPort, apiPort] = freePorts(2);
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const nodes: NodeProcess[] = [];
  try {
    const manager = new NodeProcess(
      "manager",
      initArgs({
        dataDir: `${dir}/m`,
        listen: `127.0.0.1:${clusterPort}`,
        apiPort,
        heartbeat: "500ms",
      }),
    );
    nodes.push(manager);
    const [, managerId, token] = await manager.waitFor(
      /current node \(([0-9a-z]{25})\)[\s\S]*--token (SWMTKN-\S+) /,
    );
    await manager.waitFor(/Press Ctrl-C to stop/);
    const worker = new NodeProcess(
      "worker",
      joinArgs({ dataDir: `${dir}/w`, token, addr: `127.0.0.1:${clusterPort}` }),
    );
    nodes.push(worker);
    const [, workerId] = await worker.waitFor(/node {7}([0-9a-z]{25}), worker/);
    await worker.waitFor(/Press Ctrl-C to stop/);

    const create = await shoal([
      ...host,
      "service",
      "create",
      "--name",
      "talk",
      "--constraint",
      "node.role==worker",
      "--runtime",
      "process",
      "/bin/sh",
      "-c",
      'echo "from the worker"; echo "to stderr" >&2; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.3; done',
    ]);
    assert.equal(create.code, 0, create.stderr);

    // The lines are on the worker; the manager fetches them over the worker's session.
    const deadline = Date.now() + 20_000;
    let out = "";
    for (;;) {
      const r = await shoal([...host, "service", "logs", "--no-resolve", "talk"]);
      assert.equal(r.code, 0, r.stderr);
      out = r.stdout;
      if (out.includes("tick 2")) {
        assert.match(
          r.stderr,
          new RegExp(`^[0-9a-z]{25}\\.1\\.[0-9a-z]{12}@${workerId}    \\| to stderr\\n`),
        );
        break;
      }
      assert.ok(Date.now() < deadline, `no output from the worker's task yet:\n${out}`);
      await sleep(200);
    }
    const lines = out.trimEnd().split("\n");
    const serviceId = (await shoal([...host, "service", "inspect", "-f", "{{.ID}}", "talk"])).stdout
      .trim();
    assert.match(
      lines[0],
      new RegExp(`^${serviceId}\\.1\\.[0-9a-z]{12}@${workerId}    \\| from the worker$`),
    );
    assert.ok(!out.includes(`@${managerId}`), "no line comes from the manager's node");

    const tail = await shoal([...host, "service", "logs", "--raw", "--tail", "1", "talk"]);
    assert.match(tail.stdout, /^tick \d+\n$/);

    // Following: new lines arrive from the worker as they are written.
    const follower = new NodeProcess("follow", [
      ...host,
      "service",
      "logs",
      "-f",
      "--raw",
      "--tail",
      "0",
      "talk",
    ]);
    try {
      await until(
        () => `three lines followed (so far:\n${follower.stdout})`,
        () => Promise.resolve((follower.stdout.match(/tick \d+\n/g) ?? []).length >= 3),
        20_000,
      );
      const followed = follower.stdout;
      const ticks = [...followed.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
      assert.ok(ticks.length >= 3, followed);
      for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1] + 1);
      const before = Number(/tick (\d+)/.exec(tail.stdout)![1]);
      assert.ok(ticks[0] > before, "only lines written after the follow began");
    } finally {
      await follower.stop();
    }
  } finally {
    for (const n of nodes.reverse()) await n.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
