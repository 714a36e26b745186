/**
 * A small client for the Docker Engine API: just what the Docker executor needs (ping, version,
 * info, images, and a container's whole life: create, start, wait, stop, kill, remove, inspect,
 * logs, list by label).
 *
 * It speaks HTTP/1.1 with Deno's own `fetch`, through a `Deno.createHttpClient` whose "proxy" is
 * the daemon's socket: `{ transport: "unix", path }` for `unix://` hosts (the default,
 * `/var/run/docker.sock`) and `{ transport: "tcp", hostname, port }` for `tcp://` ones, so that
 * `HTTP_PROXY` never reroutes requests meant for the daemon. `DOCKER_HOST` is honoured as the
 * Docker CLI does; TLS (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`) is not supported.
 *
 * The API version is negotiated as the Docker CLI does: the first request asks `/_ping` for the
 * daemon's version and uses it, capped at {@linkcode MAX_API_VERSION}; everything used here exists
 * since 1.41 (Docker 20.10, Debian 12's `docker.io`).
 *
 * Every failure is a {@linkcode DockerApiError} naming the operation and carrying Docker's own
 * message and HTTP status (`Docker start container web.1.x failed (HTTP 500): OCI runtime create
 * failed: ...`), or saying the daemon cannot be reached.
 *
 * @module
 */

/** The newest API version this client asks for. */
export const MAX_API_VERSION = "1.45";
/** The oldest it accepts: Docker 20.10. */
export const MIN_API_VERSION = "1.41";

/** Where the daemon listens. */
export type DockerEndpoint =
  | { readonly transport: "unix"; readonly path: string }
  | { readonly transport: "tcp"; readonly hostname: string; readonly port: number };

/** The default daemon socket. */
export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";

/**
 * Parses a `DOCKER_HOST` value: `unix:///path`, `tcp://host[:port]` (port 2375 by default) or
 * `http://host[:port]`; an empty value means the default socket. Throws for anything else.
 */
export function parseDockerHost(value: string | undefined): DockerEndpoint {
  const text = (value ?? "").trim();
  if (text === "") return { transport: "unix", path: DEFAULT_DOCKER_SOCKET };
  if (text.startsWith("unix://")) {
    const path = text.slice("unix://".length);
    if (!path.startsWith("/")) {
      throw new Error(`Invalid DOCKER_HOST "${text}": a unix socket needs an absolute path`);
    }
    return { transport: "unix", path };
  }
  const match = /^(tcp|http):\/\/(\[[^\]]+\]|[^:/]+)(?::([0-9]+))?\/?$/.exec(text);
  if (match) {
    const port = match[3] === undefined ? 2375 : Number(match[3]);
    if (port < 1 || port > 65535) throw new Error(`Invalid DOCKER_HOST "${text}": bad port`);
    return { transport: "tcp", hostname: match[2].replace(/^\[|\]$/g, ""), port };
  }
  throw new Error(
    `Invalid DOCKER_HOST "${text}": use unix:///path/to/docker.sock or tcp://host:port ` +
      "(TLS is not supported)",
  );
}

/** How an endpoint is written in messages, as the Docker CLI writes it. */
export function describeEndpoint(endpoint: DockerEndpoint): string {
  return endpoint.transport === "unix"
    ? `unix://${endpoint.path}`
    : `tcp://${endpoint.hostname}:${endpoint.port}`;
}

/** A request the daemon refused, or could not be sent. */
export class DockerApiError extends Error {
  /** What was being done, such as `start container web.1.abc`. */
  readonly operation: string;
  /** The HTTP status, or 0 when the daemon could not be reached. */
  readonly status: number;
  /** Docker's own message (its JSON `message`), or the connection error. */
  readonly dockerMessage: string;

  constructor(operation: string, status: number, dockerMessage: string) {
    super(
      status === 0
        ? `Docker ${operation} failed: ${dockerMessage}`
        : `Docker ${operation} failed (HTTP ${status}): ${dockerMessage}`,
    );
    this.name = "DockerApiError";
    this.operation = operation;
    this.status = status;
    this.dockerMessage = dockerMessage;
  }

  /** Whether Docker said the object does not exist. */
  get notFound(): boolean {
    return this.status === 404;
  }

  /** Whether Docker said the name is taken (or the object is in a conflicting state). */
  get conflict(): boolean {
    return this.status === 409;
  }
}

