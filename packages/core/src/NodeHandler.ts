/**
 * The Node.js binding of the web handler: `(request, response)` for
 * `node:http`, Express and Fastify. Back-pressure, flushing and disconnects
 * are handled here once, so adapters stay thin:
 *
 * - each chunk is written as it arrives and `flush()` is called when present
 *   (compression middleware would otherwise hold SSE back);
 * - when `write` returns `false` the next read waits for `drain`, so a slow
 *   reader never grows server memory;
 * - when the client goes away the web request's signal aborts and the body
 *   reader is cancelled, which interrupts the chat stream and the model.
 *
 * @since 0.1.0
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import { Readable } from "node:stream"
import type { WebHandler } from "./ChatHttp.ts"
import * as ClientAddress from "./ClientAddress.ts"

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

/** The request target cannot be read as a URL (`OPTIONS *`, a malformed absolute form). */
class InvalidTarget extends Error {}

/**
 * The URL of a request target. An origin-form target (`/path?query`) is
 * always a path on this host — `//evil/x` too, which `new URL(target, base)`
 * would read as another host — and an absolute-form target is parsed as is.
 */
const targetUrl = (target: string): URL => {
  try {
    return new URL(target.startsWith("/") ? `http://localhost${target}` : target)
  } catch {
    throw new InvalidTarget(`Invalid request target`)
  }
}

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

const waitForDrainOrClose = (response: ServerResponse) =>
  new Promise<void>((resolve) => {
    const done = () => {
      response.off("drain", done)
      response.off("close", done)
      resolve()
    }
    response.on("drain", done)
    response.on("close", done)
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
      if (!response.write(value)) await waitForDrainOrClose(response)
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
export const writeError = (response: ServerResponse, status: number, message: string): void => {
  const type = ERROR_TYPES[status] ?? (status >= 500 ? "internal" : "invalid_request")
  response.writeHead(status, { "content-type": "application/json", "x-content-type-options": "nosniff" })
  response.end(JSON.stringify({ error: { type, message } }))
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

/** Turns a web handler into a Node `(request, response)` handler. */
export const toNodeHandler =
  (handler: WebHandler, options: NodeHandlerOptions = {}) =>
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
      if (!response.headersSent && error instanceof InvalidTarget) {
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
