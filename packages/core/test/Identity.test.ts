import { assert, describe, it } from "@effect/vitest"
import { Effect, type Layer, Redacted } from "effect"
import { Headers } from "effect/http"
import { ChatError, HttpSecurity, Identity } from "../src/index.ts"

const headers = (input: Record<string, string>) => Headers.fromInput(input)

const authenticate = (
  layer: Layer.Layer<Identity.Identity, Identity.WeakApiKey>,
  input: Record<string, string>
) =>
  Effect.gen(function* () {
    const identity = yield* Identity.Identity
    return yield* identity.authenticate(headers(input))
  }).pipe(Effect.provide(layer))

describe("Identity.credentialFrom", () => {
  it.each([
    { input: { authorization: "Bearer k1" }, expected: "k1" },
    { input: { authorization: "bearer k1" }, expected: "k1" },
    { input: { authorization: "Bearer   k1  " }, expected: "k1" },
    { input: { "x-api-key": "k1" }, expected: "k1" },
    { input: { "x-api-key": "  k1 " }, expected: "k1" },
    { input: { "x-api-key": "" }, expected: undefined },
    { input: { authorization: "Bearer" }, expected: undefined },
    { input: { authorization: "Bearer k1 k2" }, expected: undefined },
    { input: { authorization: "Basic azE6" }, expected: undefined },
    { input: { authorization: "Basic azE6", "x-api-key": "k1" }, expected: "k1" },
    { input: { authorization: "Bearer k2", "x-api-key": "k1" }, expected: "k2" },
    { input: {}, expected: undefined }
  ])("$input → $expected", ({ input, expected }) => {
    assert.strictEqual(Identity.credentialFrom(headers(input)), expected)
  })
})

describe("Identity.layerApiKeys", () => {
  const layer = Identity.layerApiKeys(
    [
      { key: "k1", userId: "alice" },
      { key: Redacted.make("k2"), userId: "bob" }
      // Short keys keep these tests readable: key strength is tested below.
    ],
    { minKeyLength: 0 }
  )

  it.effect("maps each key to its user, from either header", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* authenticate(layer, { authorization: "Bearer k1" }), { userId: "alice" })
      assert.deepStrictEqual(yield* authenticate(layer, { "x-api-key": "k1" }), { userId: "alice" })
      assert.deepStrictEqual(yield* authenticate(layer, { "x-api-key": "k2" }), { userId: "bob" })
    })
  )

  it.effect("missing and wrong keys are Unauthenticated, with different messages", () =>
    Effect.gen(function* () {
      const missing = yield* Effect.flip(authenticate(layer, {}))
      const wrong = yield* Effect.flip(authenticate(layer, { authorization: "Bearer k3" }))
      const prefix = yield* Effect.flip(authenticate(layer, { "x-api-key": "k" }))
      for (const error of [missing, wrong, prefix]) assert.instanceOf(error, ChatError.Unauthenticated)
      assert.notStrictEqual(missing.message, wrong.message)
      assert.strictEqual(wrong.message, prefix.message)
      // The message never echoes the key.
      assert.notInclude(wrong.message, "k3")
    })
  )

  it.effect("the service is named for /health", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* Identity.Identity).name, "api-keys")
    }).pipe(Effect.provide(layer))
  )
})

describe("Identity.layerAnonymous", () => {
  it.effect("everyone is the same user, with or without credentials", () =>
    Effect.gen(function* () {
      const layer = Identity.layerAnonymous("dev")
      assert.deepStrictEqual(yield* authenticate(layer, {}), { userId: "dev", anonymous: true })
      assert.deepStrictEqual(yield* authenticate(layer, { authorization: "Bearer x" }), {
        userId: "dev",
        anonymous: true
      })
      assert.deepStrictEqual(yield* authenticate(Identity.layerAnonymous(), {}), {
        userId: "anonymous",
        anonymous: true
      })
    })
  )
})

