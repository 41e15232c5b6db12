/**
 * Anthropic failures as Convoke's `ModelError`.
 *
 * `type` keeps Anthropic's own names (`overloaded_error`, `rate_limit_error`,
 * `api_error`, `timeout_error`, `authentication_error`, …), so a client sees
 * in the error event what kind of failure it was; a type the API does not
 * document is `api_error`. The message a client sees is fixed per type
 * (`messages`): the API's own text can name accounts, organisations, request
 * ids or whatever a compromised gateway puts there, so it goes in `detail`,
 * which the model logs and no client ever sees. `retryable` tells whether
 * trying again later can help; `retryAfterSeconds` carries the API's
 * `retry-after`. No text from this module contains the API key: each is
 * scrubbed of it, `detail` included.
 *
 * @since 0.1.0
 */
import { AnthropicError, APIConnectionError, APIConnectionTimeoutError, APIError } from "@anthropic-ai/sdk"
import { ChatError } from "@convoke/core"

/** Anthropic error types worth trying again later. */
const retryableTypes = new Set(["overloaded_error", "rate_limit_error", "api_error", "timeout_error"])

/** The message a client sees for each Anthropic error type; the API's own text is logged instead. */
export const messages: Readonly<Record<string, string>> = {
  invalid_request_error: "The model API rejected the request",
  authentication_error: "The server could not authenticate with the model API",
  billing_error: "The model API refused the request for billing reasons",
  permission_error: "The server is not allowed to use this model",
  not_found_error: "The model API could not find the model",
  request_too_large: "The request is too large for the model",
  rate_limit_error: "The model API is rate limiting requests; try again later",
  api_error: "The model API failed",
  overloaded_error: "The model is overloaded; try again later",
  timeout_error: "The model API did not answer in time"
}

/** The Anthropic error type of an HTTP status, when the body did not name one. */
const typeOfStatus = (status: number): string => {
  switch (status) {
    case 400:
      return "invalid_request_error"
    case 401:
      return "authentication_error"
    case 402:
      return "billing_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 408:
    case 504:
      return "timeout_error"
    case 413:
      return "request_too_large"
    case 429:
      return "rate_limit_error"
    case 529:
      return "overloaded_error"
    default:
      return status >= 500 ? "api_error" : "invalid_request_error"
  }
}

/** A `retry-after-ms` or `retry-after` (seconds or HTTP date) header, in seconds. */
export const retryAfterSeconds = (
  headers: Headers | undefined,
  now: number = Date.now()
): number | undefined => {
  const millis = headers?.get("retry-after-ms")
  if (millis !== null && millis !== undefined && Number.isFinite(Number.parseFloat(millis))) {
    return Math.max(0, Number.parseFloat(millis) / 1000)
  }
  const value = headers?.get("retry-after")
  if (value === null || value === undefined || value.trim() === "") return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000)
}

/** Builds a `ModelError` from an Anthropic error type and message. */
export const make = (
  type: string,
  message: string,
  options: { readonly secret?: string | undefined; readonly retryAfterSeconds?: number | undefined } = {}
): ChatError.ModelError =>
  new ChatError.ModelError({
    type,
    message: scrub(message, options.secret),
    retryable: retryableTypes.has(type),
    ...(options.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: options.retryAfterSeconds })
  })

/**
 * Builds a `ModelError` from what the API said: the client's message is the
 * fixed one of the type, the API's text goes in `detail` for the log. A type
 * the API does not document becomes `api_error`.
 */
export const fromUpstream = (
  upstreamType: string,
  upstreamMessage: string,
  options: { readonly secret?: string | undefined; readonly retryAfterSeconds?: number | undefined } = {}
): ChatError.ModelError => {
  const type = Object.hasOwn(messages, upstreamType) ? upstreamType : "api_error"
  return new ChatError.ModelError({
    type,
    message: messages[type]!,
    retryable: retryableTypes.has(type),
    detail: scrub(
      type === upstreamType ? upstreamMessage : `${upstreamType}: ${upstreamMessage}`,
      options.secret
    ),
    ...(options.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: options.retryAfterSeconds })
  })
}

/** The error an upstream stall ends the stream with. */
export const stalled = (idleMillis: number): ChatError.ModelError =>
  make("timeout_error", `The model sent nothing for ${Math.round(idleMillis / 100) / 10} s`)

/**
 * The body of an SSE `event: error` (`{"type":"error","error":{"type","message"}}`)
 * as a `ModelError`.
 */
export const fromEventData = (data: string, secret?: string): ChatError.ModelError => {
  let body: { error?: { type?: unknown; message?: unknown } } | undefined
  try {
    body = JSON.parse(data)
  } catch {
    body = undefined
  }
  const type = typeof body?.error?.type === "string" ? body.error.type : "api_error"
  const message =
    typeof body?.error?.message === "string" && body.error.message !== ""
      ? body.error.message
      : "The model stream reported an error"
  return fromUpstream(type, message, { secret })
}

/** Any failure of an SDK call as a `ModelError`. */
export const fromUnknown = (error: unknown, secret?: string): ChatError.ModelError => {
  if (error instanceof ChatError.ModelError) return error
  if (error instanceof APIConnectionTimeoutError) {
    return make("timeout_error", "The model API did not answer in time", { secret })
  }
  if (error instanceof APIConnectionError) {
    return make("api_error", "Could not reach the model API", { secret })
  }
  if (error instanceof APIError) {
    const type = error.type ?? (error.status === undefined ? "api_error" : typeOfStatus(error.status))
    const message = error.apiMessage ?? `The model API answered with status ${error.status ?? "unknown"}`
    return fromUpstream(type, message, { secret, retryAfterSeconds: retryAfterSeconds(error.headers) })
  }
  if (error instanceof AnthropicError) return fromUpstream("api_error", error.message, { secret })
  return make("api_error", "The model stream failed", { secret })
}

/** Removes every occurrence of the secret from a text. */
const scrub = (text: string, secret: string | undefined): string =>
  secret === undefined || secret.length < 4 ? text : text.split(secret).join("[redacted]")
