import assert from "node:assert/strict";
import {
  formatLogLine,
  formatTaskPrefix,
  type LogPrintOptions,
  TaskPrefixer,
} from "./service_logs.ts";
import type { ApiClient } from "./client.ts";
import { formatDetails } from "../web/docker/log_stream.ts";

const base: LogPrintOptions = {
  timestamps: false,
  details: false,
  raw: false,
  noTaskIds: false,
  noTrunc: false,
  noResolve: false,
  padding: 1,
};

/** A client that answers the three lookups the prefixer makes, counting them. */
function fakeClient(calls: string[]): ApiClient {
  const answers: Record<string, unknown> = {
    "/nodes/n1": { ID: "n1", Spec: {}, Description: { Hostname: "node-1" } },
    "/services/s1": { ID: "s1", Spec: { Name: "web" } },
    "/tasks/t1abcdefghijklmnopqrstuvw": { ID: "t1abcdefghijklmnopqrstuvw", Slot: 3 },
  };
  return {
    get: (path: string) => {
      calls.push(path);
      return path in answers ? Promise.resolve(answers[path]) : Promise.reject(new Error("404"));
    },
  } as unknown as ApiClient;
}

const details = formatDetails({
  "com.docker.swarm.node.id": "n1",
  "com.docker.swarm.service.id": "s1",
  "com.docker.swarm.task.id": "t1abcdefghijklmnopqrstuvw",
});

Deno.test("service logs: Docker's task prefix, with padding for wider slot numbers", () => {
  const t = {
    serviceName: "web",
    slot: 3,
    taskId: "t1abcdefghijklmnopqrstuvw",
    nodeName: "node-1",
  };
  assert.equal(formatTaskPrefix(t, base), "web.3.t1abcdefghij@node-1");
  assert.equal(
    formatTaskPrefix(t, { ...base, noTrunc: true }),
    "web.3.t1abcdefghijklmnopqrstuvw@node-1",
  );
  assert.equal(formatTaskPrefix(t, { ...base, noTaskIds: true, padding: 3 }), "web.3@node-1  ");
});

Deno.test("service logs: lines as Docker prints them, names looked up once", async () => {
  const calls: string[] = [];
  const prefixer = new TaskPrefixer(fakeClient(calls), base);
  assert.equal(
    await formatLogLine(`${details} hello world\n`, base, prefixer),
    "web.3.t1abcdefghij@node-1    | hello world\n",
  );
  const stamped = { ...base, timestamps: true };
  assert.equal(
    await formatLogLine(
      `2025-01-02T03:04:05.000000000Z ${details} again\n`,
      stamped,
      new TaskPrefixer(fakeClient(calls), stamped),
    ),
    "2025-01-02T03:04:05.000000000Z web.3.t1abcdefghij@node-1    | again\n",
  );
  await formatLogLine(`${details} third\n`, base, prefixer);
  assert.equal(
    calls.filter((c) => c === "/tasks/t1abcdefghijklmnopqrstuvw").length,
    2,
    "cached per prefixer",
  );
  assert.equal(await formatLogLine("as is\n", { ...base, raw: true }, prefixer), "as is\n");
  await assert.rejects(
    formatLogLine("nocontext\n", base, prefixer),
    /invalid context in log message/,
  );
  await assert.rejects(
    formatLogLine("a=b line\n", base, prefixer),
    /missing node, service or task id/,
  );
});

Deno.test("service logs: --no-resolve prints ids", async () => {
  const calls: string[] = [];
  const opts = { ...base, noResolve: true };
  const line = await formatLogLine(
    `${details} x\n`,
    opts,
    new TaskPrefixer(fakeClient(calls), opts),
  );
  assert.equal(line, "s1.3.t1abcdefghij@n1    | x\n");
  assert.deepEqual(calls, ["/tasks/t1abcdefghijklmnopqrstuvw"]);
});
