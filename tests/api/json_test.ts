/**
 * The Docker JSON converters: a Shoal spec shown in Docker's shape and read back is the same
 * spec (what keeps `docker service scale` from restarting tasks), and units convert both ways.
 */
import assert from "node:assert/strict";
import { ServiceSpec } from "../../events/schema.ts";
import { equalData } from "../../actors/equal.ts";
import { serviceSpecFromDocker, serviceSpecToDocker } from "../../web/docker/service_json.ts";
import { msToNs, nsToMs, rfc3339 } from "../../web/docker/fields.ts";
import { withApi } from "./_harness.ts";

Deno.test("times and durations convert as Docker writes them", () => {
  assert.equal(rfc3339(Date.UTC(2024, 0, 2, 3, 4, 5, 678)), "2024-01-02T03:04:05.678Z");
  assert.equal(rfc3339(Date.UTC(2024, 0, 2, 3, 4, 5, 500)), "2024-01-02T03:04:05.5Z");
  assert.equal(rfc3339(Date.UTC(2024, 0, 2, 3, 4, 5)), "2024-01-02T03:04:05Z");
  assert.equal(rfc3339(0), "0001-01-01T00:00:00Z");
  assert.equal(msToNs(5_000), 5_000_000_000);
  assert.equal(nsToMs(5_000_000_000), 5_000);
  assert.equal(nsToMs(1_500), 1, "a positive duration never rounds to zero");
  assert.equal(nsToMs(0), 0);
});

Deno.test("service specs survive a round trip through Docker's JSON unchanged", async () => {
  await withApi(async (api) => {
    const secret = (await api.call("POST", "/secrets/create", { Name: "pw", Data: btoa("x") }))
      .body.ID;
    const config = (await api.call("POST", "/configs/create", { Name: "cfg", Data: btoa("y") }))
      .body.ID;
    const network = (await api.call("POST", "/networks/create", { Name: "back" })).body.Id;
    const common = {
      secrets: [
        { id: secret, name: "pw", target: "", uid: "0", gid: "0", mode: 0o400 },
        { id: secret, name: "pw", target: "other", uid: "1", gid: "2", mode: 0o444 },
      ],
      configs: [{
        id: config,
        name: "cfg",
        target: "/etc/app.toml",
        uid: "0",
        gid: "0",
        mode: 0o444,
      }],
      resources: {
        limits: { nanoCPUs: 500_000_000, memoryBytes: 64 * 2 ** 20 },
        reservations: { nanoCPUs: 0, memoryBytes: 10 * 2 ** 20 },
      },
      restart: { condition: "on-failure", delay: 1_500, maxAttempts: 4, window: 60_000 },
      placement: {
        constraints: ["node.role==manager", "node.labels.zone!=mars"],
        preferences: [{ spread: "node.labels.zone" }],
        maxReplicas: 2,
        platforms: [{ os: "linux", architecture: "amd64" }],
      },
      networks: [{ target: network, aliases: ["app"] }],
      forceUpdate: 3,
    };
    const specs = [
      ServiceSpec.parse({
        name: "web",
        labels: { tier: "front" },
        task: {
          ...common,
          runtime: {
            kind: "container",
            image: "nginx:1.25",
            labels: { a: "b" },
            command: ["/docker-entrypoint.sh"],
            args: ["nginx", "-g", "daemon off;"],
            env: ["A=1", "B=2"],
            hostname: "web-host",
            user: "www",
            dir: "/srv",
            mounts: [
              { type: "bind", source: "/data", target: "/data", readOnly: true },
              { type: "tmpfs", target: "/tmp" },
            ],
            stopSignal: "SIGQUIT",
            stopGracePeriod: 3_000,
            healthcheck: {
              test: ["CMD-SHELL", "curl -f localhost"],
              interval: 2_000,
              timeout: 1_000,
              retries: 5,
              startPeriod: 500,
            },
          },
        },
        mode: { kind: "replicated", replicas: 7 },
        update: {
          parallelism: 2,
          delay: 1_000,
          failureAction: "rollback",
          monitor: 3_000,
          maxFailureRatio: 0.25,
          order: "start-first",
        },
        rollback: { parallelism: 0, order: "stop-first" },
        endpoint: {
          mode: "dnsrr",
          ports: [
            { name: "http", protocol: "tcp", targetPort: 80, publishedPort: 8080 },
            { protocol: "udp", targetPort: 53, publishMode: "host" },
          ],
        },
      }),
      ServiceSpec.parse({
        name: "worker",
        task: {
          ...common,
          runtime: {
            kind: "process",
            command: "/usr/bin/python3",
            args: ["-m", "http.server"],
            env: ["PORT=8000"],
            dir: "/srv",
            stopSignal: "SIGINT",
            stopGracePeriod: 0,
            healthcheck: { test: ["CMD", "true"] },
          },
        },
        mode: { kind: "global" },
      }),
      ServiceSpec.parse({
        name: "batch",
        task: { runtime: { kind: "process", command: "/bin/true" } },
        mode: { kind: "replicated-job", maxConcurrent: 2, totalCompletions: 10 },
      }),
      ServiceSpec.parse({
        name: "once",
        task: { runtime: { kind: "container", image: "busybox" } },
        mode: { kind: "global-job" },
      }),
    ];
    for (const spec of specs) {
      const docker = JSON.parse(JSON.stringify(serviceSpecToDocker(spec)));
      const back = serviceSpecFromDocker(docker, { state: api.manager.state });
      assert.ok(equalData(back, spec), `${spec.name}: ${JSON.stringify(back)}`);
      assert.deepEqual(back, spec);
    }
  }, { projections: false });
});

Deno.test("Docker's defaults and omissions map to Shoal's defaults", async () => {
  await withApi((api) => {
    const ctx = { state: api.manager.state };
    const minimal = serviceSpecFromDocker({
      Name: "m",
      Labels: null,
      TaskTemplate: {
        ContainerSpec: { Image: "busybox", Env: null, Init: false, DNSConfig: {} },
        Resources: { Limits: {}, Reservations: {} },
        Placement: {},
        ForceUpdate: 0,
      },
      Mode: { Replicated: {} },
      EndpointSpec: { Mode: "vip" },
    }, ctx);
    assert.deepEqual(
      minimal,
      ServiceSpec.parse({
        name: "m",
        task: { runtime: { kind: "container", image: "busybox" } },
        mode: { kind: "replicated", replicas: 1 },
      }),
    );
    const job = serviceSpecFromDocker({
      Name: "j",
      TaskTemplate: { ContainerSpec: { Image: "busybox" } },
      Mode: { ReplicatedJob: {} },
    }, ctx);
    assert.deepEqual(job.mode, { kind: "replicated-job", maxConcurrent: 1, totalCompletions: 1 });
    const unnamed = serviceSpecFromDocker({ TaskTemplate: { ContainerSpec: { Image: "x" } } }, ctx);
    assert.match(unnamed.name, /^[a-z]+_[a-z]+\d*$/, "a generated name, as Docker's");
    const inferred = serviceSpecFromDocker({
      Name: "p",
      TaskTemplate: { ProcessSpec: { Command: "/bin/true" } },
    }, ctx);
    assert.equal(
      inferred.task.runtime.kind,
      "process",
      "ProcessSpec alone means the process runtime",
    );
  }, { projections: false });
});
