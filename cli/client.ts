/**
 * The HTTP client the `shoal` command uses to talk to a manager's Docker-compatible API.
 *
 * The manager is found, in order, from `--host`/`-H`, `SHOAL_HOST`, `DOCKER_HOST`
 * (`tcp://host:port`), and `http://127.0.0.1:4375`. Errors the manager returns (JSON
 * `{message, code}`) become {@link DaemonError}s that print as Docker's do:
 * `Error response from daemon: <message>`.
 *
 * @module
 */
import { CliError } from "./format.ts";

/** Where the API listens when nothing says otherwise (the port `shoal start` uses). */
export const DEFAULT_HOST = "http://127.0.0.1:4375";

/** An error the manager answered with; prints as Docker's CLI prints daemon errors. */
export class DaemonError extends CliError {
  /** HTTP status. */
  readonly httpStatus: number;
  /** The manager's stable error code (`not_found`, `name_conflict`...). */
  readonly code: string;
  /** The manager's message, without Docker's prefix. */
  readonly daemonMessage: string;
  /** Creates a daemon error. */
  constructor(httpStatus: number, code: string, message: string) {
    super(`Error response from daemon: ${message}`, 1);
    this.name = "DaemonError";
    this.httpStatus = httpStatus;
    this.code = code;
    this.daemonMessage = message;
  }
}

/** Turns `tcp://h:p`, `h:p`, `http(s)://h:p` into the API's base URL. */
export function hostToUrl(host: string): string {
  let h = host.trim();
  if (h.startsWith("tcp://")) h = `http://${h.slice(6)}`;
  else if (h.startsWith("unix://") || h.startsWith("npipe://") || h.startsWith("ssh://")) {
    throw new CliError(
      `unsupported host "${host}": Shoal's API is served over TCP (tcp://HOST:PORT)`,
    );
  } else if (!/^https?:\/\//.test(h)) h = `http://${h}`;
  let url: URL;
  try {
    url = new URL(h);
  } catch {
    throw new CliError(`invalid host "${host}": expected tcp://HOST:PORT or http://HOST:PORT`);
  }
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}

/** The manager's address from the flag, then `SHOAL_HOST`, then `DOCKER_HOST`, then the default. */
export function resolveHost(flag: string | undefined, env: (name: string) => string | undefined) {
  const chosen = flag || env("SHOAL_HOST") || env("DOCKER_HOST") || DEFAULT_HOST;
  return hostToUrl(chosen);
}

/** Docker's filter syntax: `{"name": {"web": true}}`, from `--filter name=web` flags. */
export type Filters = Record<string, Record<string, boolean>>;

/** Builds filters from `key=value` strings (Docker's `--filter`). */
export function parseFilters(values: readonly string[]): Filters {
  const filters: Filters = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new CliError(`bad format of filter (expected name=value)`);
    addFilter(filters, v.slice(0, eq).trim().toLowerCase(), v.slice(eq + 1).trim());
  }
  return filters;
}

/** Adds one `key=value` to filters. */
export function addFilter(filters: Filters, key: string, value: string): Filters {
  (filters[key] ??= {})[value] = true;
  return filters;
}

type Query = Record<string, string | number | boolean | Filters | undefined>;

/** A client for one manager. */
export class ApiClient {
  /** The API's base URL, `http://host:port`. */
  readonly base: string;

  /** With mutual TLS (`cli/tls_client.ts`): the HTTP client holding the certificates. */
  readonly #http: Deno.HttpClient | undefined;

  /**
   * Creates a client for the API at `base` (see {@link resolveHost}); with `tls`, over HTTPS
   * with that client certificate, checking the manager's against `tls.caCerts`.
   */
  constructor(
    base: string,
    tls?: { readonly caCerts: string[]; readonly cert: string; readonly key: string },
  ) {
    this.base = tls ? base.replace(/^http:/, "https:") : base;
    this.#http = tls
      ? Deno.createHttpClient({ caCerts: tls.caCerts, cert: tls.cert, key: tls.key })
      : undefined;
  }

