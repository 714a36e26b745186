import assert from "node:assert/strict";
import {
  ApiClient,
  DaemonError,
  DEFAULT_HOST,
  hostToUrl,
  JsonStreamSplitter,
  parseFilters,
  resolveHost,
} from "./client.ts";
import { CliError } from "./format.ts";

Deno.test("the manager comes from --host, then SHOAL_HOST, then DOCKER_HOST, then the default", () => {
  const env = (vars: Record<string, string>) => (k: string) => vars[k];
  assert.equal(resolveHost(undefined, env({})), DEFAULT_HOST);
  assert.equal(
    resolveHost(undefined, env({ DOCKER_HOST: "tcp://10.0.0.1:2375" })),
    "http://10.0.0.1:2375",
  );
  assert.equal(
    resolveHost(undefined, env({ DOCKER_HOST: "tcp://a:1", SHOAL_HOST: "b:2" })),
    "http://b:2",
  );
  assert.equal(resolveHost("https://c:3/", env({ SHOAL_HOST: "b:2" })), "https://c:3");
  assert.throws(() => hostToUrl("unix:///var/run/docker.sock"), /served over TCP/);
});

Deno.test("filters in Docker's form", () => {
  assert.deepEqual(parseFilters(["name=web", "name=api", "label=a=b"]), {
    name: { web: true, api: true },
    label: { "a=b": true },
  });
  assert.throws(() => parseFilters(["oops"]), /bad format of filter/);
});

Deno.test("a stream of JSON values is split at value boundaries, across chunks", () => {
  const s = new JsonStreamSplitter();
  assert.deepEqual(s.push('{"a":"}{"}\n{"b"'), ['{"a":"}{"}']);
  assert.deepEqual(s.push(":[1,{}]}"), ['{"b":[1,{}]}']);
  assert.deepEqual(s.push('data: {"c":1}\n\n'), ['{"c":1}']);
});

Deno.test("daemon errors read as Docker's; an unreachable manager says so", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => Response.json({ message: "service nope not found", code: "not_found" }, { status: 404 }),
  );
  try {
    const client = new ApiClient(`http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`);
    await assert.rejects(client.get("/services/nope"), (err: unknown) => {
      assert.ok(err instanceof DaemonError);
      assert.equal(err.message, "Error response from daemon: service nope not found");
      assert.equal(err.code, "not_found");
      assert.equal(err.httpStatus, 404);
      return true;
    });
  } finally {
    await server.shutdown();
  }
  await assert.rejects(
    new ApiClient("http://127.0.0.1:1").get("/_ping"),
    (err: unknown) =>
      err instanceof CliError &&
      err.message.startsWith("Cannot connect to the Shoal manager at http://127.0.0.1:1."),
  );
});
