import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { JwtIdentity } from "@convoke/auth"
import type { Identity } from "@convoke/core"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Headers } from "effect/http"
import * as jose from "jose"

const SECRET = "a-test-secret-that-is-long-enough-for-hs256"
const secretKey = new TextEncoder().encode(SECRET)
const ISSUER = "https://login.example"

const sign = (
  claims: jose.JWTPayload,
  options: {
    readonly key?: jose.CryptoKey | Uint8Array
    readonly alg?: string
    readonly kid?: string
    readonly expiresIn?: string | number
  } = {}
) => {
  let jwt = new jose.SignJWT(claims)
    .setProtectedHeader({
      alg: options.alg ?? "HS256",
      ...(options.kid === undefined ? {} : { kid: options.kid })
    })
    .setIssuedAt()
  if (options.expiresIn !== undefined) jwt = jwt.setExpirationTime(options.expiresIn)
  else if (claims.exp === undefined) jwt = jwt.setExpirationTime("5m")
  return jwt.sign(options.key ?? secretKey)
}

const authenticate = (
  service: Effect.Effect<Identity.Service, JwtIdentity.JwtConfigurationError>,
  token: string,
  header: "authorization" | "x-api-key" = "authorization"
) =>
  Effect.flatMap(service, (identity) =>
    identity.authenticate(
      Headers.fromInput(
        header === "authorization" ? { authorization: `Bearer ${token}` } : { [header]: token }
      )
    )
  )

