/**
 * The one read of a Node request's body: the stream read to its end, at most
 * `limit` bytes of it, its outcome shared by every reader that asks. Apart
 * from `NodeRequest` because it is plain Node stream handling, with no
 * request semantics.
 *
 * @since 0.3.0
 */
import type { Readable } from "node:stream"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as HttpServerError from "effect/http/HttpServerError"

/**
 * Why a body could not be read: the stream failed or closed early, it is past
 * the limit, or it did not end in time.
 */
export type ReadFailure = "Parse" | "BodyTooLarge" | "Timeout"

/**
 * The cause of the parse error of a body that did not end in time: the
 * routes answer it with a 408 (`RequestBody.bytes`).
 */
export class BodyTimedOut {
  readonly timeoutMillis: number
  constructor(timeoutMillis: number) {
    this.timeoutMillis = timeoutMillis
  }
}

/**
 * Reads a Node stream to its end, failing past `limit` bytes without reading
 * on, or once `timeoutMillis` have passed without its end, and calls `done`
 * once with the body or why there is none.
 */
export const readAll = (
  stream: Readable,
  limit: number | undefined,
  done: (outcome: Uint8Array | ReadFailure) => void,
  timeoutMillis?: number | undefined
): void => {
  if (stream.readableEnded || stream.destroyed) {
    done(stream.readableEnded ? new Uint8Array(0) : "Parse")
    return
  }
  const chunks: Array<Buffer> = []
  let bytes = 0
  // A client that sends its body a byte a minute, or stops halfway, is not waited for.
  const timer =
    timeoutMillis === undefined
      ? undefined
      : setTimeout(() => {
          cleanup()
          stream.pause()
          done("Timeout")
        }, timeoutMillis).unref()
  const cleanup = () => {
    if (timer !== undefined) clearTimeout(timer)
    stream.off("data", onData)
    stream.off("end", onEnd)
    stream.off("error", onError)
    stream.off("close", onClose)
  }
  const onData = (chunk: Buffer | string) => {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk
    bytes += buffer.byteLength
    if (limit !== undefined && bytes > limit) {
      cleanup()
      stream.pause()
      done("BodyTooLarge")
      return
    }
    chunks.push(buffer)
  }
  const onEnd = () => {
    cleanup()
    done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes))
  }
  const onError = () => {
    cleanup()
    done("Parse")
  }
  // Closed before its end: the client went away mid-body.
  const onClose = () => {
    cleanup()
    done("Parse")
  }
  stream.on("data", onData)
  stream.on("end", onEnd)
  stream.on("error", onError)
  stream.on("close", onClose)
  // A stream a framework paused does not flow by getting a `data` listener.
  stream.resume()
}

/**
 * The one read of a request's body, shared by every reader (and by modified
 * copies of the request): its outcome once known, else the readers waiting.
 * Plain callbacks, not a cached effect, which would cost two fibers a request.
 */
export class BodyRead {
  exit: Exit.Exit<Uint8Array, HttpServerError.HttpServerError> | undefined
  readonly #waiting = new Set<(exit: Exit.Exit<Uint8Array, HttpServerError.HttpServerError>) => void>()

  settle(exit: Exit.Exit<Uint8Array, HttpServerError.HttpServerError>): void {
    this.exit = exit
    for (const resume of this.#waiting) resume(exit)
    this.#waiting.clear()
  }

  get await(): Effect.Effect<Uint8Array, HttpServerError.HttpServerError> {
    return (
      this.exit ??
      Effect.callback((resume) => {
        if (this.exit !== undefined) {
          resume(this.exit)
          return
        }
        this.#waiting.add(resume)
        return Effect.sync(() => {
          this.#waiting.delete(resume)
        })
      })
    )
  }
}
