/**
 * The Node.js binding: `(request, response)` for `node:http`, Express and
 * Fastify. An application (`ChatHttp.App`) is served natively — its Effect
 * HTTP app reads the `IncomingMessage` and writes the `ServerResponse`
 * directly, with no web `Request` or `Response` per request; any other web
 * handler goes through a web `Request` and `Response`. `serve` writes an
 * application's response natively to any Node `Writable` (the Lambda
 * runtime's response stream). Either way,
 * back-pressure, flushing and disconnects are handled here once, so adapters
 * stay thin:
 *
 * - each chunk is written as it arrives and `flush()` is called when present
 *   (compression middleware would otherwise hold SSE back);
 * - when `write` returns `false` the next chunk waits for `drain`, so a slow
 *   reader never grows server memory;
 * - when the client goes away the request's fiber is interrupted, which ends
 *   the chat stream and the model;
 * - a chat stream served natively is produced straight into the response
 *   (`StreamSink`): its frames skip the stream's buffer.
 *
 * @since 0.1.0
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http"
import type { Duplex, Writable } from "node:stream"
import { Readable } from "node:stream"
import { Context, Effect, Fiber, Stream } from "effect"
import { Cookies, HttpEffect, HttpServerError, HttpServerRequest, type HttpServerResponse } from "effect/http"
import type { App, HttpApp, WebHandler } from "./ChatHttp.ts"
import * as ClientAddress from "./ClientAddress.ts"
import * as NodeRequest from "./NodeRequest.ts"
import * as StreamSink from "./StreamSink.ts"

/** Options for turning a Node request into a web request. */
export interface RequestOptions {
  /**
   * A body some middleware already read and parsed (Express's `express.json()`
   * sets `request.body`). It is re-serialised as JSON instead of reading the
   * consumed stream.
   */
  readonly parsedBody?: unknown
  /** The path the handler sees, when the framework mounts it under a prefix. */
  readonly url?: string | undefined
  /**
   * The body stream, when the framework hands it on instead of the request
   * itself (Fastify's content-type parsers get it after its `preParsing`
   * hooks, e.g. request decompression). Default: the request.
   */
  readonly body?: Readable | undefined
}

const hasBody = (method: string | undefined) => method !== "GET" && method !== "HEAD"

/** The URL of a request target (see `NodeRequest.pathOf`), on this host. */
const targetUrl = (target: string): URL => new URL(`http://localhost${NodeRequest.pathOf(target)}`)

/** Builds a web `Request` from a Node request. */
export const toWebRequest = (
  request: IncomingMessage,
  signal: AbortSignal,
  options: RequestOptions = {}
): Request => {
  const headers = new Headers()
  const raw = request.rawHeaders
  for (let index = 0; index < raw.length; index += 2) headers.append(raw[index]!, raw[index + 1]!)
  const url = targetUrl(options.url ?? request.url ?? "/")
  const init: RequestInit & { duplex?: "half" } = { method: request.method ?? "GET", headers, signal }
  if (hasBody(request.method)) {
    if (options.parsedBody !== undefined) {
      const text =
        typeof options.parsedBody === "string" ? options.parsedBody : JSON.stringify(options.parsedBody)
      init.body = text
      headers.delete("content-length")
      headers.delete("transfer-encoding")
      if (typeof options.parsedBody !== "string") headers.set("content-type", "application/json")
    } else {
      init.body = Readable.toWeb(options.body ?? request) as ReadableStream<Uint8Array>
      init.duplex = "half"
    }
  }
  const webRequest = new Request(url, init)
  ClientAddress.set(webRequest, request.socket?.remoteAddress)
  return webRequest
}

/** Waits until the socket takes more (`drain`) or is gone (`close`). */
const awaitDrainOrClose = (response: Writable): Effect.Effect<void> =>
  Effect.callback((resume) => {
    const done = () => {
      response.off("drain", done)
      response.off("close", done)
      resume(Effect.void)
    }
    response.on("drain", done)
    response.on("close", done)
    return Effect.sync(() => {
      response.off("drain", done)
      response.off("close", done)
    })
  })

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"])

