import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Duration, Effect, Layer } from "effect"
import { RateLimiter } from "effect/persistence"
import { ChatHttp, ChatRateLimit, ConcurrencyStore, EchoLanguageModel, Identity } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"
import { silentRedis } from "../src/testing.ts"

const CHAT_URL = "http://localhost/api/v0.3/chat"
const ALICE_KEY = "alice-key-0123456789abcdefghijklmnopqrstuvwxyz"
const BOB_KEY = "bob-key-0123456789abcdefghijklmnopqrstuvwxyz"

const post = (
  app: ChatHttp.App,
  body: unknown,
  headers: Record<string, string> = {},
  remoteAddress?: string
) =>
  app.handler(
    new Request(CHAT_URL, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body)
    }),
    remoteAddress === undefined ? undefined : { remoteAddress }
  )

const withApp = async <A>(
  options: {
    readonly limits: ChatRateLimit.Options
    readonly delay?: number
    readonly store?: TestStore.TestStore
    readonly rateLimit?: ReturnType<typeof ChatRateLimit.layerMemoryConfig>
  },
  body: (app: ChatHttp.App, store: TestStore.TestStore) => Promise<A>
): Promise<A> => {
  const store = options.store ?? TestStore.make()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      store.layer,
      EchoLanguageModel.layer({ delay: options.delay ?? 0 }),
      Identity.layerApiKeys([
        { key: ALICE_KEY, userId: "alice" },
        { key: BOB_KEY, userId: "bob" }
      ]),
      options.rateLimit ?? ChatRateLimit.layerMemory(options.limits)
    )
  )
  try {
    return await body(app, store)
  } finally {
    await app.dispose()
  }
}

/**
 * `ChatRateLimit.layerMemory` that counts released in-flight slots: a slot
 * comes back as its response winds down, after the client has left, so a
 * test awaits the release instead of retrying until it has happened.
 */
const countingReleases = (limits: ChatRateLimit.Options) => {
  const concurrency = ConcurrencyStore.memory()
  let released = 0
  const waiting = new Set<() => void>()
  const layer = Layer.effect(
    ChatRateLimit.ChatRateLimit,
    ChatRateLimit.make({
      ...limits,
      name: "memory",
      concurrency: {
        ...concurrency,
        release: (key, token) =>
          Effect.andThen(
            concurrency.release(key, token),
            Effect.sync(() => {
              released++
              for (const check of waiting) check()
            })
          )
      }
    }).pipe(Effect.provide(RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory))))
  )
  /** Resolves once `count` slots have been released in all. */
  const releases = (count: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (released < count) return
        waiting.delete(check)
        resolve()
      }
      waiting.add(check)
      check()
    })
  return { layer, releases }
}

const alice = { authorization: `Bearer ${ALICE_KEY}` }
const bob = { "x-api-key": BOB_KEY }
const off: ChatRateLimit.Options = {
  user: { limit: 0, window: "1 minute" },
  address: { limit: 0, window: "1 minute" },
  failures: { limit: 0, window: "1 minute" },
  concurrent: 0
}

