/**
 * A task's captured output: stdout and stderr, line by line, each line stamped with the time it
 * was complete (its newline read), appended to one file with size-based rotation, as Docker's
 * `json-file` driver does (`max-size` 10 MB, `max-file` 3 by default here). `service logs --tail
 * N --follow --timestamps` reads it back.
 *
 * On disk, one line per output line, readable with `cat`:
 *
 * ```
 * 2025-01-02T03:04:05.678Z stdout listening on :8080
 * 2025-01-02T03:04:05.690Z stderr warning: no config, using defaults
 * ```
 *
 * `output.log` is the current file; `output.log.1` the one before it, and so on up to
 * `maxFiles - 1`. A line longer than {@linkcode MAX_LINE_CHARS} is stored as several lines, and
 * output not ending in a newline is stored when the stream ends.
 *
 * @module
 */
import { dirname } from "node:path";

/** Which output a line came from. */
export type LogStream = "stdout" | "stderr";

/** One line of a task's output. */
export interface LogLine {
  /** When it was read, in ms since the epoch. */
  readonly time: number;
  readonly stream: LogStream;
  /** The line, without its newline. */
  readonly text: string;
}

/** What to read from a log. */
export interface LogReadOptions {
  /** Only the last `tail` lines written before the read (then every new one, with `follow`). */
  tail?: number;
  /** Only lines stamped at or after this time (ms since the epoch). */
  since?: number;
  /** Keep yielding new lines until the output ends (the task exited) or `signal` aborts. */
  follow?: boolean;
  /** Ends a read, following or not. */
  signal?: AbortSignal;
}

/** How big a log may grow. */
export interface LogRotation {
  /** Bytes a file may hold before a new one is started. Default 10 MiB. */
  maxBytes?: number;
  /** Files kept, the current one included (at least 1). Default 3. */
  maxFiles?: number;
}

/** Options of {@linkcode LogCapture.open}. */
export interface LogCaptureOptions extends LogRotation {
  /** Wall clock stamping each line, in ms. Default `Date.now`. */
  now?: () => number;
}

/** Docker's json-file defaults, in bytes and files. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Files kept by default. */
export const DEFAULT_LOG_MAX_FILES = 3;
/** Longest line stored as one (Docker splits lines at 16 KiB too). */
export const MAX_LINE_CHARS = 16 * 1024;
/** Lines a slow follower may fall behind before the oldest of them are dropped. */
export const MAX_FOLLOW_BACKLOG = 10_000;

const encoder = new TextEncoder();

/**
 * Writes a task's output to a rotated log file and serves reads of it, including following
 * reads, which see every line exactly once: a read takes its snapshot of the files and joins the
 * followers between two writes.
 */
export class LogCapture {
  /** The current file; rotated ones add `.1`, `.2`... */
  readonly path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  readonly #now: () => number;
  #file: Deno.FsFile | undefined;
  #size: number;
  /** Writes, rotations and read snapshots, one at a time, in order. */
  #queue: Promise<void> = Promise.resolve();
  readonly #followers = new Set<LineQueue>();
  #closed = false;
  #droppedWrites = 0;

  private constructor(path: string, file: Deno.FsFile, size: number, options: LogCaptureOptions) {
    this.path = path;
    this.#file = file;
    this.#size = size;
    this.#maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_LOG_MAX_BYTES);
    this.#maxFiles = Math.max(1, options.maxFiles ?? DEFAULT_LOG_MAX_FILES);
    this.#now = options.now ?? Date.now;
  }

  /** Opens (creating it and its directory, owner-only) the log at `path`, to append to it. */
  static async open(path: string, options: LogCaptureOptions = {}): Promise<LogCapture> {
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const file = await openForAppend(path);
    const { size } = await file.stat();
    return new LogCapture(path, file, size, options);
  }

  /** Lines that could not be written (a full disk, say) and were dropped. */
  get droppedWrites(): number {
    return this.#droppedWrites;
  }

