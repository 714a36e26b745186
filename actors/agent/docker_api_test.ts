/**
 * Tests of the Docker Engine API client: parsing and framing without a daemon, then the real
 * `dockerd` (tools/docker_setup.sh starts it and builds `shoal-test/busybox:1`; CI runs that).
 * `SHOAL_SKIP_DOCKER_TESTS=1` leaves out the tests that need the daemon.
 */
import assert from "node:assert/strict";
import {
  compareVersions,
  demultiplex,
  DockerApi,
  DockerApiError,
  type LogFrame,
  parseDockerHost,
} from "./docker_api.ts";

/** The image tools/docker_setup.sh builds. */
const TEST_IMAGE = "shoal-test/busybox:1";
/** Whether the tests that need a real daemon are left out. */
const SKIP_DOCKER = Deno.env.get("SHOAL_SKIP_DOCKER_TESTS") === "1";

Deno.test("parseDockerHost reads DOCKER_HOST as the Docker CLI does", () => {
  assert.deepEqual(parseDockerHost(undefined), {
    transport: "unix",
    path: "/var/run/docker.sock",
  });
  assert.deepEqual(parseDockerHost(""), { transport: "unix", path: "/var/run/docker.sock" });
  assert.deepEqual(parseDockerHost("unix:///tmp/d.sock"), {
    transport: "unix",
    path: "/tmp/d.sock",
  });
  assert.deepEqual(parseDockerHost("tcp://10.0.0.5:2376"), {
    transport: "tcp",
    hostname: "10.0.0.5",
    port: 2376,
  });
  assert.deepEqual(parseDockerHost("tcp://docker"), {
    transport: "tcp",
    hostname: "docker",
    port: 2375,
  });
  assert.deepEqual(parseDockerHost("tcp://[::1]:2375"), {
    transport: "tcp",
    hostname: "::1",
    port: 2375,
  });
  assert.throws(() => parseDockerHost("npipe:////./pipe/docker_engine"), /Invalid DOCKER_HOST/);
  assert.throws(() => parseDockerHost("unix://relative.sock"), /absolute path/);
  assert.throws(() => parseDockerHost("ssh://me@host"), /Invalid DOCKER_HOST/);
});

Deno.test("compareVersions orders API versions numerically", () => {
  assert.ok(compareVersions("1.41", "1.45") < 0);
  assert.ok(compareVersions("1.100", "1.45") > 0);
  assert.equal(compareVersions("1.41", "1.41.0"), 0);
});

/** A stream of `chunks`. */
async function* chunks(...parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield part;
}

function frame(type: number, text: string): Uint8Array {
  const data = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + data.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(4, data.length);
  out.set(data, 8);
  return out;
}

async function frames(stream: AsyncIterable<Uint8Array>): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const f of demultiplex(stream) as AsyncIterable<LogFrame>) {
    out.push([f.stream, new TextDecoder().decode(f.data)]);
  }
  return out;
}

Deno.test("demultiplex splits Docker's stream into frames, across chunk boundaries", async () => {
  const all = new Uint8Array([...frame(1, "out\n"), ...frame(2, "err\n"), ...frame(1, "")]);
  assert.deepEqual(await frames(chunks(all)), [["stdout", "out\n"], ["stderr", "err\n"], [
    "stdout",
    "",
  ]]);
  // One byte at a time.
  const bytes = [...all].map((b) => new Uint8Array([b]));
  assert.deepEqual(await frames(chunks(...bytes)), [["stdout", "out\n"], ["stderr", "err\n"], [
    "stdout",
    "",
  ]]);
  // A truncated last frame is kept as far as it got.
  assert.deepEqual(await frames(chunks(frame(1, "whole").subarray(0, 10))), [["stdout", "wh"]]);
});

Deno.test("DockerApiError names the operation, the status and Docker's message", () => {
  const error = new DockerApiError("start container abc", 404, "No such container: abc");
  assert.equal(
    error.message,
    "Docker start container abc failed (HTTP 404): No such container: abc",
  );
  assert.ok(error.notFound);
  assert.ok(!error.conflict);
  assert.equal(
    new DockerApiError("ping", 0, "cannot connect").message,
    "Docker ping failed: cannot connect",
  );
});