describe("ChatRateLimit", () => {
  it("unlimited allows everything, by name", async () => {
    assert.strictEqual(ChatRateLimit.unlimited.name, "none")
  })

  it("counts requests per user, answers 429 with Retry-After and RateLimit-* before creating anything", () =>
    withApp({ limits: { ...off, user: { limit: 3, window: "1 minute" } } }, async (app, store) => {
      for (let index = 0; index < 3; index++) {
        const response = await post(app, { message: `hi ${index}` }, alice)
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("ratelimit-limit"), "3")
        assert.strictEqual(response.headers.get("ratelimit-remaining"), String(2 - index))
        assert.strictEqual(response.headers.get("ratelimit-policy"), "3;w=60")
        await response.text()
      }
      const created = store.created.length
      const limited = await post(app, { message: "one more" }, alice)
      assert.strictEqual(limited.status, 429)
      assert.deepStrictEqual(Object.keys(await limited.json()), ["error"])
      const retryAfter = Number(limited.headers.get("retry-after"))
      assert.isTrue(retryAfter >= 1 && retryAfter <= 60)
      assert.strictEqual(limited.headers.get("ratelimit-limit"), "3")
      assert.strictEqual(limited.headers.get("ratelimit-remaining"), "0")
      assert.strictEqual(limited.headers.get("ratelimit-reset"), String(retryAfter))
      assert.strictEqual(store.created.length, created)
      // Budgets are per user: Bob is untouched by Alice's.
      const other = await post(app, { message: "bob here" }, bob)
      assert.strictEqual(other.status, 200)
      await other.text()
    }))

  it("counts resume and stop requests against the same per-user budget as chats", () =>
    withApp({ limits: { ...off, user: { limit: 3, window: "1 minute" } } }, async (app) => {
      const chat = await post(app, { message: "hi", stream: true }, alice)
      const id = JSON.parse((await chat.text()).split("\n\n")[0]!.slice("data: ".length)).conversation_id
      const base = `http://localhost/api/v0.3/conversations/${id}`
      const resumed = await app.handler(new Request(`${base}/stream`, { headers: alice }))
      assert.strictEqual(resumed.status, 200)
      assert.strictEqual(resumed.headers.get("ratelimit-remaining"), "1")
      await resumed.text()
      const stopped = await app.handler(new Request(`${base}/stop`, { method: "POST", headers: alice }))
      assert.strictEqual(stopped.status, 204)
      const limited = await app.handler(new Request(`${base}/stream`, { headers: alice }))
      assert.strictEqual(limited.status, 429)
      assert.strictEqual((await limited.json()).error.type, "rate_limited")
      assert.isNotNull(limited.headers.get("retry-after"))
      const limitedStop = await app.handler(new Request(`${base}/stop`, { method: "POST", headers: alice }))
      assert.strictEqual(limitedStop.status, 429)
    }))

  it("counts failed authentications per address, so guessing keys meets a 429", () =>
    withApp({ limits: { ...off, failures: { limit: 2, window: "1 minute" } } }, async (app) => {
      const guess = () => post(app, { message: "hi" }, { authorization: "Bearer wrong" }, "192.0.2.1")
      assert.strictEqual((await guess()).status, 401)
      assert.strictEqual((await guess()).status, 401)
      const third = await guess()
      assert.strictEqual(third.status, 429)
      assert.strictEqual((await third.json()).error.type, "rate_limited")
      // The address is refused before its credentials are checked: a right guess learns nothing.
      assert.strictEqual((await post(app, { message: "hi" }, alice, "192.0.2.1")).status, 429)
      // A valid user elsewhere is not affected.
      const valid = await post(app, { message: "hi" }, alice, "192.0.2.2")
      assert.strictEqual(valid.status, 200)
      await valid.text()
    }))

  it("limits streams in flight per user and frees the slot when a stream ends or its reader leaves", () => {
    const limits = { ...off, concurrent: 1 }
    const rateLimit = countingReleases(limits)
    return withApp({ limits, delay: 50, rateLimit: rateLimit.layer }, async (app, store) => {
      const long = Array.from({ length: 100 }, (_, index) => `w${index}`).join(" ")
      const first = await post(app, { message: long, stream: true }, alice)
      assert.strictEqual(first.status, 200)
      const reader = first.body!.getReader()
      await reader.read()
      const created = store.created.length
      const second = await post(app, { message: "second", stream: true }, alice)
      assert.strictEqual(second.status, 429)
      assert.match((await second.json()).error.message, /at most 1/)
      assert.strictEqual(store.created.length, created)
      // Another user is not held up by Alice's stream.
      const other = await post(app, { message: "bob", stream: true }, bob)
      assert.strictEqual(other.status, 200)
      await other.text()
      await reader.cancel()
      // The slot comes back once the cancelled stream has wound down: two
      // slots in all, Bob's and Alice's (her refused request held none).
      await rateLimit.releases(2)
      const next = await post(app, { message: "after", stream: true }, alice)
      assert.strictEqual(next.status, 200)
      await next.text()
    })
  })

  it("frees the slot when a request fails before its stream starts", () =>
    withApp({ limits: { ...off, concurrent: 1 } }, async (app) => {
      for (let index = 0; index < 5; index++) {
        const invalid = await post(app, { message: "" }, alice)
        assert.strictEqual(invalid.status, 400)
      }
      const valid = await post(app, { message: "ok" }, alice)
      assert.strictEqual(valid.status, 200)
    }))

  it("lets requests through when the counters' store does not answer", async () => {
    // A Redis that accepts commands and never replies: a partitioned or overloaded server.
    const silent = silentRedis
    const limits = {
      user: { limit: 1, window: "1 minute" },
      concurrent: 1,
      storeTimeout: "50 millis"
    } as const
    await withApp(
      { limits, rateLimit: ChatRateLimit.layerRedis(limits).pipe(Layer.provide(silent)) },
      async (app) => {
        for (let index = 0; index < 3; index++) {
          const response = await post(app, { message: `hi ${index}` }, alice)
          assert.strictEqual(response.status, 200)
          await response.text()
        }
      }
    )
  })
})

