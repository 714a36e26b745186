/**
 * Docker's service and task endpoints over a real manager: shapes, units, filters, validation,
 * optimistic concurrency, rollback, and Shoal's process runtime.
 */
import assert from "node:assert/strict";
import { TaskState } from "../../events/schema.ts";
import { type ApiFixture, filters, until, withApi } from "./_harness.ts";

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/;

/** What `docker service create --name web --replicas 2 busybox sleep 100` sends. */
function cliSpec(name = "web", replicas = 2) {
  return {
    Name: name,
    Labels: {},
    TaskTemplate: {
      ContainerSpec: {
        Image: "busybox:latest",
        Args: ["sleep", "100"],
        Init: false,
        DNSConfig: {},
      },
      Resources: { Limits: {}, Reservations: {} },
      Placement: {},
      ForceUpdate: 0,
    },
    Mode: { Replicated: { Replicas: replicas } },
    EndpointSpec: { Mode: "vip" },
  };
}

/** A process service, with Shoal's extension. */
function processSpec(name = "sleeper", replicas = 2) {
  return {
    Name: name,
    TaskTemplate: {
      Runtime: "process",
      ProcessSpec: {
        Command: "/bin/sleep",
        Args: ["600"],
        Env: ["A=1"],
        StopGracePeriod: 2_000_000_000,
        Healthcheck: { Test: ["CMD", "true"], Interval: 1_000_000_000 },
      },
      RestartPolicy: { Condition: "on-failure", Delay: 250_000_000, MaxAttempts: 3 },
    },
    Mode: { Replicated: { Replicas: replicas } },
  };
}

async function create(api: ApiFixture, spec: unknown): Promise<string> {
  const res = await api.call("POST", "/v1.41/services/create", spec);
  assert.equal(res.status, 201, res.text);
  assert.match(res.body.ID, /^[0-9a-z]{25}$/);
  return res.body.ID;
}

Deno.test("services: create, inspect and list in Docker's shapes and units", async () => {
  await withApi(async (api) => {
    const created = await api.call("POST", "/services/create", cliSpec());
    assert.equal(created.status, 201);
    assert.deepEqual(created.body.Warnings, [
      "no node of this swarm offers the container runtime yet: the tasks of web stay pending until one joins",
    ]);
    const id = created.body.ID;

    const svc = (await api.call("GET", `/services/${id}`)).body;
    assert.equal(svc.ID, id);
    assert.equal(svc.Version.Index, api.manager.state.services.get(id)!.version);
    assert.match(svc.CreatedAt, RFC3339);
    assert.match(svc.UpdatedAt, RFC3339);
    assert.equal(svc.Spec.Name, "web");
    assert.deepEqual(svc.Spec.Labels, {});
    assert.deepEqual(svc.Spec.Mode, { Replicated: { Replicas: 2 } });
    const t = svc.Spec.TaskTemplate;
    assert.equal(t.Runtime, "container");
    assert.equal(t.ContainerSpec.Image, "busybox:latest");
    assert.deepEqual(t.ContainerSpec.Args, ["sleep", "100"]);
    assert.equal(t.ContainerSpec.StopGracePeriod, 10_000_000_000, "10 s in ns");
    assert.deepEqual(t.RestartPolicy, {
      Condition: "any",
      Delay: 5_000_000_000,
      MaxAttempts: 0,
      Window: 0,
    });
    assert.deepEqual(svc.Spec.UpdateConfig, {
      Parallelism: 1,
      FailureAction: "pause",
      Monitor: 5_000_000_000,
      MaxFailureRatio: 0,
      Order: "stop-first",
    });
    assert.deepEqual(svc.Spec.EndpointSpec, { Mode: "vip" });
    assert.equal(svc.PreviousSpec, undefined);
    assert.equal(svc.ServiceStatus, undefined, "only listed with status=true");

    // By name and by id prefix too, as Docker.
    assert.equal((await api.call("GET", "/services/web")).body.ID, id);
    assert.equal((await api.call("GET", `/services/${id.slice(0, 6)}`)).body.ID, id);
    const missing = await api.call("GET", "/services/nope");
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, { message: "service nope not found", code: "not_found" });

    await create(api, { ...cliSpec("api", 1), Labels: { tier: "front" } });
    await create(api, {
      ...cliSpec("everywhere"),
      Mode: { Global: {} },
      TaskTemplate: { ContainerSpec: { Image: "busybox" } },
    });
    const names = async (q: string) =>
      (await api.call("GET", `/services${q}`)).body.map((s: { Spec: { Name: string } }) =>
        s.Spec.Name
      );
    assert.deepEqual(await names(""), ["api", "everywhere", "web"]);
    assert.deepEqual(await names(`?filters=${filters({ name: ["we"] })}`), ["web"]);
    assert.deepEqual(await names(`?filters=${filters({ mode: ["global"] })}`), ["everywhere"]);
    assert.deepEqual(await names(`?filters=${filters({ label: ["tier=front"] })}`), ["api"]);
    assert.deepEqual(await names(`?filters=${filters({ id: [id.slice(0, 5)] })}`), ["web"]);
    assert.deepEqual(
      await names(`?filters=${encodeURIComponent('{"name":["api","web"]}')}`),
      ["api", "web"],
      "the old list form of filters",
    );
    const badFilter = await api.call("GET", `/services?filters=${filters({ colour: ["red"] })}`);
    assert.equal(badFilter.status, 400);
    assert.equal(badFilter.body.message, "invalid filter 'colour'");

    const listed = (await api.call("GET", "/services?status=true")).body;
    const web = listed.find((s: { ID: string }) => s.ID === id);
    assert.deepEqual(web.ServiceStatus, { RunningTasks: 0, DesiredTasks: 2, CompletedTasks: 0 });
  }, { projections: false });
});

