/**
 * The `shoal` command end to end: a real node (`shoal start`), the real `./shoal` binary run
 * with `--host` against it, and its output checked as a person would read it: Docker's columns,
 * states, messages and progress lines.
 */
import assert from "node:assert/strict";
import { type RealNode, type Run, shoal, startNode } from "./real_node.ts";

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what} failed (exit ${run.code}):\n${run.stderr}${run.stdout}`);
  return run.stdout;
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

/** The columns of a table row (Docker separates them by at least 3 spaces). */
function cells(row: string): string[] {
  return row.trim().split(/ {3,}/);
}

Deno.test({
  name:
    "shoal CLI against a real node: nodes, services with progress, secrets, configs, networks, swarm, events",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const node: RealNode = await startNode();
    const run = (...args: string[]) => shoal(["--host", node.api, ...args]);
    try {
      let selfId = "";
      await t.step("node ls marks the local node and its leadership", async () => {
        const out = lines(ok(await run("node", "ls"), "node ls"));
        assert.match(
          out[0],
          /^ID +HOSTNAME +STATUS +AVAILABILITY +MANAGER STATUS +ENGINE VERSION$/,
        );
        const row = out.find((l) => / \* /.test(l));
        assert.ok(row, `no self row in:\n${out.join("\n")}`);
        selfId = row.split(" ")[0];
        assert.match(selfId, /^[0-9a-z]{25}$/);
        assert.deepEqual(cells(row).slice(2, 5), ["Ready", "Active", "Leader"]);
        assert.equal(ok(await run("node", "ls", "-q"), "node ls -q").trim(), selfId);
      });

      await t.step("node inspect --pretty self, and node update with self", async () => {
        const out = ok(await run("node", "inspect", "--pretty", "self"), "node inspect");
        assert.ok(out.startsWith(`ID:\t\t\t${selfId}\n`), out);
        assert.ok(
          out.includes("\nStatus:\n State:\t\t\tReady\n Availability:         \tActive\n"),
          out,
        );
        assert.match(out, /\n Leader:\t\tYes\n/);
        assert.equal(
          ok(await run("node", "inspect", "--format", "{{.Spec.Role}}", "self"), "format").trim(),
          "manager",
        );
        ok(await run("node", "update", "--label-add", "zone=east", "self"), "node update");
        assert.equal(
          ok(await run("node", "inspect", "--format", "{{json .Spec.Labels}}", "self"), "labels")
            .trim(),
          '{"zone":"east"}',
        );
      });

      await t.step("service create --runtime process shows progress until converged", async () => {
        const res = await run(
          "service",
          "create",
          "--name",
          "web",
          "--runtime",
          "process",
          "--replicas",
          "2",
          "--update-monitor",
          "1s",
          "sleep",
          "1000",
        );
        const out = lines(ok(res, "service create"));
        const id = out[0];
        assert.match(id, /^[0-9a-z]{25}$/);
        assert.equal(out[1], "overall progress: 0 out of 2 tasks");
        assert.deepEqual(out.slice(2, 4), ["1/2:  ", "2/2:  "]);
        assert.ok(out.includes("overall progress: 2 out of 2 tasks"), out.join("\n"));
        assert.match(
          out.at(-2)!,
          /^verify: Waiting 1 seconds to verify that tasks are stable\.\.\.$/,
        );
        assert.equal(out.at(-1), `verify: Service ${id} converged`);
      });

      await t.step("service ls and service ps in Docker's columns", async () => {
        const ls = lines(ok(await run("service", "ls"), "service ls"));
        assert.match(ls[0], /^ID +NAME +MODE +REPLICAS +IMAGE +PORTS$/);
        assert.deepEqual(cells(ls[1]).slice(1), ["web", "replicated", "2/2", "sleep"]);
        const ps = lines(ok(await run("service", "ps", "web"), "service ps"));
        assert.match(
          ps[0],
          /^ID +NAME +IMAGE +NODE +DESIRED STATE +CURRENT STATE +ERROR +PORTS$/,
        );
        assert.equal(ps.length, 3);
        for (const [i, row] of ps.slice(1).entries()) {
          const c = cells(row);
          assert.equal(c[1], `web.${i + 1}`);
          assert.equal(c[2], "sleep");
          assert.equal(c[4], "Running");
          assert.match(c[5], /^Running (less than a second|1 second|\d+ seconds) ago$/);
        }
      });

      await t.step("service scale prints 'web scaled to 3' and converges", async () => {
        const out = lines(ok(await run("service", "scale", "web=3"), "service scale"));
        assert.equal(out[0], "web scaled to 3");
        assert.ok(out.includes("overall progress: 3 out of 3 tasks"), out.join("\n"));
        assert.equal(out.at(-1), "verify: Service web converged");
      });

      await t.step("service update rolls the tasks; ps shows the history lines", async () => {
        const out = lines(ok(
          await run("service", "update", "--env-add", "A=1", "--update-parallelism", "3", "web"),
          "service update",
        ));
        assert.equal(out[0], "web");
        assert.equal(out.at(-1), "verify: Service web converged");
        const ps = lines(ok(await run("service", "ps", "web"), "service ps"));
        assert.ok(ps.some((l) => l.includes(" \\_ web.1 ")), ps.join("\n"));
        const running = ps.filter((l) => cells(l)[4] === "Running");
        assert.equal(running.length, 3, ps.join("\n"));
        const pretty = ok(await run("service", "inspect", "--pretty", "web"), "inspect --pretty");
        assert.match(pretty, /\nProcessSpec:\n Command:\tsleep\n Args:\t\t1000 \n Env:\t\tA=1 \n/);
        assert.match(pretty, /\nService Mode:\tReplicated\n Replicas:\t3\n/);
        assert.match(pretty, /\n Parallelism:\t3\n/);
      });

      await t.step("service rollback goes back to the previous spec", async () => {
        const out = lines(ok(await run("service", "rollback", "web"), "service rollback"));
        assert.equal(out[0], "web");
        assert.ok(
          out.includes("overall progress: rolling back update: 3 out of 3 tasks"),
          out.join("\n"),
        );
        // As Docker's: the rollback's reason first; the manager marks the rollback completed
        // only after the monitor period, by which time the display has converged.
        assert.ok(out.includes("rollback: manually requested rollback"), out.join("\n"));
        assert.equal(out.at(-1), "verify: Service web converged");
        const env = ok(
          await run(
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ProcessSpec.Env}}",
            "web",
          ),
          "inspect env",
        ).trim();
        assert.ok(env === "null" || env === "[]" || env === "<no value>", env);
      });

      await t.step("a failing program: its error in ps, cut unless --no-trunc", async () => {
        const create = await run(
          "service",
          "create",
          "--detach",
          "--name",
          "fail",
          "--runtime",
          "process",
          "--restart-max-attempts",
          "1",
          "--restart-delay",
          "100ms",
          "sh",
          "-c",
          "exit 3",
        );
        ok(create, "create fail");
        let errors = "";
        for (let i = 0; i < 50 && !errors.includes("task: non-zero exit (3)"); i++) {
          await new Promise((r) => setTimeout(r, 200));
          errors = ok(
            await run("service", "ps", "--no-trunc", "--format", "{{.Name}} {{.Error}}", "fail"),
            "ps fail",
          );
        }
        assert.match(errors, /^fail\.1 "task: non-zero exit \(3\)"$/m);
      });

      await t.step("secrets: create from stdin, in use cannot be removed", async () => {
        const created = await shoal(["--host", node.api, "secret", "create", "dbpass", "-"], {
          stdin: "s3cret",
        });
        const id = ok(created, "secret create").trim();
        assert.match(id, /^[0-9a-z]{25}$/);
        const ls = lines(ok(await run("secret", "ls"), "secret ls"));
        assert.match(ls[0], /^ID +NAME +DRIVER +CREATED +UPDATED$/);
        assert.equal(cells(ls[1])[1], "dbpass");
        ok(
          await run("service", "update", "--detach", "--secret-add", "dbpass", "web"),
          "secret-add",
        );
        const rm = await run("secret", "rm", "dbpass");
        assert.equal(rm.code, 1);
        assert.match(rm.stderr, /^Error response from daemon: .*dbpass.*in use.*web/);
        const pretty = ok(await run("secret", "inspect", "--pretty", "dbpass"), "secret inspect");
        assert.match(pretty, new RegExp(`^ID:              ${id}\nName:              dbpass\n`));
      });

      await t.step("configs: create from a file, inspect shows the data", async () => {
        const file = await Deno.makeTempFile();
        await Deno.writeTextFile(file, "listen 80;\n");
        try {
          ok(await run("config", "create", "appconf", file), "config create");
          const out = ok(await run("config", "inspect", "--pretty", "appconf"), "config inspect");
          assert.match(out, /\nData:\nlisten 80;\n/);
          assert.equal(lines(ok(await run("config", "ls"), "config ls")).length, 2);
          assert.equal(ok(await run("config", "rm", "appconf"), "config rm"), "appconf\n");
        } finally {
          await Deno.remove(file);
        }
      });

      await t.step("networks: create, ls, inspect, rm", async () => {
        const id = ok(await run("network", "create", "--attachable", "backend"), "network create")
          .trim();
        const ls = lines(ok(await run("network", "ls"), "network ls"));
        assert.match(ls[0], /^NETWORK ID +NAME +DRIVER +SCOPE$/);
        const row = ls.find((l) => cells(l)[1] === "backend");
        assert.ok(row, ls.join("\n"));
        assert.deepEqual(cells(row), [id.slice(0, 12), "backend", "overlay", "swarm"]);
        const inspected = JSON.parse(ok(await run("network", "inspect", "backend"), "inspect"));
        assert.equal(inspected[0].Attachable, true);
        assert.equal(ok(await run("network", "rm", "backend"), "network rm"), "backend\n");

        // A stack's network with an asked-for subnet: inspect shows what the allocator gave it.
        ok(
          await run(
            "network",
            "create",
            "--driver",
            "overlay",
            "--subnet",
            "127.31.0.0/24",
            "--opt",
            "encrypted",
            "--label",
            "com.docker.stack.namespace=demo",
            "demo_default",
          ),
          "network create --subnet",
        );
        let ipam: unknown[] = [];
        for (let i = 0; i < 100; i++) {
          const net = JSON.parse(ok(await run("network", "inspect", "demo_default"), "inspect"))[0];
          ipam = net.IPAM.Config;
          if ((ipam[0] as { Gateway?: string })?.Gateway) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(ipam, [{ Subnet: "127.31.0.0/24", Gateway: "127.31.0.1" }]);
        const outside = await run("network", "create", "--subnet", "10.1.0.0/24", "ten");
        assert.equal(outside.code, 1);
        assert.match(outside.stderr, /invalid subnet 10\.1\.0\.0\/24: .*inside 127\.0\.0\.0\/8/);
        assert.equal(ok(await run("network", "rm", "demo_default"), "rm"), "demo_default\n");
      });

      await t.step("swarm join-token and swarm update", async () => {
        const out = ok(await run("swarm", "join-token", "worker"), "join-token");
        assert.match(
          out,
          /^To add a worker to this swarm, run the following command:\n\n {4}shoal swarm join --token SWMTKN-1-[0-9a-z]+-[0-9a-z]+ \S+:\d+\n\n$/,
        );
        const token = ok(await run("swarm", "join-token", "-q", "manager"), "-q").trim();
        assert.match(token, /^SWMTKN-1-/);
        const rotated = ok(await run("swarm", "join-token", "--rotate", "manager"), "--rotate");
        assert.match(rotated, /^Successfully rotated manager join token\.\n\n/);
        assert.ok(!rotated.includes(token), "a new token");
        assert.equal(
          ok(await run("swarm", "update", "--task-history-limit", "3"), "update"),
          "Swarm updated.\n",
        );
      });

      await t.step("events replays what happened", async () => {
        const out = ok(await run("events", "--since", "10m", "--until", "0s"), "events");
        assert.match(out, /^\d{4}-\d\d-\d\dT\S+ service create [0-9a-z]{25} \(.*name=web.*\)$/m);
        const formatted = ok(
          await run(
            "events",
            "--since",
            "10m",
            "--until",
            "0s",
            "--filter",
            "type=service",
            "--format",
            "{{.Type}} {{.Action}}",
          ),
          "events --format",
        );
        assert.ok(lines(formatted).every((l) => l.startsWith("service ")), formatted);
      });

      await t.step("errors read as Docker's", async () => {
        const missing = await run("service", "inspect", "nope");
        assert.equal(missing.code, 1);
        assert.equal(missing.stdout, "[]\n");
        assert.equal(missing.stderr, "Error: no such service: nope\n");
        const bad = await run("service", "create", "--replicas", "-1", "busybox");
        assert.equal(bad.code, 125);
        assert.equal(
          bad.stderr,
          'invalid argument "-1" for "--replicas" flag: strconv.ParseUint: parsing "-1": invalid syntax\n\n' +
            "Usage:  shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n" +
            "Run 'shoal service create --help' for more information\n",
        );
        const exists = await run(
          "service",
          "create",
          "--detach",
          "--name",
          "web",
          "--runtime",
          "process",
          "sleep",
          "1",
        );
        assert.equal(exists.code, 1);
        assert.match(exists.stderr, /^Error response from daemon: .*web/);
      });

      await t.step("the manager from SHOAL_HOST, DOCKER_HOST or -H", async () => {
        for (
          const [args, env] of [
            [["node", "ls", "-q"], { SHOAL_HOST: node.api }],
            [["node", "ls", "-q"], { DOCKER_HOST: node.api.replace("http://", "tcp://") }],
            [["-H", node.api.replace("http://", "tcp://"), "node", "ls", "-q"], {}],
          ] as const
        ) {
          assert.equal(
            ok(await shoal([...args], { env }), `node ls via ${JSON.stringify(env)}`).trim(),
            selfId,
          );
        }
        const down = await shoal(["node", "ls"], { env: { SHOAL_HOST: "tcp://127.0.0.1:1" } });
        assert.equal(down.code, 1);
        assert.match(
          down.stderr,
          /^Cannot connect to the Shoal manager at http:\/\/127\.0\.0\.1:1\./,
        );
      });

      await t.step("service rm", async () => {
        assert.equal(ok(await run("service", "rm", "web", "fail"), "service rm"), "web\nfail\n");
        assert.equal(ok(await run("service", "ls", "-q"), "ls -q"), "");
      });
    } finally {
      await node.stop();
    }
  },
});
