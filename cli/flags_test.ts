import assert from "node:assert/strict";
import { type FlagSpec, parseFlags, UsageError } from "./flags.ts";

const specs: FlagSpec[] = [
  { name: "data-dir", kind: "string", description: "", default: ".shoal" },
  { name: "quiet", short: "q", kind: "boolean", description: "" },
  { name: "label", kind: "list", description: "" },
];

Deno.test("parseFlags reads long, short, =value, repeated flags and positionals", () => {
  const p = parseFlags(
    ["web", "--data-dir", "/d", "-q", "--label=a=1", "--label", "b=2", "--", "--not-a-flag"],
    specs,
  );
  assert.deepEqual(p.flags, { "data-dir": "/d", quiet: true, label: ["a=1", "b=2"] });
  assert.deepEqual(p.args, ["web", "--not-a-flag"]);
  assert.deepEqual(parseFlags([], specs).flags, { "data-dir": ".shoal", quiet: false, label: [] });
});

Deno.test("parseFlags names the flag that is wrong", () => {
  assert.throws(() => parseFlags(["--nope"], specs), new UsageError("unknown flag: --nope"));
  assert.throws(() => parseFlags(["-x"], specs), new UsageError("unknown flag: -x"));
  assert.throws(
    () => parseFlags(["--data-dir"], specs),
    new UsageError("flag needs an argument: --data-dir"),
  );
  assert.throws(() => parseFlags(["--quiet=maybe"], specs), /not a boolean/);
  assert.throws(() => parseFlags(["--q"], specs), /unknown flag: --q/);
});

Deno.test("parseFlags: grouped short booleans, attached short values, Docker's changed set", () => {
  const more: FlagSpec[] = [...specs, {
    name: "detach",
    short: "d",
    kind: "boolean",
    description: "",
  }, {
    name: "env",
    short: "e",
    kind: "list",
    description: "",
  }];
  const p = parseFlags(["-qd", "-eA=1", "--label=x", "img", "--not-mine"], more, {
    interspersed: false,
  });
  assert.equal(p.flags.quiet, true);
  assert.equal(p.flags.detach, true);
  assert.deepEqual(p.flags.env, ["A=1"]);
  assert.deepEqual(p.args, ["img", "--not-mine"], "options end at the first argument");
  assert.deepEqual([...p.changed].sort(), ["detach", "env", "label", "quiet"]);
  assert.equal(parseFlags(["--quiet=0"], specs).flags.quiet, false);
});
