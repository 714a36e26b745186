import assert from "node:assert/strict";
import plugin, { isPure } from "./lint_plugin.ts";

const RULE = "shoal/deterministic";
const PURE = "actors/entities/task.ts";

function lint(filename: string, source: string): Deno.lint.Diagnostic[] {
  return Deno.lint.runPlugin(plugin, filename, source);
}

/** The text each diagnostic points at. */
function flagged(source: string, filename = PURE): string[] {
  return lint(filename, source).map((d) => {
    assert.equal(d.id, RULE);
    return source.slice(d.range[0], d.range[1]);
  });
}

// Each forbidden use, with the label its message must start with.
const FORBIDDEN: Array<[source: string, label: string]> = [
  ["const t = Date.now();", "Date.now()"],
  ["const d = new Date();", "new Date()"],
  ["const s = Date();", "Date()"],
  ["const r = Math.random();", "Math.random()"],
  ["const id = crypto.randomUUID();", "crypto.randomUUID()"],
  ["crypto.getRandomValues(new Uint8Array(4));", "crypto.getRandomValues()"],
  ["const p = performance.now();", "performance.now()"],
  ["setTimeout(() => {}, 10);", "setTimeout()"],
  ["setInterval(() => {}, 10);", "setInterval()"],
  ["queueMicrotask(() => {});", "queueMicrotask()"],
  ["const x = Deno.env.get('X');", "Deno.env"],
  ["const a = Deno.args;", "Deno.args"],
  ["await Deno.readTextFile('x');", "Deno.readTextFile()"],
  ["const r = await fetch('http://x');", "fetch()"],
  // Indirect forms.
  ["const now = Date.now;", "Date.now"],
  ["globalThis.setTimeout(() => {}, 1);", "setTimeout()"],
  ["globalThis.Date.now();", "Date.now()"],
  ["const e = (Deno as any).env;", "Deno.env"],
  ["const d = Deno;", "Deno"],
  ["const r = Math['random']();", "Math.random()"],
  ["const { random } = Math;", "Math.random"],
  ["const t = Temporal.Now.instant();", "Temporal.Now"],
  ["const h = process.hrtime();", "process.hrtime()"],
  ["import { readFileSync } from 'node:fs';", 'import from "node:fs"'],
  ["import { setTimeout as st } from 'node:timers';", 'import from "node:timers"'],
  ["import { randomBytes } from 'node:crypto';", 'randomBytes from "node:crypto"'],
];

for (const [source, label] of FORBIDDEN) {
  Deno.test(`shoal/deterministic reports ${label} in pure code: ${source}`, () => {
    const diagnostics = lint(PURE, source);
    assert.equal(diagnostics.length, 1, JSON.stringify(diagnostics));
    const [d] = diagnostics;
    assert.equal(d.id, RULE);
    assert.ok(d.message.startsWith(`${label} is not allowed in pure code (`), d.message);
    assert.match(d.message, /DESIGN\.md contract 1/);
  });

  Deno.test(`shoal/deterministic allows ${label} elsewhere: ${source}`, () => {
    for (const file of ["actors/runtime.ts", "events/raft/driver.ts", "actors/state_test.ts"]) {
      assert.deepEqual(lint(file, source), [], file);
    }
  });
}

Deno.test("shoal/deterministic: the message says why", () => {
  const [d] = lint(PURE, "const t = Date.now();");
  assert.equal(
    d.message,
    "Date.now() is not allowed in pure code (events/raft core, actors/state.ts, " +
      "actors/entities/, projection decide functions): time must enter as an input " +
      "(DESIGN.md contract 1)",
  );
  assert.match(lint(PURE, "Math.random();")[0].message, /randomness must enter as inputs/);
  assert.match(lint(PURE, "setTimeout(f);")[0].message, /timers are logged facts/);
  assert.match(lint(PURE, "fetch(u);")[0].message, /I\/O belongs to the driver/);
});

Deno.test("shoal/deterministic points at the offending expression", () => {
  assert.deepEqual(flagged("const x = 1 + Date.now();"), ["Date.now"]);
  assert.deepEqual(flagged("const d = new Date();"), ["new Date()"]);
  assert.deepEqual(flagged("Deno.env.get('X');"), ["Deno.env"]);
  assert.deepEqual(flagged("setTimeout(f, 1);"), ["setTimeout"]);
});

