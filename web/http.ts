/**
 * HTTP plumbing shared by every API route: JSON responses, errors with a stable code
 * (DESIGN.md contract 11), bounded request bodies, query parameters, and zod issues turned into
 * messages that name the field.
 *
 * @module
 */
import type { z } from "zod";
import { EventRejected } from "../actors/entities/rejection.ts";
import { LeaderUnavailableError } from "../actors/manager.ts";
import { ActorStoppedError, AskTimeoutError, MailboxFullError } from "../actors/runtime.ts";

/** The version this build of Shoal reports. */
export const SHOAL_VERSION = "0.1.0";
/** The Docker Engine API version the API follows. */
export const API_VERSION = "1.41";
/** The oldest Docker Engine API version a client may ask for (Docker's own minimum). */
export const MIN_API_VERSION = "1.24";

/**
 * Largest request body accepted, in bytes: a 500 KiB secret is about 700 KB of base64, and any
 * body this size still fits one log batch (1.5 MiB), so a valid body is never refused by the log.
 */
export const MAX_BODY_BYTES = 1024 * 1024;

/** An API error with an HTTP status and a stable code. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** Stable machine-readable code. */
  readonly code: string;
  /** Creates an API error. */
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The HTTP status of each refusal code of the entities (`EventRejected.code`). */
const STATUS_OF_CODE: Record<string, number> = {
  not_found: 404,
  already_exists: 409,
  name_conflict: 409,
  version_conflict: 409,
  in_use: 400,
  invalid_argument: 400,
  invalid_reference: 400,
  invalid_transition: 400,
};

/** Headers every answer carries (the Docker CLI reads `Api-Version` and `Ostype`). */
export function baseHeaders(): Record<string, string> {
  return { "api-version": API_VERSION, "ostype": "linux", "server": `Shoal/${API_VERSION}` };
}

/** A JSON answer. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...baseHeaders(), "content-type": "application/json" },
  });
}

/** An answer with no body (Docker's 204s, and 200s that return nothing). */
export function empty(status = 204): Response {
  return new Response(null, { status, headers: baseHeaders() });
}

/** The JSON error answer for anything a route threw. */
export function errorResponse(err: unknown): Response {
  if (err instanceof ApiError) return json({ message: err.message, code: err.code }, err.status);
  if (err instanceof EventRejected) {
    if (err.code === "version_conflict") {
      // Docker (SwarmKit) says "update out of sequence"; keep its words, then say what moved.
      return json({ message: `update out of sequence: ${err.message}`, code: err.code }, 409);
    }
    return json({ message: err.message, code: err.code }, STATUS_OF_CODE[err.code] ?? 400);
  }
  if (err instanceof LeaderUnavailableError || (err as Error)?.name === "NotLeaderError") {
    return json({ message: (err as Error).message, code: "no_leader" }, 503);
  }
  if (
    err instanceof AskTimeoutError || err instanceof MailboxFullError ||
    err instanceof ActorStoppedError
  ) {
    return json(
      { message: `the manager is busy or stopping: ${err.message}`, code: "unavailable" },
      503,
    );
  }
  return json(
    { message: `internal error: ${(err as Error)?.message ?? err}`, code: "internal" },
    500,
  );
}

/**
 * Reads a JSON request body of at most {@linkcode MAX_BODY_BYTES}. An empty body reads as
 * `undefined`; anything that is not JSON is a 400 saying where it broke.
 */
export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge(limit);
  if (req.body === null) return undefined;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge(limit);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(
      400,
      "invalid_body",
      `could not read the request body: ${(err as Error).message}`,
    );
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "invalid_json", "the request body is not valid UTF-8");
  }
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    const why = err instanceof RangeError ? "it is nested too deeply" : (err as Error).message;
    throw new ApiError(400, "invalid_json", `the request body is not valid JSON: ${why}`);
  }
}

function tooLarge(limit: number): ApiError {
  return new ApiError(
    413,
    "body_too_large",
    `the request body is too large (at most ${limit / 1024 / 1024} MiB)`,
  );
}

/** Parses `data` with `schema`, or throws a 400 naming the field: `invalid <what>: A.B: why`. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  data: unknown,
  what: string,
): z.output<S> {
  const result = schema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  throw new ApiError(
    400,
    "invalid_argument",
    `invalid ${what}: ${describeIssues(result.error.issues)}`,
  );
}

/** The first few zod issues as `Path.To.Field: what is wrong`, separated by `; `. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  const parts = issues.slice(0, 3).map(describeIssue);
  if (issues.length > 3) parts.push(`and ${issues.length - 3} more`);
  return parts.join("; ");
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const where = path === "" ? "" : `${path}.`;
    return issue.keys.map((k) => `${where}${k}: unknown field`).join("; ");
  }
  const message = issue.code === "invalid_type"
    ? typeMessage(issue.expected, (issue as { input?: unknown }).input, issue.message)
    : issue.message;
  return path === "" ? message : `${path}: ${message}`;
}

function typeMessage(expected: string, input: unknown, fallback: string): string {
  // A custom message (set with `error:`) wins over the generic one.
  if (!fallback.startsWith("Invalid input")) return fallback;
  if (input === undefined) return "must be given";
  const got = input === null ? "null" : Array.isArray(input) ? "an array" : `a ${typeof input}`;
  const want = expected === "object"
    ? "an object"
    : expected === "array"
    ? "an array"
    : expected === "int"
    ? "a whole number"
    : `a ${expected}`;
  return `must be ${want}, got ${got}`;
}

/** A query parameter that must be a whole number, or `fallback` when absent. */
export function intParam(url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new ApiError(
      400,
      "invalid_argument",
      `query parameter ${name} must be a whole number, got "${raw}"`,
    );
  }
  return n;
}

/** An optional whole-number query parameter (a `version`, say). */
export function optionalIntParam(url: URL, name: string): number | undefined {
  const raw = url.searchParams.get(name);
  return raw === null || raw === "" ? undefined : intParam(url, name, 0);
}

/** A boolean query parameter as Docker reads them: `1`, `true`, `True` are true. */
export function boolParam(url: URL, name: string): boolean {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return false;
  if (/^(1|t|true)$/i.test(raw)) return true;
  if (/^(0|f|false)$/i.test(raw)) return false;
  throw new ApiError(
    400,
    "invalid_argument",
    `query parameter ${name} must be true or false, got "${raw}"`,
  );
}
