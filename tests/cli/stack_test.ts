/**
 * `shoal stack` end to end against a real node (`./shoal start`): a compose file of process
 * services (Shoal's `x-shoal` extension) with a secret and a named network is deployed, listed,
 * redeployed unchanged (nothing restarts), changed with `--prune`, refused when invalid, and
 * removed, with Docker's output.
 */
import assert from "node:assert/strict";
import { shoal, startNode } from "./real_node.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("shoal stack deploy | ls | services | ps | rm against a real node", async () => {
  const node = await startNode();
  const dir = await Deno.makeTempDir({ prefix: "shoal-stack-" });
  const host = ["--host", node.api];
  const ok = async (args: string[]) => {
    const r = await shoal([...host, ...args]);
    assert.equal(r.code, 0, `shoal ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
    return r;
  };
  const compose = (webReplicas: number, withWorker: boolean) =>
    [
      'version: "3.8"',
      "x-shoal:",
      "  runtime: process",
      "services:",
      "  web:",
      '    command: ["/bin/sleep", "600"]',
      "    environment: {MODE: demo}",
      "    secrets: [token]",
      "    stop_grace_period: 1s",
      "    deploy:",
      `      replicas: ${webReplicas}`,
      "      update_config: {parallelism: 2, delay: 1s}",
      ...(withWorker
        ? [
          "  worker:",
          "    command: /bin/sleep 600",
          "    networks: [back]",
          "    deploy: {mode: global}",
        ]
        : []),
      "networks:",
      "  back: {}",
      "secrets:",
      "  token:",
      "    file: ./token.txt",
      "",
    ].join("\n");
  const rows = (out: string) => out.trimEnd().split("\n").map((l) => l.trim().split(/\s{2,}/));
  try {
    await Deno.writeTextFile(`${dir}/token.txt`, "t0k3n");
    await Deno.writeTextFile(`${dir}/stack.yml`, compose(2, true));

    const deploy = await ok(["stack", "deploy", "-c", `${dir}/stack.yml`, "demo"]);
    assert.equal(
      deploy.stdout,
      "Creating network demo_default\nCreating network demo_back\nCreating secret demo_token\nCreating service demo_web\nCreating service demo_worker\n",
    );
    assert.match(deploy.stderr, /Since --detach=false was not specified/);

    assert.equal((await ok(["stack", "ls"])).stdout, "NAME      SERVICES\ndemo      2\n");
    const services = rows((await ok(["stack", "services", "demo"])).stdout);
    assert.deepEqual(services[0], ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]);
    assert.deepEqual(services.slice(1).map((r) => r.slice(1, 3)), [
      ["demo_web", "replicated"],
      ["demo_worker", "global"],
    ]);

    // The tasks run: two web replicas and one worker on the only node.
    let ps: string[][] = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      ps = rows((await ok(["stack", "ps", "demo"])).stdout).slice(1);
      if (ps.length === 3 && ps.every((r) => r[5]?.startsWith("Running"))) break;
      assert.ok(Date.now() < deadline, `the stack's tasks did not all run:\n${JSON.stringify(ps)}`);
      await sleep(200);
    }
    const names = ps.map((r) => r[1]).sort();
    assert.deepEqual(names.slice(0, 2), ["demo_web.1", "demo_web.2"]);
    assert.match(names[2], /^demo_worker\.[0-9a-z]{25}$/);
    const inspect = JSON.parse((await ok(["service", "inspect", "demo_web"])).stdout)[0];
    assert.equal(inspect.Spec.Labels["com.docker.stack.namespace"], "demo");
    assert.equal(inspect.Spec.TaskTemplate.Runtime, "process");
    assert.deepEqual(inspect.Spec.TaskTemplate.ProcessSpec.Env, ["MODE=demo"]);
    assert.equal(inspect.Spec.TaskTemplate.ProcessSpec.Secrets[0].SecretName, "demo_token");
    assert.equal(inspect.Spec.UpdateConfig.Parallelism, 2);
    const network = JSON.parse((await ok(["network", "inspect", "demo_back"])).stdout)[0];
    assert.equal(network.Labels["com.docker.stack.namespace"], "demo");

    // Deploying the same file again updates in place and restarts nothing.
    const again = await ok(["stack", "deploy", "--compose-file", `${dir}/stack.yml`, "demo"]);
    assert.match(
      again.stdout,
      new RegExp(
        `^Updating service demo_web \\(id: ${inspect.ID}\\)\nUpdating service demo_worker \\(id: [0-9a-z]{25}\\)\n$`,
      ),
    );
    const psAgain = rows((await ok(["stack", "ps", "-q", "demo"])).stdout).flat();
    assert.deepEqual(
      psAgain.map((id) => id.slice(0, 12)).sort(),
      ps.map((r) => r[0]).sort(),
      "the same tasks",
    );

    // A changed file with --prune: the worker goes, web scales to 3.
    await Deno.writeTextFile(`${dir}/stack.yml`, compose(3, false));
    const pruned = await ok(["stack", "deploy", "--prune", "-d", "-c", `${dir}/stack.yml`, "demo"]);
    assert.equal(
      pruned.stdout,
      `Removing service demo_worker\nUpdating service demo_web (id: ${inspect.ID})\n`,
    );
    assert.equal(pruned.stderr, "", "--detach given: no hint");
    const after = rows((await ok(["stack", "services", "demo"])).stdout).slice(1);
    assert.deepEqual(after.map((r) => r[1]), ["demo_web"]);
    assert.match(after[0][3], /^\d\/3$/);

    // A file with a mistake is refused, naming the key; nothing changes.
    await Deno.writeTextFile(
      `${dir}/bad.yml`,
      "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: many\n",
    );
    const bad = await shoal([...host, "stack", "deploy", "-c", `${dir}/bad.yml`, "demo"]);
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr,
      `invalid compose file ${dir}/bad.yml: services.web.deploy.replicas: must be a whole number, got "many"\n`,
    );
    await Deno.writeTextFile(
      `${dir}/unknown.yml`,
      "services:\n  web:\n    image: busybox\n    replica: 2\n",
    );
    const unknown = await shoal([...host, "stack", "deploy", "-c", `${dir}/unknown.yml`, "demo"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /services\.web\.replica: unknown key in a service/);

    const rm = await ok(["stack", "rm", "demo"]);
    assert.equal(
      rm.stdout,
      "Removing service demo_web\nRemoving secret demo_token\nRemoving network demo_back\nRemoving network demo_default\n",
    );
    assert.equal((await ok(["stack", "ls"])).stdout, "NAME      SERVICES\n");
    const none = await ok(["stack", "rm", "demo"]);
    assert.equal(none.stderr, "Nothing found in stack: demo\n");
    const nonePs = await shoal([...host, "stack", "ps", "demo"]);
    assert.equal(nonePs.code, 1);
    assert.equal(nonePs.stderr, "nothing found in stack: demo\n");
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
