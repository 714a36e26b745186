/**
 * A real single-node swarm for the CLI's end-to-end tests: `./shoal start` in a temporary data
 * dir on a free port (its API address read from the banner), and the real `./shoal` command run
 * against it with `--host`.
 */
const root = new URL("../../", import.meta.url).pathname;

/** A running `shoal start`. */
export interface RealNode {
  api: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** Starts a node; resolves once its banner is printed. */
export async function startNode(): Promise<RealNode> {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-cli-" });
  const child = new Deno.Command(`${root}shoal`, {
    args: ["start", "--data-dir", dataDir, "--listen-addr", "127.0.0.1:0", "--sync", "off"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  const deadline = Date.now() + 30_000;
  while (!banner.includes("Press Ctrl-C")) {
    if (Date.now() > deadline) throw new Error(`shoal start printed no banner in 30 s:\n${banner}`);
    const { value, done } = await reader.read();
    if (done) {
      const err = await new Response(child.stderr).text();
      throw new Error(`shoal start exited early:\n${banner}\n${err}`);
    }
    banner += value;
  }
  const api = /API\s+(http:\/\/\S+)/.exec(banner)?.[1];
  if (!api) throw new Error(`no API address in the banner:\n${banner}`);
  // Keep draining both streams so the node never blocks on a full pipe.
  const drained = Promise.all([
    (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })(),
    child.stderr.pipeTo(new WritableStream()),
  ]);
  return {
    api,
    dataDir,
    async stop() {
      try {
        child.kill("SIGINT");
      } catch {
        // Already gone.
      }
      await child.status;
      await drained.catch(() => {});
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** What one `shoal` run printed. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `./shoal` command. */
export async function shoal(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<Run> {
  const child = new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
