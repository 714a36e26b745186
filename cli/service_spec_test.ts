import assert from "node:assert/strict";
import { parseFlags } from "./flags.ts";
import {
  applyUpdate,
  CREATE_FLAGS,
  createSpec,
  imageWithTag,
  parseFileRef,
  parseMount,
  parseNetwork,
  parsePlacementPref,
  parsePort,
  readCsv,
  secretRefs,
  shellSplit,
  type SpecInputs,
  UPDATE_FLAGS,
} from "./service_spec.ts";
import type { ServiceSpec } from "./docker_types.ts";
import { CliError } from "./format.ts";

class BadFlag extends Error {}

const inputs: SpecInputs = {
  bad: (flag, value, err) => {
    throw new BadFlag(
      `invalid argument "${value}" for "--${flag}" flag: ${(err as Error).message}`,
    );
  },
  env: (k) => ({ HOME: "/home/me" } as Record<string, string>)[k],
  readTextFile: () => "# comment\nFROM_FILE=1\n\nHOME\n",
};

const create = (...argv: string[]) =>
  createSpec(parseFlags(argv, CREATE_FLAGS, { interspersed: false }), inputs);

Deno.test("create: a container service from Docker's flags", () => {
  const { spec, pending } = create(
    "--name",
    "web",
    "--replicas",
    "3",
    "-e",
    "A=1",
    "--env",
    "HOME",
    "--label",
    "tier=front",
    "-p",
    "8080:80",
    "--constraint",
    "node.role==manager",
    "--secret",
    "db",
    "--restart-condition",
    "on-failure",
    "--restart-delay",
    "10s",
    "--update-parallelism",
    "2",
    "--update-delay",
    "1m30s",
    "--limit-cpu",
    "0.5",
    "--limit-memory",
    "512M",
    "--reserve-memory",
    "128m",
    "--stop-grace-period",
    "30s",
    "--health-cmd",
    "true",
    "--health-interval",
    "5s",
    "nginx",
    "nginx",
    "-g",
    "daemon off;",
  );
  assert.deepEqual(spec, {
    Name: "web",
    Labels: { tier: "front" },
    TaskTemplate: {
      Resources: {
        Limits: { NanoCPUs: 500_000_000, MemoryBytes: 536_870_912 },
        Reservations: { MemoryBytes: 134_217_728 },
      },
      Placement: { Constraints: ["node.role==manager"] },
      RestartPolicy: { Condition: "on-failure", Delay: 10e9, MaxAttempts: 0 },
      ContainerSpec: {
        Image: "nginx:latest",
        Args: ["nginx", "-g", "daemon off;"],
        Env: ["A=1", "HOME=/home/me"],
        Init: false,
        StopGracePeriod: 30e9,
        Healthcheck: {
          Test: ["CMD-SHELL", "true"],
          Interval: 5e9,
          Timeout: 0,
          Retries: 0,
          StartPeriod: 0,
        },
      },
    },
    Mode: { Replicated: { Replicas: 3 } },
    EndpointSpec: {
      Mode: "vip",
      Ports: [{ Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress" }],
    },
    UpdateConfig: {
      Parallelism: 2,
      Delay: 90e9,
      Monitor: 5e9,
      FailureAction: "pause",
      MaxFailureRatio: 0,
      Order: "stop-first",
    },
  });
  assert.deepEqual(pending.secrets, [{
    source: "db",
    target: "db",
    uid: "0",
    gid: "0",
    mode: 0o444,
  }]);
});

Deno.test("create: --runtime process runs IMAGE as a program with the rest as its arguments", () => {
  const { spec } = create(
    "--name",
    "api",
    "--runtime",
    "process",
    "-e",
    "PORT=8080",
    "-w",
    "/srv",
    "--stop-signal",
    "SIGINT",
    "--stop-grace-period",
    "5s",
    "python3",
    "-m",
    "http.server",
    "--bind",
    "127.0.0.1",
  );
  assert.equal(spec.TaskTemplate.Runtime, "process");
  assert.equal(spec.TaskTemplate.ContainerSpec, undefined);
  assert.deepEqual(spec.TaskTemplate.ProcessSpec, {
    Command: "python3",
    Args: ["-m", "http.server", "--bind", "127.0.0.1"],
    Env: ["PORT=8080"],
    Dir: "/srv",
    StopSignal: "SIGINT",
    StopGracePeriod: 5e9,
  });
  assert.throws(
    () => create("--runtime", "process", "--hostname", "h", "sleep", "1"),
    /--hostname cannot be used with --runtime process/,
  );
  assert.throws(() => create("--runtime", "vm", "x"), /invalid argument "vm" for "--runtime" flag/);
});

Deno.test("create: modes, env files, jobs", () => {
  assert.deepEqual(create("--mode", "global", "busybox").spec.Mode, { Global: {} });
  assert.deepEqual(
    create("--mode", "replicated-job", "--replicas", "5", "--max-concurrent", "2", "busybox").spec
      .Mode,
    { ReplicatedJob: { MaxConcurrent: 2, TotalCompletions: 5 } },
  );
  assert.throws(
    () => create("--mode", "global", "--replicas", "2", "x"),
    /replicas can only be used/,
  );
  assert.throws(() => create("--mode", "nope", "x"), /unknown mode: nope/);
  assert.throws(
    () => create("--mode", "replicated-job", "--update-delay", "1s", "x"),
    /update and rollback configuration is not supported for jobs/,
  );
  assert.deepEqual(
    create("--env-file", "f", "-e", "FROM_FILE=2", "x").spec.TaskTemplate.ContainerSpec!.Env,
    ["HOME=/home/me", "FROM_FILE=2"],
  );
});

Deno.test("create: bad values are reported as Docker reports them", () => {
  assert.throws(
    () => create("--replicas", "-1", "x"),
    new BadFlag(
      'invalid argument "-1" for "--replicas" flag: strconv.ParseUint: parsing "-1": invalid syntax',
    ),
  );
  assert.throws(() => create("--update-delay", "5", "x"), /time: missing unit in duration "5"/);
  assert.throws(() => create("--limit-memory", "lots", "x"), /invalid size: 'lots'/);
  assert.throws(() => create("--health-interval", "-1s", "x"), /duration cannot be negative/);
  assert.throws(() => create("-p", "1.2.3.4:80:80", "x"), /hostip is not supported/);
  assert.throws(() => create("--no-healthcheck", "--health-cmd", "x", "y"), CliError);
});

Deno.test("ports: short and long syntax", () => {
  const tcp = (pub: number, target: number, proto = "tcp", mode = "ingress") => ({
    Protocol: proto,
    TargetPort: target,
    PublishedPort: pub,
    PublishMode: mode,
  });
  assert.deepEqual(parsePort("80"), [tcp(0, 80)]);
  assert.deepEqual(parsePort("8080:80/udp"), [tcp(8080, 80, "udp")]);
  assert.deepEqual(parsePort("9000-9001:90-91"), [tcp(9000, 90), tcp(9001, 91)]);
  assert.deepEqual(parsePort("8080-8081:80"), [tcp(8080, 80), tcp(8081, 80)]);
  assert.deepEqual(parsePort("published=5353,target=53,protocol=udp,mode=host"), [
    tcp(5353, 53, "udp", "host"),
  ]);
  assert.throws(() => parsePort("published=80"), /missing mandatory field 'target'/);
  assert.throws(() => parsePort("target=80,mode=x"), /invalid publish mode value \(x\)/);
  assert.throws(() => parsePort("8080:80/xyz"), /invalid proto: xyz/);
  assert.throws(() => parsePort("80-81:90-93"), /invalid ranges specified/);
});

Deno.test("secrets, configs, mounts, networks, placement preferences, shell words", () => {
  assert.deepEqual(parseFileRef("source=db,target=pw,uid=1,gid=2,mode=0400", "secret"), {
    source: "db",
    target: "pw",
    uid: "1",
    gid: "2",
    mode: 0o400,
  });
  assert.throws(() => parseFileRef("target=x", "secret"), /source is required/);
  assert.throws(
    () => parseFileRef("src=a,bogus=1", "config"),
    /invalid field in config request: bogus/,
  );
  assert.deepEqual(parseMount("type=bind,src=/a,dst=/b,ro"), {
    Type: "bind",
    Source: "/a",
    Target: "/b",
    ReadOnly: true,
  });
  assert.throws(() => parseMount("type=volume"), /target is required/);
  assert.deepEqual(parseNetwork("name=backend,alias=db"), { Target: "backend", Aliases: ["db"] });
  assert.deepEqual(parseNetwork("backend"), { Target: "backend" });
  assert.deepEqual(parsePlacementPref("spread=node.labels.zone"), {
    Spread: { SpreadDescriptor: "node.labels.zone" },
  });
  assert.throws(() => parsePlacementPref("pack=x"), /only spread is supported/);
  assert.deepEqual(shellSplit(`sh -c "echo 'hi there'" a\\ b`), [
    "sh",
    "-c",
    "echo 'hi there'",
    "a b",
  ]);
  assert.deepEqual(readCsv('a,"b,c",""'), ["a", "b,c", ""]);
  assert.equal(imageWithTag("busybox"), "busybox:latest");
  assert.equal(imageWithTag("docker.io/library/busybox:1"), "busybox:1");
  assert.equal(imageWithTag("registry:5000/app"), "registry:5000/app:latest");
  assert.equal(imageWithTag("app@sha256:abc"), "app@sha256:abc");
  const ids = new Map([["db", "id1"]]);
  assert.deepEqual(secretRefs([parseFileRef("db", "secret")], ids), [{
    File: { Name: "db", UID: "0", GID: "0", Mode: 0o444 },
    SecretID: "id1",
    SecretName: "db",
  }]);
  assert.throws(() => secretRefs([parseFileRef("nope", "secret")], ids), /secret not found: nope/);
});

function webSpec(): ServiceSpec {
  return {
    Name: "web",
    Labels: { tier: "front", team: "a" },
    TaskTemplate: {
      ContainerSpec: { Image: "app:1", Env: ["A=1", "B=2"], Init: false },
      Placement: { Constraints: ["node.role==manager"] },
    },
    Mode: { Replicated: { Replicas: 3 } },
    EndpointSpec: {
      Mode: "vip",
      Ports: [{ Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress" }],
    },
  };
}

const update = (spec: ServiceSpec, ...argv: string[]) =>
  applyUpdate(spec, parseFlags(argv, UPDATE_FLAGS), inputs);

Deno.test("update: changes only what the flags name", () => {
  const spec = webSpec();
  update(
    spec,
    "--image",
    "app:2",
    "--env-add",
    "B=3",
    "--env-add",
    "C=4",
    "--env-rm",
    "A",
    "--label-add",
    "x=y",
    "--label-rm",
    "team",
    "--replicas",
    "5",
    "--publish-add",
    "7000:70",
    "--publish-rm",
    "80",
    "--constraint-add",
    "node.labels.ssd==true",
    "--update-parallelism",
    "3",
    "--restart-max-attempts",
    "2",
    "--limit-memory",
    "1g",
    "--force",
  );
  assert.deepEqual(spec, {
    Name: "web",
    Labels: { tier: "front", x: "y" },
    TaskTemplate: {
      ContainerSpec: { Image: "app:2", Env: ["B=3", "C=4"], Init: false },
      Placement: { Constraints: ["node.labels.ssd==true", "node.role==manager"] },
      Resources: { Limits: { MemoryBytes: 1024 ** 3 } },
      RestartPolicy: { Condition: "any", Delay: 5e9, MaxAttempts: 2 },
      ForceUpdate: 1,
    },
    Mode: { Replicated: { Replicas: 5 } },
    EndpointSpec: {
      Mode: "vip",
      Ports: [{ Protocol: "tcp", TargetPort: 70, PublishedPort: 7000, PublishMode: "ingress" }],
    },
    UpdateConfig: {
      Parallelism: 3,
      Monitor: 5e9,
      FailureAction: "pause",
      MaxFailureRatio: 0,
      Order: "stop-first",
    },
  });
});

Deno.test("update: a process service's program and arguments; container-only flags refused", () => {
  const spec: ServiceSpec = {
    Name: "api",
    TaskTemplate: { Runtime: "process", ProcessSpec: { Command: "python3", Args: ["-V"] } },
    Mode: { Replicated: { Replicas: 1 } },
  };
  update(spec, "--image", "node", "--args", "server.js --port 80", "--env-add", "X=1");
  assert.deepEqual(spec.TaskTemplate.ProcessSpec, {
    Command: "node",
    Args: ["server.js", "--port", "80"],
    Env: ["X=1"],
  });
  assert.throws(
    () => update(spec, "--user", "root"),
    /--user cannot be used with a service of runtime process/,
  );
  assert.throws(
    () => update({ ...spec, Mode: { Global: {} } }, "--replicas", "2"),
    /replicas can only be used with replicated mode/,
  );
});

Deno.test("update: health checks as Docker merges them", () => {
  const spec = webSpec();
  update(spec, "--health-cmd", "curl -f localhost", "--health-retries", "4");
  assert.deepEqual(spec.TaskTemplate.ContainerSpec!.Healthcheck, {
    Test: ["CMD-SHELL", "curl -f localhost"],
    Retries: 4,
  });
  update(spec, "--no-healthcheck");
  assert.deepEqual(spec.TaskTemplate.ContainerSpec!.Healthcheck, { Test: ["NONE"] });
});