  /**
   * Reads `readable` to its end, storing each line it holds. Resolves when the stream ends; a
   * write error drops lines but keeps reading, so the program never blocks on a full pipe.
   */
  async capture(stream: LogStream, readable: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of readable) {
      const time = this.#now();
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      while (pending.length >= MAX_LINE_CHARS) {
        lines.push(pending.slice(0, MAX_LINE_CHARS));
        pending = pending.slice(MAX_LINE_CHARS);
      }
      if (lines.length > 0) await this.append(splitLong(lines, time, stream));
    }
    pending += decoder.decode();
    if (pending !== "") await this.append(splitLong([pending], this.#now(), stream));
  }

  /** Stores `lines` (each without a newline), in order. */
  append(lines: readonly LogLine[]): Promise<void> {
    if (this.#closed) throw new Error(`Cannot append to log "${this.path}": it is closed`);
    return this.#enqueue(() => this.#write(lines));
  }

  /** Closes the file once pending writes are done; following reads then end. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return this.#queue;
    this.#closed = true;
    return this.#enqueue(() => {
      this.#file?.close();
      this.#file = undefined;
      for (const follower of this.#followers) follower.end();
      this.#followers.clear();
    });
  }

  /** Reads the log; see {@linkcode LogReadOptions}. Nothing happens until the first `next()`. */
  async *read(options: LogReadOptions = {}): AsyncGenerator<LogLine> {
    let follower: LineQueue | undefined;
    const snapshot = await this.#enqueue(async () => {
      const files = await openLogFiles(this.path, this.#maxFiles);
      if (options.follow && !this.#closed) {
        const since = options.since;
        follower = new LineQueue(since === undefined ? undefined : (line) => line.time >= since);
        this.#followers.add(follower);
      }
      return { files, currentSize: this.#closed ? Infinity : this.#size };
    });
    try {
      yield* readHistory(snapshot.files, snapshot.currentSize, options);
      if (follower) yield* follower.drain(options.signal);
    } finally {
      for (const file of snapshot.files) file?.close();
      if (follower) this.#followers.delete(follower);
    }
  }

  #enqueue<T>(op: () => T | Promise<T>): Promise<T> {
    const result = this.#queue.then(op);
    this.#queue = result.then(() => {}, () => {});
    return result;
  }

  async #write(lines: readonly LogLine[]): Promise<void> {
    const parts: Uint8Array[] = [];
    let bytes = 0;
    try {
      for (const line of lines) {
        const encoded = encoder.encode(formatStored(line));
        if (this.#size + bytes + encoded.length > this.#maxBytes && this.#size + bytes > 0) {
          await this.#flush(parts, bytes);
          parts.length = 0;
          bytes = 0;
          await this.#rotate();
        }
        parts.push(encoded);
        bytes += encoded.length;
      }
      await this.#flush(parts, bytes);
    } catch {
      this.#droppedWrites += lines.length;
    }
    for (const follower of this.#followers) follower.push(lines);
  }

  async #flush(parts: readonly Uint8Array[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    if (this.#file === undefined) {
      // A failed rotation left no file open: start again on the current path.
      this.#file = await openForAppend(this.path);
      this.#size = (await this.#file.stat()).size;
    }
    const data = new Uint8Array(bytes);
    let at = 0;
    for (const part of parts) {
      data.set(part, at);
      at += part.length;
    }
    await writeAll(this.#file, data);
    this.#size += bytes;
  }

  /** Starts a new current file: `.1` becomes `.2` and so on, the oldest is deleted. */
  async #rotate(): Promise<void> {
    this.#file?.close();
    this.#file = undefined;
    const oldest = this.#maxFiles - 1;
    if (oldest === 0) {
      await Deno.remove(this.path).catch(ignoreNotFound);
    } else {
      await Deno.remove(`${this.path}.${oldest}`).catch(ignoreNotFound);
      for (let n = oldest - 1; n >= 1; n--) {
        await Deno.rename(`${this.path}.${n}`, `${this.path}.${n + 1}`).catch(ignoreNotFound);
      }
      await Deno.rename(this.path, `${this.path}.1`);
    }
    this.#file = await openForAppend(this.path);
    this.#size = 0;
  }
}

/**
 * Reads a log no {@linkcode LogCapture} writes any more (after an agent restart, say). A missing
 * log reads as empty; `follow` ends after the lines already there.
 */
export async function* readLog(
  path: string,
  options: LogReadOptions & Pick<LogRotation, "maxFiles"> = {},
): AsyncGenerator<LogLine> {
  const files = await openLogFiles(path, Math.max(1, options.maxFiles ?? DEFAULT_LOG_MAX_FILES));
  try {
    yield* readHistory(files, Infinity, options);
  } finally {
    for (const file of files) file?.close();
  }
}

/** A line as `service logs` prints it: `[timestamp ]text`. */
export function formatLogLine(line: LogLine, options: { timestamps?: boolean } = {}): string {
  return options.timestamps ? `${new Date(line.time).toISOString()} ${line.text}` : line.text;
}

/** Parses one stored line; undefined for a line that is not in the log's format. */
export function parseStoredLine(stored: string): LogLine | undefined {
  const first = stored.indexOf(" ");
  const second = stored.indexOf(" ", first + 1);
  if (first < 0 || second < 0) return undefined;
  const time = Date.parse(stored.slice(0, first));
  const stream = stored.slice(first + 1, second);
  if (Number.isNaN(time) || (stream !== "stdout" && stream !== "stderr")) return undefined;
  return { time, stream, text: stored.slice(second + 1) };
}

function formatStored(line: LogLine): string {
  return `${new Date(line.time).toISOString()} ${line.stream} ${line.text}\n`;
}

