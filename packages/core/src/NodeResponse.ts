/**
 * Writing an application's response to a Node `Writable` (a `ServerResponse`,
 * the Lambda runtime's response stream): the status and headers, then the
 * body with back-pressure and flushing done once for every Node binding.
 *
 * - each chunk is written as it arrives and `flush()` is called when present
 *   (compression middleware would otherwise hold SSE back);
 * - when `write` returns `false` the next chunk waits for `drain`, so a slow
 *   reader never grows server memory;
 * - a chat stream is produced straight into the response (`StreamSink`): its
 *   frames skip the stream's buffer.
 *
 * @since 0.3.0
 */
import type { OutgoingHttpHeaders } from "node:http"
import { Readable, type Writable } from "node:stream"
import * as Effect from "effect/Effect"
import * as Cookies from "effect/http/Cookies"
import type * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Stream from "effect/Stream"
import * as StreamSink from "./StreamSink.ts"

/**
 * Waits until the socket takes more (`drain`) or is gone (`close`). A reader
 * that takes nothing for `timeoutMillis` is cut off: the response is
 * destroyed, which the binding sees as the client leaving.
 */
const awaitDrainOrClose = (response: Writable, timeoutMillis: number | undefined): Effect.Effect<void> =>
  Effect.callback((resume) => {
    const timer =
      timeoutMillis === undefined ? undefined : setTimeout(() => response.destroy(), timeoutMillis).unref()
    const done = () => {
      stop()
      resume(Effect.void)
    }
    const stop = () => {
      if (timer !== undefined) clearTimeout(timer)
      response.off("drain", done)
      response.off("close", done)
    }
    response.on("drain", done)
    response.on("close", done)
    return Effect.sync(stop)
  })

/** A response's headers, its cookies as `set-cookie` lines. */
export const headersOf = (response: HttpServerResponse.HttpServerResponse): OutgoingHttpHeaders => {
  const headers: OutgoingHttpHeaders = { ...response.headers }
  if (!Cookies.isEmpty(response.cookies)) {
    const cookies = Cookies.toSetCookieHeaders(response.cookies)
    const existing = headers["set-cookie"]
    headers["set-cookie"] = existing === undefined ? cookies : [String(existing), ...cookies]
  }
  return headers
}

/** A Node stream, and `flush()` when compression middleware put one there. */
export type Flushable = Writable & { flush?: () => void }

/**
 * Writes chunks and flushes them; `false` when the socket is full and the
 * next write should wait for `drain`. A response already gone takes nothing.
 */
const writeFlushed = (response: Flushable, chunks: ReadonlyArray<Uint8Array>): boolean => {
  if (response.destroyed) return true
  let room = true
  for (const chunk of chunks) room = response.write(chunk)
  response.flush?.()
  return room
}

/** Options of `writeBody`. */
export interface WriteOptions {
  /**
   * Longest wait for a reader that takes nothing once the socket is full;
   * past it the response is destroyed (a disconnect). No limit when absent.
   */
  readonly drainTimeoutMillis?: number | undefined
}

/** Writes chunks as they come, flushing each, waiting for `drain` when the socket is full. */
const writeChunks = (
  response: Flushable,
  stream: Stream.Stream<Uint8Array, unknown>,
  options: WriteOptions
): Effect.Effect<void> =>
  Stream.runForEachArray(stream, (chunks) =>
    writeFlushed(response, chunks) ? Effect.void : awaitDrainOrClose(response, options.drainTimeoutMillis)
  ).pipe(
    // The request's fiber runs uninterruptibly (`HttpEffect.toHandled`); a
    // client that leaves must be able to stop the body.
    Effect.interruptible,
    // A body that fails after its start ends the response: the status is already sent.
    Effect.ignore,
    Effect.andThen(
      Effect.sync(() => {
        if (!response.destroyed) response.end()
      })
    )
  )

/** The sink of a Node response: frames are written and flushed as they come. */
const responseSink = (response: Flushable, options: WriteOptions): StreamSink.Sink<Uint8Array> => ({
  send: (frame) =>
    writeFlushed(response, [frame]) ? Effect.void : awaitDrainOrClose(response, options.drainTimeoutMillis),
  trySend: (frame) => {
    writeFlushed(response, [frame])
    return true
  },
  // The last frame goes out with the end of the response: one write fewer.
  close: (frames) =>
    Effect.sync(() => {
      if (response.destroyed || response.writableEnded) return
      writeFlushed(response, frames.slice(0, -1))
      if (frames.length > 0) response.end(frames.at(-1))
    })
})

/**
 * Runs a stream's producer straight into the response: no buffer, no hand-over
 * between fibers per frame, and no fiber of its own: it runs on the request's,
 * interruptibly, so a client that leaves (which interrupts the request) ends
 * it. The turn it reads runs apart and is not ended by it.
 */
const writeProduced = (
  response: Flushable,
  produce: StreamSink.Producer<Uint8Array>,
  options: WriteOptions
): Effect.Effect<void> =>
  produce(responseSink(response, options)).pipe(
    Effect.interruptible,
    Effect.ensuring(
      Effect.sync(() => {
        if (!response.destroyed && !response.writableEnded) response.end()
      })
    )
  )

const webBody = (body: ReadableStream<Uint8Array> | null): Stream.Stream<Uint8Array, unknown> =>
  body === null
    ? Stream.empty
    : Stream.fromReadableStream({ evaluate: () => body, onError: (error) => error })

/**
 * Writes a response's body to `response`, which the status and headers went
 * out on; ends it when the body is over. A request for `HEAD`, and statuses
 * that carry no body, get none.
 */
export const writeBody = (
  response: Flushable,
  method: string,
  serverResponse: HttpServerResponse.HttpServerResponse,
  options: WriteOptions = {}
): Effect.Effect<void> => {
  const status = serverResponse.status
  const body = serverResponse.body
  if (method === "HEAD" || status === 204 || status === 205 || status === 304) {
    response.end()
    return Effect.void
  }
  switch (body._tag) {
    case "Empty":
      response.end()
      return Effect.void
    case "Uint8Array":
      response.end(body.body)
      return Effect.void
    case "Stream": {
      const produce = StreamSink.producerOf(body.stream)
      return produce === undefined
        ? writeChunks(response, body.stream, options)
        : writeProduced(response, produce, options)
    }
    case "FormData":
      return writeChunks(response, webBody(new Response(body.formData).body), options)
    case "Raw": {
      const raw = body.body
      if (typeof raw === "string" || raw instanceof Uint8Array) {
        response.end(raw)
        return Effect.void
      }
      if (raw instanceof ReadableStream) return writeChunks(response, webBody(raw), options)
      if (raw instanceof Readable)
        return writeChunks(
          response,
          Stream.fromAsyncIterable(raw, (error) => error),
          options
        )
      response.end()
      return Effect.void
    }
  }
}
