/**
 * The real `docker` CLI against a real Shoal node (`startNode`: SQLite log, projections, an agent
 * with the process executor, the API on a TCP port): what a Swarm user types, with the exit codes
 * and output Docker gives.
 *
 * Container services are created for real; no node here runs containers, so their tasks stay
 * pending (with the scheduler's reason), which is all `--detach` needs.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { TaskState } from "../../events/schema.ts";

const DOCKER = "/usr/local/bin/docker";
const haveDocker = await Deno.stat(DOCKER).then(() => true, () => false);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

Deno.test({
  name: "the docker CLI manages a Shoal swarm",
  ignore: !haveDocker,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-docker-cli-" });
    const configDir = await Deno.makeTempDir({ prefix: "shoal-docker-config-" });
    // No Docker for this node: container services stay pending, which is what is checked here.
    const node = await startNode({
      dataDir,
      listenAddr: "127.0.0.1:0",
      synchronous: "off",
      docker: false,
    });
    const host = node.apiUrl.replace("http://", "tcp://");
    const m = node.manager;
    const docker = async (args: string[], stdin?: string): Promise<Run> => {
      const child = new Deno.Command(DOCKER, {
        args: ["-H", host, ...args],
        env: { DOCKER_CONFIG: configDir, DOCKER_CLI_HINTS: "false" },
        clearEnv: true,
        stdin: stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (stdin !== undefined) {
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(stdin));
        await w.close();
      }
      const out = await child.output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    const ok = async (args: string[], stdin?: string): Promise<string> => {
      const r = await docker(args, stdin);
      assert.equal(r.code, 0, `docker ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
      return r.stdout;
    };
    const rows = (out: string) => out.trimEnd().split("\n").map((l) => l.trim().split(/\s{2,}/));

    try {
      const version = await ok(["version"]);
      assert.match(version, /API version:\s+1\.41 \(downgraded from 1\.\d+\)/);
      assert.match(version, /Server: Shoal/);
      assert.match(version, /API version:\s+1\.41 \(minimum version 1\.24\)/);

      const info = await ok(["info"]);
      assert.match(info, /Swarm: active/);
      assert.match(info, new RegExp(`NodeID: ${node.nodeId}`));
      assert.match(info, /Is Manager: true/);
      assert.match(info, new RegExp(`ClusterID: ${m.state.cluster!.id}`));
      assert.match(info, /Managers: 1\n\s+Nodes: 1/);
      assert.match(info, /Task History Retention Limit: 5/);

      const nodes = rows(await ok(["node", "ls"]));
      assert.deepEqual(nodes[0], [
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "MANAGER STATUS",
        "ENGINE VERSION",
      ]);
      assert.equal(nodes.length, 2);
      assert.equal(nodes[1][0], `${node.nodeId} *`);
      assert.deepEqual(nodes[1].slice(2, 5), ["Ready", "Active", "Leader"]);

      // service create (detached: the tasks cannot converge without a container runtime)
      const create = await docker([
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "busybox",
        "sleep",
        "100",
      ]);
      assert.equal(create.code, 0, create.stderr);
      const id = create.stdout.trim();
      assert.match(id, /^[0-9a-z]{25}$/);
      assert.match(create.stderr, /image busybox:latest could not be accessed on a registry/);
      assert.match(create.stderr, /no node of this swarm offers the container runtime yet/);
      const svc = m.state.services.get(id)!;
      assert.equal(svc.spec.name, "web");
      assert.deepEqual(svc.spec.task.runtime.kind === "container" && svc.spec.task.runtime.args, [
        "sleep",
        "100",
      ]);

      const ls = rows(await ok(["service", "ls"]));
      assert.deepEqual(ls[0], ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]);
      assert.deepEqual(ls[1], [id.slice(0, 12), "web", "replicated", "0/2", "busybox:latest"]);

      const inspect = JSON.parse(await ok(["service", "inspect", "web"]));
      assert.equal(inspect.length, 1);
      assert.equal(inspect[0].ID, id);
      assert.deepEqual(inspect[0].Spec.Mode, { Replicated: { Replicas: 2 } });
      assert.equal(inspect[0].Spec.TaskTemplate.ContainerSpec.Image, "busybox:latest");
      const pretty = await ok(["service", "inspect", "--pretty", "web"]);
      assert.match(pretty, /Name:\s+web\nService Mode:\s+Replicated\n Replicas:\s+2/);
      assert.match(pretty, /Update order:\s+stop-first/);

      const ps = rows(await ok(["service", "ps", "web"]));
      assert.equal(ps.length, 3);
      assert.deepEqual(ps.slice(1).map((r) => r[1]).sort(), ["web.1", "web.2"]);
      assert.ok(ps.slice(1).every((r) => r[3] === "Running" && r[4].startsWith("Pending")));

      const specVersion = m.state.services.get(id)!.specVersion;
      assert.equal((await ok(["service", "scale", "--detach", "web=3"])).trim(), "web scaled to 3");
      const scaled = m.state.services.get(id)!;
      assert.equal(scaled.spec.mode.kind === "replicated" && scaled.spec.mode.replicas, 3);
      assert.equal(scaled.specVersion, specVersion, "scaling through docker restarts nothing");

      assert.equal(
        (await ok(["service", "update", "--detach", "--env-add", "A=1", "web"])).trim(),
        "web",
      );
      const updated = m.state.services.get(id)!;
      assert.deepEqual(
        updated.spec.task.runtime.kind === "container" && updated.spec.task.runtime.env,
        [
          "A=1",
        ],
      );
      assert.notEqual(updated.specVersion, specVersion, "a new task template");

      assert.equal((await ok(["service", "rollback", "--detach", "web"])).trim(), "web");
      const rolled = m.state.services.get(id)!;
      assert.deepEqual(
        rolled.spec.task.runtime.kind === "container" && rolled.spec.task.runtime.env,
        [],
      );

      const dup = await docker(["service", "create", "--detach", "--name", "web", "busybox"]);
      assert.equal(dup.code, 1);
      assert.match(
        dup.stderr,
        /Error response from daemon: name conflicts with an existing object: service web already exists/,
      );
      const missing = await docker(["service", "inspect", "nope"]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no such service: nope/);

      // secrets and configs, from stdin
      const secretId = (await ok(["secret", "create", "dbpass", "-"], "s3cret")).trim();
      assert.match(secretId, /^[0-9a-z]{25}$/);
      assert.equal(atob(m.state.secrets.get(secretId)!.spec.data), "s3cret");
      const secrets = rows(await ok(["secret", "ls"]));
      assert.deepEqual(secrets[0], ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]);
      assert.equal(secrets[1][0], secretId);
      assert.equal(secrets[1][1], "dbpass");
      assert.equal(
        (await ok(["service", "update", "--detach", "--secret-add", "dbpass", "web"])).trim(),
        "web",
      );
      const inUse = await docker(["secret", "rm", "dbpass"]);
      assert.equal(inUse.code, 1);
      assert.match(inUse.stderr, /secret 'dbpass' is in use by the following service: web/);
      await ok(["service", "update", "--detach", "--secret-rm", "dbpass", "web"]);
      assert.equal((await ok(["secret", "rm", "dbpass"])).trim(), "dbpass");
      assert.equal(m.state.secrets.size, 0);

      const configId = (await ok(["config", "create", "app.toml", "-"], "port = 80\n")).trim();
      const configs = rows(await ok(["config", "ls"]));
      assert.equal(configs[1][0], configId);
      assert.equal(configs[1][1], "app.toml");
      assert.equal(
        (await ok(["config", "inspect", "--format", '{{printf "%s" .Spec.Data}}', "app.toml"]))
          .trim(),
        "port = 80",
      );

      // networks
      const netId = (await ok(["network", "create", "--driver", "overlay", "backend"])).trim();
      assert.match(netId, /^[0-9a-z]{25}$/);
      const nets = rows(await ok(["network", "ls"]));
      assert.deepEqual(nets[0], ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
      assert.deepEqual(nets[1], [netId.slice(0, 12), "backend", "overlay", "swarm"]);
      assert.equal((await ok(["network", "rm", "backend"])).trim(), "backend");
      assert.equal(m.state.networks.size, 0);

      // service networking: a subnet asked for, a service on it with a VIP, in use until removed
      const outside = await docker(["network", "create", "--subnet", "10.0.9.0/24", "net10"]);
      assert.equal(outside.code, 1);
      assert.match(outside.stderr, /invalid subnet 10\.0\.9\.0\/24: .*inside 127\.0\.0\.0\/8/);
      const appnet = (await ok([
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--opt",
        "encrypted",
        "--subnet",
        "127.66.0.0/24",
        "appnet",
      ])).trim();
      await ok([
        "service",
        "create",
        "--detach",
        "--name",
        "netsvc",
        "--network",
        "appnet",
        "busybox",
      ]);
      const waitFor = async (args: string[], want: string) => {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const out = (await ok(args)).trim();
          if (out === want || Date.now() > deadline) return out;
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      assert.equal(
        await waitFor(
          ["service", "inspect", "--format", "{{json .Endpoint.VirtualIPs}}", "netsvc"],
          `[{"NetworkID":"${appnet}","Addr":"127.66.0.2/24"}]`,
        ),
        `[{"NetworkID":"${appnet}","Addr":"127.66.0.2/24"}]`,
      );
      assert.equal(
        (await ok(["network", "inspect", "--format", "{{json .IPAM.Config}}", "appnet"])).trim(),
        '[{"Subnet":"127.66.0.0/24","Gateway":"127.66.0.1"}]',
      );
      assert.equal(
        (await ok(["network", "inspect", "--format", "{{.Attachable}} {{.Options}}", "appnet"]))
          .trim(),
        "true map[encrypted:]",
      );
      const netInUse = await docker(["network", "rm", "appnet"]);
      assert.equal(netInUse.code, 1);
      assert.match(
        netInUse.stderr,
        /network appnet is in use by the following service\(s\): netsvc/,
      );
      assert.equal((await ok(["service", "rm", "netsvc"])).trim(), "netsvc");
      assert.equal((await ok(["network", "rm", "appnet"])).trim(), "appnet");

      // nodes
      assert.equal(
        (await ok(["node", "update", "--availability", "drain", node.nodeId])).trim(),
        node.nodeId,
      );
      assert.equal(rows(await ok(["node", "ls"]))[1][3], "Drain");
      await ok([
        "node",
        "update",
        "--availability",
        "active",
        "--label-add",
        "zone=east",
        node.nodeId,
      ]);
      assert.deepEqual(m.state.nodes.get(node.nodeId)!.spec.labels, { zone: "east" });
      const self = JSON.parse(await ok(["node", "inspect", "self"]));
      assert.equal(self[0].ID, node.nodeId);

      // A process service (Shoal's extension, through the API) runs for real on this node.
      const res = await fetch(`${node.apiUrl}/v1.41/services/create`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          Name: "sleeper",
          TaskTemplate: {
            Runtime: "process",
            ProcessSpec: { Command: "/bin/sleep", Args: ["600"], StopGracePeriod: 1e9 },
          },
          Mode: { Replicated: { Replicas: 1 } },
        }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const sleeperId = (await res.json()).ID;
      const deadline = Date.now() + 15_000;
      while (
        ![...m.state.tasksOf(sleeperId)].some((t) => t.status.state === TaskState.running)
      ) {
        assert.ok(Date.now() < deadline, "the process task never ran");
        await new Promise((r) => setTimeout(r, 50));
      }
      const sleeper = rows(await ok(["service", "ls", "--filter", "name=sleeper"]));
      assert.deepEqual(sleeper[1].slice(1, 4), ["sleeper", "replicated", "1/1"]);
      const sleeperPs = rows(await ok(["service", "ps", "sleeper"]));
      assert.equal(sleeperPs[1][1], "sleeper.1");
      assert.equal(sleeperPs[1][2], "/bin/sleep", "the program where Docker shows the image");
      assert.match(sleeperPs[1][5], /^Running /);
      assert.equal(
        (await ok(["service", "scale", "--detach", "sleeper=2"])).trim(),
        "sleeper scaled to 2",
      );
      const kept = m.state.services.get(sleeperId)!;
      assert.equal(
        kept.spec.task.runtime.kind,
        "process",
        "docker dropped ProcessSpec; Shoal kept it",
      );

      // events: the history of what was just done
      const events = await ok([
        "events",
        "--since",
        "0",
        "--until",
        String(Math.ceil(Date.now() / 1000) + 1),
        "--filter",
        "type=service",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
      ]);
      const lines = events.trim().split("\n");
      assert.equal(lines[0], "service create web");
      assert.ok(lines.includes("service create sleeper"), events);

      // stacks: a compose file with a secret, ports, deploy settings and a global service
      const compose = `${configDir}/stack.yml`;
      await Deno.writeTextFile(`${configDir}/dbpass.txt`, "pw");
      await Deno.writeTextFile(
        compose,
        [
          'version: "3.8"',
          "services:",
          "  api:",
          "    image: busybox:1",
          "    command: sleep 1000",
          '    ports: ["8080:80"]',
          "    secrets: [dbpass]",
          "    deploy:",
          "      replicas: 2",
          "      update_config: {parallelism: 2, delay: 1s}",
          "      resources: {limits: {cpus: '0.5', memory: 64M}}",
          "  worker:",
          "    image: busybox:1",
          "    deploy: {mode: global}",
          "secrets:",
          "  dbpass:",
          `    file: ${configDir}/dbpass.txt`,
          "",
        ].join("\n"),
      );
      const deploy = await ok(["stack", "deploy", "-c", compose, "demo"]);
      assert.match(deploy, /Creating network demo_default\nCreating secret demo_dbpass\n/);
      // The docker CLI walks a Go map: the services come in either order.
      assert.match(deploy, /Creating service demo_api\n/);
      assert.match(deploy, /Creating service demo_worker\n/);
      assert.deepEqual(rows(await ok(["stack", "ls"]))[1], ["demo", "2"]);
      const stackServices = rows(await ok(["stack", "services", "demo"]));
      assert.deepEqual(stackServices[1].slice(1), [
        "demo_api",
        "replicated",
        "0/2",
        "busybox:1",
        "*:8080->80/tcp",
      ]);
      const api = m.state.serviceByName("demo_api")!;
      assert.equal(api.spec.update.delay, 1_000);
      assert.equal(api.spec.task.resources.limits.memoryBytes, 64 * 2 ** 20);
      assert.equal(api.spec.task.secrets[0].name, "demo_dbpass");
      const stackPs = rows(await ok(["stack", "ps", "demo"]));
      assert.deepEqual(stackPs.slice(1).map((r) => r[1]).sort(), ["demo_api.1", "demo_api.2"]);
      assert.match(
        await ok(["stack", "deploy", "-c", compose, "demo"]),
        /Updating service demo_api/,
      );
      const redeployed = m.state.serviceByName("demo_api")!;
      assert.ok(redeployed.version > api.version, "updated in place");
      assert.equal(redeployed.specVersion, api.specVersion, "an unchanged file restarts nothing");
      const stackRm = await ok(["stack", "rm", "demo"]);
      assert.match(stackRm, /Removing service demo_api\nRemoving service demo_worker/);
      assert.match(stackRm, /Removing secret demo_dbpass\nRemoving network demo_default/);

      for (const name of ["web", "sleeper"]) {
        assert.equal((await ok(["service", "rm", name])).trim(), name);
      }
      assert.equal(rows(await ok(["service", "ls"])).length, 1, "only the header is left");
    } finally {
      await node.close();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(configDir, { recursive: true });
    }
  },
});