describe("ChatRateLimit.config", () => {
  const provider = (env: Record<string, string>) => ConfigProvider.fromEnv({ env })
  const read = (env: Record<string, string>) =>
    Effect.runPromise(Config.unwrap(ChatRateLimit.config).parse(provider(env)))

  it("has the defaults of the options, and reads the reference server's variables", async () => {
    assert.deepStrictEqual(await read({}), {
      user: { limit: 120, window: Duration.seconds(60) },
      address: { limit: 60, window: Duration.seconds(60) },
      failures: { limit: 30, window: Duration.seconds(60) },
      concurrent: 8,
      ipv6Prefix: 64,
      maxKeys: 100_000,
      prefix: "convoke:ratelimit:"
    })
    assert.deepStrictEqual(
      await read({
        CONVOKE_RATE_LIMIT_REQUESTS: "10",
        CONVOKE_RATE_LIMIT_ADDRESS_REQUESTS: "0",
        CONVOKE_RATE_LIMIT_WINDOW_SECONDS: "30",
        CONVOKE_RATE_LIMIT_AUTH_FAILURES: "5",
        CONVOKE_RATE_LIMIT_CONCURRENT: "2",
        CONVOKE_RATE_LIMIT_IPV6_PREFIX: "56",
        CONVOKE_RATE_LIMIT_MAX_KEYS: "5000",
        CONVOKE_REDIS_PREFIX: "chat:"
      }),
      {
        user: { limit: 10, window: Duration.seconds(30) },
        address: { limit: 0, window: Duration.seconds(30) },
        failures: { limit: 5, window: Duration.seconds(30) },
        concurrent: 2,
        ipv6Prefix: 56,
        maxKeys: 5000,
        prefix: "chat:"
      }
    )
  })

  it("fails naming the variable and the range expected", async () => {
    const error = await read({ CONVOKE_RATE_LIMIT_CONCURRENT: "-1" }).then(
      () => assert.fail("expected a ConfigError"),
      (caught: Config.ConfigError) => caught
    )
    assert.include(error.message, "CONVOKE_RATE_LIMIT_CONCURRENT")
    assert.include(error.message, 'must be a whole number from 0 to 10000, got "-1"')
  })

  it("limits an application built with layerMemoryConfig", () =>
    withApp(
      {
        limits: off,
        rateLimit: ChatRateLimit.layerMemoryConfig().pipe(
          Layer.provide(
            ConfigProvider.layer(
              provider({
                CONVOKE_RATE_LIMIT_REQUESTS: "2",
                CONVOKE_RATE_LIMIT_WINDOW_SECONDS: "30",
                CONVOKE_RATE_LIMIT_CONCURRENT: "0"
              })
            )
          )
        )
      },
      async (app) => {
        for (let index = 0; index < 2; index++) {
          const response = await post(app, { message: `hi ${index}` }, alice)
          assert.strictEqual(response.status, 200)
          assert.strictEqual(response.headers.get("ratelimit-policy"), "2;w=30")
          await response.text()
        }
        assert.strictEqual((await post(app, { message: "one more" }, alice)).status, 429)
      }
    ))

  it.effect(
    "admit without inFlight spends the request budget without a slot; acquire takes a slot without spending it",
    () =>
      Effect.gen(function* () {
        const limits = yield* ChatRateLimit.ChatRateLimit
        const subject = { principal: { userId: "carol" } }
        const { headers } = yield* limits.admit(subject, { inFlight: false })
        assert.strictEqual(headers["ratelimit-remaining"], "1")
        // Counting took no slot: the one slot is still free.
        const first = yield* limits.acquire(subject)
        // Taking the slot spent no request: one is left.
        assert.strictEqual(
          (yield* limits.admit(subject, { inFlight: false })).headers["ratelimit-remaining"],
          "0"
        )
        const refused = yield* Effect.flip(limits.acquire(subject))
        assert.strictEqual(refused._tag, "RateLimited")
        yield* first.release
        const second = yield* limits.acquire(subject)
        yield* second.release
      }).pipe(
        Effect.provide(
          ChatRateLimit.layerMemory({ user: { limit: 2, window: Duration.minutes(1) }, concurrent: 1 })
        )
      )
  )
})
