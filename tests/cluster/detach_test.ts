/**
 * `--detach` with real processes: `swarm init`, `swarm join` and `start` return once their node
 * is up in the background (a pid file and a log in its data dir) and print what the foreground
 * prints; a failing join says why; `swarm leave`, `shoal stop` and SIGINT stop detached nodes.
 */
import assert from "node:assert/strict";
import { freePorts, shoal, sleep, until } from "./_processes.ts";

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

async function pidOf(dataDir: string): Promise<number | undefined> {
  try {
    return Number((await Deno.readTextFile(`${dataDir}/shoal.pid`)).trim());
  } catch {
    return undefined;
  }
}

Deno.test("--detach: init, join and start run in the background; leave and stop end them", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-detach-" });
  const [clusterPort, apiPort] = freePorts(2);
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const pids: number[] = [];
  try {
    let token = "";
    let managerAddr = "";
    await t.step("swarm init --detach prints the banner and returns with the node up", async () => {
      const started = Date.now();
      const r = await shoal([
        "swarm",
        "init",
        "--detach",
        "--data-dir",
        `${dir}/m`,
        "--listen-addr",
        `127.0.0.1:${clusterPort}`,
        "--api-addr",
        `127.0.0.1:${apiPort}`,
        "--dispatcher-heartbeat",
        "500ms",
        "--sync",
        "off",
      ]);
      assert.equal(r.code, 0, r.stderr);
      const m = r.stdout.match(
        /^Swarm initialized: current node \(([0-9a-z]{25})\) is now a manager\.\n\nTo add a worker to this swarm, run the following command:\n\n {4}shoal swarm join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)\n[\s\S]*\n {2}data dir {3}\S+\n\nThe node runs in the background \(pid (\d+), log (\S+\/shoal\.log)\)\.\nStop it with "shoal stop --data-dir \S+"\.\n$/,
      );
      assert.ok(m, `unexpected output:\n${r.stdout}`);
      assert.doesNotMatch(r.stdout, /Press Ctrl-C|time="/);
      [, , token, managerAddr] = m;
      const pid = Number(m[4]);
      pids.push(pid);
      assert.equal(await pidOf(`${dir}/m`), pid);
      assert.ok(alive(pid));
      assert.match(await Deno.readTextFile(m[5]), /Press Ctrl-C to stop\./);
      assert.ok(Date.now() - started < 60_000);
      const ls = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
      assert.equal(ls.stdout, "Ready\n", "the API answers once the command returned");
    });

    let workerPid = 0;
    await t.step("swarm join --detach: the worker runs in the background", async () => {
      const r = await shoal([
        "swarm",
        "join",
        "--detach",
        "--token",
        token,
        "--data-dir",
        `${dir}/w`,
        managerAddr,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^This node joined a swarm as a worker\.\n\n {2}node {7}[0-9a-z]{25}, worker\n[\s\S]*The node runs in the background \(pid (\d+), /,
      );
      workerPid = Number(r.stdout.match(/\(pid (\d+),/)![1]);
      pids.push(workerPid);
      assert.equal(await pidOf(`${dir}/w`), workerPid);
      await until("2 nodes ready", async () => {
        const ls = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
        return ls.stdout === "Ready\nReady\n";
      });
    });

    await t.step("a join that fails says why and leaves no pid file", async () => {
      const bad = token.replace(/-[0-9a-z]{25}$/, "-" + "0".repeat(25));
      const r = await shoal([
        "swarm",
        "join",
        "--detach",
        "--token",
        bad,
        "--data-dir",
        `${dir}/bad`,
        managerAddr,
      ]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /A valid join token is necessary to join this cluster/);
      assert.match(
        r.stderr,
        /the node did not start \(exit code 1\); its output is in \S+shoal\.log/,
      );
      assert.equal(await pidOf(`${dir}/bad`), undefined);
    });

    await t.step("swarm leave stops the detached worker", async () => {
      const r = await shoal(["swarm", "leave", "--data-dir", `${dir}/w`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "Node left the swarm.\n");
      await until("the worker process gone", () => Promise.resolve(!alive(workerPid)));
      assert.equal(await pidOf(`${dir}/w`), undefined, "the pid file is removed");
    });

    await t.step(
      "shoal stop stops the manager; start --detach resumes it; SIGINT stops it",
      async () => {
        const r = await shoal(["stop", "--data-dir", `${dir}/m`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "Node stopped.\n");
        await until("the manager process gone", () => Promise.resolve(!alive(pids[0])));
        assert.equal(await pidOf(`${dir}/m`), undefined);
        assert.match(await Deno.readTextFile(`${dir}/m/shoal.log`), /shoal stop: stopping\.\.\./);
        const again = await shoal(["stop", "--data-dir", `${dir}/m`]);
        assert.notEqual(again.code, 0);
        assert.match(again.stderr, /no Shoal node is running with data dir/);

        const s = await shoal(["start", "--detach", "--data-dir", `${dir}/m`]);
        assert.equal(s.code, 0, s.stderr);
        assert.match(s.stdout, /^Swarm resumed from \S+\.\n\n {2}swarm {6}[0-9a-z]{25}\n/);
        const pid = Number(s.stdout.match(/\(pid (\d+),/)![1]);
        pids.push(pid);
        const ls = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
        assert.equal(ls.code, 0, ls.stderr);
        Deno.kill(pid, "SIGINT");
        await until("the resumed manager gone", () => Promise.resolve(!alive(pid)));
        assert.equal(await pidOf(`${dir}/m`), undefined);
      },
    );
  } finally {
    for (const pid of pids) {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    await sleep(200);
    await Deno.remove(dir, { recursive: true });
  }
});
