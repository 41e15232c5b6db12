/**
 * Who is asking: turns request headers into a principal, or fails with
 * `Unauthenticated`.
 *
 * A team can plug in its own identity by providing a layer for `Identity`.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Layer, Redacted } from "effect"
import type { Headers } from "effect/http"
import { type StoreUnavailable, Unauthenticated } from "./ChatError.ts"

/** The authenticated caller. Conversations are isolated by `userId`. */
export interface Principal {
  readonly userId: string
  /** Set by anonymous identities: rate limits then count by client address, not user. */
  readonly anonymous?: boolean | undefined
}

/** The operations Convoke needs from an identity provider. */
export interface Service {
  /** A short description for banners and `/health` (`anonymous`, `api-keys`). */
  readonly name: string
  /**
   * `Unauthenticated` for missing or invalid credentials (401);
   * `StoreUnavailable` when the credentials could not be checked (503).
   */
  readonly authenticate: (
    headers: Headers.Headers
  ) => Effect.Effect<Principal, Unauthenticated | StoreUnavailable>
  /**
   * Whether this provider recognises the kind of credential (a JWT, a key with
   * a known prefix). `any` asks the providers that recognise it first.
   */
  readonly accepts?: ((credential: string) => boolean) | undefined
}

/** The identity service. */
export class Identity extends Context.Service<Identity, Service>()("@convoke/core/Identity") {}

/**
 * Everyone is the same user. Only for local development: the reference server
 * allows it on a loopback bind alone and warns loudly.
 */
export const layerAnonymous = (userId = "anonymous"): Layer.Layer<Identity> =>
  Layer.succeed(Identity, {
    name: "anonymous",
    authenticate: () => Effect.succeed({ userId, anonymous: true })
  })

/** The credential a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`. */
export const credentialFrom = (headers: Headers.Headers): string | undefined => {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? "")?.[1]
  if (bearer !== undefined) return bearer
  // An Authorization header of another scheme (a proxy's Basic auth) does not hide X-API-Key.
  const apiKey = headers["x-api-key"]?.trim()
  return apiKey === undefined || apiKey === "" ? undefined : apiKey
}

const sha256Hex = (text: string): Promise<string> =>
  crypto.subtle
    .digest("SHA-256", new TextEncoder().encode(text))
    .then((digest) =>
      Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("")
    )

/**
 * The shortest API key `layerApiKeys` accepts by default: as many characters
 * as the random part of a generated key (`cvk_` and 43 base64url characters,
 * 256 bits), so a configured key is no easier to guess than a generated one.
 */
export const MIN_KEY_LENGTH = 43

/** The fewest distinct characters a key of `MIN_KEY_LENGTH` may use (a random hex key uses ~16). */
export const MIN_DISTINCT_CHARACTERS = 10

/** Options of `layerApiKeys` and `makeApiKeys`. */
export interface ApiKeyOptions {
  /**
   * The shortest key accepted (default `MIN_KEY_LENGTH`). Lowering it is an
   * explicit choice to accept keys that are easier to guess; `0` turns the
   * rule off.
   */
  readonly minKeyLength?: number | undefined
}

/** A configured API key is weaker than a generated one. The message names the problem and the user, never the key. */
export class WeakApiKey extends Data.TaggedError("WeakApiKey")<{
  readonly userId: string
  readonly message: string
}> {}

/**
 * What makes a key weaker than a generated one, phrased to follow "the key"
 * (`is 12 characters long; …`), or `undefined` when it is strong enough.
 */
export const keyProblem = (key: string, minKeyLength: number = MIN_KEY_LENGTH): string | undefined => {
  if (minKeyLength <= 0) return undefined
  const characters = [...key]
  if (characters.length < minKeyLength) {
    return `is ${characters.length} characters long; keys need at least ${minKeyLength} random characters (256 bits, as generated keys have: e.g. "openssl rand -hex 32")`
  }
  const distinct = new Set(characters).size
  if (distinct < Math.min(MIN_DISTINCT_CHARACTERS, minKeyLength)) {
    return `uses only ${distinct} distinct characters; keys must be random (e.g. "openssl rand -hex 32")`
  }
  return undefined
}

