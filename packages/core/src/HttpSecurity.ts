/**
 * CORS and security headers around the web handler, so every adapter (Node,
 * Express, Fastify, Lambda) answers browsers the same way.
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
import { Context } from "effect"

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
export const ALLOWED_HEADERS = "authorization, content-type, x-api-key, x-request-id, accept, last-event-id"

/** Response headers a cross-origin script may read. */
export const EXPOSED_HEADERS =
  "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy"

const ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"

const isAllowed = (cors: Cors, origin: string): boolean =>
  cors.allowedOrigins === "*" || cors.allowedOrigins.includes(origin)

const securityHeaders = (headers: Headers) => {
  const set = (name: string, value: string) => {
    if (!headers.has(name)) headers.set(name, value)
  }
  set("x-content-type-options", "nosniff")
  set("referrer-policy", "no-referrer")
  set("x-frame-options", "DENY")
  if (!(headers.get("content-type") ?? "").startsWith("text/html")) {
    set("content-security-policy", "default-src 'none'; frame-ancestors 'none'")
  }
}

const corsHeaders = (headers: Headers, cors: Cors, origin: string | null) => {
  headers.append("vary", "Origin")
  if (origin === null || !isAllowed(cors, origin)) return
  headers.set("access-control-allow-origin", cors.allowedOrigins === "*" ? "*" : origin)
  headers.set("access-control-expose-headers", EXPOSED_HEADERS)
}

const json = (status: number, type: string, message: string) =>
  new Response(JSON.stringify({ error: { type, message } }), {
    status,
    headers: { "content-type": "application/json" }
  })

/** Wraps a web handler with CORS (when configured) and security headers. */
export const wrap = (
  handler: (request: Request) => Promise<Response>,
  settings: Settings
): ((request: Request) => Promise<Response>) => {
  const cors = settings.cors
  const apply = (headers: Headers, origin: string | null) => {
    if (settings.securityHeaders) securityHeaders(headers)
    if (cors !== undefined) corsHeaders(headers, cors, origin)
  }
  const finish = (response: Response, origin: string | null): Response => {
    if (!settings.securityHeaders && cors === undefined) return response
    // A response the app built has mutable headers: add to them in place
    // rather than copying the headers and wrapping the body in a new
    // Response on every request. One with immutable headers (from `fetch`,
    // `Response.redirect`) throws on the first change and is copied instead.
    try {
      apply(response.headers, origin)
      return response
    } catch {
      const headers = new Headers(response.headers)
      apply(headers, origin)
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers
      })
    }
  }
  return async (request) => {
    const origin = request.headers.get("origin")
    if (cors !== undefined && request.method === "OPTIONS" && origin !== null) {
      if (!isAllowed(cors, origin)) {
        return finish(json(403, "forbidden", `Origin ${origin} is not allowed`), origin)
      }
      const preflight = new Response(null, {
        status: 204,
        headers: {
          "access-control-allow-methods": ALLOWED_METHODS,
          "access-control-allow-headers": ALLOWED_HEADERS,
          "access-control-max-age": String(cors.maxAgeSeconds ?? 600)
        }
      })
      return finish(preflight, origin)
    }
    return finish(await handler(request), origin)
  }
}