Deno.test("services: invalid specs are 400s naming the field; conflicts are 409s", async () => {
  await withApi(async (api) => {
    const cases: [unknown, string][] = [
      [
        { ...cliSpec(), TaskTemplate: { ContainerSpec: {} } },
        "invalid service spec: TaskTemplate.ContainerSpec.Image: must name an image",
      ],
      [
        { ...cliSpec(), Mode: { Replicated: { Replicas: -1 } } },
        "invalid service spec: Mode.Replicated.Replicas: must not be negative",
      ],
      [
        { ...cliSpec(), Mode: { Replicated: { Replicas: "3" } } },
        "invalid service spec: Mode.Replicated.Replicas: must be a number, got a string",
      ],
      [
        { ...cliSpec(), Name: "bad/name" },
        "invalid service spec: Name: must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
      ],
      [
        { ...cliSpec(), Colour: "blue" },
        "invalid service spec: Colour: unknown field",
      ],
      [
        {
          ...cliSpec(),
          TaskTemplate: { ContainerSpec: { Image: "busybox", TTY: true } },
        },
        "invalid service spec: TaskTemplate.ContainerSpec.TTY: TTY is not supported by Shoal",
      ],
      [
        {
          ...cliSpec(),
          TaskTemplate: {
            ContainerSpec: { Image: "busybox" },
            Placement: { Constraints: ["node.role"] },
          },
        },
        "invalid service spec: TaskTemplate.Placement.Constraints.0: must look like 'node.labels.KEY==VALUE' (with == or !=)",
      ],
      [
        {
          ...cliSpec(),
          TaskTemplate: { ContainerSpec: { Image: "busybox", StopGracePeriod: -5 } },
        },
        "invalid service spec: TaskTemplate.ContainerSpec.StopGracePeriod: must not be negative",
      ],
      [
        { ...cliSpec(), TaskTemplate: { Runtime: "plugin", PluginSpec: { Name: "x" } } },
        'invalid service spec: TaskTemplate.PluginSpec: plugin services is not supported by Shoal; TaskTemplate.Runtime: must be "container" or "process" (Shoal runs no plugins)',
      ],
      [
        { ...cliSpec(), TaskTemplate: { Runtime: "process", ProcessSpec: { Args: ["x"] } } },
        "invalid service spec: TaskTemplate.ProcessSpec.Command: must name a program",
      ],
      [
        {
          ...cliSpec(),
          EndpointSpec: { Ports: [{ TargetPort: 70000 }] },
        },
        "invalid service spec: EndpointSpec.Ports.0.TargetPort: must be a port between 1 and 65535",
      ],
      [
        { ...cliSpec(), Mode: { Replicated: {}, Global: {} } },
        "invalid service spec: Mode: must set only one of Replicated, Global, ReplicatedJob and GlobalJob",
      ],
      [[1, 2], "invalid service spec: must be an object, got an array"],
    ];
    for (const [body, message] of cases) {
      const res = await api.call("POST", "/services/create", body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.message, message);
      assert.equal(res.body.code, "invalid_argument");
    }
    const noSecret = await api.call("POST", "/services/create", {
      ...cliSpec(),
      TaskTemplate: {
        ContainerSpec: { Image: "busybox", Secrets: [{ SecretID: "nope", SecretName: "nope" }] },
      },
    });
    assert.equal(noSecret.status, 404);
    assert.match(noSecret.body.message, /^secret nope not found/);
    assert.equal(api.manager.state.services.size, 0, "nothing was written");

    await create(api, cliSpec());
    const dup = await api.call("POST", "/services/create", cliSpec());
    assert.equal(dup.status, 409);
    assert.deepEqual(dup.body, {
      message: "name conflicts with an existing object: service web already exists",
      code: "name_conflict",
    });
  }, { projections: false });
});

