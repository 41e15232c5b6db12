/**
 * A Node.js request as Effect's `HttpServerRequest`, read straight from the
 * `IncomingMessage`: no web `Request`, `Headers` or `ReadableStream` is built
 * on the way, which on the chat path is a large share of a request's CPU.
 *
 * The body is read once, on demand, with the `HttpIncomingMessage.MaxBodySize`
 * limit of the reading fiber: a `Content-Length` over it, or more bytes than
 * it, fail with `BodyTooLarge` without reading further.
 *
 * @since 0.2.0
 */
import type { IncomingMessage } from "node:http"
import type { Readable } from "node:stream"
import { Effect, Exit, Inspectable, Option, type Schema, Stream } from "effect"
import {
  Cookies,
  Headers,
  HttpIncomingMessage,
  HttpServerError,
  HttpServerRequest,
  Multipart,
  UrlParams
} from "effect/http"

/** What the request is read from, when a framework got to it first. */
export interface Options {
  /** The path and query the application sees (a framework's mount prefix removed). */
  readonly url?: string | undefined
  /** The body stream, when it is not the request itself (Fastify's parsers get it after its hooks). */
  readonly body?: Readable | undefined
  /**
   * A body a middleware already read and parsed (`express.json()`): it is
   * re-serialised as JSON (a string is taken as is) instead of reading the
   * consumed stream.
   */
  readonly parsedBody?: unknown
}

const parseError = (
  request: HttpServerRequest.HttpServerRequest,
  reason: "Parse" | "BodyTooLarge",
  cause?: unknown
) =>
  new HttpServerError.HttpServerError({
    reason: new HttpServerError.RequestParseError({ request, reason, cause })
  })

const decoder = new TextDecoder()

type ReadFailure = "Parse" | "BodyTooLarge"

/**
 * Reads a Node stream to its end, failing past `limit` bytes without reading
 * on, and calls `done` once with the body or why there is none.
 */
