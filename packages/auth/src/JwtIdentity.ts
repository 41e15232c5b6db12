/**
 * JSON Web Tokens as an identity provider, on `jose`.
 *
 * A request presents `Authorization: Bearer <jwt>` (or `X-API-Key: <jwt>`).
 * The token is verified with an HS256 shared secret, or with the RS/PS/ES/EdDSA
 * public keys of a JWKS URL — fetched on first use, cached, and fetched again
 * when a token names a `kid` the cache does not know (key rotation). Each
 * algorithm family is tied to its key source, so a token cannot pass an RSA
 * public key off as an HMAC secret. `exp` is required; `nbf`, `iss` and `aud`
 * are checked, all with a small clock tolerance (with a JWKS, `iss` and `aud`
 * must be configured). The user id comes from a configurable claim (`sub` by
 * default), namespaced by provider and issuer (`jwt:<iss>:<sub>`) unless
 * `userIds: "claim"` says otherwise.
 *
 * Invalid, expired and misaddressed tokens are `401`; a JWKS endpoint that
 * cannot be reached is `503`, so clients retry rather than drop their token.
 *
 * @since 0.1.0
 */
import { ChatError, Identity } from "@convoke/core"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as jose from "jose"

/** Options of `make` and `layer`. At least one of `secret` and `jwksUrl` is required. */
export interface Options {
  /** HS256 shared secret (at least 32 bytes). */
  readonly secret?: Redacted.Redacted<string> | string | undefined
  /** URL of a JSON Web Key Set with the issuer's public keys (RS*, PS*, ES*, EdDSA). */
  readonly jwksUrl?: string | URL | undefined
  /**
   * Accepted `iss` value(s). Required with `jwksUrl` (unless `requireIssuer`
   * is `false`): a JWKS is often an identity provider's, whose keys sign
   * tokens for every application it serves. Unchecked when absent.
   */
  readonly issuer?: string | ReadonlyArray<string> | undefined
  /** Accepted `aud` value(s). Required with `jwksUrl` (unless `requireAudience` is `false`); unchecked when absent. */
  readonly audience?: string | ReadonlyArray<string> | undefined
  /** Whether `issuer` must be given (default: `true` with `jwksUrl`, `false` with a secret alone). */
  readonly requireIssuer?: boolean | undefined
  /** Whether `audience` must be given (default: `true` with `jwksUrl`, `false` with a secret alone). */
  readonly requireAudience?: boolean | undefined
  /** The claim holding the user id (default `sub`); must be a non-empty string. */
  readonly userClaim?: string | undefined
  /**
   * How a token's user id is made (default `namespaced`):
   *
   * - `namespaced`: `jwt:<iss, percent-encoded>:<claim>` (`jwt::<claim>`
   *   without `iss`), so a token's subject `alice` is never the API key user
   *   `alice`, nor the `alice` of another accepted issuer;
   * - `claim`: the claim as it is, shared with every other provider's ids.
   *   Only when the issuer's ids are meant to be those users (or nothing
   *   else authenticates anyone), e.g. to keep the ids of a deployment made
   *   before ids were namespaced.
   */
  readonly userIds?: "namespaced" | "claim" | undefined
  /** Tolerated clock difference for `exp`, `nbf` and `iat`, in seconds (default 30). */
  readonly clockToleranceSeconds?: number | undefined
  /**
   * Least time between two JWKS fetches caused by unknown `kid`s, in
   * milliseconds (default 30 000), so forged `kid`s cannot make the server
   * hammer the issuer.
   */
  readonly jwksCooldownMillis?: number | undefined
  /** How long fetched keys are trusted before being fetched again, in milliseconds (default 10 minutes). */
  readonly jwksMaxAgeMillis?: number | undefined
  /** Timeout of a JWKS fetch, in milliseconds (default 5000). */
  readonly jwksTimeoutMillis?: number | undefined
}

const HMAC_ALGORITHMS = ["HS256"]
const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
]

/** Whether a credential has the shape of a JWS compact token (three base64url parts). */
export const looksLikeJwt = (credential: string): boolean =>
  /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(credential)

/** A user id PostgreSQL can store as it is: no NUL, no unpaired surrogate. */
const isStorable = (text: string): boolean => !text.includes("\u0000") && !/\p{Cs}/u.test(text)

/**
 * The namespaced user id of a token's subject: `jwt:<iss, percent-encoded>:<subject>`,
 * `jwt::<subject>` without `iss`. The issuer is encoded, so the first colon
 * after it ends it and no two (issuer, subject) pairs share an id.
 */
export const userIdOf = (issuer: string | undefined, subject: string): string =>
  `jwt:${encodeURIComponent(issuer ?? "")}:${subject}`

/** The configuration is unusable; thrown by `make` at start, never per request. */
export class JwtConfigurationError extends Data.TaggedError("JwtConfigurationError")<{
  readonly message: string
}> {}

const unauthenticated = (message: string) => new ChatError.Unauthenticated({ message })

