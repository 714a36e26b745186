/**
 * A single-node swarm running container tasks on the real dockerd that .ci/run starts
 * (tools/docker_setup.sh), with the image it builds.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { ServiceSpec, TaskState } from "../../events/schema.ts";
import { DockerApi } from "../../actors/agent/docker_api.ts";
import type { Manager } from "../../actors/manager.ts";

const IMAGE = "shoal-test/busybox:1";

async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | false>,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function running(m: Manager, name: string) {
  const svc = m.state.serviceByName(name);
  if (!svc) return [];
  return [...m.state.tasksOf(svc.id)].filter((t) =>
    t.status.state === TaskState.running && t.desiredState === TaskState.running
  );
}

Deno.test("a single node runs container tasks on dockerd, and removes them when scaled down", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-docker-node-" });
  const node = await startNode({ dataDir, listenAddr: "127.0.0.1:0", synchronous: "normal" });
  const docker = new DockerApi();
  const m = node.manager;
  try {
    const self = m.state.nodes.get(node.nodeId)!;
    assert.deepEqual(self.description.runtimes, ["process", "container"], "dockerd was found");
    await m.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: "boxes",
        task: {
          runtime: {
            kind: "container",
            image: IMAGE,
            command: ["sleep"],
            args: ["600"],
            stopGracePeriod: 1_000,
          },
        },
        mode: { kind: "replicated", replicas: 2 },
      }),
    }, { by: "user:service.create" });
    const tasks = await until(
      "2 running containers",
      () => running(m, "boxes").length === 2 && running(m, "boxes"),
    );
    const containers = await docker.listContainers({ labels: { "io.shoal.node.id": node.nodeId } });
    const byTask = new Set(containers.map((c) => c.Labels?.["io.shoal.task.id"]));
    assert.ok(
      tasks.every((t) => byTask.has(t.id)),
      "each task is a real container, labelled with its task",
    );

    await m.execute({ kind: "ScaleService", service: "boxes", replicas: 0 }, { by: "user:scale" });
    await until("containers to be gone", async () => {
      const left = await docker.listContainers({
        labels: { "io.shoal.node.id": node.nodeId },
        all: true,
      });
      return left.length === 0;
    });
  } finally {
    await node.close();
    docker.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
