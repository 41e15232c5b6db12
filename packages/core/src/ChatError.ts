/**
 * The failures a caller of Convoke can act on, as tagged errors.
 *
 * Each error knows nothing about HTTP; `HttpError.ts` is the one place that maps
 * them to a status and the common error body, for every route and binding.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** The request body is not a valid chat request (bad JSON, wrong types, unknown model). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String
}) {}

/** The request body is larger than the configured limit. */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>()("RequestTooLarge", {
  limitBytes: Schema.Number
}) {}

/**
 * The request body did not arrive in time: the client sent it too slowly, or
 * stopped sending it. The connection is closed after the answer.
 */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  timeoutMillis: Schema.Number
}) {}

/** The request body has a content type Convoke does not read. */
export class UnsupportedMediaType extends Schema.TaggedError<UnsupportedMediaType>()("UnsupportedMediaType", {
  contentType: Schema.String
}) {}

/** The request carries no valid credentials. */
export class Unauthenticated extends Schema.TaggedError<Unauthenticated>()("Unauthenticated", {
  message: Schema.String
}) {}

/** The principal is known but may not do this. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String
}) {}

/**
 * The conversation does not exist for this user. Another user's conversation
 * produces the same error: the two cases must be indistinguishable.
 */
export class ConversationNotFound extends Schema.TaggedError<ConversationNotFound>()(
  "ConversationNotFound",
  {}
) {}

/** The caller exceeded a rate limit; retry after `retryAfterSeconds`. */
export class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {
  retryAfterSeconds: Schema.Number,
  message: Schema.String,
  /** The request budget that was exceeded, for the `RateLimit-*` headers of the 429. */
  limit: Schema.optional(Schema.Number),
  /**
   * Which limit refused the request: `user`, `address` (anonymous callers),
   * `failures` (failed authentications) or `concurrent` (turns in flight).
   */
  scope: Schema.optional(Schema.Literals(["user", "address", "failures", "concurrent"]))
}) {}

/** The conversation store failed or did not answer in time. */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The language model failed. `type` follows the provider's names
 * (`overloaded_error`, `rate_limit_error`, `api_error`, `timeout_error`, …) and
 * is what clients see in a mid-stream error event, with `message`. What the
 * provider itself said goes in `detail`, for the server's log only: it may
 * name internal hosts, accounts or request ids, and is never sent to a client.
 */
export class ModelError extends Schema.TaggedError<ModelError>()("ModelError", {
  type: Schema.String,
  message: Schema.String,
  retryable: Schema.Boolean,
  retryAfterSeconds: Schema.optional(Schema.Number),
  detail: Schema.optional(Schema.String)
}) {}

/** The server is shutting down: new turns are refused and open streams end. */
export class ServerShutdown extends Schema.TaggedError<ServerShutdown>()("ServerShutdown", {}) {}

/** No route of the API has this path. */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", {}) {}

/** The path is a route of the API, but not for this method; `allow` lists the methods it serves. */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  allow: Schema.Array(Schema.String)
}) {}

/** A request to the WebSocket route that is not an upgrade, or a runtime that cannot upgrade (AWS Lambda). */
export class UpgradeRequired extends Schema.TaggedError<UpgradeRequired>()("UpgradeRequired", {}) {}

/** Every error the chat endpoint can fail with before its stream starts. */
export type ChatError =
  | InvalidRequest
  | RequestTooLarge
  | RequestTimeout
  | UnsupportedMediaType
  | Unauthenticated
  | Forbidden
  | ConversationNotFound
  | RateLimited
  | StoreUnavailable
  | ModelError

/** Every typed error a route of the API can fail with. */
export type ApiError = ChatError | ServerShutdown | RouteNotFound | MethodNotAllowed | UpgradeRequired
