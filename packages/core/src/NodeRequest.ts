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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cookies from "effect/http/Cookies"
import * as Headers from "effect/http/Headers"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpServerError from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Multipart from "effect/http/Multipart"
import * as UrlParams from "effect/http/UrlParams"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { ChatConfig } from "./ChatConfig.ts"
import { BodyRead, BodyTimedOut, readAll } from "./NodeBody.ts"

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
      const timeout = Duration.toMillis(fiber.getRef(ChatConfig).bodyTimeout)
      this.#body.read ??= this.#startRead(max === undefined ? undefined : Number(max), timeout)
      return this.#body.read.await
    })
  }

  /** Starts the body's one read, with the limit and the time limit of the first reader. */
  #startRead(limit: number | undefined, timeoutMillis: number): BodyRead {
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
    readAll(
      this.#options.body ?? this.source,
      limit,
      (outcome) =>
        read.settle(
          outcome === "Timeout"
            ? Exit.fail(parseError(this, "Parse", new BodyTimedOut(timeoutMillis)))
            : typeof outcome === "string"
              ? Exit.fail(parseError(this, outcome))
              : Exit.succeed(outcome)
        ),
      timeoutMillis
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