/**
 * API keys from configuration, each mapped to a user id. Keys are held only as
 * SHA-256 digests and looked up by digest, so the comparison does not depend
 * on how much of a guessed key matches. A key weaker than a generated one
 * (shorter than `MIN_KEY_LENGTH`, or of few distinct characters) fails the
 * layer with `WeakApiKey`, unless `minKeyLength` lowers the rule.
 */
export const layerApiKeys = (
  keys: ReadonlyArray<{ readonly key: Redacted.Redacted<string> | string; readonly userId: string }>,
  options: ApiKeyOptions = {}
): Layer.Layer<Identity, WeakApiKey> => Layer.effect(Identity, makeApiKeys(keys, options))

/** The service behind `layerApiKeys`, for combining with others in `any`. */
export const makeApiKeys = (
  keys: ReadonlyArray<{ readonly key: Redacted.Redacted<string> | string; readonly userId: string }>,
  options: ApiKeyOptions = {}
): Effect.Effect<Service, WeakApiKey> =>
  Effect.gen(function* () {
    const byDigest = new Map<string, string>()
    for (const { key, userId } of keys) {
      const value = Redacted.isRedacted(key) ? Redacted.value(key) : key
      const problem = keyProblem(value, options.minKeyLength)
      if (problem !== undefined) {
        return yield* new WeakApiKey({ userId, message: `The API key for user "${userId}" ${problem}` })
      }
      const digest = yield* Effect.promise(() => sha256Hex(value))
      byDigest.set(digest, userId)
    }
    const missing = new Unauthenticated({
      message: "Missing credentials: send Authorization: Bearer <key> or X-API-Key: <key>"
    })
    const invalid = new Unauthenticated({ message: "Invalid API key" })
    return {
      name: "api-keys",
      authenticate: (headers) => {
        const credential = credentialFrom(headers)
        if (credential === undefined) return Effect.fail(missing)
        return Effect.promise(() => sha256Hex(credential)).pipe(
          Effect.flatMap((digest) => {
            const userId = byDigest.get(digest)
            return userId === undefined ? Effect.fail(invalid) : Effect.succeed({ userId })
          })
        )
      }
    }
  })

/** The message of a request without credentials. */
export const MISSING_CREDENTIALS =
  "Missing credentials: send Authorization: Bearer <credential> or X-API-Key: <credential>"

/**
 * Several identity providers as one, e.g. stored API keys and JWTs. A request
 * is tried against the providers that recognise its credential (`accepts`),
 * then the others, in order; the first that authenticates it wins. When none
 * does, the failure of the first recognising provider is returned (its message
 * is the most specific), and `StoreUnavailable` wins over `Unauthenticated`.
 */
export const any = (providers: ReadonlyArray<Service>): Service => {
  const missing = new Unauthenticated({ message: MISSING_CREDENTIALS })
  return {
    name: providers.map((provider) => provider.name).join(" + "),
    authenticate: (headers) => {
      const credential = credentialFrom(headers)
      if (credential === undefined) return Effect.fail(missing)
      const recognising = providers.filter((provider) => provider.accepts?.(credential) === true)
      const ordered = [...recognising, ...providers.filter((provider) => !recognising.includes(provider))]
      return Effect.gen(function* () {
        let failure: Unauthenticated | StoreUnavailable | undefined
        for (const provider of ordered) {
          const result = yield* Effect.result(provider.authenticate(headers))
          if (result._tag === "Success") return result.success
          if (
            failure === undefined ||
            (failure._tag !== "StoreUnavailable" && result.failure._tag === "StoreUnavailable")
          )
            failure = result.failure
        }
        return yield* Effect.fail(failure ?? missing)
      })
    }
  }
}

/** `any` as a layer, from the effects that build each provider. */
export const layerAny = <E, R>(providers: ReadonlyArray<Effect.Effect<Service, E, R>>) =>
  Layer.effect(Identity, Effect.map(Effect.all(providers), any))