/** `texts` as lines, none longer than {@linkcode MAX_LINE_CHARS}. */
function splitLong(texts: readonly string[], time: number, stream: LogStream): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of texts) {
    for (let at = 0; at === 0 || at < text.length; at += MAX_LINE_CHARS) {
      lines.push({ time, stream, text: text.slice(at, at + MAX_LINE_CHARS) });
    }
  }
  return lines;
}

/**
 * Lines waiting for one reader, in order, until `end()`. Bounded: past
 * {@linkcode MAX_FOLLOW_BACKLOG} the oldest are dropped, so a stalled reader cannot exhaust memory.
 * The fake executor uses it too.
 */
export class LineQueue {
  readonly #keep: ((line: LogLine) => boolean) | undefined;
  #lines: LogLine[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  /** A queue keeping only the lines `keep` accepts (all by default). */
  constructor(keep?: (line: LogLine) => boolean) {
    this.#keep = keep;
  }

  /** Adds lines for the reader. */
  push(lines: readonly LogLine[]): void {
    if (this.#ended) return;
    const kept = this.#keep ? lines.filter(this.#keep) : lines;
    if (kept.length === 0) return;
    this.#lines.push(...kept);
    if (this.#lines.length > MAX_FOLLOW_BACKLOG) {
      this.#lines.splice(0, this.#lines.length - MAX_FOLLOW_BACKLOG);
    }
    this.#wake?.();
  }

  /** No more lines will come; the reader ends after the ones queued. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** Yields lines as they come, until `end()` and the queue is empty, or `signal` aborts. */
  async *drain(signal?: AbortSignal): AsyncGenerator<LogLine> {
    const onAbort = () => this.#wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      while (!signal?.aborted) {
        const line = this.#lines.shift();
        if (line !== undefined) {
          yield line;
        } else if (this.#ended) {
          return;
        } else {
          await new Promise<void>((resolve) => this.#wake = resolve);
          this.#wake = undefined;
        }
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/**
 * Open handles on the log's files, oldest first (undefined where a file is missing). Open
 * handles keep reading the right bytes while a later rotation renames or deletes the files.
 */
async function openLogFiles(
  path: string,
  maxFiles: number,
): Promise<(Deno.FsFile | undefined)[]> {
  const names = [];
  for (let n = maxFiles - 1; n >= 1; n--) names.push(`${path}.${n}`);
  names.push(path);
  return await Promise.all(
    names.map((name) => Deno.open(name, { read: true }).catch(ignoreNotFound)),
  );
}

/**
 * The lines of `files` (oldest first; the last one read only up to `currentSize` bytes), with
 * `tail` and `since` applied. With `tail`, files are read newest first and only as far back as
 * needed.
 */
async function* readHistory(
  files: readonly (Deno.FsFile | undefined)[],
  currentSize: number,
  options: LogReadOptions,
): AsyncGenerator<LogLine> {
  const { tail, since, signal } = options;
  const keep = (line: LogLine | undefined): line is LogLine =>
    line !== undefined && (since === undefined || line.time >= since);
  const linesOf = async (index: number) => {
    const file = files[index];
    if (file === undefined) return [];
    const limit = index === files.length - 1 ? currentSize : Infinity;
    const text = new TextDecoder().decode(await readAll(file, limit));
    return text.split("\n").filter((stored) => stored !== "").map(parseStoredLine).filter(keep);
  };
  if (tail === undefined || !Number.isFinite(tail)) {
    for (let index = 0; index < files.length; index++) {
      for (const line of await linesOf(index)) {
        if (signal?.aborted) return;
        yield line;
      }
    }
    return;
  }
  const wanted = Math.max(0, Math.trunc(tail));
  const newestFirst: LogLine[][] = [];
  let count = 0;
  for (let index = files.length - 1; index >= 0 && count < wanted; index--) {
    const lines = await linesOf(index);
    newestFirst.push(lines);
    count += lines.length;
  }
  const lines = newestFirst.reverse().flat();
  for (const line of lines.slice(Math.max(0, lines.length - wanted))) {
    if (signal?.aborted) return;
    yield line;
  }
}

async function readAll(file: Deno.FsFile, limit: number): Promise<Uint8Array> {
  const size = Math.min(limit, (await file.stat()).size);
  const data = new Uint8Array(size);
  let at = 0;
  while (at < size) {
    const read = await file.read(data.subarray(at));
    if (read === null) break;
    at += read;
  }
  return data.subarray(0, at);
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await file.write(data.subarray(at));
}

async function openForAppend(path: string): Promise<Deno.FsFile> {
  return await Deno.open(path, { create: true, append: true, mode: 0o600 });
}

function ignoreNotFound(error: unknown): undefined {
  if (error instanceof Deno.errors.NotFound) return undefined;
  throw error;
}