describe("Identity.layerAnonymous: loopback hosts and same-origin browsers only", () => {
  const refused = (layer: ReturnType<typeof Identity.layerAnonymous>, input: Record<string, string>) =>
    Effect.flip(authenticate(layer, input))
  const anonymous = { userId: "anonymous", anonymous: true }

  it.effect("serves a loopback Host with any port, and a request without Host (no browser sends one)", () =>
    Effect.gen(function* () {
      const layer = Identity.layerAnonymous()
      for (const host of [
        "localhost",
        "LOCALHOST:3000",
        "127.0.0.1",
        "127.0.0.1:3000",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:3000"
      ])
        assert.deepStrictEqual(yield* authenticate(layer, { host }), anonymous, host)
      assert.deepStrictEqual(yield* authenticate(layer, {}), anonymous)
    })
  )

  it.effect("refuses any other Host with 403: a DNS-rebound page names the attacker's host", () =>
    Effect.gen(function* () {
      const layer = Identity.layerAnonymous()
      for (const host of [
        "evil.example",
        "evil.example:3000",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "128.0.0.1",
        "0.0.0.0:3000",
        "[::2]:3000",
        "192.168.1.10",
        "localhost:abc",
        ""
      ]) {
        const error = yield* refused(layer, { host })
        assert.instanceOf(error, ChatError.Forbidden, host)
        assert.include(error.message, "loopback", host)
      }
    })
  )

  it.effect("refuses a foreign Origin with 403, serves its own origin and the CORS allow-list", () =>
    Effect.gen(function* () {
      const layer = Identity.layerAnonymous()
      const host = "127.0.0.1:4000"
      assert.deepStrictEqual(yield* authenticate(layer, { host, origin: "http://127.0.0.1:4000" }), anonymous)
      assert.deepStrictEqual(
        yield* authenticate(layer, { host: "localhost", origin: "http://localhost" }),
        anonymous
      )
      for (const origin of [
        "https://evil.example",
        "http://localhost:4000",
        "http://127.0.0.1:4001",
        "null",
        "not an origin"
      ]) {
        const error = yield* refused(layer, { host, origin })
        assert.instanceOf(error, ChatError.Forbidden, origin)
        assert.include(error.message, "Origin", origin)
      }
      // The CORS allow-list of the application (`HttpSecurity`, read per request) admits its origins.
      const withCors = Effect.provideService(HttpSecurity.HttpSecurity, {
        securityHeaders: true,
        cors: { allowedOrigins: ["https://app.example"] }
      })
      assert.deepStrictEqual(
        yield* withCors(authenticate(layer, { host, origin: "https://app.example" })),
        anonymous
      )
      assert.instanceOf(
        yield* withCors(refused(layer, { host, origin: "https://evil.example" })),
        ChatError.Forbidden
      )
      const explicit = Identity.layerAnonymous({ allowedOrigins: "*" })
      assert.deepStrictEqual(
        yield* authenticate(explicit, { host, origin: "https://any.example" }),
        anonymous
      )
    })
  )

  it.effect("serves any Host when told to (a deliberate non-loopback deployment), Origin still checked", () =>
    Effect.gen(function* () {
      const layer = Identity.layerAnonymous({ hosts: "any" })
      assert.deepStrictEqual(yield* authenticate(layer, { host: "chat.internal:3000" }), anonymous)
      assert.deepStrictEqual(
        yield* authenticate(layer, { host: "chat.internal:3000", origin: "http://chat.internal:3000" }),
        anonymous
      )
      assert.instanceOf(
        yield* refused(layer, { host: "chat.internal:3000", origin: "https://evil.example" }),
        ChatError.Forbidden
      )
    })
  )
})

describe("Identity.any", () => {
  const prefixed = (prefix: string, userId: string): Identity.Service => ({
    name: prefix,
    accepts: (credential) => credential.startsWith(prefix),
    authenticate: (input) =>
      Identity.credentialFrom(input) === `${prefix}good`
        ? Effect.succeed({ userId })
        : Effect.fail(new ChatError.Unauthenticated({ message: `bad ${prefix}` }))
  })
  const combined = Identity.any([prefixed("a_", "alice"), prefixed("b_", "bob")])
  const run = (input: Record<string, string>) => combined.authenticate(headers(input))

  it.effect("tries the provider that recognises the credential, and any other", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* run({ authorization: "Bearer a_good" }), { userId: "alice" })
      assert.deepStrictEqual(yield* run({ "x-api-key": "b_good" }), { userId: "bob" })
      assert.strictEqual(combined.name, "a_ + b_")
    })
  )

  it.effect("reports the recognising provider's failure, and a missing credential as such", () =>
    Effect.gen(function* () {
      const wrong = yield* Effect.flip(run({ authorization: "Bearer b_nope" }))
      assert.strictEqual(wrong.message, "bad b_")
      const missing = yield* Effect.flip(run({}))
      assert.match(missing.message, /Missing credentials/)
    })
  )

  it.effect("prefers StoreUnavailable over Unauthenticated, so an outage is a 503, not a 401", () =>
    Effect.gen(function* () {
      const down: Identity.Service = {
        name: "down",
        authenticate: () => Effect.fail(new ChatError.StoreUnavailable({ message: "down" }))
      }
      const error = yield* Effect.flip(
        Identity.any([prefixed("a_", "alice"), down]).authenticate(headers({ authorization: "Bearer a_x" }))
      )
      assert.strictEqual(error._tag, "StoreUnavailable")
    })
  )
})

describe("Identity.layerApiKeys key strength", () => {
  const build = (key: string) =>
    Effect.runPromiseExit(Effect.asVoid(Identity.makeApiKeys([{ key, userId: "alice" }])))

  it("refuses a key shorter than a generated one, naming the problem and the user, not the key", async () => {
    const error = await Effect.runPromise(
      Effect.flip(Identity.makeApiKeys([{ key: "short-but-16-chars", userId: "alice" }]))
    )
    assert.instanceOf(error, Identity.WeakApiKey)
    const message = error.message
    assert.include(message, `at least ${Identity.MIN_KEY_LENGTH} random characters`)
    assert.include(message, '"alice"')
    assert.notInclude(message, "short-but-16-chars")
  })

  it("refuses a long key made of few distinct characters", async () => {
    const exit = await build("a".repeat(64))
    assert.strictEqual(exit._tag, "Failure")
  })

  it("accepts keys as strong as generated ones: 32 random bytes in base64url or hex", async () => {
    assert.strictEqual((await build("Jq3vWc0rT9bYx2LkPzA7nE5uHs1dGf8iOm4aKe6tQyRw"))._tag, "Success")
    assert.strictEqual(
      (await build("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))._tag,
      "Success"
    )
  })

  it("lets an embedder lower the rule explicitly", async () => {
    const exit = await Effect.runPromiseExit(
      Effect.asVoid(Identity.makeApiKeys([{ key: "k1", userId: "alice" }], { minKeyLength: 0 }))
    )
    assert.strictEqual(exit._tag, "Success")
  })
})