const readAll = (
  stream: Readable,
  limit: number | undefined,
  done: (outcome: Uint8Array | ReadFailure) => void
): void => {
  if (stream.readableEnded || stream.destroyed) {
    done(stream.readableEnded ? new Uint8Array(0) : "Parse")
    return
  }
  const chunks: Array<Buffer> = []
  let bytes = 0
  const cleanup = () => {
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
class BodyRead {
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

class NodeServerRequest extends Inspectable.Class implements HttpServerRequest.HttpServerRequest {
  readonly [HttpServerRequest.TypeId] = HttpServerRequest.TypeId
  readonly [HttpIncomingMessage.TypeId] = HttpIncomingMessage.TypeId

  readonly source: IncomingMessage
  readonly url: string
  readonly protocol: "http" | "https" | undefined
  readonly #options: Options
  #headers: Headers.Headers | undefined
  readonly #remoteAddress: Option.Option<string> | undefined
  readonly #peerAddress: Option.Option<string> | undefined
  /** Shared by modified copies, so the body is read once. */
  readonly #body: { read?: BodyRead }

  constructor(
    source: IncomingMessage,
    url: string,
    options: Options,
    overrides: {
      readonly headers?: Headers.Headers | undefined
      readonly remoteAddress?: Option.Option<string> | undefined
      readonly peerAddress?: Option.Option<string> | undefined
      readonly protocol?: "http" | "https" | undefined
      readonly body?: { read?: BodyRead } | undefined
    } = {}
  ) {
    super()
    this.source = source
    this.url = url
    this.#options = options
    this.#headers = overrides.headers
    this.#remoteAddress = overrides.remoteAddress
    this.#peerAddress = overrides.peerAddress
    this.protocol = overrides.protocol
    this.#body = overrides.body ?? {}
  }

  get method(): string {
    return this.source.method ?? "GET"
  }

  get originalUrl(): string {
    return this.source.url ?? "/"
  }

  get headers(): Headers.Headers {
    if (this.#headers === undefined) {
      const headers = { ...this.source.headers }
      if (this.#options.parsedBody !== undefined) {
        // The body is re-serialised: the length and encoding of the original no longer apply.
        delete headers["content-length"]
        delete headers["transfer-encoding"]
        if (typeof this.#options.parsedBody !== "string") headers["content-type"] = "application/json"
      }
      this.#headers = Headers.fromInput(headers)
    }
    return this.#headers
  }

  get remoteAddress(): Option.Option<string> {
    return this.#remoteAddress ?? Option.fromNullishOr(this.source.socket?.remoteAddress)
  }

  get peerAddress(): Option.Option<string> {
    return this.#peerAddress ?? this.remoteAddress
  }

  get cookies(): Record<string, string> {
    return Cookies.parseHeader(this.headers.cookie ?? "")
  }

  get bytes(): Effect.Effect<Uint8Array, HttpServerError.HttpServerError> {
    const started = this.#body.read
    if (started !== undefined) return started.await
    return Effect.withFiber((fiber) => {
      const max = fiber.getRef(HttpIncomingMessage.MaxBodySize)
      this.#body.read ??= this.#startRead(max === undefined ? undefined : Number(max))
      return this.#body.read.await
    })
  }

  /** Starts the body's one read, with the limit of the first reader. */
  #startRead(limit: number | undefined): BodyRead {
    const read = new BodyRead()
    // Built only when needed: an error captures a stack trace.
    const tooLarge = () => Exit.fail(parseError(this, "BodyTooLarge"))
    const parsed = this.#options.parsedBody
    if (parsed !== undefined) {
      const text = typeof parsed === "string" ? parsed : JSON.stringify(parsed)
      const bytes = Buffer.from(text)
      read.settle(limit !== undefined && bytes.byteLength > limit ? tooLarge() : Exit.succeed(bytes))
      return read
    }
    const declared = this.source.headers["content-length"]
    if (limit !== undefined && declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit) {
      read.settle(tooLarge())
      return read
    }
    readAll(this.#options.body ?? this.source, limit, (outcome) =>
      read.settle(typeof outcome === "string" ? Exit.fail(parseError(this, outcome)) : Exit.succeed(outcome))
    )
    return read
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpServerError.HttpServerError> {
    return Effect.map(this.bytes, (bytes) =>
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? (bytes.buffer as ArrayBuffer)
        : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer)
    )
  }

  get text(): Effect.Effect<string, HttpServerError.HttpServerError> {
    return Effect.map(this.bytes, (bytes) => decoder.decode(bytes))
  }

  get json(): Effect.Effect<Schema.Json, HttpServerError.HttpServerError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => JSON.parse(text) as Schema.Json,
        catch: (cause) => parseError(this, "Parse", cause)
      })
    )
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpServerError.HttpServerError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => UrlParams.fromInput(new URLSearchParams(text)),
        catch: (cause) => parseError(this, "Parse", cause)
      })
    )
  }

  get stream(): Stream.Stream<Uint8Array, HttpServerError.HttpServerError> {
    return Stream.fromEffect(this.bytes)
  }

  get multipartStream(): Stream.Stream<Multipart.Part, Multipart.MultipartError> {
    return Stream.pipeThroughChannel(
      Stream.mapError(this.stream, (cause) => Multipart.MultipartError.fromReason("InternalError", cause)),
      Multipart.makeChannel(this.headers)
    )
  }

  get multipart() {
    return Multipart.toPersisted(this.multipartStream)
  }

  get upgrade(): HttpServerRequest.HttpServerRequest["upgrade"] {
    return this.upgradeWith({})
  }

  upgradeWith(_options?: unknown): ReturnType<HttpServerRequest.HttpServerRequest["upgradeWith"]> {
    return Effect.fail(
      new HttpServerError.HttpServerError({
        reason: new HttpServerError.RequestParseError({
          request: this,
          description: "not an upgradeable request"
        })
      })
    )
  }

  modify(
    options: Parameters<HttpServerRequest.HttpServerRequest["modify"]>[0]
  ): HttpServerRequest.HttpServerRequest {
    return new NodeServerRequest(this.source, options.url ?? this.url, this.#options, {
      headers: options.headers ?? this.#headers,
      remoteAddress: "remoteAddress" in options ? options.remoteAddress : this.#remoteAddress,
      peerAddress: options.peerAddress ?? this.#peerAddress,
      protocol: options.protocol ?? this.protocol,
      body: this.#body
    })
  }

  toJSON(): unknown {
    return { _id: "HttpServerRequest", method: this.method, url: this.originalUrl }
  }
}

/** The request target cannot be read as a URL (`OPTIONS *`, a malformed absolute form). */
export class InvalidTarget extends Error {}

/**
 * The path and query of a request target. An origin-form target (`/path?q`)
 * is taken as is — `//evil/x` too, which `new URL(target, base)` would read
 * as another host — and an absolute-form target is parsed.
 */
export const pathOf = (target: string): string => {
  if (target.startsWith("/")) return target
  try {
    const url = new URL(target)
    return `${url.pathname}${url.search}`
  } catch {
    throw new InvalidTarget("Invalid request target")
  }
}

/**
 * The `HttpServerRequest` of a Node request. Throws `InvalidTarget` when the
 * request target is not a path or an absolute URL.
 */
export const make = (request: IncomingMessage, options: Options = {}): HttpServerRequest.HttpServerRequest =>
  new NodeServerRequest(request, pathOf(options.url ?? request.url ?? "/"), options)
