/**
 * Hostile and malformed requests (DESIGN.md contract 11): random JSON, valid bodies with fields
 * replaced by random values, bad query strings and paths. Each gets an answer below 500 with a
 * message, and a refused request writes nothing to the log.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type ApiFixture, withApi } from "./_harness.ts";

const VALID: Record<string, unknown> = {
  "/services/create": {
    Name: "web",
    Labels: { a: "b" },
    TaskTemplate: {
      ContainerSpec: {
        Image: "busybox",
        Args: ["sleep", "1"],
        Env: ["A=1"],
        Mounts: [{ Type: "tmpfs", Target: "/x" }],
        Healthcheck: { Test: ["CMD", "true"], Interval: 1e9 },
        StopGracePeriod: 1e9,
      },
      Resources: { Limits: { NanoCPUs: 1e9 }, Reservations: { MemoryBytes: 1024 } },
      RestartPolicy: { Condition: "any", Delay: 1e9, MaxAttempts: 1 },
      Placement: { Constraints: ["node.role==manager"], Preferences: [] },
    },
    Mode: { Replicated: { Replicas: 1 } },
    UpdateConfig: { Parallelism: 1, FailureAction: "pause", Order: "stop-first" },
    EndpointSpec: { Mode: "vip", Ports: [{ TargetPort: 80, PublishedPort: 8080 }] },
  },
  "/secrets/create": { Name: "s", Labels: {}, Data: "aGk=" },
  "/configs/create": { Name: "c", Data: "aGk=" },
  "/networks/create": { Name: "n", Driver: "overlay", Labels: {} },
  "/swarm/update": { Orchestration: { TaskHistoryRetentionLimit: 3 } },
  "/nodes/node-1/update": { Role: "manager", Availability: "active" },
};

/** Paths to every value inside `v`. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (typeof v === "object" && v !== null) {
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  }
  return out;
}

function replaceAt(v: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = structuredClone(v) as Record<string | number, unknown>;
  let cur = copy;
  for (const p of path.slice(0, -1)) cur = cur[p] as Record<string | number, unknown>;
  cur[path[path.length - 1]] = value;
  return copy;
}

const hostileString = fc.oneof(
  fc.string(),
  fc.constantFrom(
    "../../etc/passwd",
    "a/b",
    "\u0000",
    "\n\r",
    "web\u202e",
    "x".repeat(300),
    "node.labels.==",
    "-1",
    "1e400",
    "NaN",
    "{}",
  ),
);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  hostileString,
  fc.constantFrom(null, -1, 1.5, 2 ** 64, Number.MAX_SAFE_INTEGER, true, [], {}, [[[[]]]]),
);

async function assertRefusedOrDone(api: ApiFixture, method: string, path: string, body?: unknown) {
  const before = api.manager.log.lastIndex();
  const res = await api.call(method, path, body);
  assert.ok(
    res.status < 500,
    `${method} ${path} ${JSON.stringify(body)} → ${res.status} ${res.text}`,
  );
  if (res.status >= 400) {
    assert.equal(typeof res.body?.message, "string", `${path}: ${res.text}`);
    assert.ok(res.body.message.length > 0);
    assert.equal(typeof res.body.code, "string");
    assert.equal(api.manager.log.lastIndex(), before, `a refused ${path} wrote to the log`);
  }
}

Deno.test("malformed and hostile requests get 4xx answers and change nothing", async () => {
  await withApi(async (api) => {
    // Whole bodies of random JSON.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...Object.keys(VALID)),
        fc.jsonValue({ maxDepth: 4 }),
        async (path, body) => {
          await assertRefusedOrDone(api, "POST", path, body);
        },
      ),
      { numRuns: 600 },
    );
    // Valid bodies with one value (or key) replaced by something hostile.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...Object.keys(VALID)),
        fc.nat(),
        hostileValue,
        fc.boolean(),
        async (path, pick, value, dropInstead) => {
          const valid = VALID[path];
          const all = paths(valid).filter((p) => p.length > 0);
          const at = all[pick % all.length];
          const body = dropInstead ? replaceAt(valid, at, undefined) : replaceAt(valid, at, value);
          await assertRefusedOrDone(api, "POST", path, body);
        },
      ),
      { numRuns: 1500 },
    );
    // Hostile query strings and path segments.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          "/services?filters=",
          "/tasks?filters=",
          "/nodes?filters=",
          "/secrets?filters=",
          "/networks?filters=",
          "/events?until=1&since=",
          "/services/web/update?version=",
          "/services/",
          "/nodes/",
          "/tasks/",
        ),
        hostileString,
        async (prefix, s) => {
          const method = prefix.includes("update") ? "POST" : "GET";
          const res = await api.handler(
            new Request(`http://shoal.test${prefix}${encodeURIComponent(s)}`, { method }),
          );
          assert.ok(res.status < 500, `${prefix}${s} → ${res.status}`);
          await res.body?.cancel();
        },
      ),
      { numRuns: 600 },
    );
  }, { projections: false });
});