describe("JwtIdentity with an HS256 secret", () => {
  const identity = JwtIdentity.make({ secret: SECRET, issuer: "https://issuer.example", audience: "convoke" })
  const valid = { sub: "alice", iss: "https://issuer.example", aud: "convoke" }

  it.live("accepts a valid token from either header, with the user id from sub, namespaced by issuer", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => sign(valid))
      assert.deepStrictEqual(yield* authenticate(identity, token), {
        userId: "jwt:https%3A%2F%2Fissuer.example:alice"
      })
      assert.deepStrictEqual(yield* authenticate(identity, token, "x-api-key"), {
        userId: "jwt:https%3A%2F%2Fissuer.example:alice"
      })
    })
  )

  const cases: ReadonlyArray<readonly [string, () => Promise<string>, RegExp]> = [
    ["expired", () => sign({ ...valid, exp: Math.floor(Date.now() / 1000) - 120 }), /expired/],
    ["wrong audience", () => sign({ ...valid, aud: "someone-else" }), /"aud"/],
    ["wrong issuer", () => sign({ ...valid, iss: "https://evil.example" }), /"iss"/],
    ["not yet valid", () => sign({ ...valid, nbf: Math.floor(Date.now() / 1000) + 300 }), /"nbf"/],
    [
      "wrong signature",
      () => sign(valid, { key: new TextEncoder().encode("another-secret-that-is-long-enough-for-it") }),
      /signature/
    ],
    ["no exp", () => new jose.SignJWT(valid).setProtectedHeader({ alg: "HS256" }).sign(secretKey), /"exp"/],
    ["no sub", () => sign({ iss: valid.iss, aud: valid.aud }), /"sub"/],
    ["unsigned", async () => new jose.UnsecuredJWT(valid).setExpirationTime("5m").encode(), /Invalid token/],
    ["garbage", async () => "eyJhbGciOiJIUzI1NiJ9.bm9wZQ.c2ln", /Invalid token/]
  ]
  for (const [name, make, message] of cases) {
    it.live(`refuses a token that is ${name}`, () =>
      Effect.gen(function* () {
        const token = yield* Effect.promise(make)
        const error = yield* Effect.flip(authenticate(identity, token))
        assert.strictEqual(error._tag, "Unauthenticated")
        assert.match(error.message, message)
      })
    )
  }

  it.live("tolerates a little clock skew", () =>
    Effect.gen(function* () {
      const token = yield* Effect.promise(() => sign({ ...valid, exp: Math.floor(Date.now() / 1000) - 5 }))
      assert.deepStrictEqual(yield* authenticate(identity, token), {
        userId: "jwt:https%3A%2F%2Fissuer.example:alice"
      })
    })
  )

  it.live("reads the user id from a configured claim", () =>
    Effect.gen(function* () {
      const custom = JwtIdentity.make({ secret: SECRET, userClaim: "uid" })
      const token = yield* Effect.promise(() => sign({ sub: "ignored", uid: "u-42" }))
      assert.deepStrictEqual(yield* authenticate(custom, token), { userId: "jwt::u-42" })
    })
  )

  it.live("gives each issuer its own users, and shares the claim itself only when told to", () =>
    Effect.gen(function* () {
      const two = JwtIdentity.make({ secret: SECRET, issuer: ["https://a.example", "https://b.example"] })
      const fromA = yield* Effect.promise(() => sign({ sub: "alice", iss: "https://a.example" }))
      const fromB = yield* Effect.promise(() => sign({ sub: "alice", iss: "https://b.example" }))
      const a = yield* authenticate(two, fromA)
      const b = yield* authenticate(two, fromB)
      assert.notStrictEqual(a.userId, b.userId)
      assert.notStrictEqual(a.userId, "alice")
      // An issuer holding a colon cannot pass for another issuer's subject.
      assert.notStrictEqual(JwtIdentity.userIdOf("x", "y:z"), JwtIdentity.userIdOf("x:y", "z"))
      assert.strictEqual(JwtIdentity.userIdOf(undefined, "alice"), "jwt::alice")
      const shared = JwtIdentity.make({ secret: SECRET, userIds: "claim" })
      assert.deepStrictEqual(yield* authenticate(shared, fromA), { userId: "alice" })
    })
  )

  it.live("refuses configurations it cannot use, at build time", () =>
    Effect.gen(function* () {
      assert.strictEqual((yield* Effect.flip(JwtIdentity.make({})))._tag, "JwtConfigurationError")
      assert.match((yield* Effect.flip(JwtIdentity.make({ secret: "short" }))).message, /32 bytes/)
      // A JWKS signs for every application of its provider: issuer and audience are required.
      const jwksUrl = "https://login.example/.well-known/jwks.json"
      assert.match((yield* Effect.flip(JwtIdentity.make({ jwksUrl }))).message, /issuer and audience/)
      assert.match(
        (yield* Effect.flip(JwtIdentity.make({ jwksUrl, issuer: "https://login.example" }))).message,
        /audience/
      )
      assert.match((yield* Effect.flip(JwtIdentity.make({ jwksUrl, audience: "convoke" }))).message, /issuer/)
      yield* JwtIdentity.make({ jwksUrl, issuer: "https://login.example", audience: "convoke" })
      yield* JwtIdentity.make({ jwksUrl, requireIssuer: false, requireAudience: false })
    })
  )
})