/** Writes a web `Response` to a Node response, honouring back-pressure and disconnects. */
export const writeWebResponse = async (webResponse: Response, response: ServerResponse): Promise<void> => {
  const headers: Record<string, string | Array<string>> = {}
  // HTTP/2 forbids connection-specific headers; HTTP/1.1 keeps them.
  const http2 = (response.req?.httpVersionMajor ?? 1) >= 2
  webResponse.headers.forEach((value, key) => {
    if (key === "set-cookie" || (http2 && HOP_BY_HOP.has(key))) return
    headers[key] = value
  })
  const cookies = webResponse.headers.getSetCookie()
  if (cookies.length > 0) headers["set-cookie"] = cookies
  response.writeHead(webResponse.status, headers)
  const body = webResponse.body
  if (body === null) {
    response.end()
    return
  }
  const reader = body.getReader()
  const cancel = () => {
    reader.cancel().catch(() => {})
  }
  response.once("close", cancel)
  const flush = (response as ServerResponse & { flush?: () => void }).flush
  try {
    while (!response.destroyed) {
      const { done, value } = await reader.read()
      if (done) break
      if (!response.write(value)) await Effect.runPromise(awaitDrainOrClose(response))
      flush?.call(response)
    }
  } catch {
    // The body failed or was cancelled because the client left; nothing more can be sent.
  } finally {
    response.off("close", cancel)
    if (!response.destroyed) response.end()
  }
}

const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  413: "request_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  503: "unavailable"
}

/**
 * Writes the common error body `{"error":{"type","message"}}` for a status,
 * when a failure happens outside the handler (a framework's body parser, a
 * thrown handler). The type is the one the core uses for that status.
 */
export const writeError = (response: ServerResponse, status: number, message: string): void =>
  errorTo(nodeDestination(response), status, message)

/** The common error body for a status, sent to a destination that has sent nothing yet. */
const errorTo = (destination: Destination, status: number, message: string): void => {
  const type = ERROR_TYPES[status] ?? (status >= 500 ? "internal" : "invalid_request")
  destination
    .start(status, { "content-type": "application/json", "x-content-type-options": "nosniff" })
    .end(JSON.stringify({ error: { type, message } }))
}

/**
 * The body a framework middleware already read from the request (Express's
 * `express.json()` sets `request.body`), or `undefined` when the stream is
 * still unread: then the raw bytes are read, so the core's own size and
 * content-type rules apply. (Express 4 sets `request.body = {}` even for
 * bodies it did not parse.)
 */
const consumedBody = (request: IncomingMessage): unknown => {
  const body = (request as { body?: unknown }).body
  return body !== undefined && (request.readableDidRead || request.readableEnded) ? body : undefined
}

/** Options of `toNodeHandler`. */
export interface NodeHandlerOptions {
  /**
   * The path the core sees. Express strips its mount prefix from
   * `request.url` by itself; a framework that does not (Fastify's raw
   * request) passes the path without its prefix here.
   */
  readonly url?: ((request: IncomingMessage) => string | undefined) | undefined
  /** The body stream, when it is not the request itself (see `RequestOptions.body`). */
  readonly body?: ((request: IncomingMessage) => Readable | undefined) | undefined
}

/** A Node `(request, response)` handler; resolves once the response is over. */
export type Handler = (request: IncomingMessage, response: ServerResponse) => Promise<void>

/**
 * A Node `(request, response)` handler for an application (served natively)
 * or for any web handler.
 */
export const toNodeHandler = (target: App | WebHandler, options: NodeHandlerOptions = {}): Handler =>
  typeof target === "function" ? fromWebHandler(target, options) : fromApp(target, options)

/**
 * Where a response served natively goes. `stream` is the connection's side:
 * its `close` before the response is over means the client left. `start`
 * sends the status and headers (once) and returns the stream the body is
 * written to, which may be `stream` itself.
 */
export interface Destination {
  readonly stream: Writable
  readonly start: (status: number, headers: OutgoingHttpHeaders) => Writable
}

/** A Node response as a destination: the status and headers go out with `writeHead`. */
const nodeDestination = (response: ServerResponse): Destination => ({
  stream: response,
  start: (status, headers) => {
    const request = response.req
    if (request !== undefined && !request.complete && request.httpVersionMajor === 1) {
      // Answered before the whole body was read (401, 413 past the limit): the
      // rest is still arriving, so this connection cannot carry another
      // request. Close it after the response instead of leaving it half-read,
      // which would also hold up a graceful `server.close()`.
      response.shouldKeepAlive = false
    }
    // HTTP/2 forbids connection-specific headers; HTTP/1.1 keeps them.
    if ((request?.httpVersionMajor ?? 1) >= 2) for (const name of HOP_BY_HOP) delete headers[name]
    response.writeHead(status, headers)
    return response
  }
})

