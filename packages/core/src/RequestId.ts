/**
 * A request's id: the caller's `X-Request-Id` when it is a sane token, else a
 * fresh UUID. Asked for by the chat route, the conversation API and the
 * access log, it is the same every time for one request, so log lines, audit
 * entries and the response's `x-request-id` header agree without the request
 * being rewritten to carry it.
 *
 * @since 0.2.0
 */
import type { Headers, HttpServerRequest } from "effect/http"

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** The caller's `X-Request-Id` when it is a sane token, else a fresh UUID. */
export const of = (headers: Headers.Headers): string => {
  const given = headers["x-request-id"]
  return given !== undefined && REQUEST_ID.test(given) ? given : crypto.randomUUID()
}

/** Each request's id, by the request it was read from (a copy made by `modify` shares it). */
const ids = new WeakMap<object, string>()

/** The id of a request, as `of` gives it, the same every time it is asked for. */
export const get = (request: HttpServerRequest.HttpServerRequest): string => {
  const key = typeof request.source === "object" && request.source !== null ? request.source : request
  let id = ids.get(key)
  if (id === undefined) {
    id = of(request.headers)
    ids.set(key, id)
  }
  return id
}
