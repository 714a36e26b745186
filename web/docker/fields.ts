/**
 * Pieces shared by the Docker JSON converters: times, durations, and the zod building blocks of
 * request bodies.
 *
 * Docker's Go client sends `null` for empty lists and maps, and omits zero values; every optional
 * field here therefore accepts `null` as "absent". Bodies are strict: a field Docker's API does
 * not have is refused ("unknown field"), and a field Docker has but Shoal does not implement is
 * accepted only at its zero value, so nothing a client asks for is silently dropped.
 *
 * @module
 */
import { z } from "zod";

/** Go's zero `time.Time`, as Docker writes it. */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/** A time in ms as Docker writes times: RFC 3339 with fractional seconds, in UTC. */
export function rfc3339(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return ZERO_TIME;
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  // Go's RFC3339Nano drops trailing zeros of the fraction, and the fraction when it is zero.
  return iso.replace(/\.?0+Z$/, "Z");
}

/** Milliseconds (Shoal) to nanoseconds (Docker's `time.Duration`). */
export function msToNs(ms: number): number {
  return ms * 1_000_000;
}

/** Nanoseconds to whole milliseconds; a positive duration under 1 ms becomes 1 ms. */
export function nsToMs(ns: number): number {
  if (ns <= 0) return 0;
  return Math.max(1, Math.round(ns / 1_000_000));
}

/** Whether a value is "zero" as Go sees it: absent, null, false, 0, "", or empty throughout. */
export function isZero(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === "") {
    return true;
  }
  if (Array.isArray(value)) return value.every(isZero);
  if (typeof value === "object") return Object.values(value).every(isZero);
  return false;
}

/**
 * A field of Docker's API that Shoal does not implement: accepted when zero (Go clients send some
 * of them always), refused otherwise with a message saying so. `zeros` lists other values that
 * mean "the default" (`Isolation: "default"`).
 */
export function unsupported(feature?: string, zeros: readonly unknown[] = []) {
  return z.unknown().refine(
    (v) => isZero(v) || zeros.includes(v),
    { message: feature ? `${feature} is not supported by Shoal` : "is not supported by Shoal" },
  ).optional();
}

/** A Docker duration: whole nanoseconds, not negative. */
export const Duration = z.number({ error: "must be a duration in nanoseconds" })
  .int("must be a whole number of nanoseconds")
  .nonnegative("must not be negative")
  .max(Number.MAX_SAFE_INTEGER, "is too large");

/** A whole number that is not negative (Go's uint64, as far as JSON numbers are exact). */
export const Uint = z.number().int("must be a whole number").nonnegative("must not be negative")
  .max(Number.MAX_SAFE_INTEGER, "is too large");

/** Optional labels (`null` is none). */
export const OptLabels = z.record(z.string(), z.string()).nullish();

/** An optional list of strings (`null` is none). */
export const OptStrings = z.array(z.string()).nullish();

/** An optional string (`null` is none). */
export const OptString = z.string().nullish();

/** An optional boolean (`null` is false). */
export const OptBool = z.boolean().nullish();

/** Docker's `Version` object. */
export function version(index: number): { Index: number } {
  return { Index: index };
}

/** The `{ID, Version, CreatedAt, UpdatedAt}` head of every swarm object. */
export function meta(rec: { id: string; version: number; createdAt: number; updatedAt: number }) {
  return {
    ID: rec.id,
    Version: version(rec.version),
    CreatedAt: rfc3339(rec.createdAt),
    UpdatedAt: rfc3339(rec.updatedAt),
  };
}

/** Removes keys whose value is `undefined` (Go's `omitempty` for absent fields). */
export function compact<T extends Record<string, unknown>>(obj: T): T {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

/** `list` when it has items, else `undefined` (so `compact` leaves it out). */
export function nonEmpty<T>(list: readonly T[] | undefined): T[] | undefined {
  return list !== undefined && list.length > 0 ? [...list] : undefined;
}

/** `labels` when it has entries, else `undefined`. */
export function nonEmptyMap(
  labels: Readonly<Record<string, string>> | undefined,
): Record<string, string> | undefined {
  return labels !== undefined && Object.keys(labels).length > 0 ? { ...labels } : undefined;
}

/** `n` when it is not zero, else `undefined`. */
export function nonZero(n: number | undefined): number | undefined {
  return n ? n : undefined;
}

/** `s` when it is not empty, else `undefined`. */
export function nonBlank(s: string | undefined): string | undefined {
  return s ? s : undefined;
}