/** Whether `error` is a {@linkcode DockerApiError} with status 404. */
export function isNotFound(error: unknown): boolean {
  return error instanceof DockerApiError && error.notFound;
}

// ---------------------------------------------------------------------------------------------
// What the API returns (only the fields Shoal reads are typed; the rest is kept as it came).

/** `GET /version`. */
export interface DockerVersion {
  Version: string;
  ApiVersion: string;
  MinAPIVersion?: string;
  Os: string;
  Arch: string;
  KernelVersion?: string;
  [key: string]: unknown;
}

/** `GET /info` (a few fields). */
export interface DockerInfo {
  ID: string;
  Name: string;
  ServerVersion: string;
  Driver: string;
  OperatingSystem: string;
  OSType: string;
  Architecture: string;
  NCPU: number;
  MemTotal: number;
  Containers: number;
  ContainersRunning: number;
  Images: number;
  Labels: string[] | null;
  [key: string]: unknown;
}

/** One entry of `GET /images/json`. */
export interface ImageSummary {
  Id: string;
  RepoTags: string[] | null;
  Created: number;
  Size: number;
  Labels: Record<string, string> | null;
  [key: string]: unknown;
}

/** `GET /images/{name}/json` (a few fields). */
export interface ImageInspect {
  Id: string;
  RepoTags: string[] | null;
  Os: string;
  Architecture: string;
  Config: {
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    Env?: string[] | null;
    Healthcheck?: DockerHealthConfig | null;
    [key: string]: unknown;
  } | null;
  [key: string]: unknown;
}

/** A container's health check, in Docker's units (durations in nanoseconds). */
export interface DockerHealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  Retries?: number;
  StartPeriod?: number;
}

/** One entry of `HostConfig.Mounts`. */
export interface DockerMount {
  Type: "bind" | "volume" | "tmpfs";
  Source?: string;
  Target: string;
  ReadOnly?: boolean;
  [key: string]: unknown;
}

/** The body of `POST /containers/create` (the fields Shoal sets; Docker accepts many more). */
export interface ContainerCreateBody {
  Image: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[];
  Hostname?: string;
  User?: string;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  StopTimeout?: number;
  Healthcheck?: DockerHealthConfig;
  ExposedPorts?: Record<string, Record<string, never>>;
  AttachStdin?: boolean;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  Tty?: boolean;
  OpenStdin?: boolean;
  HostConfig?: {
    NetworkMode?: string;
    Mounts?: DockerMount[];
    PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[]>;
    RestartPolicy?: { Name: string; MaximumRetryCount?: number };
    Init?: boolean;
    NanoCpus?: number;
    Memory?: number;
    LogConfig?: { Type: string; Config?: Record<string, string> };
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** One probe in `State.Health.Log`. */
export interface DockerHealthLogEntry {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}

/** `State.Health`: present only when the container has a health check. */
export interface DockerHealth {
  Status: "starting" | "healthy" | "unhealthy" | "none";
  FailingStreak: number;
  Log: DockerHealthLogEntry[] | null;
}

/** A container's state, as inspect shows it. */
export interface ContainerState {
  Status: "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead";
  Running: boolean;
  Paused: boolean;
  Restarting: boolean;
  OOMKilled: boolean;
  Dead: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
  Health?: DockerHealth;
}

/** `GET /containers/{id}/json` (a few fields). */
export interface ContainerInspect {
  Id: string;
  /** With a leading slash, as Docker keeps it. */
  Name: string;
  Created: string;
  Image: string;
  State: ContainerState;
  Config: {
    Image: string;
    Labels: Record<string, string> | null;
    Healthcheck?: DockerHealthConfig | null;
    Tty?: boolean;
    [key: string]: unknown;
  };
  HostConfig: Record<string, unknown>;
  Mounts: { Type: string; Source: string; Destination: string; RW: boolean }[];
  [key: string]: unknown;
}

/** One entry of `GET /containers/json`. */
export interface ContainerSummary {
  Id: string;
  /** With leading slashes. */
  Names: string[];
  Image: string;
  Created: number;
  Labels: Record<string, string> | null;
  State: ContainerState["Status"];
  Status: string;
  [key: string]: unknown;
}

/** `POST /containers/{id}/wait`. */
export interface ContainerWaitResult {
  StatusCode: number;
  Error?: { Message: string } | null;
}

/** One frame of a container's output: which stream, and its bytes. */
export interface LogFrame {
  readonly stream: "stdin" | "stdout" | "stderr";
  readonly data: Uint8Array;
}

/** What `containerLogs` asks for. */
export interface ContainerLogsOptions {
  follow?: boolean;
  timestamps?: boolean;
  /** The last N lines only (before following), or `"all"`. */
  tail?: number | "all";
  /** Only output since this time, in ms since the epoch. */
  since?: number;
  stdout?: boolean;
  stderr?: boolean;
  /** Ends the stream (no error: the iteration just stops). */
  signal?: AbortSignal;
  /** The container has a TTY: its output is one raw stream, not multiplexed. */
  tty?: boolean;
}

/** Options of a {@linkcode DockerApi}. */
export interface DockerApiOptions {
  /** Where the daemon listens. Default: `DOCKER_HOST`, else `/var/run/docker.sock`. */
  endpoint?: DockerEndpoint;
  /** Pins the API version (such as `"1.41"`) instead of negotiating it. */
  apiVersion?: string;
}

/** Label filter: `{ key: value }` matches `key=value`; `{ key: true }` matches any value. */
export type LabelFilter = Record<string, string | true>;

interface RequestOptions {
  method?: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  signal?: AbortSignal;
  /** HTTP statuses answered without error (besides 2xx). */
  accept?: readonly number[];
  /** Not versioned (only `/_ping`). */
  unversioned?: boolean;
}

/** A Docker Engine API client; see the module documentation. Call `close()` when done. */
export class DockerApi {
  /** Where the daemon listens. */
  readonly endpoint: DockerEndpoint;
  readonly #client: Deno.HttpClient;
  #version: Promise<string> | undefined;
  #closed = false;

  constructor(options: DockerApiOptions = {}) {
    this.endpoint = options.endpoint ?? parseDockerHost(Deno.env.get("DOCKER_HOST"));
    this.#client = Deno.createHttpClient({
      proxy: this.endpoint.transport === "unix"
        ? { transport: "unix", path: this.endpoint.path }
        : { transport: "tcp", hostname: this.endpoint.hostname, port: this.endpoint.port },
      http2: false,
    });
    if (options.apiVersion) this.#version = Promise.resolve(options.apiVersion);
  }

