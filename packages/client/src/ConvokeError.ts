/**
 * The errors a Convoke client call can fail with. Every one extends
 * `ConvokeError`, so `catch (error) { if (error instanceof ConvokeError) … }`
 * catches exactly what the client throws; the subclasses say where it failed:
 *
 * - `ConvokeHttpError`: the server answered with an error status before the
 *   stream started (400, 401, 404, 413, 429, 503, …) and the common body
 *   `{"error":{"type","message"}}`.
 * - `ConvokeStreamError`: the stream had started (the conversation id is
 *   known) and the server sent an `error` event.
 * - `ConvokeNetworkError`: no answer, or the connection broke.
 * - `ConvokeProtocolError`: the server's answer is not the v0.3 contract.
 * - `ConvokeAbortError`: the caller aborted (`reply.abort()` or `signal`).
 */

/** The base class of every error the client throws. */
export class ConvokeError extends Error {
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super(message, options)
    this.name = "ConvokeError"
  }
}

/** The common error body of the v0.3 API. */
export interface ErrorBody {
  readonly error: { readonly type: string; readonly message: string }
}

const isErrorBody = (value: unknown): value is ErrorBody => {
  const error = (value as { error?: unknown } | null)?.error as
    | { type?: unknown; message?: unknown }
    | undefined
  return typeof error?.type === "string" && typeof error.message === "string"
}

/** Seconds to wait from a `Retry-After` header (seconds or an HTTP date), if it has one. */
export const parseRetryAfter = (header: string | null, now = Date.now()): number | undefined => {
  if (header === null || header.trim() === "") return undefined
  const trimmed = header.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, (date - now) / 1000)
}

/**
 * The server answered with an error status before any event. `type` and
 * `message` come from the body (`invalid_request`, `unauthenticated`,
 * `not_found`, `rate_limited`, `unavailable`, …); when the body is not the
 * common shape (a proxy's HTML page), `type` is `http_<status>`.
 */
export class ConvokeHttpError extends ConvokeError {
  readonly status: number
  readonly type: string
  /** Seconds the server asked to wait (`Retry-After`), for 429 and 503. */
  readonly retryAfterSeconds: number | undefined
  /** The parsed body, when it was JSON. */
  readonly body: unknown

  constructor(options: {
    readonly status: number
    readonly type: string
    readonly message: string
    readonly retryAfterSeconds?: number | undefined
    readonly body?: unknown
  }) {
    super(options.message)
    this.name = "ConvokeHttpError"
    this.status = options.status
    this.type = options.type
    this.retryAfterSeconds = options.retryAfterSeconds
    this.body = options.body
  }

  /** Reads an error response into a `ConvokeHttpError`. */
  static async fromResponse(response: Response): Promise<ConvokeHttpError> {
    const text = await response.text().catch(() => "")
    let body: unknown = text
    try {
      body = JSON.parse(text)
    } catch {
      // Not JSON: keep the text as the body.
    }
    const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"))
    return isErrorBody(body)
      ? new ConvokeHttpError({
          status: response.status,
          type: body.error.type,
          message: body.error.message,
          retryAfterSeconds,
          body
        })
      : new ConvokeHttpError({
          status: response.status,
          type: `http_${response.status}`,
          message: `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`,
          retryAfterSeconds,
          body
        })
  }
}

/**
 * The server sent an `error` event after the stream had started, e.g.
 * `overloaded_error` from the model or `shutdown` when the server stopped.
 * The conversation exists; `partialText` is what arrived before the error.
 */
export class ConvokeStreamError extends ConvokeError {
  readonly type: string
  readonly conversationId: string
  readonly partialText: string

  constructor(options: {
    readonly type: string
    readonly message: string
    readonly conversationId: string
    readonly partialText: string
  }) {
    super(options.message)
    this.name = "ConvokeStreamError"
    this.type = options.type
    this.conversationId = options.conversationId
    this.partialText = options.partialText
  }
}

/** The server could not be reached, or the connection broke mid-stream. */
export class ConvokeNetworkError extends ConvokeError {
  /** The conversation id, when the connection broke after the metadata event. */
  readonly conversationId: string | undefined
  readonly partialText: string

  constructor(
    message: string,
    options: {
      readonly cause?: unknown
      readonly conversationId?: string
      readonly partialText?: string
    } = {}
  ) {
    super(message, { cause: options.cause })
    this.name = "ConvokeNetworkError"
    this.conversationId = options.conversationId
    this.partialText = options.partialText ?? ""
  }
}

/** The server's answer does not follow the v0.3 contract (wrong content type, malformed event). */
export class ConvokeProtocolError extends ConvokeError {
  constructor(message: string) {
    super(message)
    this.name = "ConvokeProtocolError"
  }
}

/**
 * The caller aborted the request. Its `name` is `"AbortError"`, like the
 * error `fetch` throws, so code that already ignores aborts keeps working.
 */
export class ConvokeAbortError extends ConvokeError {
  /** The conversation id, when the abort came after the metadata event. */
  readonly conversationId: string | undefined
  readonly partialText: string

  constructor(options: { readonly conversationId?: string | undefined; readonly partialText?: string } = {}) {
    super("The request was aborted")
    this.name = "AbortError"
    this.conversationId = options.conversationId
    this.partialText = options.partialText ?? ""
  }
}
