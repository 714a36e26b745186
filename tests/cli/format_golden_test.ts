/**
 * Shoal's CLI prints what Docker's prints: every case in `golden_cases.ts` runs through `shoal`
 * (in process) against the fake API, and its stdout, stderr and exit status are compared with
 * what the real `docker` CLI printed for the same command line (`golden.json`, recorded by
 * `capture_golden.ts`), with `docker` read as `shoal`. Writes are compared by request: same
 * method, path, query and (normalised) body.
 *
 * Where Shoal deliberately differs, the case says so in `DIFFERENCES`.
 */
import assert from "node:assert/strict";
import { main } from "../../cli/main.ts";
import { globalOptions, type Io, runtime } from "../../cli/command.ts";
import { type Recorded, startFakeApi } from "./fake_api.ts";
import { GOLDEN_CASES } from "./golden_cases.ts";

interface Golden {
  code: number;
  stdout: string;
  stderr: string;
  writes: Recorded[];
}

const golden = JSON.parse(
  await Deno.readTextFile(new URL("./golden.json", import.meta.url)),
) as { base: number; dockerVersion: string; results: Record<string, Golden> };

/**
 * Where Shoal means to differ from the Docker CLI that recorded the goldens:
 * - `inspect` without a format: Docker 28 re-encodes its own structs (`"Labels": null` for a
 *   missing map); Shoal prints the manager's JSON as sent (what Docker 29 does). Compared as
 *   parsed JSON with empty values dropped.
 * - Docker's client warns on stderr that images cannot be checked against a registry; Shoal
 *   has no registry to check, so that stderr is not compared.
 * - `self` names the local node for every node command in Shoal (Docker resolves it only for
 *   `inspect` and `ps`), so `node promote edge self` promotes both.
 */
const DIFFERENCES: Record<string, "json" | "skip"> = {
  "service inspect pinger": "json",
  "service inspect --format json web10": "json",
  "secret inspect api-key2": "json",
  "network inspect backend": "json",
  "node promote edge self": "skip",
};

/** Empty values dropped (Go's `omitempty` and Docker's struct re-encoding differ only there). */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const n = normalize(x);
      if (n === null || n === "" || k === "DNSConfig" || k === "ForceUpdate" && n === 0) continue;
      if (Array.isArray(n) && n.length === 0) continue;
      if (typeof n === "object" && !Array.isArray(n) && Object.keys(n as object).length === 0) {
        if (k !== "Global" && k !== "GlobalJob") continue;
      }
      // Docker's `--env-add` rebuilds the list from a Go map, in random order.
      out[k] = k === "Env" && Array.isArray(n) ? [...n].sort() : n;
    }
    return out;
  }
  return v;
}

/**
 * Docker prints a progress line on every poll; Shoal prints it when it changes. Compared with
 * repeated lines dropped.
 */
function withoutRepeats(text: string): string {
  return text.split("\n").filter((l, i, all) => i === 0 || l !== all[i - 1]).join("\n");
}

function asShoal(text: string): string {
  return text.replace(/\bdocker(?=[ :'])/g, "shoal");
}

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    out: (t) => {
      out.push(t);
      return Promise.resolve();
    },
    err: (t) => {
      err.push(t);
      return Promise.resolve();
    },
    readStdin: () => Promise.resolve(new Uint8Array()),
    isTty: false,
    columns: 80,
  };
  return { io, stdout: () => out.join(""), stderr: () => err.join("") };
}

Deno.test("shoal prints what docker prints, for every golden case", async (t) => {
  const api = startFakeApi(golden.base);
  const saved = { ...runtime };
  try {
    globalOptions.host = api.url;
    runtime.now = () => golden.base + 1_000;
    for (const args of GOLDEN_CASES) {
      const key = args.join(" ");
      const want = golden.results[key];
      const how = DIFFERENCES[key];
      if (!want || how === "skip") continue;
      // Docker prints event times in local time; the goldens were recorded in UTC.
      if (key === "events --since 10m --until 0s" && new Date().getTimezoneOffset() !== 0) continue;
      await t.step(key, async () => {
        const cap = captureIo();
        runtime.makeIo = () => cap.io;
        const before = api.recorded.length;
        const code = await main([...args]);
        const writes = api.recorded.slice(before);
        assert.equal(code, want.code, `exit status; stderr: ${cap.stderr()}`);
        if (how === "json") {
          assert.deepEqual(normalize(JSON.parse(cap.stdout())), normalize(JSON.parse(want.stdout)));
        } else {
          const progress = want.stdout.includes("overall progress: ");
          const expected = asShoal(want.stdout);
          assert.equal(cap.stdout(), progress ? withoutRepeats(expected) : expected);
        }
        if (!want.stderr.includes("could not be accessed on a registry")) {
          assert.equal(cap.stderr(), asShoal(want.stderr));
        }
        assert.deepEqual(
          writes.map((w) => ({ ...w, body: normalize(w.body) })),
          want.writes.map((w) => ({ ...w, body: normalize(w.body) })),
        );
      });
    }
  } finally {
    Object.assign(runtime, saved);
    globalOptions.host = undefined;
    await api.close();
  }
});
