/**
 * Real `shoal` processes for the cluster tests: a node running in the foreground with its output
 * gathered, one-shot CLI runs, free ports, and polling.
 *
 * @module
 */
const root = new URL("../../", import.meta.url).pathname;

/** Free TCP ports on loopback (bound then released: good enough on a test machine). */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** A `shoal` process running a node, its output gathered as it comes. */
export class NodeProcess {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;

  /** Runs `shoal args`, with `env` added to this process's environment. */
  constructor(readonly name: string, args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(`${root}shoal`, {
      args,
      env: { NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const gather = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this[key] += decoder.decode(chunk, { stream: true });
    };
    const drained = Promise.all([
      gather(this.child.stdout, "stdout"),
      gather(this.child.stderr, "stderr"),
    ]);
    this.done = drained.then(() => this.child.status);
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until stdout matches `re`; fails with what the node printed if it exits first. */
  async waitFor(re: RegExp, ms = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    let exited = false;
    this.done.then(() => (exited = true));
    for (;;) {
      const m = this.stdout.match(re);
      if (m) return m;
      if (exited || Date.now() > deadline) {
        throw new Error(
          `${this.name}: ${
            exited ? "exited" : "timed out"
          } before printing ${re}\n--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`,
        );
      }
      await sleep(50);
    }
  }

  /** Ctrl-C, then waits for the process to end. */
  async stop(): Promise<void> {
    this.kill("SIGTERM");
    await this.done;
  }

  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** A test manager's `shoal swarm init`: where it keeps its data and listens. */
export interface InitOptions {
  dataDir: string;
  /** `--listen-addr` (the cluster port), e.g. `127.0.0.1:0`. */
  listen: string;
  /** `--api-addr`'s port on 127.0.0.1. */
  apiPort: number;
  /** `--dispatcher-heartbeat` (e.g. `500ms`), when the test needs it short. */
  heartbeat?: string;
  /** More flags (`--autolock`, `--advertise-addr`, ...). */
  extra?: string[];
}

/** The arguments of `shoal swarm init` for a test manager (without fsync, for speed). */
export function initArgs(o: InitOptions): string[] {
  return [
    "swarm",
    "init",
    "--data-dir",
    o.dataDir,
    "--listen-addr",
    o.listen,
    "--api-addr",
    `127.0.0.1:${o.apiPort}`,
    ...(o.heartbeat ? ["--dispatcher-heartbeat", o.heartbeat] : []),
    "--sync",
    "off",
    ...(o.extra ?? []),
  ];
}

/** The arguments of `shoal swarm join` with `token` to the manager at `addr`. */
export function joinArgs(
  o: { dataDir: string; token: string; addr: string; extra?: string[] },
): string[] {
  return ["swarm", "join", "--token", o.token, "--data-dir", o.dataDir, ...(o.extra ?? []), o.addr];
}

/** What `swarm init` printed: the new node's id, the worker token and the manager's address. */
export async function initOutput(
  m: NodeProcess,
): Promise<{ id: string; token: string; addr: string }> {
  const [, id, token, addr] = await m.waitFor(
    /current node \(([0-9a-z]{25})\).*\n\n.*\n\n {4}shoal swarm join --token (\S+) (\S+:\d+)/s,
  );
  return { id, token, addr };
}

/** What one CLI run printed. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `shoal` CLI once. */
export async function shoal(args: string[]): Promise<Run> {
  const out = await new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Waits `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy, or fails naming `what`. */
export async function until<T>(
  what: string | (() => string),
  fn: () => Promise<T | undefined | false>,
  ms = 30_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    }
    await sleep(100);
  }
}