Deno.test("services: update with versions, scale without a rolling update, rollback, remove", async () => {
  await withApi(async (api) => {
    const id = await create(api, cliSpec());
    const svc = (await api.call("GET", "/services/web")).body;
    const specVersion = api.manager.state.services.get(id)!.specVersion;

    // What `docker service scale web=3` does: the spec as read, with other replicas.
    const scaled = structuredClone(svc.Spec);
    scaled.Mode.Replicated.Replicas = 3;
    const up = await api.call(
      "POST",
      `/services/${id}/update?version=${svc.Version.Index}&registryAuthFrom=spec`,
      scaled,
    );
    assert.equal(up.status, 200, up.text);
    const rec = api.manager.state.services.get(id)!;
    assert.equal(rec.spec.mode.kind === "replicated" && rec.spec.mode.replicas, 3);
    assert.equal(rec.specVersion, specVersion, "the round trip left the task spec as it was");
    assert.equal(rec.updateStatus, undefined, "no rolling update");

    // The same version again is stale now.
    const stale = await api.call(
      "POST",
      `/services/${id}/update?version=${svc.Version.Index}`,
      scaled,
    );
    assert.equal(stale.status, 409);
    assert.equal(stale.body.code, "version_conflict");
    assert.match(stale.body.message, /^update out of sequence: /);

    // `docker service update --env-add A=1 web`: a new task template.
    const cur = (await api.call("GET", "/services/web")).body;
    const env = structuredClone(cur.Spec);
    env.TaskTemplate.ContainerSpec.Env = ["A=1"];
    const up2 = await api.call("POST", `/services/web/update?version=${cur.Version.Index}`, env);
    assert.equal(up2.status, 200, up2.text);
    const after = (await api.call("GET", "/services/web")).body;
    assert.deepEqual(after.Spec.TaskTemplate.ContainerSpec.Env, ["A=1"]);
    assert.equal(after.PreviousSpec.TaskTemplate.ContainerSpec.Env, undefined);
    assert.equal(after.UpdateStatus.State, "updating");
    assert.match(after.UpdateStatus.StartedAt, RFC3339);

    const back = await api.call(
      "POST",
      `/services/web/update?version=${after.Version.Index}&rollback=previous`,
      after.Spec,
    );
    assert.equal(back.status, 200, back.text);
    const rolled = (await api.call("GET", "/services/web")).body;
    assert.equal(rolled.Spec.TaskTemplate.ContainerSpec.Env, undefined);
    assert.equal(rolled.UpdateStatus.State, "rollback_started");

    const badRollback = await api.call("POST", "/services/web/update?rollback=next", rolled.Spec);
    assert.equal(badRollback.status, 400);

    const rm = await api.call("DELETE", "/services/web");
    assert.equal(rm.status, 200);
    assert.equal(api.manager.state.services.size, 0);
    const again = await api.call("DELETE", "/services/web");
    assert.equal(again.status, 404);
    assert.equal(again.body.message, "service web not found");
  }, { projections: false });
});

