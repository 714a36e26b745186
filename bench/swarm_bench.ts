/**
 * `deno task bench swarm`: Shoal against Docker's own swarm mode on the same `dockerd`, in one
 * run: the time from `service create` of 50 replicas of `shoal-test/busybox:1` (`sleep 600`) to
 * all 50 running, for each, and the ratio.
 *
 * - **Docker**: the daemon is put in swarm mode (`POST /swarm/init`, listening on
 *   127.0.0.1:2377) if it is not in it already; the service is created through the Engine API
 *   (`POST /services/create`, as `docker service create --detach` does, without the CLI's
 *   registry lookup) and `GET /tasks` is polled every 20 ms until 50 tasks run.
 * - **Shoal**: a single-manager node in this process (`startNode`: SQLite log with
 *   `synchronous = normal`, the real projections, its agent with the Docker executor on the same
 *   daemon); the service is created with the manager's `CreateService` command and its state is
 *   polled every 20 ms.
 *
 * Each service is removed, and its containers are gone, before the next one starts. At the end
 * the daemon is left as it was: if this run put it in swarm mode it leaves (`POST
 * /swarm/leave?force=true`, `docker swarm leave --force`). When the daemon refuses swarm mode the
 * Docker figure is missing and the reason, in the daemon's words, is printed.
 *
 * Needs the test dockerd and image (tools/docker_setup.sh). `--replicas=N` changes the count.
 *
 * @module
 */
import { ServiceSpec, TaskState } from "../events/schema.ts";
import { startNode } from "../node/daemon.ts";
import { DockerApi } from "../actors/agent/docker_api.ts";
import { type BenchRow, report } from "./report.ts";

const IMAGE = "shoal-test/busybox:1";
const POLL_MS = 20;

/** A minimal Engine API client for the swarm endpoints DockerApi does not cover. */
class Engine {
  #client = Deno.createHttpClient({
    proxy: { transport: "unix", path: engineSocket() },
  });

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`http://docker/v1.41${path}`, {
      method,
      client: this.#client,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = JSON.parse(text).message ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new Error(`${method} ${path}: ${res.status} ${message.trim()}`);
    }
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }

  close(): void {
    this.#client.close();
  }
}

function engineSocket(): string {
  const host = Deno.env.get("DOCKER_HOST") ?? "";
  if (host === "") return "/var/run/docker.sock";
  if (host.startsWith("unix://")) return host.slice("unix://".length);
  throw new Error(`swarm bench: needs a unix DOCKER_HOST, not ${host}`);
}

