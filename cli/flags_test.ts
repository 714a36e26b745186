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
