/**
 * Docker's value syntaxes, parsed and printed as Docker's CLI does: Go durations (`5s`,
 * `1m30s`, `300ms`), memory sizes (`512M`, `1.5g`), CPU counts (`0.5`), unsigned integers, and
 * the human forms Docker prints (`5 seconds`, `23.54GiB`). Error messages are Go's, so a wrong
 * flag reads exactly as it would under `docker`.
 *
 * Durations are nanoseconds, as in the Docker API.
 *
 * @module
 */

const NS = 1;
const US = 1_000;
const MS = 1_000_000;
const S = 1_000_000_000;
const MIN = 60 * S;
const H = 60 * MIN;

const DURATION_UNITS: Record<string, number> = {
  ns: NS,
  us: US,
  "\u00b5s": US, // micro sign
  "\u03bcs": US, // Greek mu
  ms: MS,
  s: S,
  m: MIN,
  h: H,
};

/** Parses a Go duration (`time.ParseDuration`) into nanoseconds. */
export function parseDuration(text: string): number {
  const invalid = () => new Error(`time: invalid duration ${goQuote(text)}`);
  let s = text;
  let neg = false;
  if (s !== "" && (s[0] === "-" || s[0] === "+")) {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw invalid();
  let total = 0;
  while (s !== "") {
    const m = /^(\d*)(?:\.(\d*))?/.exec(s)!;
    const [whole, intPart, fracPart] = m;
    if (intPart === "" && (fracPart === undefined || fracPart === "")) throw invalid();
    s = s.slice(whole.length);
    const unitMatch = /^[^\d.]*/.exec(s)!;
    const unit = unitMatch[0];
    if (unit === "") throw new Error(`time: missing unit in duration ${goQuote(text)}`);
    s = s.slice(unit.length);
    const scale = DURATION_UNITS[unit];
    if (scale === undefined) {
      throw new Error(`time: unknown unit ${goQuote(unit)} in duration ${goQuote(text)}`);
    }
    let value = Number(intPart || "0") * scale;
    if (fracPart) value += Math.round(Number(`0.${fracPart}`) * scale);
    total += value;
    if (total > 9_223_372_036_854_775_807) throw invalid();
  }
  return neg ? -total : total;
}

/** Formats nanoseconds as Go's `time.Duration.String()` does (`1m30s`, `300ms`, `0s`). */
export function formatDuration(ns: number): string {
  if (ns === 0) return "0s";
  const neg = ns < 0;
  let u = Math.round(Math.abs(ns));
  let out: string;
  if (u < S) {
    let unit: string;
    let prec: number;
    if (u < US) [unit, prec] = ["ns", 0];
    else if (u < MS) [unit, prec] = ["\u00b5s", 3];
    else [unit, prec] = ["ms", 6];
    out = fracString(u, prec) + unit;
  } else {
    const secs = fracString(u % (60 * S), 9);
    u = Math.floor(u / S / 60);
    out = secs + "s";
    if (u > 0) {
      out = `${u % 60}m${out}`;
      u = Math.floor(u / 60);
      if (u > 0) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/** `v / 10^prec` with the fraction's trailing zeros (and a bare point) dropped. */
function fracString(v: number, prec: number): string {
  const div = 10 ** prec;
  const whole = Math.floor(v / div);
  let frac = String(v % div).padStart(prec, "0").replace(/0+$/, "");
  if (prec === 0) frac = "";
  return frac === "" ? String(whole) : `${whole}.${frac}`;
}

/** Go's `strconv.Quote` for the plain strings that appear in messages. */
export function goQuote(s: string): string {
  return JSON.stringify(s);
}

const BINARY = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 } as const;

/** Parses a memory size as Docker's `units.RAMInBytes` (`512M`, `1.5g`, `100KiB`, `42`). */
export function parseMemory(text: string): number {
  let num: string;
  let sfx: string;
  const space = text.indexOf(" ");
  if (space >= 0) {
    num = text.slice(0, space);
    sfx = text.slice(space + 1);
  } else {
    let sep = -1;
    for (let i = text.length - 1; i >= 0; i--) {
      if ("0123456789.".includes(text[i])) {
        sep = i;
        break;
      }
    }
    if (sep === -1) throw new Error(`invalid size: '${text}'`);
    num = text.slice(0, sep + 1);
    sfx = text.slice(sep + 1);
  }
  const size = Number(num);
  if (num.trim() === "" || !Number.isFinite(size) || !/^[+-]?[\d.]+(e[+-]?\d+)?$/i.test(num)) {
    throw new Error(`strconv.ParseFloat: parsing ${goQuote(num)}: invalid syntax`);
  }
  if (size < 0) throw new Error(`invalid size: '${text}'`);
  if (sfx === "") return Math.trunc(size);
  const badSuffix = () => new Error(`invalid suffix: '${sfx.toLowerCase()}'`);
  if (sfx.length > 3) throw badSuffix();
  const lower = sfx.toLowerCase();
  if (lower[0] === "b") {
    if (lower.length > 1) throw badSuffix();
    return Math.trunc(size);
  }
  const mul = BINARY[lower[0] as keyof typeof BINARY];
  if (mul === undefined) throw badSuffix();
  if (lower.length === 2 && lower[1] !== "b") throw badSuffix();
  if (lower.length === 3 && lower.slice(1) !== "ib") throw badSuffix();
  return Math.trunc(size * mul);
}

const BINARY_ABBRS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/** Formats bytes as Docker's `units.BytesSize` (`%.4g` of the largest binary unit: `23.54GiB`). */
export function formatBytes(size: number): string {
  let i = 0;
  while (size >= 1024 && i < BINARY_ABBRS.length - 1) {
    size /= 1024;
    i++;
  }
  return goFormatG(size, 4) + BINARY_ABBRS[i];
}

/** Go's `%.<prec>g`: shortest of fixed and exponent notation, trailing zeros dropped. */
export function goFormatG(value: number, prec: number): string {
  if (value === 0) return "0";
  const exp = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(prec)))));
  if (exp < -4 || exp >= prec) {
    const [mant, e] = value.toExponential(prec - 1).split("e");
    const m = mant.includes(".") ? mant.replace(/\.?0+$/, "") : mant;
    const en = Number(e);
    return `${m}e${en < 0 ? "-" : "+"}${String(Math.abs(en)).padStart(2, "0")}`;
  }
  const fixed = value.toFixed(Math.max(0, prec - 1 - exp));
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}

