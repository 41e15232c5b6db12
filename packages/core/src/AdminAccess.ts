/**
 * Who may read what only an operator should: the details of `GET /health`
 * (the model, the store, the identity provider, the outbox's counts, the
 * cleanup report) and `GET /metrics` (traffic volumes, client mix). On a
 * public chat port these tell an attacker how the server authenticates and
 * how busy it is.
 *
 * With an admin token, a request that sends `Authorization: Bearer <token>`
 * gets the details of `/health`, and `/metrics` answers only such requests
 * (others get `401`). Without one (the default), `/health` answers only its
 * status and `/metrics` stays open: serve it on a port of its own, which only
 * the scraper reaches (`ChatMetrics.layer({ path: false })`, and
 * `ChatMetrics.route` with `Health.detailsRoutes` on that port).
 *
 * The token is held as a SHA-256 digest; requests are compared by digest, so
 * the time a comparison takes says nothing about how much of a guess matched.
 *
 * @since 0.3.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as ApiRouter from "./ApiRouter.ts"
import { Unauthenticated } from "./ChatError.ts"

/** The admin access of an application. */
export interface Service {
  /** The SHA-256 digest (hex) of the admin token; `undefined` when none is set. */
  readonly tokenDigest: string | undefined
}

/** The admin access in context; no token unless a layer sets one. */
export const AdminAccess = Context.Reference<Service>("@convoke/core/AdminAccess", {
  defaultValue: () => ({ tokenDigest: undefined })
})

/** The shortest admin token accepted. */
export const MIN_TOKEN_LENGTH = 16

const sha256Hex = (text: string): Promise<string> =>
  crypto.subtle
    .digest("SHA-256", new TextEncoder().encode(text))
    .then((digest) =>
      Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("")
    )

/** Options of `layer`. */
export interface Options {
  /** The token an operator (or Prometheus) sends as `Authorization: Bearer <token>`; `undefined`: none. */
  readonly token: Redacted.Redacted<string> | string | undefined
}

/** Sets the admin token of the application. */
export const layer = (options: Options): Layer.Layer<never> =>
  options.token === undefined
    ? Layer.empty
    : Layer.effect(
        AdminAccess,
        Effect.promise(() =>
          sha256Hex(Redacted.isRedacted(options.token) ? Redacted.value(options.token) : options.token!)
        ).pipe(Effect.map((tokenDigest) => ({ tokenDigest })))
      )

/**
 * Where `layerConfig` reads the token: `CONVOKE_ADMIN_TOKEN` (at least 16
 * characters), absent by default.
 */
export const config: Config.Config<Redacted.Redacted<string> | undefined> = Config.schema(
  Schema.String.check(
    Schema.makeFilter((raw: string) =>
      /^\S+$/.test(raw) && raw.length >= MIN_TOKEN_LENGTH
        ? true
        : `must be at least ${MIN_TOKEN_LENGTH} characters, without spaces`
    )
  ),
  "CONVOKE_ADMIN_TOKEN"
).pipe(
  Config.map((raw) => Redacted.make(raw)),
  Config.withDefault(undefined)
)

/** The admin token read from configuration (`config`), as the reference server reads it. */
export const layerConfig = (
  options: Config.Config<Redacted.Redacted<string> | undefined> = config
): Layer.Layer<never, Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      return layer({ token: yield* options })
    })
  )

/** Whether the request sends the admin token; always `false` when none is set. */
export const isAdmin: Effect.Effect<boolean, never, HttpServerRequest.HttpServerRequest> = Effect.gen(
  function* () {
    const { tokenDigest } = yield* AdminAccess
    if (tokenDigest === undefined) return false
    const request = yield* HttpServerRequest.HttpServerRequest
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")
    if (match === null) return false
    return (yield* Effect.promise(() => sha256Hex(match[1]!))) === tokenDigest
  }
)

const unauthorized = new Unauthenticated({
  message: "This route needs the admin token: send Authorization: Bearer <token>"
})

/**
 * A route that, when an admin token is set, answers only requests that send
 * it (`401` otherwise); open when none is set.
 */
export const protect = <R>(route: ApiRouter.Route<R>): ApiRouter.Route<R> => ({
  ...route,
  handler: Effect.gen(function* () {
    const { tokenDigest } = yield* AdminAccess
    if (tokenDigest !== undefined && !(yield* isAdmin)) return yield* unauthorized
    return yield* route.handler
  })
})
