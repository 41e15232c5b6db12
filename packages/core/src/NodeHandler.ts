/**
 * The Node.js binding: an application (`ChatHttp.App`) served natively on Node
 * streams — `node:http`, Express, Fastify, and the Lambda runtime's response
 * stream. The Effect HTTP app reads the `IncomingMessage` (`NodeRequest`) and
 * writes the response directly (`NodeResponse`: back-pressure, flushing),
 * with no web `Request` or `Response` per request; a client that goes away
 * interrupts the request's fiber, which ends the chat stream and the model.
 * It is all done here once, so adapters stay thin.
 *
 * @since 0.1.0
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http"
import type { Duplex, Readable, Writable } from "node:stream"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerError from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import type * as HttpServerResponse from "effect/http/HttpServerResponse"
import { ChatConfig } from "./ChatConfig.ts"
import type { App, HttpApp } from "./ChatHttp.ts"
import * as HttpError from "./HttpError.ts"
import * as NodeRequest from "./NodeRequest.ts"
import * as NodeResponse from "./NodeResponse.ts"

/**
 * Taken with `process.getBuiltinModule`, not imported: Node builds an ES
 * module's view of `node:http` by reading every export, and its lazy
 * `WebSocket`, `CloseEvent` and `MessageEvent` then load undici, which an
 * application may never use (some 17 MB resident in a bare process, about 3 MB
 * more in the reference server).
 */
const { STATUS_CODES } = process.getBuiltinModule("node:http")

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"])

/**
 * Writes the common error body `{"error":{"type","message"}}` for a status,
 * when a failure happens outside the handler (a framework's body parser, a
 * thrown handler). The type is the one the core uses for that status.
 */
export const writeError = (response: ServerResponse, status: number, message: string): void =>
  writeErrorTo(nodeDestination(response), status, message)

/** The common error body for a status, sent to a destination that has sent nothing yet. */
export const writeErrorTo = (destination: Destination, status: number, message: string): void => {
  const error = HttpError.ofStatus(status, message)
  destination
    .start(status, { ...HttpError.headersOf(error), "x-content-type-options": "nosniff" })
    .end(HttpError.toJson(error))
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
}

/**
 * A Node `(request, response)` handler; resolves once the response is over.
 * `body` is the body stream when the framework hands it on instead of the
 * request itself (Fastify's content-type parsers get it after its
 * `preParsing` hooks, e.g. request decompression); by default the request.
 */
export type Handler = (request: IncomingMessage, response: ServerResponse, body?: Readable) => Promise<void>

/** What a binding serves: a running application, or an `HttpApp` of its own routes. */
export type Servable = Pick<App, "http"> | HttpApp

const httpAppOf = (app: Servable): HttpApp => ("http" in app ? app.http : app)

/**
 * Where a response goes. `stream` is the connection's side: its `close`
 * before the response is over means the client left. `start` sends the
 * status and headers (once) and returns the stream the body is written to,
 * which may be `stream` itself.
 */
export interface Destination {
  readonly stream: Writable
  readonly start: (status: number, headers: OutgoingHttpHeaders) => Writable
}

/** The destination of the request being served, for the response writer. */
class ResponseDestination extends Context.Service<ResponseDestination, Destination>()(
  "@convoke/core/NodeHandler/ResponseDestination"
) {}

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

/**
 * Serves one request of an application to a destination; resolves once the
 * response is over. `services` are provided to the request besides the
 * application's (the socket upgrade, for an upgrade request).
 */
export type Serve = (
  request: HttpServerRequest.HttpServerRequest,
  destination: Destination,
  services?: Context.Context<never>
) => Promise<void>

/**
 * Serves requests of an application natively: the app runs on each request
 * and writes its response to the destination given with it, with
 * back-pressure, flushing and disconnects handled as for a Node response.
 * Build it once per application. For bindings whose destination is not a
 * `ServerResponse` (the Lambda runtime's response stream); `toNodeHandler`
 * serves Node requests with it.
 */
