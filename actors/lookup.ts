/**
 * Finding objects the way Docker's CLI lets people name them: by full id, by name, or by an
 * unambiguous id prefix.
 *
 * @module
 */
import type { ReadonlyTable, Row } from "./table.ts";
import { EventRejected } from "./entities/rejection.ts";

/**
 * The record `ref` names in `table`: an exact id, then an exact name, then a unique id prefix.
 * Throws `EventRejected` (`not_found`) naming the kind and the reference when nothing matches, and
 * (`invalid_argument`) when a prefix is ambiguous.
 */
export function resolve<R extends Row>(
  kind: string,
  table: ReadonlyTable<R>,
  names: ReadonlyMap<string, string> | ((name: string) => string | undefined),
  ref: string,
): R {
  const exact = table.get(ref);
  if (exact !== undefined) return exact;
  const byName = typeof names === "function" ? names(ref) : names.get(ref);
  if (byName !== undefined) {
    const rec = table.get(byName);
    if (rec !== undefined) return rec;
  }
  let found: R | undefined;
  if (ref.length > 0) {
    for (const rec of table.values()) {
      if (!rec.id.startsWith(ref)) continue;
      if (found !== undefined) {
        throw new EventRejected(
          "invalid_argument",
          `${kind} ${ref} is ambiguous (more than one ${kind} id starts with it)`,
        );
      }
      found = rec;
    }
  }
  if (found === undefined) throw new EventRejected("not_found", `${kind} ${ref} not found`);
  return found;
}
