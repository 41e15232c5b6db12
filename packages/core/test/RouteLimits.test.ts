/**
 * Authentication failures and rate limits on every route: the router
 * authenticates and counts each request once, whatever the route, so a route
 * added later is limited without doing anything.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { ChatHttp, ChatMetrics, ChatRateLimit, EchoLanguageModel, Identity } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const KEYS = {
  alice: "alice-route-limits-key-0123456789abcdefghijklmnop",
  bob: "bob-route-limits-key-0123456789abcdefghijklmnopqr"
} as const
const alice = { authorization: `Bearer ${KEYS.alice}` }
const bob = { authorization: `Bearer ${KEYS.bob}` }
const BASE = "http://localhost/api/v0.3"

const off: ChatRateLimit.Options = {
  user: { limit: 0, window: "1 minute" },
  address: { limit: 0, window: "1 minute" },
  failures: { limit: 0, window: "1 minute" },
  concurrent: 0
}

const withApp = async <A>(
  rateLimit: Layer.Layer<never> | ReturnType<typeof ChatRateLimit.layerMemory> | undefined,
  body: (app: ChatHttp.App, metrics: ChatMetrics.ChatMetrics) => Promise<A>,
  identity: Layer.Layer<Identity.Identity, unknown> = Identity.layerApiKeys([
    { key: KEYS.alice, userId: "alice" },
    { key: KEYS.bob, userId: "bob" }
  ])
): Promise<A> => {
  const metrics = ChatMetrics.make()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      TestStore.make().layer,
      EchoLanguageModel.layer({ delay: 0 }),
      identity,
      ChatMetrics.layer({ metrics }),
      rateLimit ?? Layer.empty
    )
  )
  try {
    return await body(app, metrics)
  } finally {
    await app.dispose()
  }
}

const request = (
  app: ChatHttp.App,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  options: { readonly body?: unknown; readonly address?: string } = {}
) =>
  app.handler(
    new Request(`${BASE}${path}`, {
      method,
      headers: { "content-type": "application/json", ...headers },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
    }),
    options.address === undefined ? undefined : { remoteAddress: options.address }
  )

const startConversation = async (app: ChatHttp.App, headers: Record<string, string>) => {
  const response = await request(app, "POST", "/chat", headers, { body: { message: "hi" } })
  assert.strictEqual(response.status, 200)
  return (await response.json()).conversation_id as string
}

/** Every route of the API that acts for a user, as (method, path, body). */
const routes = (id: string) =>
  [
    ["POST", "/chat", { message: "hello" }],
    ["GET", "/conversations", undefined],
    ["GET", `/conversations/${id}`, undefined],
    ["PATCH", `/conversations/${id}`, { title: "renamed" }],
    ["GET", `/conversations/${id}/stream`, undefined],
    ["POST", `/conversations/${id}/stop`, undefined],
    ["DELETE", `/conversations/${id}`, undefined]
  ] as const

const expectLimited = async (response: Response, label: string) => {
  assert.strictEqual(response.status, 429, label)
  assert.deepStrictEqual(Object.keys(await response.json()), ["error"], label)
  const retryAfter = Number(response.headers.get("retry-after"))
  assert.isTrue(Number.isInteger(retryAfter) && retryAfter >= 1, `${label}: Retry-After ${retryAfter}`)
}