  /** Closes the connections. Requests still under way fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  /** The API version in use (negotiated on first use). */
  apiVersion(): Promise<string> {
    this.#version ??= this.#negotiate();
    const version = this.#version;
    // A failed negotiation is retried on the next request.
    version.catch(() => {
      if (this.#version === version) this.#version = undefined;
    });
    return version;
  }

  async #negotiate(): Promise<string> {
    const response = await this.#send("ping the daemon", "/_ping", {
      unversioned: true,
      method: "GET",
    });
    await response.body?.cancel();
    const server = response.headers.get("api-version");
    if (!server) return MIN_API_VERSION;
    if (compareVersions(server, MIN_API_VERSION) < 0) {
      throw new DockerApiError(
        "version negotiation",
        0,
        `the daemon speaks API ${server}, older than the ${MIN_API_VERSION} Shoal needs ` +
          "(Docker 20.10 or newer)",
      );
    }
    return compareVersions(server, MAX_API_VERSION) < 0 ? server : MAX_API_VERSION;
  }

  // -------------------------------------------------------------------------------------------
  // The daemon

  /** `GET /_ping`: `"OK"` when the daemon is up. */
  async ping(signal?: AbortSignal): Promise<string> {
    const response = await this.#send("ping", "/_ping", { unversioned: true, signal });
    return await response.text();
  }

  /** `GET /version`. */
  version(): Promise<DockerVersion> {
    return this.#json("version", "/version");
  }

  /** `GET /info`. */
  info(): Promise<DockerInfo> {
    return this.#json("info", "/info");
  }

  // -------------------------------------------------------------------------------------------
  // Images

  /** `GET /images/json`, optionally only those matching `reference` (such as `busybox:1`). */
  listImages(reference?: string): Promise<ImageSummary[]> {
    return this.#json("list images", "/images/json", {
      query: reference ? { filters: JSON.stringify({ reference: [reference] }) } : {},
    });
  }

  /** `GET /images/{name}/json`; undefined when there is no such image locally. */
  async inspectImage(name: string): Promise<ImageInspect | undefined> {
    try {
      return await this.#json(`inspect image ${name}`, `/images/${pathName(name)}/json`);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * `POST /images/create?fromImage=...`: pulls `image` from its registry. Resolves when the pull
   * is done; rejects with Docker's message when it fails (an error may arrive inside the
   * progress stream, after a 200).
   */
  async pullImage(image: string, signal?: AbortSignal): Promise<void> {
    const operation = `pull image ${image}`;
    const response = await this.#send(operation, "/images/create", {
      method: "POST",
      query: { fromImage: image },
      signal,
    });
    const text = await readText(operation, response);
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      let message: { error?: string; errorDetail?: { message?: string } };
      try {
        message = JSON.parse(line);
      } catch {
        continue;
      }
      const error = message.errorDetail?.message ?? message.error;
      if (error) throw new DockerApiError(operation, response.status, error);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Containers

  /** `POST /containers/create?name=...`: the new container's id, and Docker's warnings. */
  createContainer(
    name: string,
    body: ContainerCreateBody,
  ): Promise<{ Id: string; Warnings: string[] | null }> {
    return this.#json(`create container ${name}`, "/containers/create", {
      method: "POST",
      query: name ? { name } : {},
      body,
    });
  }

  /** `POST /containers/{id}/start`; starting a running container is not an error. */
  async startContainer(id: string): Promise<void> {
    await this.#empty(`start container ${id}`, `/containers/${id}/start`, {
      method: "POST",
      accept: [304],
    });
  }

  /**
   * `POST /containers/{id}/wait`: resolves when the container is not running (`not-running`,
   * the default: at once if it is not), when it next exits (`next-exit`), or is removed.
   */
  async waitContainer(
    id: string,
    options: { condition?: "not-running" | "next-exit" | "removed"; signal?: AbortSignal } = {},
  ): Promise<ContainerWaitResult> {
    return await this.#json(`wait for container ${id}`, `/containers/${id}/wait`, {
      method: "POST",
      query: { condition: options.condition ?? "not-running" },
      signal: options.signal,
    });
  }

  /**
   * `POST /containers/{id}/stop?t=...`: sends the container's stop signal, then SIGKILL after
   * `timeoutSeconds` (default: the container's own, else 10); resolves once it has stopped.
   * Stopping a stopped container is not an error.
   */
  async stopContainer(id: string, timeoutSeconds?: number, signal?: AbortSignal): Promise<void> {
    await this.#empty(`stop container ${id}`, `/containers/${id}/stop`, {
      method: "POST",
      query: {
        t: timeoutSeconds === undefined ? undefined : Math.max(0, Math.ceil(timeoutSeconds)),
      },
      accept: [304],
      signal,
    });
  }

  /** `POST /containers/{id}/kill?signal=...` (default SIGKILL). */
  async killContainer(id: string, signal = "SIGKILL"): Promise<void> {
    await this.#empty(`kill container ${id}`, `/containers/${id}/kill`, {
      method: "POST",
      query: { signal },
    });
  }

  /**
   * `DELETE /containers/{id}`: with `force` a running container is killed first, with `volumes`
   * its anonymous volumes go too. A container already gone is not an error.
   */
  async removeContainer(
    id: string,
    options: { force?: boolean; volumes?: boolean } = {},
  ): Promise<void> {
    await this.#empty(`remove container ${id}`, `/containers/${id}`, {
      method: "DELETE",
      query: { force: options.force ?? false, v: options.volumes ?? false },
      accept: [404],
    });
  }

  /** `GET /containers/{id}/json`; undefined when there is no such container. */
  async inspectContainer(id: string, signal?: AbortSignal): Promise<ContainerInspect | undefined> {
    try {
      return await this.#json(`inspect container ${id}`, `/containers/${id}/json`, { signal });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * `GET /containers/json`: containers (stopped ones too unless `all` is false) carrying every
   * label in `labels`.
   */
  listContainers(
    options: { labels?: LabelFilter; all?: boolean } = {},
  ): Promise<ContainerSummary[]> {
    const label = Object.entries(options.labels ?? {}).map(([key, value]) =>
      value === true ? key : `${key}=${value}`
    );
    return this.#json("list containers", "/containers/json", {
      query: {
        all: options.all ?? true,
        filters: label.length > 0 ? JSON.stringify({ label }) : undefined,
      },
    });
  }

  /**
   * `GET /containers/{id}/logs`: the container's output as frames, demultiplexed. Ends when the
   * output does (with `follow`: when the container stops), or quietly when `signal` aborts.
   */
  async *containerLogs(id: string, options: ContainerLogsOptions = {}): AsyncGenerator<LogFrame> {
    const operation = `read logs of container ${id}`;
    const signal = options.signal;
    if (signal?.aborted) return;
    let response: Response;
    try {
      response = await this.#send(operation, `/containers/${id}/logs`, {
        query: {
          follow: options.follow ?? false,
          timestamps: options.timestamps ?? false,
          stdout: options.stdout ?? true,
          stderr: options.stderr ?? true,
          tail: options.tail === undefined ? "all" : options.tail,
          since: options.since === undefined ? undefined : (options.since / 1000).toFixed(3),
        },
        signal,
      });
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
    const body = response.body;
    if (body === null) return;
    try {
      if (options.tty) {
        for await (const chunk of body) yield { stream: "stdout", data: chunk };
      } else {
        yield* demultiplex(body);
      }
    } catch (error) {
      if (signal?.aborted) return;
      throw new DockerApiError(operation, 0, errorText(error));
    } finally {
      await body.cancel().catch(() => {});
    }
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  async #json<T>(operation: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.#send(operation, path, options);
    const text = await readText(operation, response);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new DockerApiError(operation, response.status, `not JSON: ${text.slice(0, 200)}`);
    }
  }

  async #empty(operation: string, path: string, options: RequestOptions = {}): Promise<void> {
    const response = await this.#send(operation, path, options);
    await response.body?.cancel();
  }

  /** Sends a request; throws unless the answer is 2xx or accepted. */
  async #send(operation: string, path: string, options: RequestOptions = {}): Promise<Response> {
    if (this.#closed) throw new DockerApiError(operation, 0, "the Docker API client is closed");
    const prefix = options.unversioned ? "" : `/v${await this.apiVersion()}`;
    const url = new URL(`http://docker${prefix}${path}`);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value === undefined) continue;
      url.searchParams.set(key, typeof value === "boolean" ? (value ? "1" : "0") : String(value));
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method: options.method ?? "GET",
        client: this.#client,
        signal: options.signal,
        headers: options.body === undefined ? {} : { "content-type": "application/json" },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new DockerApiError(
        operation,
        0,
        `cannot connect to the Docker daemon at ${describeEndpoint(this.endpoint)} ` +
          `(${errorText(error)}). Is the docker daemon running? (tools/docker_setup.sh starts one)`,
      );
    }
    if (response.ok || options.accept?.includes(response.status)) return response;
    const text = await response.text().catch(() => "");
    let message = text.trim();
    try {
      const parsed = JSON.parse(text);
      if (typeof parsed?.message === "string") message = parsed.message;
    } catch { /* not JSON: keep the text */ }
    throw new DockerApiError(operation, response.status, message || response.statusText);
  }
}

