/**
 * The one place where failures become HTTP answers. Every error body has the
 * same shape, `{"error":{"type":"...","message":"..."}}`, whether it comes
 * from a route, the router, a binding that could not hand a request to the
 * core (a malformed request head, a framework's body parser, a Lambda event
 * that is not HTTP) or, later, a WebSocket frame.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Schema from "effect/Schema"
import { type ApiError, RequestTimeout } from "./ChatError.ts"
import { BodyTimedOut } from "./NodeBody.ts"

/** The common error body. */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    type: Schema.String.annotate({ description: "What went wrong, for programs: one word per kind." }),
    message: Schema.String.annotate({ description: "What went wrong, for people." })
  })
}).annotate({ description: "The body of every error answer." })
export type ErrorBody = typeof ErrorBody.Type

/** A failure, ready to be sent. */
export interface ErrorResponse {
  readonly status: number
  readonly body: ErrorBody
  readonly headers?: Readonly<Record<string, string>>
}

const make = (
  status: number,
  type: string,
  message: string,
  headers?: Readonly<Record<string, string>>
): ErrorResponse =>
  headers === undefined
    ? { status, body: { error: { type, message } } }
    : { status, body: { error: { type, message } }, headers }

/** The error type of each status that can be answered without a typed error. */
const TYPES: Readonly<Record<number, string>> = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "request_timeout",
  413: "request_too_large",
  415: "unsupported_media_type",
  426: "upgrade_required",
  429: "rate_limited",
  431: "request_header_fields_too_large",
  500: "internal",
  503: "unavailable"
}

/**
 * The answer for a status when there is no typed error to describe it (a
 * binding's own failures): the type the core uses for that status.
 */
export const ofStatus = (
  status: number,
  message: string,
  headers?: Readonly<Record<string, string>>
): ErrorResponse =>
  make(status, TYPES[status] ?? (status >= 500 ? "internal" : "invalid_request"), message, headers)

/** The status, body and headers of a typed error. */
export const fromError = (error: ApiError): ErrorResponse => {
  switch (error._tag) {
    case "InvalidRequest":
      return make(400, "invalid_request", error.message)
    case "RequestTooLarge":
      return make(413, "request_too_large", `Request body exceeds ${error.limitBytes} bytes`)
    case "RequestTimeout":
      return make(408, "request_timeout", `Request body not received within ${error.timeoutMillis} ms`)
    case "UnsupportedMediaType":
      return make(
        415,
        "unsupported_media_type",
        `Unsupported content type "${error.contentType}"; send application/json`
      )
    case "Unauthenticated":
      return make(401, "unauthenticated", error.message, { "www-authenticate": "Bearer" })
    case "Forbidden":
      return make(403, "forbidden", error.message)
    case "ConversationNotFound":
      return make(404, "not_found", "Conversation not found")
    case "RouteNotFound":
      return make(404, "not_found", "Not found")
    case "MethodNotAllowed":
      return make(405, "method_not_allowed", `Use ${error.allow.join(", ")}`, {
        allow: error.allow.join(", ")
      })
    case "RateLimited": {
      const retryAfter = String(Math.max(1, Math.ceil(error.retryAfterSeconds)))
      return make(429, "rate_limited", error.message, {
        "retry-after": retryAfter,
        ...(error.limit === undefined
          ? {}
          : {
              "ratelimit-limit": String(error.limit),
              "ratelimit-remaining": "0",
              "ratelimit-reset": retryAfter
            })
      })
    }
    case "StoreUnavailable":
      return make(503, "unavailable", error.message, { "retry-after": "1" })
    case "UpgradeRequired":
      return make(426, "upgrade_required", "Open a WebSocket here: GET with Upgrade: websocket", {
        upgrade: "websocket"
      })
    case "ServerShutdown":
      return make(503, "unavailable", "The server is shutting down", { "retry-after": "1" })
    case "ModelError": {
      const retryAfter =
        error.retryAfterSeconds === undefined
          ? {}
          : { "retry-after": String(Math.ceil(error.retryAfterSeconds)) }
      return error.retryable
        ? make(503, error.type, error.message, retryAfter)
        : make(502, error.type, error.message, retryAfter)
    }
  }
}

/** The body as the bytes on the wire. */
export const toJson = (error: ErrorResponse): string => JSON.stringify(error.body)

/** Headers of an error answer, content type included. */
export const headersOf = (error: ErrorResponse): Record<string, string> => ({
  "content-type": "application/json",
  ...error.headers
})

/** Renders an error response. */
export const toResponse = (error: ErrorResponse): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(error.body, {
    status: error.status,
    ...(error.headers === undefined ? {} : { headers: error.headers })
  })

const TAGS: ReadonlySet<string> = new Set<ApiError["_tag"]>([
  "InvalidRequest",
  "RequestTooLarge",
  "RequestTimeout",
  "UnsupportedMediaType",
  "Unauthenticated",
  "Forbidden",
  "ConversationNotFound",
  "RouteNotFound",
  "MethodNotAllowed",
  "RateLimited",
  "StoreUnavailable",
  "ServerShutdown",
  "ModelError",
  "UpgradeRequired"
])

/** Whether a failure is one of the typed errors `fromError` describes. */
export const isApiError = (error: unknown): error is ApiError =>
  typeof error === "object" && error !== null && "_tag" in error && TAGS.has((error as { _tag: string })._tag)

/**
 * Turns any failure of an HTTP effect into a response with the common body:
 * typed errors by `fromError`, a body Effect's reader could not read as 400,
 * 408 or 413, and anything else (a defect) as a logged 500 that reveals nothing.
 */
export const catchAll = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  Effect.catchCause(effect, (cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
    const failure = Cause.findErrorOption(cause)
    if (failure._tag === "Some") {
      const error = failure.value
      if (isApiError(error)) return Effect.succeed(toResponse(fromError(error)))
      const reason = (error as { reason?: { _tag?: string; reason?: string; cause?: unknown } } | undefined)
        ?.reason
      if (reason?._tag === "RequestParseError") {
        return Effect.succeed(
          toResponse(
            reason.reason === "BodyTooLarge"
              ? ofStatus(413, "Request body too large")
              : reason.cause instanceof BodyTimedOut
                ? fromError(new RequestTimeout({ timeoutMillis: reason.cause.timeoutMillis }))
                : ofStatus(400, "Could not read the request")
          )
        )
      }
    }
    return Effect.logError("Unhandled failure in an HTTP handler", cause).pipe(
      Effect.as(toResponse(ofStatus(500, "Internal server error")))
    )
  })
