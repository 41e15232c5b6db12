import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, References } from "effect"
import type { HttpServerResponse } from "effect/http"
import { ChatError, ChatService, HttpError } from "../src/index.ts"

describe("HttpError.fromError", () => {
  const cases: ReadonlyArray<{
    readonly error: ChatError.ChatError | ChatService.ServerShutdown
    readonly status: number
    readonly type: string
    readonly message?: string
    readonly headers?: Record<string, string>
  }> = [
    {
      error: new ChatError.InvalidRequest({ message: "message: must be a non-empty string" }),
      status: 400,
      type: "invalid_request",
      message: "message: must be a non-empty string"
    },
    { error: new ChatError.RequestTooLarge({ limitBytes: 32768 }), status: 413, type: "request_too_large" },
    {
      error: new ChatError.UnsupportedMediaType({ contentType: "application/x-www-form-urlencoded" }),
      status: 415,
      type: "unsupported_media_type"
    },
    {
      error: new ChatError.Unauthenticated({ message: "Invalid API key" }),
      status: 401,
      type: "unauthenticated",
      message: "Invalid API key",
      headers: { "www-authenticate": "Bearer" }
    },
    { error: new ChatError.Forbidden({ message: "No" }), status: 403, type: "forbidden", message: "No" },
    {
      error: new ChatError.ConversationNotFound(),
      status: 404,
      type: "not_found",
      message: "Conversation not found"
    },
    {
      error: new ChatError.RateLimited({ retryAfterSeconds: 2.2, message: "Slow down" }),
      status: 429,
      type: "rate_limited",
      message: "Slow down",
      headers: { "retry-after": "3" }
    },
    {
      error: new ChatError.StoreUnavailable({ message: "The conversation store is unavailable" }),
      status: 503,
      type: "unavailable",
      headers: { "retry-after": "1" }
    },
    {
      error: new ChatService.ServerShutdown(),
      status: 503,
      type: "unavailable",
      headers: { "retry-after": "1" }
    },
    {
      error: new ChatError.ModelError({
        type: "overloaded_error",
        message: "Overloaded",
        retryable: true,
        retryAfterSeconds: 4
      }),
      status: 503,
      type: "overloaded_error",
      message: "Overloaded",
      headers: { "retry-after": "4" }
    },
    {
      error: new ChatError.ModelError({ type: "api_error", message: "Upstream broke", retryable: false }),
      status: 502,
      type: "api_error",
      message: "Upstream broke"
    }
  ]

  it.each(cases)("$error._tag → $status $type", ({ error, status, type, message, headers }) => {
    const response = HttpError.fromError(error)
    assert.strictEqual(response.status, status)
    assert.deepStrictEqual(Object.keys(response.body), ["error"])
    assert.deepStrictEqual(Object.keys(response.body.error), ["type", "message"])
    assert.strictEqual(response.body.error.type, type)
    assert.isString(response.body.error.message)
    assert.isNotEmpty(response.body.error.message)
    if (message !== undefined) assert.strictEqual(response.body.error.message, message)
    for (const [name, value] of Object.entries(headers ?? {}))
      assert.strictEqual(response.headers?.[name], value)
  })

  it("covers every error tag the chat endpoint can fail with", () => {
    const tags = new Set(cases.map(({ error }) => error._tag))
    assert.deepStrictEqual([...tags].sort(), [
      "ConversationNotFound",
      "Forbidden",
      "InvalidRequest",
      "ModelError",
      "RateLimited",
      "RequestTooLarge",
      "ServerShutdown",
      "StoreUnavailable",
      "Unauthenticated",
      "UnsupportedMediaType"
    ])
  })

  it("the retry-after of a rate limit is a whole number of seconds, at least 1", () => {
    const response = HttpError.fromError(new ChatError.RateLimited({ retryAfterSeconds: 0.01, message: "x" }))
    assert.strictEqual(response.headers?.["retry-after"], "1")
  })

  it("the 413 message names the limit", () => {
    assert.include(
      HttpError.fromError(new ChatError.RequestTooLarge({ limitBytes: 1234 })).body.error.message,
      "1234"
    )
  })

  it("a store failure does not leak its cause", () => {
    const response = HttpError.fromError(
      new ChatError.StoreUnavailable({
        message: "The conversation store is unavailable",
        cause: new Error("password=hunter2")
      })
    )
    assert.notInclude(JSON.stringify(response), "hunter2")
  })
})

describe("HttpError.catchAll", () => {
  const bodyOf = (response: HttpServerResponse.HttpServerResponse) => {
    assert.strictEqual(response.body._tag, "Uint8Array")
    return JSON.parse(new TextDecoder().decode((response.body as { body: Uint8Array }).body))
  }

  it.effect("renders a typed failure with its status and the common body", () =>
    Effect.gen(function* () {
      const response = yield* HttpError.catchAll(Effect.fail(new ChatError.ConversationNotFound()))
      assert.strictEqual(response.status, 404)
      assert.deepStrictEqual(bodyOf(response), {
        error: { type: "not_found", message: "Conversation not found" }
      })
    })
  )

  it.effect("renders a defect as a 500 that reveals nothing", () =>
    Effect.gen(function* () {
      const logged: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => logged.push(`${logLevel}: ${String(message)}`))
      const response = yield* HttpError.catchAll(Effect.die(new Error("secret detail"))).pipe(
        Effect.provideService(References.CurrentLoggers, new Set([logger]))
      )
      assert.strictEqual(response.status, 500)
      // Operators see it in the log.
      assert.strictEqual(logged.length, 1)
      assert.match(logged[0]!, /^Error: /)
      const body = bodyOf(response)
      assert.deepStrictEqual(body, { error: { type: "internal", message: "Internal server error" } })
      assert.notInclude(JSON.stringify(body), "secret")
    })
  )
})
