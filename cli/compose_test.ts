import assert from "node:assert/strict";
import {
  type ComposeContext,
  ComposeError,
  composePlan,
  interpolateString,
  parseComposeText,
  STACK_LABEL,
} from "./compose.ts";

const files: Record<string, string> = {
  "/app/db.txt": "s3cret",
  "/app/app.env": "A=1\n# no\nB=2\n",
};

function ctx(env: Record<string, string> = {}): ComposeContext {
  return {
    stack: "demo",
    workingDir: "/app",
    env: (n) => env[n],
    readFile: (p) => {
      if (!(p in files)) return Promise.reject(new Error("No such file"));
      return Promise.resolve(new TextEncoder().encode(files[p]));
    },
  };
}

async function plan(yaml: string, env: Record<string, string> = {}) {
  return await composePlan(parseComposeText(yaml, (n) => env[n]), ctx(env));
}

async function rejects(yaml: string, message: RegExp) {
  await assert.rejects(plan(yaml), (err: Error) => {
    assert.ok(err instanceof ComposeError, `${err}`);
    assert.match(err.message, message);
    return true;
  });
}

Deno.test("compose: the dockercoins shapes become Docker service specs of the stack", async () => {
  const p = await plan(
    `
version: "3.8"
services:
  rng:
    build: dockercoins/rng
    image: \${REGISTRY-127.0.0.1:5000}/rng:\${TAG-latest}
    deploy:
      mode: global
  worker:
    image: worker
    command: python worker.py --speed "very fast"
    environment:
      B: "2"
      A: 1
    env_file: app.env
    ports: ["8000:80", "9000-9001:90-91/udp", {target: 53, published: 5353, protocol: udp, mode: host}]
    secrets: [dbpass, {source: dbpass, target: pw, mode: 0400}]
    healthcheck: {test: "curl -f localhost", interval: 5s, retries: 3}
    networks: [back]
    deploy:
      replicas: 10
      placement: {constraints: [node.role==worker], preferences: [{spread: node.labels.zone}]}
      resources: {limits: {cpus: "0.5", memory: 64M}, reservations: {memory: 32M}}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3}
      update_config: {parallelism: 2, delay: 1s, failure_action: rollback, order: start-first}
      labels: {tier: back}
networks:
  back: {driver: overlay, attachable: true}
secrets:
  dbpass: {file: ./db.txt}
`,
    { TAG: "v2" },
  );
  assert.deepEqual(p.warnings, ["Ignoring unsupported options: build"]);
  assert.deepEqual(p.networks.map((n) => n.name), ["demo_default", "demo_back"]);
  assert.deepEqual(p.networks[1].spec, {
    Name: "demo_back",
    Driver: "overlay",
    Labels: { [STACK_LABEL]: "demo" },
    Scope: "swarm",
    Attachable: true,
  });
  assert.equal(p.secrets[0].name, "demo_dbpass");
  assert.equal(new TextDecoder().decode(p.secrets[0].data), "s3cret");
  const [rng, worker] = p.services;
  assert.equal(rng.name, "demo_rng");
  assert.deepEqual(rng.spec.Mode, { Global: {} });
  assert.equal(rng.spec.TaskTemplate.ContainerSpec?.Image, "127.0.0.1:5000/rng:v2");
  assert.deepEqual(rng.spec.TaskTemplate.Networks, [{ Target: "demo_default", Aliases: ["rng"] }]);
  const w = worker.spec;
  assert.deepEqual(w.Mode, { Replicated: { Replicas: 10 } });
  assert.deepEqual(w.Labels, {
    tier: "back",
    [STACK_LABEL]: "demo",
    "com.docker.stack.image": "worker",
  });
  const c = w.TaskTemplate.ContainerSpec!;
  assert.deepEqual(c.Args, ["python", "worker.py", "--speed", "very fast"]);
  assert.deepEqual(c.Env, ["A=1", "B=2", "A=1", "B=2"]);
  assert.deepEqual(c.Healthcheck, {
    Test: ["CMD-SHELL", "curl -f localhost"],
    Interval: 5e9,
    Retries: 3,
  });
  assert.deepEqual(c.Secrets, [
    {
      File: { Name: "dbpass", UID: "0", GID: "0", Mode: 0o444 },
      SecretID: "",
      SecretName: "demo_dbpass",
    },
    {
      File: { Name: "pw", UID: "0", GID: "0", Mode: 0o400 },
      SecretID: "",
      SecretName: "demo_dbpass",
    },
  ]);
  assert.deepEqual(w.EndpointSpec?.Ports, [
    { Protocol: "tcp", TargetPort: 80, PublishedPort: 8000, PublishMode: "ingress" },
    { Protocol: "udp", TargetPort: 90, PublishedPort: 9000, PublishMode: "ingress" },
    { Protocol: "udp", TargetPort: 91, PublishedPort: 9001, PublishMode: "ingress" },
    { Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: "host" },
  ]);
  assert.deepEqual(w.TaskTemplate.Placement, {
    Constraints: ["node.role==worker"],
    Preferences: [{ Spread: { SpreadDescriptor: "node.labels.zone" } }],
  });
  assert.deepEqual(w.TaskTemplate.Resources, {
    Limits: { NanoCPUs: 5e8, MemoryBytes: 64 * 2 ** 20 },
    Reservations: { MemoryBytes: 32 * 2 ** 20 },
  });
  assert.deepEqual(w.TaskTemplate.RestartPolicy, {
    Condition: "on-failure",
    Delay: 2e9,
    MaxAttempts: 3,
  });
  assert.deepEqual(w.UpdateConfig, {
    Parallelism: 2,
    Delay: 1e9,
    FailureAction: "rollback",
    Order: "start-first",
  });
  assert.deepEqual(w.TaskTemplate.Networks, [{ Target: "demo_back", Aliases: ["worker"] }]);
});