describe("JwtIdentity with a JWKS URL", () => {
  let server: Server
  let url: string
  let keys: Array<jose.JWK> = []
  let fetches = 0
  let failing = false
  let rotate: () => Promise<void> = async () => {}
  const pairs: Record<string, { privateKey: jose.CryptoKey; publicKey: jose.CryptoKey }> = {}

  beforeAll(async () => {
    for (const [kid, alg] of [
      ["rsa-1", "RS256"],
      ["rsa-2", "RS256"],
      ["ec-1", "ES256"]
    ] as const) {
      pairs[kid] = await jose.generateKeyPair(alg, { extractable: true })
    }
    const publicJwk = async (kid: string, alg: string) => ({
      ...(await jose.exportJWK(pairs[kid]!.publicKey)),
      kid,
      alg,
      use: "sig"
    })
    keys = [await publicJwk("rsa-1", "RS256"), await publicJwk("ec-1", "ES256")]
    rotate = async () => {
      keys = [await publicJwk("rsa-2", "RS256")]
    }
    server = createServer((_, response) => {
      fetches++
      if (failing) {
        response.destroy()
        return
      }
      response.writeHead(200, { "content-type": "application/json" })
      response.end(JSON.stringify({ keys }))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve))
  })

  it.live(
    "verifies RS256 and ES256 tokens, refetches on an unknown kid after rotation, and refuses HS256",
    () =>
      Effect.gen(function* () {
        const identity = yield* JwtIdentity.make({
          jwksUrl: url,
          issuer: ISSUER,
          audience: "convoke",
          jwksCooldownMillis: 0
        })
        const rsa = yield* Effect.promise(() =>
          sign(
            { sub: "alice", iss: ISSUER, aud: "convoke" },
            { key: pairs["rsa-1"]!.privateKey, alg: "RS256", kid: "rsa-1" }
          )
        )
        const ec = yield* Effect.promise(() =>
          sign(
            { sub: "bob", iss: ISSUER, aud: "convoke" },
            { key: pairs["ec-1"]!.privateKey, alg: "ES256", kid: "ec-1" }
          )
        )
        assert.deepStrictEqual(yield* authenticate(Effect.succeed(identity), rsa), {
          userId: JwtIdentity.userIdOf(ISSUER, "alice")
        })
        assert.deepStrictEqual(yield* authenticate(Effect.succeed(identity), ec), {
          userId: JwtIdentity.userIdOf(ISSUER, "bob")
        })
        const afterFirst = fetches
        // Cached: a second verification fetches nothing.
        yield* authenticate(Effect.succeed(identity), rsa)
        assert.strictEqual(fetches, afterFirst)

        // The issuer rotates to a key the cache has never seen.
        yield* Effect.promise(() => rotate())
        const rotated = yield* Effect.promise(() =>
          sign(
            { sub: "carol", iss: ISSUER, aud: "convoke" },
            { key: pairs["rsa-2"]!.privateKey, alg: "RS256", kid: "rsa-2" }
          )
        )
        assert.deepStrictEqual(yield* authenticate(Effect.succeed(identity), rotated), {
          userId: JwtIdentity.userIdOf(ISSUER, "carol")
        })
        assert.isAbove(fetches, afterFirst)

        // A token signed by a key the issuer never published fails, as does HS256 (no secret configured).
        const stranger = yield* Effect.promise(() => jose.generateKeyPair("RS256"))
        const forged = yield* Effect.promise(() =>
          sign(
            { sub: "mallory", iss: ISSUER, aud: "convoke" },
            { key: stranger.privateKey, alg: "RS256", kid: "rsa-2" }
          )
        )
        const forgedError = yield* Effect.flip(authenticate(Effect.succeed(identity), forged))
        assert.strictEqual(forgedError._tag, "Unauthenticated")
        const hmac = yield* Effect.promise(() => sign({ sub: "mallory", iss: ISSUER, aud: "convoke" }))
        const hmacError = yield* Effect.flip(authenticate(Effect.succeed(identity), hmac))
        assert.strictEqual(hmacError._tag, "Unauthenticated")
        assert.match(hmacError.message, /algorithm/)
      })
  )

  it.live("answers StoreUnavailable (503), not 401, when the JWKS endpoint cannot be reached", () =>
    Effect.gen(function* () {
      failing = true
      const identity = yield* JwtIdentity.make({
        jwksUrl: url,
        issuer: ISSUER,
        audience: "convoke",
        jwksCooldownMillis: 0,
        jwksTimeoutMillis: 2000
      })
      const token = yield* Effect.promise(() =>
        sign(
          { sub: "alice", iss: ISSUER, aud: "convoke" },
          { key: pairs["rsa-2"]!.privateKey, alg: "RS256", kid: "rsa-2" }
        )
      )
      const error = yield* Effect.flip(authenticate(Effect.succeed(identity), token))
      failing = false
      assert.strictEqual(error._tag, "StoreUnavailable")
    })
  )
})