  #url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined) continue;
      if (typeof v === "object") {
        if (Object.keys(v).length > 0) params.set(k, JSON.stringify(v));
      } else params.set(k, String(v));
    }
    const qs = params.toString();
    return `${this.base}${path}${qs ? `?${qs}` : ""}`;
  }

  async #fetch(
    method: string,
    path: string,
    query?: Query,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<Response> {
    const url = this.#url(path, query);
    let res: Response;
    try {
      res = await fetch(url, {
        client: this.#http,
        signal,
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new CliError(
        `Cannot connect to the Shoal manager at ${this.base}. Is the manager running?\n(${
          (err as Error).message
        })`,
      );
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text.trim() || `${res.status} ${res.statusText}`;
      let code = "";
      try {
        const parsed = JSON.parse(text);
        if (typeof parsed?.message === "string") message = parsed.message;
        if (typeof parsed?.code === "string") code = parsed.code;
      } catch {
        // Not JSON: keep the text.
      }
      throw new DaemonError(res.status, code, message);
    }
    return res;
  }

  /** GETs JSON. */
  async get<T>(path: string, query?: Query): Promise<T> {
    return (await this.#fetch("GET", path, query)).json() as Promise<T>;
  }

  /** GETs JSON, keeping the raw text too (for `inspect`, which prints the manager's bytes). */
  async getRaw<T>(path: string, query?: Query): Promise<{ raw: string; value: T }> {
    const raw = await (await this.#fetch("GET", path, query)).text();
    return { raw, value: JSON.parse(raw) as T };
  }

  /** POSTs a JSON body; resolves with the JSON answer (or null when there is none). */
  async post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    const text = await (await this.#fetch("POST", path, query, body ?? {})).text();
    return (text.trim() ? JSON.parse(text) : null) as T;
  }

  /**
   * GETs a streamed answer (Docker's logs), failing as `get` does on an error status; the caller
   * reads the body. `signal` aborts the request.
   */
  async open(path: string, query: Query, signal?: AbortSignal): Promise<Response> {
    return await this.#fetch("GET", path, query, undefined, signal);
  }

  /** DELETEs. */
  async delete(path: string, query?: Query): Promise<void> {
    await (await this.#fetch("DELETE", path, query)).body?.cancel();
  }

  /**
   * GETs a stream of JSON values (Docker's `/events`), calling `onValue` for each as it arrives
   * (with its text, for numbers too large for a double, such as `timeNano`).
   * Resolves when the manager ends the stream or `signal` aborts.
   */
  async stream(
    path: string,
    query: Query,
    onValue: (v: unknown, raw: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const url = this.#url(path, query);
    let res: Response;
    try {
      res = await fetch(url, { signal, client: this.#http });
    } catch (err) {
      if (signal?.aborted) return;
      throw new CliError(
        `Cannot connect to the Shoal manager at ${this.base}. Is the manager running?\n(${
          (err as Error).message
        })`,
      );
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text.trim();
      try {
        message = JSON.parse(text).message ?? message;
      } catch { /* not JSON */ }
      throw new DaemonError(res.status, "", message);
    }
    const splitter = new JsonStreamSplitter();
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        for (const text of splitter.push(decoder.decode(chunk, { stream: true }))) {
          onValue(JSON.parse(text), text);
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }
}

/**
 * Splits a stream of concatenated JSON values (newline-separated or not, or Server-Sent Events
 * `data:` lines) into the text of each value.
 */
export class JsonStreamSplitter {
  #buf = "";
  #depth = 0;
  #inString = false;
  #escape = false;
  #start = -1;
  #scanned = 0;

  /** Adds text; returns the complete values it finished. */
  push(text: string): string[] {
    this.#buf += text;
    const out: string[] = [];
    for (let i = this.#scanned; i < this.#buf.length; i++) {
      const c = this.#buf[i];
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === "\\") this.#escape = true;
        else if (c === '"') this.#inString = false;
        continue;
      }
      if (c === '"') {
        this.#inString = true;
        continue;
      }
      if (c === "{" || c === "[") {
        if (this.#depth === 0) this.#start = i;
        this.#depth++;
      } else if (c === "}" || c === "]") {
        this.#depth--;
        if (this.#depth === 0 && this.#start >= 0) {
          out.push(this.#buf.slice(this.#start, i + 1));
          this.#start = -1;
        }
      }
    }
    if (this.#depth === 0) {
      this.#buf = "";
      this.#scanned = 0;
    } else {
      this.#buf = this.#buf.slice(this.#start);
      this.#scanned = this.#buf.length;
      this.#start = 0;
    }
    return out;
  }
}
