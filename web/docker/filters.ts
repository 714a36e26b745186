/**
 * Docker's `filters` query parameter: JSON mapping a filter name to its values, either as
 * `{"name": {"web": true}}` (what clients send today) or `{"name": ["web"]}` (the old form).
 * Values of one name are alternatives (OR); different names must all match (AND). An unknown
 * filter name is a 400, as in Docker (`invalid filter 'x'`).
 *
 * @module
 */
import { ApiError } from "../http.ts";

/** Parsed filters: name to its values. */
export class Filters {
  readonly #values: Map<string, string[]>;

  constructor(values: Map<string, string[]>) {
    this.#values = values;
  }

  /** Reads `filters` from the query, accepting only the names in `accepted`. */
  static fromUrl(url: URL, accepted: readonly string[]): Filters {
    const raw = url.searchParams.get("filters");
    const values = new Map<string, string[]>();
    if (raw === null || raw === "") return new Filters(values);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ApiError(400, "invalid_filter", `invalid filters: not JSON: ${raw.slice(0, 100)}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ApiError(400, "invalid_filter", "invalid filters: must be a JSON object");
    }
    for (const [name, v] of Object.entries(parsed)) {
      if (!accepted.includes(name)) {
        throw new ApiError(400, "invalid_filter", `invalid filter '${name}'`);
      }
      let list: string[];
      if (Array.isArray(v) && v.every((x) => typeof x === "string")) list = v;
      else if (typeof v === "object" && v !== null && !Array.isArray(v)) {
        list = Object.entries(v).filter(([, on]) => on === true).map(([k]) => k);
      } else {
        throw new ApiError(
          400,
          "invalid_filter",
          `invalid filter '${name}': values must be a list of strings or an object of booleans`,
        );
      }
      if (list.length > 0) values.set(name, list);
    }
    return new Filters(values);
  }

  /** The values given for `name` (empty when none). */
  get(name: string): readonly string[] {
    return this.#values.get(name) ?? [];
  }

  /** Whether `name` was given at all. */
  has(name: string): boolean {
    return this.#values.has(name);
  }

  /** True when `name` was not given, or one of its values is `value`. */
  exact(name: string, value: string): boolean {
    const list = this.#values.get(name);
    return list === undefined || list.includes(value);
  }

  /** True when `name` was not given, or `value` starts with one of its values. */
  prefix(name: string, value: string): boolean {
    const list = this.#values.get(name);
    return list === undefined || list.some((p) => value.startsWith(p));
  }

  /** True when `name` was not given, or `test` holds for one of its values. */
  some(name: string, test: (value: string) => boolean): boolean {
    const list = this.#values.get(name);
    return list === undefined || list.some(test);
  }

  /**
   * Label filters: every value (`key` or `key=value`) must hold of `labels` (Docker ANDs label
   * filters, unlike other names).
   */
  labels(name: string, labels: Readonly<Record<string, string>>): boolean {
    const list = this.#values.get(name);
    if (list === undefined) return true;
    return list.every((f) => {
      const eq = f.indexOf("=");
      if (eq < 0) return Object.hasOwn(labels, f);
      const key = f.slice(0, eq);
      return Object.hasOwn(labels, key) && labels[key] === f.slice(eq + 1);
    });
  }
}
