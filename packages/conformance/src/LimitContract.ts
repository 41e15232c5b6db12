/**
 * Rate limits on every route (the README's "Rate limits" and
 * docs/security.md): a request over budget is a `429` with `Retry-After`,
 * `RateLimit-*` and the common error body, on every route that acts for a
 * user, before the route touches anything — and a caller whose failed
 * authentications are spent is refused before its credentials are checked.
 *
 * The suite's rate limits (`limits`) are the core's in-memory ones with
 * generous budgets — every test of the suite shares one loopback address
 * and a few users — except that Dave has always spent his budget and a
 * credential starting with `SPENT_CREDENTIAL_PREFIX` comes from an address
 * that has spent its failed authentications. What is checked is that every
 * route goes through the limits and every binding passes the answer on.
 *
 * @since 0.3.0
 */
import { ChatError, ChatRateLimit } from "@convoke/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { describe, expect, it } from "vitest"
import { expectError, SPENT_CREDENTIAL_PREFIX, type Suite } from "./Suite.ts"

const spent = (scope: "user" | "failures") =>
  new ChatError.RateLimited({
    retryAfterSeconds: 30,
    limit: 1,
    scope,
    message: "Rate limit exceeded: 1 requests per 1m (conformance)"
  })

/** The suite's rate limits; see the module documentation. */
export const limits = (): Layer.Layer<never> => {
  const minute = "1 minute"
  const base = ChatRateLimit.memory({
    user: { limit: 100_000, window: minute },
    address: { limit: 100_000, window: minute },
    // The suite's own 401 tests all come from one address.
    failures: { limit: 0, window: minute },
    concurrent: 1_000
  })
  return Layer.succeed(ChatRateLimit.ChatRateLimit, {
    ...base,
    name: "conformance",
    admit: (subject, options) =>
      subject.principal?.userId === "dave" ? Effect.fail(spent("user")) : base.admit(subject, options),
    beforeAuthentication: (subject) =>
      subject.credential?.startsWith(SPENT_CREDENTIAL_PREFIX) === true
        ? Effect.fail(spent("failures"))
        : base.beforeAuthentication(subject)
  })
}

// A conversation id Dave never created: the limit answers before the route looks for it.
const SOME_ID = "3f0c2d9e-7b1a-4c5d-8e6f-0a1b2c3d4e5f"

/** Every route that acts for a user, as (method, path, body). */
const ROUTES = [
  ["POST", "/api/v0.3/chat", { message: "hello" }],
  ["POST", "/api/v0.3/chat", { message: "hello", stream: true }],
  ["GET", "/api/v0.3/conversations", undefined],
  ["GET", `/api/v0.3/conversations/${SOME_ID}`, undefined],
  ["PATCH", `/api/v0.3/conversations/${SOME_ID}`, { title: "renamed" }],
  ["DELETE", `/api/v0.3/conversations/${SOME_ID}`, undefined],
  ["GET", `/api/v0.3/conversations/${SOME_ID}/stream`, undefined],
  ["POST", `/api/v0.3/conversations/${SOME_ID}/stop`, undefined],
  ["GET", "/api/v0.3/ws", undefined],
  ["POST", "/api/v0.3/ws/ticket", undefined]
] as const

const expectLimited = async (response: Response, label: string) => {
  expect(response.headers.get("retry-after"), label).toBe("30")
  expect(response.headers.get("ratelimit-limit"), label).toBe("1")
  expect(response.headers.get("ratelimit-remaining"), label).toBe("0")
  await expectError(response, 429, "rate_limited", label)
}

/** Defines the rate-limit tests in a `describe` block of their own. */
export const define = (suite: Suite) =>
  describe("rate limits on every route", () => {
    it("answers a user over budget 429 with Retry-After on every route, before the route runs", async () => {
      for (const [method, path, body] of ROUTES) {
        const response = await suite.request(path, { method, user: "dave", body })
        await expectLimited(response, `${method} ${path}`)
      }
    })

    it("refuses a caller whose failed authentications are spent, on every route, before checking credentials", async () => {
      for (const [method, path, body] of ROUTES) {
        const response = await suite.request(path, {
          method,
          user: null,
          headers: { authorization: `Bearer ${SPENT_CREDENTIAL_PREFIX}0123456789abcdef` },
          body
        })
        await expectLimited(response, `${method} ${path}`)
      }
    })

    it("counts an admitted request: RateLimit-* on the answer of every route", async () => {
      const response = await suite.request("/api/v0.3/conversations")
      expect(response.status).toBe(200)
      expect(response.headers.get("ratelimit-limit")).toBe("100000")
      expect(Number(response.headers.get("ratelimit-remaining"))).toBeLessThan(100_000)
      await response.arrayBuffer()
    })

    it("leaves /health public: no credentials, no rate limit", async () => {
      const response = await suite.request("/health", { user: null })
      expect(response.status).toBe(200)
      expect(response.headers.get("ratelimit-limit")).toBeNull()
      await response.arrayBuffer()
    })
  })