const describe = (error: unknown): ChatError.Unauthenticated | ChatError.StoreUnavailable => {
  if (error instanceof jose.errors.JWTExpired) return unauthenticated("Invalid token: expired")
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    return unauthenticated(`Invalid token: the "${error.claim}" claim is not accepted`)
  }
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) {
    return unauthenticated("Invalid token: bad signature")
  }
  if (
    error instanceof jose.errors.JWKSNoMatchingKey ||
    error instanceof jose.errors.JWKSMultipleMatchingKeys
  ) {
    return unauthenticated("Invalid token: no key of the issuer matches it")
  }
  if (error instanceof jose.errors.JOSEAlgNotAllowed) {
    return unauthenticated("Invalid token: its algorithm is not accepted")
  }
  if (error instanceof jose.errors.JWKSTimeout || error instanceof jose.errors.JWKSInvalid) {
    return new ChatError.StoreUnavailable({ message: "The token issuer's keys could not be fetched" })
  }
  if (error instanceof jose.errors.JOSEError) return unauthenticated("Invalid token")
  // fetch failures (connection refused, DNS) surface as plain errors.
  return new ChatError.StoreUnavailable({ message: "The token issuer's keys could not be fetched" })
}

/**
 * Builds the JWT identity provider. Fails at once — not on the first request —
 * when neither key source is given or the secret is too short.
 */
export const make = (options: Options): Effect.Effect<Identity.Service, JwtConfigurationError> =>
  Effect.suspend(() => {
    const secretText =
      options.secret === undefined
        ? undefined
        : Redacted.isRedacted(options.secret)
          ? Redacted.value(options.secret)
          : options.secret
    if (secretText === undefined && options.jwksUrl === undefined) {
      return Effect.fail(new JwtConfigurationError({ message: "JWT identity needs a secret or a JWKS URL" }))
    }
    const secret = secretText === undefined ? undefined : new TextEncoder().encode(secretText)
    if (secret !== undefined && secret.byteLength < 32) {
      return Effect.fail(new JwtConfigurationError({ message: "The HS256 secret must be at least 32 bytes" }))
    }
    let jwks: ReturnType<typeof jose.createRemoteJWKSet> | undefined
    if (options.jwksUrl !== undefined) {
      let url: URL
      try {
        url = new URL(options.jwksUrl)
      } catch {
        return Effect.fail(
          new JwtConfigurationError({ message: `The JWKS URL is not a URL: ${String(options.jwksUrl)}` })
        )
      }
      jwks = jose.createRemoteJWKSet(url, {
        cooldownDuration: options.jwksCooldownMillis ?? 30_000,
        cacheMaxAge: options.jwksMaxAgeMillis ?? 600_000,
        timeoutDuration: options.jwksTimeoutMillis ?? 5_000
      })
    }
    const requireIssuer = options.requireIssuer ?? jwks !== undefined
    const requireAudience = options.requireAudience ?? jwks !== undefined
    const missingClaims = [
      ...(requireIssuer && options.issuer === undefined ? ["issuer"] : []),
      ...(requireAudience && options.audience === undefined ? ["audience"] : [])
    ]
    if (missingClaims.length > 0) {
      return Effect.fail(
        new JwtConfigurationError({
          message: `JWTs verified with a JWKS need the accepted ${missingClaims.join(" and ")}: tokens the provider signs for other applications would pass otherwise`
        })
      )
    }
    const namespaced = (options.userIds ?? "namespaced") === "namespaced"
    const algorithms = [
      ...(secret === undefined ? [] : HMAC_ALGORITHMS),
      ...(jwks === undefined ? [] : ASYMMETRIC_ALGORITHMS)
    ]
    const userClaim = options.userClaim ?? "sub"
    const verifyOptions: jose.JWTVerifyOptions = {
      algorithms,
      clockTolerance: options.clockToleranceSeconds ?? 30,
      requiredClaims: ["exp"],
      ...(options.issuer === undefined
        ? {}
        : { issuer: typeof options.issuer === "string" ? options.issuer : [...options.issuer] }),
      ...(options.audience === undefined
        ? {}
        : { audience: typeof options.audience === "string" ? options.audience : [...options.audience] })
    }
    const key: jose.JWTVerifyGetKey = (header, token) => {
      if (header.alg !== undefined && HMAC_ALGORITHMS.includes(header.alg)) {
        if (secret === undefined) throw new jose.errors.JOSEAlgNotAllowed("HMAC tokens are not accepted")
        return secret
      }
      if (jwks === undefined) throw new jose.errors.JOSEAlgNotAllowed("Only HMAC tokens are accepted")
      return jwks(header, token)
    }
    const missing = unauthenticated(Identity.MISSING_CREDENTIALS)
    const service: Identity.Service = {
      name: [secret === undefined ? undefined : "jwt (HS256)", jwks === undefined ? undefined : "jwt (JWKS)"]
        .filter((part) => part !== undefined)
        .join(" + "),
      accepts: looksLikeJwt,
      authenticate: (headers) => {
        const credential = Identity.credentialFrom(headers)
        if (credential === undefined) return Effect.fail(missing)
        if (!looksLikeJwt(credential)) return Effect.fail(unauthenticated("Invalid token"))
        return Effect.tryPromise({
          try: () => jose.jwtVerify(credential, key, verifyOptions),
          catch: describe
        }).pipe(
          Effect.flatMap(({ payload }) => {
            const claim = payload[userClaim]
            if (typeof claim !== "string" || claim === "" || !isStorable(claim))
              return Effect.fail(unauthenticated(`Invalid token: no "${userClaim}" claim with a user id`))
            return Effect.succeed({ userId: namespaced ? userIdOf(payload.iss, claim) : claim })
          })
        )
      }
    }
    return Effect.succeed(service)
  })

/** JWTs as the only identity provider. */
export const layer = (options: Options): Layer.Layer<Identity.Identity, JwtConfigurationError> =>
  Layer.effect(Identity.Identity, make(options))