export const makeServe = (app: Servable): Serve => {
  const http = httpAppOf(app)
  const handled = HttpEffect.toHandled(http.effect, writeResponse) as Effect.Effect<
    void,
    never,
    HttpServerRequest.HttpServerRequest | ResponseDestination
  >
  return (request, destination, services) => {
    let started = false
    const tracked: Destination = {
      stream: destination.stream,
      start: (status, headers) => {
        started = true
        return destination.start(status, headers)
      }
    }
    const context = Context.add(
      Context.add(
        services === undefined ? http.context : Context.merge(http.context, services),
        HttpServerRequest.HttpServerRequest,
        request
      ),
      ResponseDestination,
      tracked
    )
    const fiber = Effect.runForkWith(context)(handled)
    const stream = destination.stream
    return new Promise((resolve) => {
      // The client left before the response was over: stop the work for it.
      const onClose = () => {
        if (!stream.writableFinished) fiber.interruptUnsafe(undefined, HttpServerError.ClientAbort.annotation)
      }
      stream.once("close", onClose)
      fiber.addObserver((exit) => {
        stream.off("close", onClose)
        // A response written to its end may still be ending: compression
        // middleware ends the stream once zlib has flushed.
        if (stream.destroyed || stream.writableEnded || (exit._tag === "Success" && started)) return resolve()
        // The app ended without a complete response (a defect in writing it).
        if (!started) writeErrorTo(tracked, 500, "Internal server error")
        else stream.destroy()
        resolve()
      })
    })
  }
}

/**
 * A Node `(request, response)` handler serving an application natively: its
 * Effect HTTP app reads the `IncomingMessage` and writes the `ServerResponse`.
 */
export const toNodeHandler = (app: Servable, options: NodeHandlerOptions = {}): Handler => {
  const serve = makeServe(app)
  return (request, response, body) => {
    let serverRequest: HttpServerRequest.HttpServerRequest
    try {
      const parsedBody = consumedBody(request)
      serverRequest = NodeRequest.make(request, {
        url: options.url?.(request),
        body,
        ...(parsedBody === undefined ? {} : { parsedBody })
      })
    } catch (error) {
      if (error instanceof NodeRequest.InvalidTarget) writeError(response, 400, error.message)
      else writeError(response, 500, "Internal server error")
      return Promise.resolve()
    }
    return serve(serverRequest, nodeDestination(response))
  }
}

/**
 * Writes an application's response to the destination of its request; a
 * reader that takes nothing for `ChatConfig`'s `drainTimeout` is cut off.
 */
const writeResponse = (
  request: HttpServerRequest.HttpServerRequest,
  serverResponse: HttpServerResponse.HttpServerResponse
): Effect.Effect<void, never, ResponseDestination> =>
  Effect.flatMap(ResponseDestination, (destination) => {
    if (destination.stream.writableEnded || destination.stream.destroyed) return Effect.void
    const response = destination.start(serverResponse.status, NodeResponse.headersOf(serverResponse))
    return Effect.flatMap(ChatConfig, ({ drainTimeout }) =>
      NodeResponse.writeBody(response, request.method, serverResponse, {
        drainTimeoutMillis: Duration.toMillis(drainTimeout)
      })
    )
  })

/** A whole HTTP/1.1 response with the common error body, for a socket no request was read from. */
export const rawError = (status: number, message: string): string => {
  const body = HttpError.toJson(HttpError.ofStatus(status, message))
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
}

/**
 * A `clientError` listener for `node:http` servers: a request Node's parser
 * rejects — headers over `maxHeaderSize` (431), a request head not received
 * within `headersTimeout` (408), a malformed request line or header (400) —
 * gets the common error body instead of a bare status line, and the
 * connection is closed. Install with `server.on("clientError", onClientError)`.
 */
export const onClientError = (error: Error & { readonly code?: string }, socket: Duplex): void => {
  // A response already under way on this socket cannot be followed by another.
  if (!socket.writable || (socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
    socket.destroy()
    return
  }
  const response =
    error.code === "HPE_HEADER_OVERFLOW"
      ? rawError(431, "Request headers are too large")
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? rawError(408, "Request not received in time")
        : rawError(400, "Malformed HTTP request")
  socket.end(response)
}