/** The destination of each request being served natively, by the request's source. */
const destinations = new WeakMap<object, Destination>()

/** Each application's HTTP app with its response writer, built once. */
const handledApps = new WeakMap<HttpApp, Effect.Effect<void>>()

/**
 * Serves one request of an application natively: the app runs on `request`
 * and writes its response to `destination`, with back-pressure, flushing and
 * disconnects handled as for a Node response. Resolves once the response is
 * over. For bindings other than `node:http` (the Lambda runtime's response
 * stream); `toNodeHandler` serves Node requests with it.
 */
export const serve = (
  app: HttpApp,
  request: HttpServerRequest.HttpServerRequest,
  destination: Destination
): Promise<void> => {
  let handled = handledApps.get(app)
  if (handled === undefined) {
    handled = HttpEffect.toHandled(app.effect, writeResponse) as Effect.Effect<void>
    handledApps.set(app, handled)
  }
  let started = false
  const tracked: Destination = {
    stream: destination.stream,
    start: (status, headers) => {
      started = true
      return destination.start(status, headers)
    }
  }
  destinations.set(request.source as object, tracked)
  const fiber = Effect.runForkWith(Context.add(app.context, HttpServerRequest.HttpServerRequest, request))(
    handled
  )
  const stream = destination.stream
  return new Promise((resolve) => {
    // The client left before the response was over: stop the work for it.
    const onClose = () => {
      if (!stream.writableFinished) fiber.interruptUnsafe(undefined, HttpServerError.ClientAbort.annotation)
    }
    stream.once("close", onClose)
    fiber.addObserver(() => {
      stream.off("close", onClose)
      if (stream.destroyed || stream.writableEnded) return resolve()
      // The app ended without a complete response (a defect in writing it).
      if (!started) errorTo(tracked, 500, "Internal server error")
      else stream.destroy()
      resolve()
    })
  })
}

/** Serves an application natively: its Effect HTTP app on the Node request and response. */
const fromApp = (app: App, options: NodeHandlerOptions): Handler => {
  const http = app.http
  return (request, response) => {
    let serverRequest: HttpServerRequest.HttpServerRequest
    try {
      const parsedBody = consumedBody(request)
      serverRequest = NodeRequest.make(request, {
        url: options.url?.(request),
        body: options.body?.(request),
        ...(parsedBody === undefined ? {} : { parsedBody })
      })
    } catch (error) {
      if (error instanceof NodeRequest.InvalidTarget) writeError(response, 400, error.message)
      else writeError(response, 500, "Internal server error")
      return Promise.resolve()
    }
    return serve(http, serverRequest, nodeDestination(response))
  }
}

/** A response's headers, its cookies as `set-cookie` lines. */
const headersOf = (response: HttpServerResponse.HttpServerResponse): OutgoingHttpHeaders => {
  const headers: OutgoingHttpHeaders = { ...response.headers }
  if (!Cookies.isEmpty(response.cookies)) {
    const cookies = Cookies.toSetCookieHeaders(response.cookies)
    const existing = headers["set-cookie"]
    headers["set-cookie"] = existing === undefined ? cookies : [String(existing), ...cookies]
  }
  return headers
}

type Flushable = Writable & { flush?: () => void }

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

