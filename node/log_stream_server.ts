/**
 * The serving side of a `logs` stream (`agent_protocol.ts`): reads a task's output and sends it
 * back in `log` frames of at most {@linkcode LOG_CHUNK_LINES} lines, as soon as the reader pauses
 * ({@linkcode LOG_FLUSH_MS}), with no more than {@linkcode LOG_WINDOW_CHUNKS} frames
 * unacknowledged (`logs-ack` gives one frame back; `logs-cancel` ends the stream early).
 *
 * Shared by the two places that serve streams: an agent answering its manager over its session
 * (`actors/agent/remote_session.ts`), and a manager answering another manager over the cluster
 * port (`dispatcher.ts`). One server holds the streams of one connection: stream ids are the
 * requester's, unique on that connection only.
 *
 * @module
 */
import type { LogLine, LogReadOptions } from "../actors/agent/log_capture.ts";
import {
  LOG_CHUNK_LINES,
  LOG_WINDOW_CHUNKS,
  type LogChunk,
  type LogsRequest,
} from "./agent_protocol.ts";

/** How long a reader may pause before the lines gathered so far are sent, ms. */
export const LOG_FLUSH_MS = 20;

/**
 * Reads the output of one task, by id (what a `logs` request names). It must end once
 * `options.signal` aborts (the stream was cancelled or its connection closed).
 */
export type LogStreamReader = (taskId: string, options: LogReadOptions) => AsyncIterable<LogLine>;

/** Where a server sends its `log` frames: the connection the requests came on. */
export interface LogStreamSink {
  /** Sends one frame. */
  send(chunk: LogChunk): unknown;
  /** Whether the connection is closed (nothing more is sent then). */
  readonly closed: boolean;
}

interface StreamState {
  readonly abort: AbortController;
  /** Frames that may still be sent before an acknowledgement. */
  credit: number;
  wake: (() => void) | undefined;
}

/** Options of a {@linkcode LogStreamServer}. */
export interface LogStreamServerOptions {
  /** Frames sent before the first acknowledgement (default {@linkcode LOG_WINDOW_CHUNKS}). */
  window?: number;
  /** Most lines a frame (default {@linkcode LOG_CHUNK_LINES}). */
  chunkLines?: number;
  /** Pause after which gathered lines go out, ms (default {@linkcode LOG_FLUSH_MS}). */
  flushMs?: number;
}

/** The log streams served on one connection. */
export class LogStreamServer {
  readonly #streams = new Map<number, StreamState>();
  readonly #window: number;
  readonly #chunkLines: number;
  readonly #flushMs: number;

  /** A server with no streams yet. */
  constructor(options: LogStreamServerOptions = {}) {
    this.#window = options.window ?? LOG_WINDOW_CHUNKS;
    this.#chunkLines = options.chunkLines ?? LOG_CHUNK_LINES;
    this.#flushMs = options.flushMs ?? LOG_FLUSH_MS;
  }

  /** Streams being sent now (for tests and diagnostics). */
  get openStreams(): number {
    return this.#streams.size;
  }

  /**
   * Serves request `m` with `reader` on `sink` until the output ends, fails (the last frame
   * carries the error; `reader` undefined fails with `unavailable`), is cancelled or the
   * connection closes. A request reusing the id of an open stream replaces it. Never rejects.
   */
  async serve(
    sink: LogStreamSink,
    m: LogsRequest,
    reader: LogStreamReader | undefined,
    unavailable = "the task's output cannot be read here",
  ): Promise<void> {
    const state: StreamState = {
      abort: new AbortController(),
      credit: this.#window,
      wake: undefined,
    };
    const signal = state.abort.signal;
    this.#streams.get(m.stream)?.abort.abort();
    this.#streams.set(m.stream, state);
    const onAbort = () => state.wake?.();
    signal.addEventListener("abort", onAbort);
    let batch: LogLine[] = [];
    const flush = async (end: boolean, error?: string) => {
      while (state.credit <= 0 && !signal.aborted && !sink.closed) {
        await new Promise<void>((resolve) => state.wake = resolve);
        state.wake = undefined;
      }
      // A closed connection ends the stream: nothing more can be sent, so nothing more is read.
      if (sink.closed) state.abort.abort();
      if (signal.aborted) return;
      state.credit--;
      const lines = batch.map((l) => ({ time: l.time, stream: l.stream, text: l.text }));
      batch = [];
      sink.send({
        t: "log",
        stream: m.stream,
        lines,
        ...(end ? { end } : {}),
        ...(error ? { error } : {}),
      });
    };
    let iterator: AsyncIterator<LogLine> | undefined;
    try {
      if (reader === undefined) throw new Error(unavailable);
      if (typeof m.taskId !== "string" || m.taskId === "") throw new Error("no task named");
      iterator = reader(m.taskId, {
        tail: typeof m.tail === "number" ? m.tail : undefined,
        since: typeof m.since === "number" ? m.since : undefined,
        follow: m.follow === true,
        signal,
      })[Symbol.asyncIterator]();
      let next = iterator.next();
      const paused = Symbol("paused");
      while (!signal.aborted) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const result = batch.length === 0 ? await next : await Promise.race([
          next,
          new Promise<typeof paused>((resolve) =>
            timer = setTimeout(() => resolve(paused), this.#flushMs)
          ),
        ]);
        clearTimeout(timer);
        if (result === paused) {
          await flush(false);
          continue;
        }
        if (result.done) break;
        batch.push(result.value);
        next = iterator.next();
        if (batch.length >= this.#chunkLines) await flush(false);
      }
      await flush(true);
    } catch (err) {
      await flush(true, (err as Error).message || String(err));
    } finally {
      signal.removeEventListener("abort", onAbort);
      state.abort.abort();
      if (this.#streams.get(m.stream) === state) this.#streams.delete(m.stream);
      void iterator?.return?.(undefined)?.catch(() => {});
    }
  }

  /** A `logs-ack`: stream `stream` may send one more frame. */
  ack(stream: number): void {
    const state = this.#streams.get(stream);
    if (state === undefined) return;
    state.credit++;
    state.wake?.();
  }

  /** A `logs-cancel`: stream `stream` ends, with no last frame. */
  cancel(stream: number): void {
    this.#streams.get(stream)?.abort.abort();
  }

  /** Ends every stream (the connection closed). */
  cancelAll(): void {
    for (const state of this.#streams.values()) state.abort.abort();
    this.#streams.clear();
  }
}