describe("failed authentications", () => {
  it("are throttled per address on the conversation API, not only on chat", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, failures: { limit: 5, window: "1 minute" } }),
      async (app) => {
        const statuses: Array<number> = []
        for (let index = 0; index < 200; index++) {
          const response = await request(
            app,
            "GET",
            "/conversations",
            { authorization: `Bearer wrong-key-${index}` },
            { address: "192.0.2.7" }
          )
          statuses.push(response.status)
          await response.arrayBuffer()
        }
        assert.deepStrictEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401])
        assert.isTrue(statuses.slice(5).every((status) => status === 429))
      }
    ))

  it("refuse an address that spent its budget before its credentials are checked, a valid key included", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, failures: { limit: 2, window: "1 minute" } }),
      async (app) => {
        const from = { address: "192.0.2.8" }
        for (let index = 0; index < 2; index++) {
          const response = await request(
            app,
            "GET",
            "/conversations",
            { "x-api-key": `guess-${index}` },
            from
          )
          assert.strictEqual(response.status, 401)
        }
        // A right guess after the budget is spent learns nothing: it is refused like the rest.
        await expectLimited(
          await request(app, "GET", "/conversations", alice, from),
          "valid key, same address"
        )
        // Another address is not affected.
        const elsewhere = await request(app, "GET", "/conversations", alice, { address: "192.0.2.9" })
        assert.strictEqual(elsewhere.status, 200)
      }
    ))

  it("are throttled per key prefix across addresses", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, failures: { limit: 3, window: "1 minute" } }),
      async (app) => {
        // Someone who knows the start of a key tries endings from many addresses.
        const known = KEYS.alice.slice(0, 20)
        const statuses: Array<number> = []
        for (let index = 0; index < 6; index++) {
          const response = await request(
            app,
            "GET",
            "/conversations",
            { authorization: `Bearer ${known}${"x".repeat(20)}${index}` },
            { address: `198.51.100.${index + 1}` }
          )
          statuses.push(response.status)
        }
        assert.deepStrictEqual(statuses, [401, 401, 401, 429, 429, 429])
        // A key with another start, from a fresh address, is checked as usual.
        assert.strictEqual(
          (await request(app, "GET", "/conversations", bob, { address: "198.51.100.99" })).status,
          200
        )
      }
    ))

  it("are counted in authentication_failures_total, and refusals in rate_limited_requests_total", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, failures: { limit: 1, window: "1 minute" } }),
      async (app, metrics) => {
        await request(app, "GET", "/conversations", { "x-api-key": "nope" }, { address: "192.0.2.10" })
        await request(app, "GET", "/conversations", { "x-api-key": "nope" }, { address: "192.0.2.10" })
        const text = metrics.format()
        assert.match(text, /^authentication_failures_total 1$/m)
        assert.match(text, /^rate_limited_requests_total\{limit="failures"\} 1$/m)
        assert.match(text, /^rate_limited_requests_total\{limit="user"\} 0$/m)
      }
    ))
})

describe("every route counts against the budget", () => {
  it("each route of the API answers 429 with Retry-After once the user's budget is spent", () =>
    withApp(ChatRateLimit.layerMemory({ ...off, user: { limit: 1, window: "1 minute" } }), async (app) => {
      const id = await startConversation(app, alice)
      for (const [method, path, body] of routes(id)) {
        await expectLimited(await request(app, method, path, alice, { body }), `${method} ${path}`)
      }
      // Bob's budget is his own.
      assert.strictEqual((await request(app, "GET", "/conversations", bob)).status, 200)
    }))

  it("the conversation API spends the same per-user budget as chat", () =>
    withApp(ChatRateLimit.layerMemory({ ...off, user: { limit: 3, window: "1 minute" } }), async (app) => {
      for (let index = 0; index < 3; index++) {
        const response = await request(app, "GET", "/conversations", alice)
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("ratelimit-remaining"), String(2 - index))
      }
      await expectLimited(await request(app, "POST", "/chat", alice, { body: { message: "hi" } }), "chat")
    }))

  it("stopping a turn needs no in-flight slot: a user at the concurrency limit can still stop", () =>
    withApp(ChatRateLimit.layerMemory({ ...off, concurrent: 1 }), async (app) => {
      const id = await startConversation(app, alice)
      const stream = await request(app, "POST", "/chat", alice, {
        body: {
          message: Array.from({ length: 500 }, (_, index) => `w${index}`).join(" "),
          stream: true,
          conversation_id: id
        }
      })
      assert.strictEqual(stream.status, 200)
      const reader = stream.body!.getReader()
      await reader.read()
      const stopped = await request(app, "POST", `/conversations/${id}/stop`, alice)
      assert.oneOf(stopped.status, [202, 204])
      assert.strictEqual((await request(app, "GET", "/conversations", alice)).status, 200)
      await reader.cancel()
    }))

  it("/health is public: neither authenticated nor counted", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, failures: { limit: 1, window: "1 minute" } }),
      async (app) => {
        for (let index = 0; index < 5; index++) {
          const response = await app.handler(new Request("http://localhost/health"), {
            remoteAddress: "192.0.2.11"
          })
          assert.strictEqual(response.status, 200)
        }
      }
    ))
})

