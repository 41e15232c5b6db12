/**
 * CORS and security headers on every response of the application, so every
 * adapter (Node, Express, Fastify, Lambda) answers browsers the same way.
 *
 * - Security headers on every response: `X-Content-Type-Options: nosniff`,
 *   `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`, and on non-HTML
 *   responses `Content-Security-Policy: default-src 'none'; frame-ancestors
 *   'none'`. None of them touches the body, so SSE streams pass unchanged.
 *   A header the handler set itself is kept.
 * - CORS, off by default: with `allowedOrigins`, a preflight `OPTIONS` from an
 *   allowed origin gets `204` with the allowed methods and headers; actual
 *   responses get `Access-Control-Allow-Origin` and expose the headers clients
 *   need (`X-Request-Id`, `Retry-After`, `RateLimit-*`). A preflight from any
 *   other origin gets `403` with the common error body.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Forbidden } from "./ChatError.ts"
import * as HttpError from "./HttpError.ts"

/** CORS settings. */
export interface Cors {
  /** Origins allowed to call from a browser (`https://app.example.com`), or `"*"` for any. */
  readonly allowedOrigins: ReadonlyArray<string> | "*"
  /** How long browsers may cache a preflight answer, in seconds (default 600). */
  readonly maxAgeSeconds?: number | undefined
}

/** The settings. */
export interface Settings {
  /** CORS; `undefined` (the default) sends no CORS headers, so browsers allow same-origin calls only. */
  readonly cors?: Cors | undefined
  /** Whether to add the security headers (default `true`). */
  readonly securityHeaders: boolean
}

/** The defaults: security headers on, CORS off. */
export const defaults: Settings = { securityHeaders: true }

/** The settings in effect; provide a value to change them (`Layer.succeed(HttpSecurity, {...})`). */
export const HttpSecurity = Context.Reference<Settings>("@convoke/core/HttpSecurity", {
  defaultValue: () => defaults
})

/** Request headers a browser may send cross-origin. */
export const ALLOWED_HEADERS =
  "authorization, content-type, x-api-key, x-request-id, accept, last-event-id, x-convoke-client"

/** Response headers a cross-origin script may read. */
export const EXPOSED_HEADERS =
  "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy"

const ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"

const isAllowed = (cors: Cors, origin: string): boolean =>
  cors.allowedOrigins === "*" || cors.allowedOrigins.includes(origin)

/**
 * Whether a page of `origin` may open a WebSocket here: browsers send
 * `Origin` on an upgrade but do not apply CORS to it, so the server checks
 * it — against the CORS allow-list, or, without CORS, against its own
 * origin (the request's `Host`). A request without `Origin` is not a
 * browser's and is not checked.
 */
export const allowsSocketOrigin = (
  settings: Settings,
  origin: string | undefined,
  host: string | undefined
): boolean => {
  if (origin === undefined) return true
  if (settings.cors !== undefined) return isAllowed(settings.cors, origin)
  try {
    return host !== undefined && new URL(origin).host === host.toLowerCase()
  } catch {
    return false
  }
}

const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ["x-content-type-options", "nosniff"],
  ["referrer-policy", "no-referrer"],
  ["x-frame-options", "DENY"]
]
const CSP = "default-src 'none'; frame-ancestors 'none'"

/** The headers to add to a response; a header the application set itself is kept. */
const headersFor = (
  response: HttpServerResponse.HttpServerResponse,
  settings: Settings,
  origin: string | undefined
): Record<string, string> => {
  const current = response.headers
  const added: Record<string, string> = {}
  if (settings.securityHeaders) {
    for (const [name, value] of SECURITY_HEADERS) if (current[name] === undefined) added[name] = value
    const contentType = current["content-type"] ?? ""
    if (!contentType.startsWith("text/html") && current["content-security-policy"] === undefined) {
      added["content-security-policy"] = CSP
    }
  }
  const cors = settings.cors
  if (cors !== undefined) {
    added.vary = current.vary === undefined ? "Origin" : `${current.vary}, Origin`
    if (origin !== undefined && isAllowed(cors, origin)) {
      added["access-control-allow-origin"] = cors.allowedOrigins === "*" ? "*" : origin
      added["access-control-expose-headers"] = EXPOSED_HEADERS
    }
  }
  return added
}

const preflight = (cors: Cors, origin: string): HttpServerResponse.HttpServerResponse =>
  isAllowed(cors, origin)
    ? HttpServerResponse.empty({
        status: 204,
        headers: {
          "access-control-allow-methods": ALLOWED_METHODS,
          "access-control-allow-headers": ALLOWED_HEADERS,
          "access-control-max-age": String(cors.maxAgeSeconds ?? 600)
        }
      })
    : HttpError.toResponse(HttpError.fromError(new Forbidden({ message: `Origin ${origin} is not allowed` })))

/**
 * Adds CORS (when configured) and the security headers to every response of
 * an HTTP application, and answers CORS preflights. Applied by the core to
 * its application, so every binding — web or Node — answers the same way.
 */
export const middleware =
  (settings: Settings) =>
  <E, R>(
    app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  ): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R | HttpServerRequest.HttpServerRequest> => {
    const cors = settings.cors
    if (!settings.securityHeaders && cors === undefined) return app
    return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const origin = request.headers.origin
      const finish = (response: HttpServerResponse.HttpServerResponse) =>
        HttpServerResponse.setHeaders(response, headersFor(response, settings, origin))
      if (cors !== undefined && request.method === "OPTIONS" && origin !== undefined) {
        return Effect.succeed(finish(preflight(cors, origin)))
      }
      return Effect.map(app, finish)
    })
  }

// `https://app.example.com` is an origin; a path, a trailing slash or a bare host is not.
const isOrigin = (text: string): boolean => {
  try {
    return new URL(text).origin === text
  } catch {
    return false
  }
}

const listed = (raw: string): ReadonlyArray<string> =>
  raw
    .split(",")
    .map((origin) => origin.trim())
    .filter((origin) => origin !== "")

/**
 * Where `layerConfig` reads the settings: CORS from `CONVOKE_CORS_ORIGINS`
 * (comma-separated origins, or `*` for any; absent or blank keeps CORS off),
 * security headers always on.
 */
export const config: { readonly [K in keyof Settings]-?: Config.Config<Settings[K]> } = {
  cors: Config.schema(
    Schema.String.check(
      Schema.makeFilter((raw: string) => {
        if (raw.trim() === "*") return true
        const invalid = listed(raw).filter((origin) => !isOrigin(origin))
        return invalid.map(
          (origin) => `must list origins like https://app.example.com (or be *): "${origin}" is not an origin`
        )
      })
    ),
    "CONVOKE_CORS_ORIGINS"
  ).pipe(
    Config.map((raw): Cors | undefined => {
      if (raw.trim() === "") return undefined
      return { allowedOrigins: raw.trim() === "*" ? "*" : listed(raw) }
    }),
    Config.withDefault(undefined)
  ),
  securityHeaders: Config.succeed(true)
}

/**
 * The settings read from configuration — by default `config`
 * (`CONVOKE_CORS_ORIGINS`) from the current `ConfigProvider`, as the
 * reference server reads them.
 */
export const layerConfig = (
  options: Config.Wrap<Settings> = config
): Layer.Layer<never, Config.ConfigError> => Layer.effect(HttpSecurity, Config.unwrap(options))