Deno.test("shoal/deterministic allows deterministic uses of the same globals", () => {
  const source = `
    import type { Buffer } from "node:buffer";
    import { createHash } from "node:crypto";
    type Conn = Deno.Conn;
    let env: typeof Deno.env;
    const d = new Date(event.at);
    const e = new Date(0);
    const parsed = Date.parse("2024-01-01T00:00:00Z");
    const utc = Date.UTC(2024, 0, 1);
    const ok = value instanceof Date;
    const m = Math.max(1, 2) + Math.floor(3.5);
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    const timers = { setTimeout: 1, fetch: 2, now: 3 };
    const t = state.Date.now();
    const r = rng.random();
    state.performance.now();
    class Port { fetch() {} setTimeout = 1; }
    interface Source { fetch(): void; Deno: number }
    function apply(state: State, now: number) { return { ...state, at: now }; }
  `;
  assert.deepEqual(lint(PURE, source), []);
});

Deno.test("shoal/deterministic allows new Date(x) but not new Date()", () => {
  assert.deepEqual(flagged("new Date(x); new Date(); new Date(...args);"), ["new Date()"]);
});

Deno.test("shoal/deterministic reports every use in a file", () => {
  const source = "const a = Date.now();\nconst b = Math.random();\nDeno.exit(0);\n";
  assert.deepEqual(flagged(source), ["Date.now", "Math.random", "Deno.exit"]);
});

Deno.test("isPure: the documented pure files", () => {
  const pure = [
    "actors/entities/task.ts",
    "actors/entities/nested/node.ts",
    "actors/state.ts",
    "actors/snapshot.ts",
    "actors/history.ts",
    "actors/projections/decide.ts",
    "actors/projections/scheduler_decide.ts",
    "actors/projections/orchestrator/replicated_decide.ts",
    "actors/projections/view.ts",
    "events/raft/core.ts",
    "events/raft/log.ts",
    "./events/raft/core.ts",
  ];
  const impure = [
    "actors/runtime.ts",
    "actors/agent/session.ts",
    "actors/projections/scheduler.ts",
    "actors/projections/dispatcher.ts",
    "actors/projections/decide_helpers.ts",
    "actors/state_test.ts",
    "actors/entities/task_test.ts",
    "actors/projections/scheduler_decide_test.ts",
    "events/raft/core_test.ts",
    "events/raft/driver.ts",
    "events/raft/sqlite_storage.ts",
    "events/raft/transport.ts",
    "events/raft/transport/tls.ts",
    "events/schema.ts",
    "events/log.ts",
    "tests/sim/main.ts",
    "tests/sim/actors/state.ts",
    "cli/main.ts",
    "tools/lint_plugin.ts",
  ];
  for (const file of pure) assert.ok(isPure(file), `${file} should be pure`);
  for (const file of impure) assert.ok(!isPure(file), `${file} should not be pure`);
});

Deno.test("isPure: absolute paths and file URLs under the project root", () => {
  const root = new URL("../", import.meta.url);
  const abs = (rel: string) => decodeURIComponent(new URL(rel, root).pathname);
  assert.ok(isPure(abs("actors/state.ts")));
  assert.ok(isPure(new URL("events/raft/core.ts", root).href));
  assert.ok(!isPure(abs("events/raft/driver.ts")));
  assert.ok(!isPure(abs("tests/sim/actors/state.ts")));
  // Outside this checkout, the path's tail decides.
  assert.ok(isPure("/elsewhere/shoal/actors/entities/node.ts"));
  assert.ok(!isPure("/elsewhere/shoal/actors/runtime.ts"));
  // And through runPlugin, with an absolute name.
  assert.equal(lint(abs("actors/state.ts"), "Date.now();").length, 1);
  assert.equal(lint(abs("actors/runtime.ts"), "Date.now();").length, 0);
});

Deno.test("deno lint loads the plugin and honours deno-lint-ignore", async () => {
  // runPlugin ignores `deno-lint-ignore` comments, so run the real linter on a scratch tree.
  // Outside this checkout, a path's tail decides purity (see isPure).
  const dir = await Deno.makeTempDir();
  try {
    const pluginUrl = new URL("./lint_plugin.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ lint: { plugins: [pluginUrl] } }),
    );
    await Deno.mkdir(`${dir}/actors/entities`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/actors/entities/task.ts`,
      [
        "export const a = Date.now();",
        "// deno-lint-ignore shoal/deterministic -- a reason",
        "export const b = Date.now();",
        "export const c = new Date(a + b);",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(`${dir}/actors/runtime.ts`, "export const d = Date.now();\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["lint", "--config", `${dir}/deno.json`, dir],
      cwd: dir,
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, text);
    assert.match(text, /Found 1 problem/);
    assert.match(text, /error\[shoal\/deterministic\]: Date\.now\(\) is not allowed in pure code/);
    assert.match(text, /actors\/entities\/task\.ts:1:18/);
    assert.doesNotMatch(text, /experimental/i);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
