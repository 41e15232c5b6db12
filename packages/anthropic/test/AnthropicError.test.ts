import { describe, expect, it } from "vitest"
import { AnthropicError } from "../src/index.ts"

describe("AnthropicError", () => {
  it("reads retry-after-ms, retry-after in seconds, and retry-after as a date", () => {
    expect(AnthropicError.retryAfterSeconds(new Headers({ "retry-after-ms": "1500" }))).toBe(1.5)
    expect(AnthropicError.retryAfterSeconds(new Headers({ "retry-after": "7" }))).toBe(7)
    const now = Date.parse("2026-11-25T12:00:00Z")
    expect(
      AnthropicError.retryAfterSeconds(new Headers({ "retry-after": "Wed, 25 Nov 2026 12:00:30 GMT" }), now)
    ).toBe(30)
    expect(AnthropicError.retryAfterSeconds(new Headers({ "retry-after": "soon" }))).toBeUndefined()
    expect(AnthropicError.retryAfterSeconds(new Headers())).toBeUndefined()
  })

  it("turns an SSE error event into a ModelError with Anthropic's type", () => {
    expect(
      AnthropicError.fromEventData(
        '{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}'
      )
    ).toMatchObject({
      type: "rate_limit_error",
      message: AnthropicError.messages.rate_limit_error,
      detail: "Slow down",
      retryable: true
    })
    expect(AnthropicError.fromEventData("not json")).toMatchObject({ type: "api_error", retryable: true })
    expect(
      AnthropicError.fromEventData(
        '{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
      )
    ).toMatchObject({ type: "invalid_request_error", retryable: false })
  })

  it("scrubs the secret from messages", () => {
    const secret = "sk-ant-secret-value"
    expect(AnthropicError.make("api_error", `key ${secret} rejected`, { secret }).message).toBe(
      "key [redacted] rejected"
    )
    expect(AnthropicError.fromUpstream("api_error", `key ${secret} rejected`, { secret }).detail).toBe(
      "key [redacted] rejected"
    )
  })

  it("gives clients a fixed message per type and keeps the API's text in detail, for the log", () => {
    const error = AnthropicError.fromUpstream("permission_error", "org org_123 cannot use this model")
    expect(error).toMatchObject({
      type: "permission_error",
      message: "The server is not allowed to use this model",
      detail: "org org_123 cannot use this model",
      retryable: false
    })
    // A type the API does not document is not passed on either.
    expect(AnthropicError.fromUpstream("weird<script>", "text")).toMatchObject({
      type: "api_error",
      message: AnthropicError.messages.api_error,
      detail: "weird<script>: text"
    })
  })
})