/** Parses a CPU count (`0.5`, `2`, `1/4`) into billionths of a CPU, as Docker's `ParseCPUs`. */
export function parseCpus(text: string): number {
  const fail = () => new Error(`failed to parse ${text} as a rational number`);
  let numerator: bigint;
  let denominator = 1n;
  const frac = /^([+-]?\d+)\/(\d+)$/.exec(text);
  const dec = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (frac) {
    numerator = BigInt(frac[1]);
    denominator = BigInt(frac[2]);
    if (denominator === 0n) throw fail();
  } else if (dec && (dec[2] !== "" || (dec[3] ?? "") !== "")) {
    const digits = (dec[2] || "0") + (dec[3] ?? "");
    let scale = -(dec[3] ?? "").length + Number(dec[4] ?? "0");
    numerator = BigInt(digits) * (dec[1] === "-" ? -1n : 1n);
    if (scale >= 0) numerator *= 10n ** BigInt(scale);
    else {
      denominator = 10n ** BigInt(-scale);
      scale = 0;
    }
  } else throw fail();
  const nano = numerator * 1_000_000_000n;
  if (nano % denominator !== 0n) throw new Error("value is too precise");
  return Number(nano / denominator);
}

/** Parses an unsigned integer as Go's `strconv.ParseUint(s, 0, 64)` (Docker's `uint` flags). */
export function parseUint(text: string): number {
  const fail = () => new Error(`strconv.ParseUint: parsing ${goQuote(text)}: invalid syntax`);
  const t = text.replaceAll("_", "");
  if (!/^(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|\d+)$/.test(t) || text.startsWith("_")) {
    throw fail();
  }
  let n: number;
  if (/^0[xX]/.test(t)) n = parseInt(t.slice(2), 16);
  else if (/^0[bB]/.test(t)) n = parseInt(t.slice(2), 2);
  else if (/^0[oO]/.test(t)) n = parseInt(t.slice(2), 8);
  else if (/^0\d/.test(t)) n = parseInt(t.slice(1), 8);
  else n = Number(t);
  if (!Number.isSafeInteger(n)) {
    throw new Error(`strconv.ParseUint: parsing ${goQuote(text)}: value out of range`);
  }
  return n;
}

/** Parses a signed integer as Go's `strconv.ParseInt(s, 0, 64)` (Docker's `int` flags). */
export function parseInt64(text: string): number {
  const neg = text.startsWith("-");
  const body = neg || text.startsWith("+") ? text.slice(1) : text;
  try {
    const n = parseUint(body);
    return neg ? -n : n;
  } catch {
    throw new Error(`strconv.ParseInt: parsing ${goQuote(text)}: invalid syntax`);
  }
}

/** Parses a float as Go's `strconv.ParseFloat`. */
export function parseFloat64(text: string): number {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    throw new Error(`strconv.ParseFloat: parsing ${goQuote(text)}: invalid syntax`);
  }
  return Number(text);
}

/**
 * A duration as a person reads it, as Docker's `units.HumanDuration` (`Less than a second`,
 * `5 seconds`, `About a minute`, `3 hours`, `2 weeks`).
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}
