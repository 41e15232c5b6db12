/**
 * Who is asking: turns request headers into a principal, or fails with
 * `Unauthenticated`.
 *
 * A team can plug in its own identity by providing a layer for `Identity`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Headers from "effect/http/Headers"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Forbidden, type StoreUnavailable, Unauthenticated } from "./ChatError.ts"
import { HttpSecurity } from "./HttpSecurity.ts"

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
   * `Unauthenticated` for missing or invalid credentials (401); `Forbidden`
   * for a request the provider will not serve whoever asks (403: the
   * anonymous identity's foreign `Host` or `Origin`); `StoreUnavailable`
   * when the credentials could not be checked (503).
   */
  readonly authenticate: (
    headers: Headers.Headers
  ) => Effect.Effect<Principal, Unauthenticated | Forbidden | StoreUnavailable>
  /**
   * Whether this provider recognises the kind of credential (a JWT, a key with
   * a known prefix). `any` asks the providers that recognise it first.
   */
  readonly accepts?: ((credential: string) => boolean) | undefined
}

/** The identity service. */
export class Identity extends Context.Service<Identity, Service>()("@convoke/core/Identity") {}

/** Options of the anonymous identity. */
export interface AnonymousOptions {
  /** The one user everyone is (default `anonymous`). */
  readonly userId?: string | undefined
  /**
   * Which `Host` headers are served: `loopback` (the default: `localhost`,
   * `127.0.0.0/8`, `[::1]`, any port) or `any`, for a deliberate deployment
   * of anonymous access off loopback. A request without `Host` is served
   * either way: browsers always send one.
   */
  readonly hosts?: "loopback" | "any" | undefined
  /**
   * Origins a browser may call from besides the server's own (the one its
   * `Host` names). Default: the CORS allow-list of `HttpSecurity`, read per
   * request, so the origins allowed to read answers are the ones allowed to
   * ask.
   */
  readonly allowedOrigins?: ReadonlyArray<string> | "*" | undefined
}

const LOOPBACK_HOST = /^(?:localhost|127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}|\[::1\])(?::\d{1,5})?$/i

/** Whether a `Host` header names the loopback interface: `localhost`, `127.0.0.0/8` or `[::1]`, with any port. */
export const isLoopbackHost = (host: string): boolean => LOOPBACK_HOST.test(host)

// The origin a `Host` header makes for a browser page of the same scheme.
const sameOrigin = (origin: string, host: string): boolean => {
  try {
    const parsed = new URL(origin)
    if (parsed.origin !== origin) return false
    return new URL(`${parsed.protocol}//${host}`).origin === origin
  } catch {
    return false
  }
}

/**
 * Everyone is the same user: for local development, and nothing a web page
 * can reach. Requests whose `Host` is not a loopback name (DNS rebinding
 * gives an attacker's page a loopback address under its own host name) and
 * browser requests from a foreign `Origin` (another site's page posting
 * chats) fail with `Forbidden` (403). The reference server allows anonymous
 * mode on a loopback bind alone and warns loudly.
 */
export const makeAnonymous = (options: AnonymousOptions = {}): Service => {
  const principal: Principal = { userId: options.userId ?? "anonymous", anonymous: true }
  return {
    name: "anonymous",
    authenticate: (headers) =>
      Effect.gen(function* () {
        const host = headers.host
        if (host !== undefined && options.hosts !== "any" && !isLoopbackHost(host.trim())) {
          return yield* new Forbidden({
            message: `Anonymous access is served to loopback hosts only (localhost, 127.0.0.1, [::1]), not to Host ${JSON.stringify(host)}; configure API keys or JWTs to serve other hosts`
          })
        }
        const origin = headers.origin
        if (origin === undefined) return principal
        const allowed = options.allowedOrigins ?? (yield* HttpSecurity).cors?.allowedOrigins ?? []
        if (
          (host !== undefined && sameOrigin(origin, host.trim())) ||
          allowed === "*" ||
          allowed.includes(origin)
        )
          return principal
        return yield* new Forbidden({
          message: `Anonymous access from a page of Origin ${JSON.stringify(origin)} is refused: only the server's own pages and the CORS allow-list may call it`
        })
      })
  }
}

/**
 * The anonymous identity (`makeAnonymous`) as a layer; a string is the user
 * id, as in earlier versions.
 */
export const layerAnonymous = (options: AnonymousOptions | string = {}): Layer.Layer<Identity> =>
  Layer.succeed(Identity, makeAnonymous(typeof options === "string" ? { userId: options } : options))

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
        let failure: Unauthenticated | Forbidden | StoreUnavailable | undefined
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
