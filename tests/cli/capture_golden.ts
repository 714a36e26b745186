/**
 * Records what the real `docker` CLI prints against the fake API (`fake_api.ts`), into
 * `golden.json`, so `format_golden_test.ts` can check that `shoal` prints the same bytes. Run it
 * on a machine with Docker's CLI when formats or fixtures change:
 *
 *   ./node_modules/.bin/deno run --allow-all tests/cli/capture_golden.ts
 *
 * Each case is the argument list after `docker` (and `shoal`). Writes (create, update...) are
 * recorded too, so the test can compare the request bodies the two CLIs send.
 */
import { startFakeApi } from "./fake_api.ts";
import { GOLDEN_CASES } from "./golden_cases.ts";

const base = Date.now();
const api = startFakeApi(base);
const host = api.url.replace("http://", "tcp://");
const results: Record<string, unknown> = {};
try {
  for (const args of GOLDEN_CASES) {
    const before = api.recorded.length;
    const out = await new Deno.Command("docker", {
      args,
      env: { DOCKER_HOST: host, DOCKER_CLI_HINTS: "false", HOME: "/tmp/shoal-golden-home" },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    results[args.join(" ")] = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
      writes: api.recorded.slice(before),
    };
  }
} finally {
  await api.close();
}
const dockerVersion = new TextDecoder().decode(
  (await new Deno.Command("docker", { args: ["--version"], stdout: "piped" }).output()).stdout,
).trim();
await Deno.writeTextFile(
  new URL("./golden.json", import.meta.url),
  JSON.stringify({ base, dockerVersion, results }, null, 2) + "\n",
);
await new Deno.Command(Deno.execPath(), {
  args: ["fmt", "--quiet", new URL("./golden.json", import.meta.url).pathname],
}).output();
console.log(`recorded ${GOLDEN_CASES.length} cases with ${dockerVersion}`);