/** An image name for a URL path: escaped, but with its `/` and `:` kept (Docker routes them). */
function pathName(name: string): string {
  return encodeURIComponent(name).replaceAll("%2F", "/").replaceAll("%3A", ":");
}

async function readText(operation: string, response: Response): Promise<string> {
  try {
    return await response.text();
  } catch (error) {
    throw new DockerApiError(operation, response.status, `reading the answer: ${errorText(error)}`);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Compares dotted versions (`1.41` < `1.45` < `1.100`). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

const STREAMS = ["stdin", "stdout", "stderr"] as const;

/**
 * Splits Docker's multiplexed stream (a non-TTY container's attach or logs output) into frames:
 * each is an 8-byte header (stream type 0, 1 or 2; three zero bytes; a big-endian 32-bit size)
 * followed by that many bytes. A truncated last frame is yielded as far as it got.
 */
export async function* demultiplex(
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<LogFrame> {
  let buffer: Uint8Array = new Uint8Array(0);
  for await (const chunk of body) {
    buffer = buffer.length === 0 ? chunk : concat(buffer, chunk);
    let at = 0;
    while (buffer.length - at >= 8) {
      const type = buffer[at];
      const size = new DataView(buffer.buffer, buffer.byteOffset + at + 4, 4).getUint32(0);
      if (buffer.length - at - 8 < size) break;
      const data = buffer.slice(at + 8, at + 8 + size);
      at += 8 + size;
      yield { stream: STREAMS[type] ?? "stdout", data };
    }
    buffer = buffer.subarray(at);
  }
  if (buffer.length > 8) {
    yield { stream: STREAMS[buffer[0]] ?? "stdout", data: buffer.slice(8) };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