Deno.test("DockerApi says clearly when the daemon cannot be reached", async () => {
  const api = new DockerApi({ endpoint: { transport: "unix", path: "/nonexistent/docker.sock" } });
  try {
    await assert.rejects(api.version(), (error: unknown) => {
      assert.ok(error instanceof DockerApiError);
      assert.equal(error.status, 0);
      assert.match(
        error.message,
        /^Docker ping the daemon failed: cannot connect to the Docker daemon at unix:\/\/\/nonexistent\/docker\.sock .*Is the docker daemon running\?/,
      );
      return true;
    });
  } finally {
    api.close();
  }
});

/** A test against the real daemon, with a client closed afterwards. */
function dockerTest(name: string, body: (api: DockerApi) => Promise<void>): void {
  Deno.test({
    name,
    ignore: SKIP_DOCKER,
    async fn() {
      const api = new DockerApi();
      try {
        await body(api);
      } finally {
        api.close();
      }
    },
  });
}

/** A name no other test uses. */
const unique = (prefix: string) =>
  `${prefix}-${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;

dockerTest("DockerApi: ping, version, info, negotiated API version", async (api) => {
  assert.equal(await api.ping(), "OK");
  const version = await api.version();
  assert.ok(version.Version.length > 0);
  assert.ok(compareVersions(version.ApiVersion, "1.41") >= 0);
  const used = await api.apiVersion();
  assert.ok(compareVersions(used, "1.41") >= 0 && compareVersions(used, "1.45") <= 0);
  const info = await api.info();
  assert.equal(info.OSType, "linux");
  assert.ok(info.NCPU > 0);
});

dockerTest(
  "DockerApi: images are listed and inspected; a missing one is undefined",
  async (api) => {
    const listed = await api.listImages(TEST_IMAGE);
    assert.equal(listed.length, 1, `run tools/docker_setup.sh to build ${TEST_IMAGE}`);
    assert.ok(listed[0].RepoTags?.includes(TEST_IMAGE));
    const image = await api.inspectImage(TEST_IMAGE);
    assert.equal(image?.Id, listed[0].Id);
    assert.equal(await api.inspectImage("shoal-test/no-such-image:1"), undefined);
  },
);

dockerTest(
  "DockerApi: a pull that cannot reach a registry fails with Docker's message",
  async (api) => {
    await assert.rejects(
      api.pullImage("shoal-test/no-such-image:1", AbortSignal.timeout(60_000)),
      (error: unknown) => {
        assert.ok(error instanceof DockerApiError, String(error));
        assert.match(error.message, /^Docker pull image shoal-test\/no-such-image:1 failed/);
        assert.ok(error.dockerMessage.length > 0);
        return true;
      },
    );
  },
);

dockerTest("DockerApi: a container's whole life, with labels, logs and exit code", async (api) => {
  const name = unique("shoal-api");
  const label = unique("run");
  const { Id: id } = await api.createContainer(name, {
    Image: TEST_IMAGE,
    Entrypoint: ["/bin/sh", "-c"],
    Cmd: ["echo hello; sleep 0.1; echo oops >&2; exit 7"],
    Labels: { "io.shoal.test": label },
    HostConfig: { NetworkMode: "host" },
  });
  try {
    const created = await api.inspectContainer(id);
    assert.equal(created?.State.Status, "created");
    assert.equal(created?.Name, `/${name}`);
    const listed = await api.listContainers({ labels: { "io.shoal.test": label } });
    assert.deepEqual(listed.map((c) => c.Id), [id]);
    assert.deepEqual(await api.listContainers({ labels: { "io.shoal.test": "other" } }), []);
    assert.equal(
      (await api.listContainers({ labels: { "io.shoal.test": true } })).some((c) => c.Id === id),
      true,
    );

    await api.startContainer(id);
    const result = await api.waitContainer(id);
    assert.equal(result.StatusCode, 7);
    const exited = await api.inspectContainer(id);
    assert.equal(exited?.State.Status, "exited");
    assert.equal(exited?.State.ExitCode, 7);

    const seen: [string, string][] = [];
    for await (const f of api.containerLogs(id, { timestamps: false })) {
      seen.push([f.stream, new TextDecoder().decode(f.data)]);
    }
    assert.deepEqual(seen, [["stdout", "hello\n"], ["stderr", "oops\n"]]);
    const tail: string[] = [];
    for await (const f of api.containerLogs(id, { tail: 1 })) {
      tail.push(new TextDecoder().decode(f.data));
    }
    assert.deepEqual(tail, ["oops\n"]);
  } finally {
    await api.removeContainer(id, { force: true });
  }
  assert.equal(await api.inspectContainer(id), undefined);
  // Removing again is not an error.
  await api.removeContainer(id, { force: true });
});

dockerTest(
  "DockerApi: stop with a timeout, kill, and following logs until the end",
  async (api) => {
    const { Id: id } = await api.createContainer(unique("shoal-api"), {
      Image: TEST_IMAGE,
      Entrypoint: ["/bin/sh", "-c"],
      // Ignores SIGTERM: only the SIGKILL after the timeout ends it.
      Cmd: ["trap '' TERM; echo up; while true; do sleep 0.1; done"],
      HostConfig: { NetworkMode: "host" },
    });
    try {
      await api.startContainer(id);
      const running = await api.inspectContainer(id);
      assert.equal(running?.State.Running, true);
      assert.ok((running?.State.Pid ?? 0) > 0);
      const lines: string[] = [];
      const following = (async () => {
        for await (const f of api.containerLogs(id, { follow: true })) {
          lines.push(new TextDecoder().decode(f.data));
        }
      })();
      const started = performance.now();
      await api.stopContainer(id, 1);
      const took = performance.now() - started;
      assert.ok(took >= 900, `stop waited ${took} ms for the timeout`);
      await following;
      assert.deepEqual(lines, ["up\n"]);
      assert.equal((await api.waitContainer(id)).StatusCode, 137);
      // Stopping a stopped container is fine; killing one is Docker's error, named.
      await api.stopContainer(id, 0);
      await assert.rejects(api.killContainer(id), (error: unknown) => {
        assert.ok(error instanceof DockerApiError);
        assert.match(
          error.message,
          new RegExp(`^Docker kill container ${id} failed \\(HTTP 409\\)`),
        );
        assert.match(error.dockerMessage, /is not running/);
        return true;
      });
    } finally {
      await api.removeContainer(id, { force: true });
    }
  },
);

dockerTest("DockerApi: errors name the operation and carry Docker's message", async (api) => {
  await assert.rejects(api.startContainer("shoal-no-such-container"), (error: unknown) => {
    assert.ok(error instanceof DockerApiError);
    assert.equal(error.status, 404);
    assert.match(
      error.message,
      /^Docker start container shoal-no-such-container failed \(HTTP 404\): No such container: shoal-no-such-container$/,
    );
    return true;
  });
  await assert.rejects(
    api.createContainer(unique("shoal-api"), { Image: "shoal-test/no-such-image:1" }),
    /Docker create container shoal-api-\w+ failed \(HTTP 404\): No such image: shoal-test\/no-such-image:1/,
  );
  // Logs of a missing container: an error at the first read.
  await assert.rejects(async () => {
    for await (const _ of api.containerLogs("shoal-no-such-container")) { /* none */ }
  }, /HTTP 404/);
});

dockerTest("DockerApi: an aborted log follow ends quietly", async (api) => {
  const { Id: id } = await api.createContainer(unique("shoal-api"), {
    Image: TEST_IMAGE,
    Entrypoint: ["/bin/sleep", "60"],
    HostConfig: { NetworkMode: "host" },
  });
  try {
    await api.startContainer(id);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const seen: LogFrame[] = [];
    for await (const f of api.containerLogs(id, { follow: true, signal: controller.signal })) {
      seen.push(f);
    }
    assert.deepEqual(seen, []);
  } finally {
    await api.removeContainer(id, { force: true });
  }
});
