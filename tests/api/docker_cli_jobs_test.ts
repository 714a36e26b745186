/**
 * Jobs through the real `docker` CLI against a real Shoal node that runs containers on the test
 * dockerd (tools/docker_setup.sh): `docker service create --mode replicated-job` waits, as it
 * does against Docker, until the job's tasks completed, and `service ls`/`ps`/`inspect` print
 * what Docker prints for jobs.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { DockerApi } from "../../actors/agent/docker_api.ts";

const DOCKER = "/usr/local/bin/docker";
const IMAGE = "shoal-test/busybox:1";
const haveDocker = await Deno.stat(DOCKER).then(() => true, () => false);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

Deno.test({
  name: "docker service create --mode replicated-job runs the job to completion on Shoal",
  ignore: !haveDocker,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-docker-jobs-" });
    const configDir = await Deno.makeTempDir({ prefix: "shoal-docker-config-" });
    const node = await startNode({ dataDir, listenAddr: "127.0.0.1:0", synchronous: "off" });
    const engine = new DockerApi();
    const host = node.apiUrl.replace("http://", "tcp://");
    const docker = async (args: string[]): Promise<Run> => {
      const out = await new Deno.Command(DOCKER, {
        args: ["-H", host, ...args],
        env: { DOCKER_CONFIG: configDir, DOCKER_CLI_HINTS: "false" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    const ok = async (args: string[]): Promise<string> => {
      const r = await docker(args);
      assert.equal(r.code, 0, `docker ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
      return r.stdout;
    };
    const rows = (out: string) => out.trimEnd().split("\n").map((l) => l.trim().split(/\s{2,}/));
    try {
      const self = node.manager.state.nodes.get(node.nodeId)!;
      assert.ok(self.description.runtimes.includes("container"), "the test dockerd answers");
      // Not detached: the CLI follows the job's progress and returns once 3 of 3 completed.
      const created = await docker([
        "service",
        "create",
        "--name",
        "countdown",
        "--mode",
        "replicated-job",
        "--replicas",
        "3",
        "--max-concurrent",
        "2",
        IMAGE,
        "sh",
        "-c",
        "sleep 0.2",
      ]);
      assert.equal(created.code, 0, created.stderr + created.stdout);
      const progress = created.stdout + created.stderr;
      assert.match(progress, /active tasks: 2 out of 2 tasks/, "two at once (max-concurrent)");
      assert.doesNotMatch(progress, /active tasks: 3 out of/, "never three at once");
      assert.match(progress, /job complete/);

      const ls = rows(await ok(["service", "ls", "--filter", "name=countdown"]));
      assert.deepEqual(ls[1].slice(1, 4), ["countdown", "replicated job", "0/0 (3/3 completed)"]);

      const inspect = JSON.parse(await ok(["service", "inspect", "countdown"]))[0];
      assert.deepEqual(inspect.Spec.Mode, {
        ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 3 },
      });
      // Go drops a zero Index (omitempty): the first run shows as `"JobIteration": {}`.
      assert.deepEqual(inspect.JobStatus.JobIteration, {});
      assert.ok(Date.parse(inspect.JobStatus.LastExecution) > 0);

      const ps = rows(await ok(["service", "ps", "countdown"]));
      assert.equal(ps.length, 4, "three tasks, each completed once");
      for (const row of ps.slice(1)) {
        assert.equal(row[4], "Complete", `desired state of ${row.join(" | ")}`);
        assert.match(row[5], /^Complete /);
      }

      // A forced update re-runs the job: a new iteration, three more completions.
      const rerun = await docker(["service", "update", "--force", "countdown"]);
      assert.equal(rerun.code, 0, rerun.stderr + rerun.stdout);
      const again = JSON.parse(await ok(["service", "inspect", "countdown"]))[0];
      assert.equal(again.JobStatus.JobIteration.Index, 1);
      const ls2 = rows(await ok(["service", "ls", "--filter", "name=countdown"]));
      assert.equal(ls2[1][3], "0/0 (3/3 completed)");

      // A global job, detached: one task per node (this node), run to completion.
      await ok([
        "service",
        "create",
        "--detach",
        "--name",
        "once",
        "--mode",
        "global-job",
        IMAGE,
        "true",
      ]);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const row = rows(await ok(["service", "ls", "--filter", "name=once"]))[1];
        if (row[3] === "0/0 (1/1 completed)") break;
        assert.ok(Date.now() < deadline, `global job did not complete: ${row.join(" | ")}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(rows(await ok(["service", "ls", "--filter", "name=once"]))[1][2], "global job");
      await ok(["service", "rm", "countdown", "once"]);
    } finally {
      await node.close();
      // Leave no container of this node behind.
      const left = await engine.listContainers({
        labels: { "io.shoal.node.id": node.nodeId },
        all: true,
      }).catch(() => []);
      for (const c of left) await engine.removeContainer(c.Id, { force: true }).catch(() => {});
      engine.close();
    }
  },
});
