/**
 * How benchmarks print: a human table, and with `--json` one JSON object on the last line.
 *
 * @module
 */

/** One row of a benchmark's table. */
export interface BenchRow {
  metric: string;
  value: number;
  unit: string;
  /** The goal, in words (for example "≤ 500"). */
  goal?: string;
  /** Whether the value meets the goal, when there is one. */
  ok?: boolean;
}

/** Facts about the machine, recorded with every result. */
export function machine(): Record<string, string | number> {
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
  };
}

/** Prints the table (and the JSON line when asked) and returns the JSON object. */
export function report(
  name: string,
  rows: BenchRow[],
  options: { json: boolean; extra?: Record<string, unknown> },
): Record<string, unknown> {
  const width = Math.max(...rows.map((r) => r.metric.length), 6);
  console.log(`\n${name}`);
  console.log(`${"metric".padEnd(width)}  ${"value".padStart(14)}  unit        goal`);
  for (const r of rows) {
    const value = Number.isInteger(r.value) ? r.value.toLocaleString("en-US") : r.value.toFixed(1);
    const verdict = r.ok === undefined ? "" : r.ok ? "  ok" : "  MISSED";
    console.log(
      `${r.metric.padEnd(width)}  ${value.padStart(14)}  ${r.unit.padEnd(10)}  ${
        r.goal ?? ""
      }${verdict}`,
    );
  }
  const result: Record<string, unknown> = {
    bench: name,
    date: new Date().toISOString(),
    machine: machine(),
    ...options.extra,
  };
  for (const r of rows) result[r.metric] = r.value;
  if (options.json) console.log(JSON.stringify(result));
  return result;
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