/** Writes chunks as they come, flushing each, waiting for `drain` when the socket is full. */
const writeChunks = (response: Flushable, stream: Stream.Stream<Uint8Array, unknown>): Effect.Effect<void> =>
  Stream.runForEachArray(stream, (chunks) =>
    writeFlushed(response, chunks) ? Effect.void : awaitDrainOrClose(response)
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
const responseSink = (response: Flushable): StreamSink.Sink<Uint8Array> => ({
  send: (frame) => (writeFlushed(response, [frame]) ? Effect.void : awaitDrainOrClose(response)),
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
 * between fibers per frame. It runs on a fiber of its own, as it would behind
 * a buffer, so `shutdown` ends the turn, not this request; a client that
 * leaves interrupts this request, which interrupts the producer.
 */
const writeProduced = (response: Flushable, produce: StreamSink.Producer<Uint8Array>): Effect.Effect<void> =>
  Effect.flatMap(
    Effect.forkDetach(produce(responseSink(response)), { startImmediately: true, uninterruptible: false }),
    (producer) =>
      Fiber.await(producer).pipe(
        Effect.interruptible,
        Effect.onInterrupt(() => Effect.sync(() => producer.interruptUnsafe())),
        Effect.ensuring(
          Effect.sync(() => {
            if (!response.destroyed && !response.writableEnded) response.end()
          })
        ),
        Effect.asVoid
      )
  )

/** Writes an application's response to the destination of its request. */
const writeResponse = (
  request: HttpServerRequest.HttpServerRequest,
  serverResponse: HttpServerResponse.HttpServerResponse
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const destination = destinations.get(request.source as object)
    if (destination === undefined || destination.stream.writableEnded || destination.stream.destroyed)
      return Effect.void
    const status = serverResponse.status
    const response: Flushable = destination.start(status, headersOf(serverResponse))
    const body = serverResponse.body
    if (request.method === "HEAD" || status === 204 || status === 205 || status === 304) {
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
        return produce === undefined ? writeChunks(response, body.stream) : writeProduced(response, produce)
      }
      case "FormData":
        return writeChunks(response, webBody(new Response(body.formData).body))
      case "Raw": {
        const raw = body.body
        if (typeof raw === "string" || raw instanceof Uint8Array) {
          response.end(raw)
          return Effect.void
        }
        if (raw instanceof ReadableStream) return writeChunks(response, webBody(raw))
        if (raw instanceof Readable)
          return writeChunks(
            response,
            Stream.fromAsyncIterable(raw, (error) => error)
          )
        response.end()
        return Effect.void
      }
    }
  })

const webBody = (body: ReadableStream<Uint8Array> | null): Stream.Stream<Uint8Array, unknown> =>
  body === null
    ? Stream.empty
    : Stream.fromReadableStream({ evaluate: () => body, onError: (error) => error })

/** Turns a web handler into a Node `(request, response)` handler. */
const fromWebHandler =
  (handler: WebHandler, options: NodeHandlerOptions = {}): Handler =>
  async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const controller = new AbortController()
    const onClose = () => {
      if (!response.writableFinished) controller.abort()
    }
    response.once("close", onClose)
    try {
      const url = options.url?.(request)
      const parsedBody = consumedBody(request)
      const body = options.body?.(request)
      const webRequest = toWebRequest(request, controller.signal, {
        ...(url === undefined ? {} : { url }),
        ...(parsedBody === undefined ? {} : { parsedBody }),
        ...(body === undefined ? {} : { body })
      })
      const webResponse = await handler(webRequest)
      if (!request.complete && request.httpVersionMajor === 1) {
        // The core answered without reading the whole body (401, 413 past the
        // limit): the rest is still arriving, so this connection cannot carry
        // another request. Close it after the response instead of leaving it
        // half-read, which would also hold up a graceful `server.close()`.
        response.shouldKeepAlive = false
      }
      await writeWebResponse(webResponse, response)
    } catch (error) {
      if (!response.headersSent && error instanceof NodeRequest.InvalidTarget) {
        writeError(response, 400, "Invalid request target")
      } else if (!response.headersSent) {
        writeError(response, 500, "Internal server error")
      } else if (!response.destroyed) {
        response.destroy()
      }
    } finally {
      response.off("close", onClose)
    }
  }

const clientErrorBody = (status: number, type: string, message: string): string => {
  const body = JSON.stringify({ error: { type, message } })
  const reason = status === 431 ? "Request Header Fields Too Large" : "Bad Request"
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
}

/**
 * A `clientError` listener for `node:http` servers: a request Node's parser
 * rejects — headers over `maxHeaderSize` (431), a malformed request line or
 * header (400) — gets the common error body instead of a bare status line, and
 * the connection is closed. Install with `server.on("clientError", onClientError)`.
 */
export const onClientError = (error: Error & { readonly code?: string }, socket: Duplex): void => {
  // A response already under way on this socket cannot be followed by another.
  if (!socket.writable || (socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
    socket.destroy()
    return
  }
  const response =
    error.code === "HPE_HEADER_OVERFLOW"
      ? clientErrorBody(431, "request_header_fields_too_large", "Request headers are too large")
      : clientErrorBody(400, "invalid_request", "Malformed HTTP request")
  socket.end(response)
}
