/**
 * An agent restart on a node that runs containers: `shoal start` (a real process, with the test
 * dockerd of tools/docker_setup.sh) is killed with SIGKILL while its containers run, then started
 * again on the same data dir. The new agent adopts the containers of the tasks it should still
 * run (same containers, same tasks, nothing restarted), reports a job's container that completed
 * while it was away as complete, and removes a container of its node that belongs to no task.
 */
import assert from "node:assert/strict";
import { DockerApi } from "../../actors/agent/docker_api.ts";

const root = new URL("../../", import.meta.url).pathname;
const IMAGE = "shoal-test/busybox:1";

const docker = new DockerApi();
const haveDocker = await docker.ping(AbortSignal.timeout(2_000)).then(() => true, () => false);

interface Started {
  child: Deno.ChildProcess;
  api: string;
  output: Promise<void>;
}

async function start(dataDir: string): Promise<Started> {
  const child = new Deno.Command(`${root}shoal`, {
    args: ["start", "--data-dir", dataDir, "--listen-addr", "127.0.0.1:0", "--sync", "off"],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: Deno.env.get("SHOAL_TEST_STDERR") ? "inherit" : "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  const deadline = Date.now() + 30_000;
  while (!banner.includes("Press Ctrl-C")) {
    if (Date.now() > deadline) throw new Error(`no banner in 30 s; got:\n${banner}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`shoal start exited early; printed:\n${banner}`);
    banner += value;
  }
  const api = /API\s+(http:\/\/\S+)/.exec(banner)?.[1];
  assert.ok(api, `no API address in:\n${banner}`);
  const output = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { child, api, output };
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 40_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface DockerTask {
  ID: string;
  NodeID: string;
  DesiredState: string;
  Status: { State: string; Err?: string; ContainerStatus?: { ContainerID?: string } };
}

Deno.test({
  name: "after an agent restart, containers of tasks still to run are adopted, others removed",
  ignore: !haveDocker,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-adopt-" });
    let node = await start(dataDir);
    let nodeId = "";
    let stray = "";
    const tasksOf = async (api: string, service: string): Promise<DockerTask[]> => {
      const filters = encodeURIComponent(JSON.stringify({ service: { [service]: true } }));
      return await (await fetch(`${api}/tasks?filters=${filters}`)).json();
    };
    const create = async (api: string, body: unknown) => {
      const res = await fetch(`${api}/v1.41/services/create`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 201, await res.clone().text());
    };
    try {
      nodeId = (await (await fetch(`${node.api}/info`)).json()).Swarm.NodeID;
      await create(node.api, {
        Name: "keep",
        TaskTemplate: { ContainerSpec: { Image: IMAGE, Command: ["sleep", "600"] } },
        Mode: { Replicated: { Replicas: 2 } },
      });
      // A job whose container ends while the agent is away: its completion must not be lost.
      await create(node.api, {
        Name: "later",
        TaskTemplate: { ContainerSpec: { Image: IMAGE, Command: ["sh", "-c", "sleep 3"] } },
        Mode: { ReplicatedJob: { MaxConcurrent: 1, TotalCompletions: 1 } },
      });
      const before = await until("3 running containers", async () => {
        const keep = (await tasksOf(node.api, "keep")).filter((t) => t.Status.State === "running");
        const later = (await tasksOf(node.api, "later")).filter((t) =>
          t.Status.State === "running"
        );
        return keep.length === 2 && later.length === 1 && [...keep, ...later];
      });
      const containerOf = new Map(before.map((t) => [t.ID, t.Status.ContainerStatus?.ContainerID]));
      assert.ok([...containerOf.values()].every((id) => id), "each task reports its container");

      // The agent dies without stopping anything.
      node.child.kill("SIGKILL");
      await node.child.status;
      await node.output.catch(() => {});

      // A container of this node that belongs to no task Shoal knows.
      stray = (await docker.createContainer("shoal-stray-" + nodeId.slice(0, 8), {
        Image: IMAGE,
        Cmd: ["sleep", "600"],
        Labels: { "io.shoal.node.id": nodeId, "io.shoal.task.id": "zzzzzzzzzzzzzzzzzzzzzzzzz" },
      })).Id;
      await docker.startContainer(stray);
      await new Promise((r) => setTimeout(r, 3_500)); // the job's container finishes meanwhile

      node = await start(dataDir);
      const done = await until("the job's completion", async () => {
        const later = await tasksOf(node.api, "later");
        return later.length === 1 && later[0].Status.State === "complete" && later;
      });
      assert.ok(containerOf.has(done[0].ID), "the same task, not a new one, completed");
      const keep = await until("keep still running", async () => {
        const t = await tasksOf(node.api, "keep");
        return t.filter((x) => x.Status.State === "running").length === 2 && t;
      });
      assert.equal(keep.length, 2, "no task was restarted or added");
      for (const t of keep) {
        assert.ok(containerOf.has(t.ID), `task ${t.ID} is one of the tasks from before`);
        const info = await docker.inspectContainer(containerOf.get(t.ID)!);
        assert.ok(
          info?.State.Running,
          `container of ${t.ID} was adopted, still running: ${JSON.stringify(info?.State)} ${
            JSON.stringify(t)
          }`,
        );
      }
      await until(
        "the stray container removed",
        async () => (await docker.inspectContainer(stray)) === undefined,
      );
      assert.equal((await tasksOf(node.api, "later")).length, 1, "the job was not run again");
    } finally {
      node.child.kill("SIGINT");
      await node.child.status;
      await node.output.catch(() => {});
      const left = await docker.listContainers({
        labels: { "io.shoal.node.id": nodeId },
        all: true,
      }).catch(() => []);
      for (const c of left) await docker.removeContainer(c.Id, { force: true }).catch(() => {});
      if (stray) await docker.removeContainer(stray, { force: true }).catch(() => {});
      docker.close();
    }
  },
});
