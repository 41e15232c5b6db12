/**
 * The one place where failures become HTTP responses. Every error body has the
 * same shape: `{"error":{"type":"...","message":"..."}}`.
 *
 * @since 0.1.0
 */
import { Cause, Effect } from "effect"
import { HttpServerResponse } from "effect/http"
import type { ChatError } from "./ChatError.ts"
import type { ServerShutdown } from "./ChatService.ts"

/** The common error body. */
export interface ErrorBody {
  readonly error: { readonly type: string; readonly message: string }
}

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

/** The status, body and headers of a typed error. */
export const fromError = (error: ChatError | ServerShutdown): ErrorResponse => {
  switch (error._tag) {
    case "InvalidRequest":
      return make(400, "invalid_request", error.message)
    case "RequestTooLarge":
      return make(413, "request_too_large", `Request body exceeds ${error.limitBytes} bytes`)
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

/** A response for a status that has no typed error (404 route, 405, 500). */
export const plain = (
  status: number,
  type: string,
  message: string,
  headers?: Readonly<Record<string, string>>
) => toResponse(make(status, type, message, headers))

/** Renders an error response. */
export const toResponse = (error: ErrorResponse): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(error.body, {
    status: error.status,
    ...(error.headers === undefined ? {} : { headers: error.headers })
  })

const isTyped = (error: unknown): error is ChatError | ServerShutdown =>
  typeof error === "object" &&
  error !== null &&
  "_tag" in error &&
  [
    "InvalidRequest",
    "RequestTooLarge",
    "UnsupportedMediaType",
    "Unauthenticated",
    "Forbidden",
    "ConversationNotFound",
    "RateLimited",
    "StoreUnavailable",
    "ServerShutdown",
    "ModelError"
  ].includes((error as { _tag: string })._tag)

/**
 * Turns any failure of an HTTP effect into a response with the common body:
 * typed errors by `fromError`, unknown routes as 404, malformed requests as
 * 400, and anything else (a defect) as a logged 500 that reveals nothing.
 */
export const catchAll = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  Effect.catchCause(effect, (cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
    const failure = Cause.findErrorOption(cause)
    if (failure._tag === "Some") {
      const error = failure.value
      if (isTyped(error)) return Effect.succeed(toResponse(fromError(error)))
      const reason = (error as { reason?: { _tag?: string; reason?: string } } | undefined)?.reason
      if (reason?._tag === "RouteNotFound") return Effect.succeed(plain(404, "not_found", "Not found"))
      if (reason?._tag === "RequestParseError") {
        return Effect.succeed(
          reason.reason === "BodyTooLarge"
            ? plain(413, "request_too_large", "Request body too large")
            : plain(400, "invalid_request", "Could not read the request")
        )
      }
    }
    return Effect.logError("Unhandled failure in an HTTP handler", cause).pipe(
      Effect.as(plain(500, "internal", "Internal server error"))
    )
  })