Deno.test("services: the process runtime extension, and tasks in Docker's shape", async () => {
  await withApi(async (api) => {
    const id = await create(api, processSpec());
    const svc = (await api.call("GET", `/services/${id}`)).body;
    const t = svc.Spec.TaskTemplate;
    assert.equal(t.Runtime, "process");
    assert.equal(t.ContainerSpec, undefined);
    assert.deepEqual(t.ProcessSpec, {
      Command: "/bin/sleep",
      Args: ["600"],
      Env: ["A=1"],
      StopGracePeriod: 2_000_000_000,
      Healthcheck: {
        Test: ["CMD", "true"],
        Interval: 1_000_000_000,
        Timeout: 30_000_000_000,
        Retries: 3,
      },
    });
    assert.deepEqual(t.RestartPolicy, {
      Condition: "on-failure",
      Delay: 250_000_000,
      MaxAttempts: 3,
      Window: 0,
    });
    const rt = api.manager.state.services.get(id)!.spec.task.runtime;
    assert.equal(rt.kind === "process" && rt.stopGracePeriod, 2_000, "ms inside Shoal");

    // The docker CLI drops ProcessSpec (it does not know it): scaling keeps the program.
    const specVersion = api.manager.state.services.get(id)!.specVersion;
    const noProcess = structuredClone(svc.Spec);
    delete noProcess.TaskTemplate.ProcessSpec;
    noProcess.Mode.Replicated.Replicas = 3;
    const up = await api.call(
      "POST",
      `/services/${id}/update?version=${svc.Version.Index}`,
      noProcess,
    );
    assert.equal(up.status, 200, up.text);
    const rec = api.manager.state.services.get(id)!;
    assert.equal(rec.spec.task.runtime.kind, "process");
    assert.equal(rec.specVersion, specVersion, "the same task spec");
    assert.equal(rec.updateStatus, undefined, "no rolling update");

    // Tasks: the orchestrator makes three; the scheduler places them on the process node.
    const tasks = await until("three assigned tasks", () => {
      const ts = [...api.manager.state.tasksOf(id)];
      return ts.length === 3 && ts.every((x) => x.nodeId !== "") && ts;
    });
    const list = await api.call("GET", `/tasks?filters=${filters({ service: ["sleeper"] })}`);
    assert.equal(list.status, 200);
    assert.equal(list.body.length, 3);
    const task = list.body.find((x: { ID: string }) => x.ID === tasks[0].id);
    assert.equal(task.ServiceID, id);
    assert.equal(task.NodeID, api.nodeId);
    assert.ok(task.Slot >= 1 && task.Slot <= 3);
    assert.equal(task.DesiredState, "running");
    assert.match(task.Status.State, /^(assigned|accepted|preparing|ready|starting|running)$/);
    assert.match(task.Status.Timestamp, RFC3339);
    assert.equal(task.Spec.ProcessSpec.Command, "/bin/sleep");
    assert.match(task.CreatedAt, RFC3339);

    const one = await api.call("GET", `/tasks/${tasks[0].id.slice(0, 8)}`);
    assert.equal(one.body.ID, tasks[0].id);
    assert.equal((await api.call("GET", "/tasks/zzzz")).status, 404);

    const by = async (f: Record<string, string[]>) =>
      (await api.call("GET", `/tasks?filters=${filters(f)}`)).body.length;
    assert.equal(await by({ node: ["node-1"] }), 3);
    assert.equal(await by({ "desired-state": ["running"] }), 3);
    assert.equal(await by({ "desired-state": ["shutdown"] }), 0);
    assert.equal(await by({ name: ["sleeper.1"] }), 1);
    assert.equal(await by({ id: [tasks[1].id] }), 1);
    const bad = await api.call("GET", `/tasks?filters=${filters({ "desired-state": ["sleepy"] })}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.message, "Invalid desired-state filter: 'sleepy'");
    const noSvc = await api.call("GET", `/tasks?filters=${filters({ service: ["nope"] })}`);
    assert.equal(noSvc.status, 404);

    // Status reported by an agent shows through, with the process id as PID.
    const t0 = tasks[0];
    await api.manager.propose([{
      type: "TaskStatusReported",
      v: 1,
      data: {
        id: t0.id,
        status: {
          state: TaskState.running,
          timestamp: Date.now(),
          message: "started",
          err: "",
          runtimeId: "4242",
        },
      },
      meta: { by: "test", reason: "test" },
    }], "test");
    const running = (await api.call("GET", `/tasks/${t0.id}`)).body;
    assert.equal(running.Status.State, "running");
    assert.deepEqual(running.Status.ContainerStatus, { ContainerID: "", PID: 4242, ExitCode: 0 });
    const status = (await api.call("GET", "/services?status=true")).body[0].ServiceStatus;
    assert.deepEqual(status, { RunningTasks: 1, DesiredTasks: 3, CompletedTasks: 0 });
  });
});

Deno.test("services: secrets and networks are referenced by name or id", async () => {
  await withApi(async (api) => {
    const secret = await api.call("POST", "/secrets/create", { Name: "db", Data: btoa("pw") });
    const net = await api.call("POST", "/networks/create", { Name: "backend", Driver: "overlay" });
    const id = await create(api, {
      Name: "app",
      TaskTemplate: {
        ContainerSpec: {
          Image: "busybox",
          Secrets: [{
            SecretID: secret.body.ID,
            SecretName: "db",
            File: { Name: "db", UID: "0", GID: "0", Mode: 0o400 },
          }],
        },
        Networks: [{ Target: "backend", Aliases: ["app"] }],
      },
    });
    const rec = api.manager.state.services.get(id)!;
    assert.deepEqual(rec.spec.task.secrets, [{
      id: secret.body.ID,
      name: "db",
      target: "",
      uid: "0",
      gid: "0",
      mode: 0o400,
    }]);
    assert.deepEqual(rec.spec.task.networks, [{ target: net.body.Id, aliases: ["app"] }]);
    const svc = (await api.call("GET", "/services/app")).body;
    assert.deepEqual(svc.Spec.TaskTemplate.ContainerSpec.Secrets, [{
      File: { Name: "db", UID: "0", GID: "0", Mode: 0o400 },
      SecretID: secret.body.ID,
      SecretName: "db",
    }]);
    assert.deepEqual(svc.Spec.TaskTemplate.Networks, [{ Target: net.body.Id, Aliases: ["app"] }]);

    const inUse = await api.call("DELETE", "/secrets/db");
    assert.equal(inUse.status, 400);
    assert.equal(inUse.body.message, "secret 'db' is in use by the following service: app");
    const netInUse = await api.call("DELETE", "/networks/backend");
    assert.equal(netInUse.status, 400);
    assert.match(netInUse.body.message, /in use by the following service\(s\): app/);
  }, { projections: false });
});