Deno.test("compose: x-shoal runs a program with the process runtime", async () => {
  const p = await plan(`
x-shoal: {runtime: process}
services:
  web:
    command: ["/usr/bin/python3", "-m", "http.server", "8080"]
    working_dir: /srv
    environment: [PORT=8080]
    stop_grace_period: 2s
  db:
    x-shoal: {runtime: container}
    image: redis
`);
  const web = p.services.find((s) => s.name === "demo_web")!.spec.TaskTemplate;
  assert.equal(web.Runtime, "process");
  assert.equal(web.ContainerSpec, undefined);
  assert.deepEqual(web.ProcessSpec, {
    Command: "/usr/bin/python3",
    Args: ["-m", "http.server", "8080"],
    Env: ["PORT=8080"],
    Dir: "/srv",
    StopGracePeriod: 2e9,
  });
  const db = p.services.find((s) => s.name === "demo_db")!.spec.TaskTemplate;
  assert.equal(db.ContainerSpec?.Image, "redis");
  await rejects(
    "services: {web: {x-shoal: {runtime: process}, image: x, command: ls}}",
    /^services\.web\.image: a process service \(x-shoal runtime process\) has no image$/,
  );
  await rejects(
    "services: {web: {x-shoal: {runtime: process}}}",
    /^services\.web\.command: a process service needs a command/,
  );
  await rejects("services: {web: {x-shoal: {runtime: vm}, image: x}}", /x-shoal\.runtime: must be/);
});

Deno.test("compose: unknown and invalid keys are errors naming the key", async () => {
  await rejects(
    "services: {web: {image: x, imagee: y}}",
    /^services\.web\.imagee: unknown key in a service/,
  );
  await rejects("services: {web: {image: x}}\nfoo: 1", /^foo: unknown top-level key/);
  await rejects(
    "services: {web: {image: x, deploy: {replicas: lots}}}",
    /^services\.web\.deploy\.replicas: must be a whole number, got "lots"$/,
  );
  await rejects(
    "services: {web: {image: x, deploy: {mode: global, replicas: 2}}}",
    /deploy\.replicas: cannot be set for a global service/,
  );
  await rejects(
    "services: {web: {image: x, deploy: {update_config: {delay: soon}}}}",
    /^services\.web\.deploy\.update_config\.delay: time: invalid duration "soon"$/,
  );
  await rejects(
    'services: {web: {image: x, ports: ["80:http"]}}',
    /^services\.web\.ports\.0: invalid port/,
  );
  await rejects("services: {web: {image: x, secrets: [nope]}}", /refers to undefined secret nope/);
  await rejects(
    "services: {web: {image: x, networks: [nope]}}",
    /refers to undefined network nope/,
  );
  await rejects("services: {web: {command: ls}}", /^services\.web\.image: must be given/);
  await rejects(
    "version: '2'\nservices: {web: {image: x}}",
    /^version: unsupported compose file version/,
  );
  await rejects(
    "services: {web: {image: x}}\nsecrets: {s: {file: missing.txt}}",
    /^secrets\.s\.file: cannot read/,
  );
  await rejects("services: [", /not valid YAML/);
});

Deno.test("compose: interpolation as Compose's", () => {
  const env = (n: string) => ({ SET: "yes", EMPTY: "" } as Record<string, string>)[n];
  assert.equal(interpolateString("${SET}-$SET-${UNSET}-$$", env), "yes-yes--$");
  assert.equal(interpolateString("${UNSET-d} ${EMPTY-d} ${EMPTY:-d}", env), "d  d");
  assert.throws(
    () => interpolateString("${UNSET:?needed}", env, "services.x.image"),
    /services\.x\.image: required variable UNSET is missing a value: needed/,
  );
});

Deno.test("compose: configs, external objects and long network syntax", async () => {
  files["/app/app.toml"] = "port = 1";
  const p = await plan(`
services:
  api:
    image: api
    configs: [app, {source: app, target: /etc/app.toml, mode: 0440}]
    secrets: [shared]
    networks:
      front: {aliases: [www]}
      outside:
configs:
  app: {file: app.toml}
secrets:
  shared: {external: true}
networks:
  front: {}
  outside: {external: {name: corp-net}}
`);
  assert.deepEqual(p.configs.map((c) => [c.name, c.external]), [["demo_app", false]]);
  assert.deepEqual(p.secrets.map((c) => [c.name, c.external]), [["shared", true]]);
  assert.deepEqual(p.networks.map((n) => [n.name, n.external]), [
    ["demo_front", false],
    ["corp-net", true],
  ]);
  const c = p.services[0].spec.TaskTemplate.ContainerSpec!;
  assert.deepEqual(c.Configs, [
    {
      File: { Name: "/app", UID: "0", GID: "0", Mode: 0o444 },
      ConfigID: "",
      ConfigName: "demo_app",
    },
    {
      File: { Name: "/etc/app.toml", UID: "0", GID: "0", Mode: 0o440 },
      ConfigID: "",
      ConfigName: "demo_app",
    },
  ]);
  assert.equal(c.Secrets![0].SecretName, "shared");
  assert.deepEqual(p.services[0].spec.TaskTemplate.Networks, [
    { Target: "demo_front", Aliases: ["api", "www"] },
    { Target: "corp-net", Aliases: ["api"] },
  ]);
});