async function waitFor(done: () => Promise<boolean> | boolean, ms: number, what: string) {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`swarm bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface EngineTask {
  DesiredState: string;
  Status: { State: string };
}

/** Docker swarm mode: create to all running, in ms; the service is removed afterwards. */
async function timeDocker(engine: Engine, docker: DockerApi, replicas: number): Promise<number> {
  const name = `shoal-bench-${Date.now().toString(36)}`;
  const start = performance.now();
  const { ID: id } = await engine.call<{ ID: string }>("POST", "/services/create", {
    Name: name,
    TaskTemplate: {
      ContainerSpec: { Image: IMAGE, Command: ["sleep", "600"] },
      RestartPolicy: { Condition: "none" },
    },
    Mode: { Replicated: { Replicas: replicas } },
  });
  const filters = encodeURIComponent(JSON.stringify({ service: [id] }));
  let elapsed = 0;
  try {
    await waitFor(
      async () => {
        const tasks = await engine.call<EngineTask[]>("GET", `/tasks?filters=${filters}`);
        const running = tasks.filter((t) => t.Status.State === "running").length;
        return running >= replicas;
      },
      120_000,
      `${replicas} Docker tasks running`,
    );
    elapsed = performance.now() - start;
  } finally {
    await engine.call("DELETE", `/services/${id}`).catch(() => {});
    await waitFor(
      async () => {
        const left = await docker.listContainers({ labels: { "com.docker.swarm.service.id": id } });
        return left.length === 0;
      },
      120_000,
      "Docker's containers to go",
    );
  }
  return elapsed;
}

/** Shoal with the Docker executor: create to all running, in ms; the node is closed after. */
async function timeShoal(docker: DockerApi, replicas: number): Promise<number> {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-bench-swarm-" });
  const node = await startNode({ dataDir, listenAddr: "127.0.0.1:0", synchronous: "normal" });
  const m = node.manager;
  let elapsed = 0;
  try {
    const self = m.state.nodes.get(node.nodeId)!;
    if (!self.description.runtimes.includes("container")) {
      throw new Error("swarm bench: Shoal's node found no Docker daemon");
    }
    const start = performance.now();
    await m.execute({
      kind: "CreateService",
      spec: ServiceSpec.parse({
        name: "bench",
        task: {
          runtime: { kind: "container", image: IMAGE, command: ["sleep"], args: ["600"] },
          restart: { condition: "none" },
        },
        mode: { kind: "replicated", replicas },
      }),
    }, { by: "user:service.create" });
    const svc = m.state.serviceByName("bench")!;
    await waitFor(
      () => {
        let running = 0;
        for (const t of m.state.tasksOf(svc.id)) {
          if (t.status.state === TaskState.running) running++;
        }
        return running >= replicas;
      },
      120_000,
      `${replicas} Shoal tasks running`,
    );
    elapsed = performance.now() - start;
    await m.execute({ kind: "RemoveService", service: "bench" }, { by: "user:service.rm" });
    await waitFor(
      async () => {
        const left = await docker.listContainers({ labels: { "io.shoal.node.id": node.nodeId } });
        return left.length === 0;
      },
      120_000,
      "Shoal's containers to go",
    );
  } finally {
    await node.close();
    const left = await docker.listContainers({ labels: { "io.shoal.node.id": node.nodeId } })
      .catch(() => []);
    for (const c of left) await docker.removeContainer(c.Id, { force: true }).catch(() => {});
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
  return elapsed;
}

/** Runs the benchmark; prints the table (and the JSON line with `json`). */
export async function runSwarmBench(options: { json: boolean }): Promise<Record<string, unknown>> {
  const replicas = Number(
    Deno.args.find((a) => a.startsWith("--replicas="))?.slice("--replicas=".length) ?? 50,
  );
  const docker = new DockerApi();
  const engine = new Engine();
  let initialised = false;
  let swarmRefused: string | undefined;
  try {
    await docker.ping(AbortSignal.timeout(2_000)).catch((err) => {
      throw new Error(
        `swarm bench: no Docker daemon answers (${err.message}); run tools/docker_setup.sh`,
      );
    });
    if (await docker.inspectImage(IMAGE) === undefined) {
      throw new Error(`swarm bench: no image ${IMAGE}; run tools/docker_setup.sh`);
    }
    const info = await engine.call<{ Swarm: { LocalNodeState: string } }>("GET", "/info");
    if (info.Swarm.LocalNodeState === "inactive") {
      try {
        await engine.call("POST", "/swarm/init", {
          ListenAddr: "127.0.0.1:2377",
          AdvertiseAddr: "127.0.0.1",
        });
        initialised = true;
      } catch (err) {
        swarmRefused = (err as Error).message;
      }
    } else if (info.Swarm.LocalNodeState !== "active") {
      swarmRefused = `the daemon's swarm state is ${info.Swarm.LocalNodeState}`;
    }

    const dockerMs = swarmRefused === undefined
      ? await timeDocker(engine, docker, replicas)
      : undefined;
    const shoalMs = await timeShoal(docker, replicas);

    const rows: BenchRow[] = [
      { metric: `shoal_${replicas}_running_ms`, value: Math.round(shoalMs), unit: "ms" },
    ];
    if (dockerMs !== undefined) {
      rows.unshift({
        metric: `docker_${replicas}_running_ms`,
        value: Math.round(dockerMs),
        unit: "ms",
      });
      rows.push({
        metric: "ratio_shoal_to_docker",
        value: Math.round((shoalMs / dockerMs) * 100) / 100,
        unit: "x",
        goal: "< 1 is faster than Docker",
      });
    } else {
      console.log(`Docker swarm mode refused: ${swarmRefused}`);
    }
    return report("swarm", rows, {
      json: options.json,
      extra: swarmRefused === undefined ? {} : { dockerSwarmRefused: swarmRefused },
    });
  } finally {
    if (initialised) {
      await engine.call("POST", "/swarm/leave?force=true").catch((err) =>
        console.error(`swarm bench: could not leave swarm mode: ${err.message}`)
      );
    }
    engine.close();
    docker.close();
  }
}