describe("library defaults", () => {
  it("an application without a ChatRateLimit layer is limited per user by default", () =>
    withApp(undefined, async (app) => {
      const statuses: Array<number> = []
      for (let index = 0; index <= ChatRateLimit.defaults.user.limit; index++) {
        statuses.push((await request(app, "GET", "/conversations", alice)).status)
      }
      assert.strictEqual(
        statuses.filter((status) => status === 200).length,
        ChatRateLimit.defaults.user.limit
      )
      assert.strictEqual(statuses.at(-1), 429)
    }))

  it("the default counters belong to each application, not to the process", async () => {
    for (let round = 0; round < 2; round++) {
      await withApp(undefined, async (app) => {
        for (let index = 0; index < ChatRateLimit.defaults.user.limit; index++) {
          assert.strictEqual((await request(app, "GET", "/conversations", alice)).status, 200)
        }
      })
    }
  })

  it("ChatRateLimit.layerUnlimited turns every limit off, by name", () =>
    withApp(ChatRateLimit.layerUnlimited, async (app) => {
      for (let index = 0; index < ChatRateLimit.defaults.user.limit + 5; index++) {
        assert.strictEqual((await request(app, "GET", "/conversations", alice)).status, 200)
      }
      for (let index = 0; index < ChatRateLimit.defaults.failures.limit + 5; index++) {
        assert.strictEqual(
          (await request(app, "GET", "/conversations", { "x-api-key": "wrong" })).status,
          401
        )
      }
    }))
})

describe("addresses", () => {
  it("limits IPv6 clients per /64 and IPv4-mapped IPv6 as IPv4", () =>
    withApp(
      ChatRateLimit.layerMemory({ ...off, address: { limit: 2, window: "1 minute" } }),
      async (app) => {
        const anonymous = (address: string) => request(app, "GET", "/conversations", {}, { address })
        assert.strictEqual((await anonymous("2001:db8:1:2::1")).status, 200)
        assert.strictEqual((await anonymous("2001:db8:1:2:ffff:ffff:ffff:fffe")).status, 200)
        await expectLimited(await anonymous("2001:0db8:0001:0002:abcd::9"), "same /64")
        assert.strictEqual((await anonymous("2001:db8:1:3::1")).status, 200)
        assert.strictEqual((await anonymous("203.0.113.5")).status, 200)
        assert.strictEqual((await anonymous("::ffff:203.0.113.5")).status, 200)
        await expectLimited(await anonymous("::ffff:cb00:7105"), "IPv4-mapped")
      },
      Identity.layerAnonymous()
    ))

  it.each([
    ["192.0.2.1", 64, "192.0.2.1"],
    ["::ffff:192.0.2.1", 64, "192.0.2.1"],
    ["::FFFF:c000:0201", 64, "192.0.2.1"],
    ["2001:db8::1", 64, "2001:db8:0:0::/64"],
    ["2001:DB8:0:0:1:2:3:4", 64, "2001:db8:0:0::/64"],
    ["fe80::1%eth0", 64, "fe80:0:0:0::/64"],
    ["2001:db8:aaaa:bbbb:cccc::1", 48, "2001:db8:aaaa::/48"],
    ["2001:db8:aaaa:bbbb:cccc::1", 56, "2001:db8:aaaa:bb00::/56"],
    ["2001:db8::1", 128, "2001:db8:0:0:0:0:0:1/128"],
    ["::1", 64, "0:0:0:0::/64"],
    ["not an address", 64, "not an address"]
  ] as const)("%s with /%i → %s", (address, prefix, expected) => {
    assert.strictEqual(ChatRateLimit.addressKey(address, prefix), expected)
  })
})

describe("the in-memory store", () => {
  it.effect("stays bounded when fed a million distinct keys", () =>
    Effect.gen(function* () {
      const store = ChatRateLimit.makeStoreMemory({ maxKeys: 10_000 })
      let largest = 0
      for (let index = 0; index < 1_000_000; index++) {
        yield* store.fixedWindow({
          key: `address:${index}`,
          tokens: 1,
          refillRate: Duration.seconds(1),
          limit: 60
        })
        if (store.size() > largest) largest = store.size()
      }
      assert.isAtMost(largest, 10_000)
      assert.isAtLeast(store.size(), 1)
    })
  )

  it.effect("a rate limiter on the bounded store still limits the keys it keeps", () =>
    Effect.gen(function* () {
      const limits = ChatRateLimit.memory({ ...off, address: { limit: 2, window: "1 minute" }, maxKeys: 100 })
      const subject = { address: "192.0.2.200" }
      yield* limits.admit(subject)
      yield* limits.admit(subject)
      const refused = yield* Effect.flip(limits.admit(subject))
      assert.strictEqual(refused._tag, "RateLimited")
    })
  )
})
