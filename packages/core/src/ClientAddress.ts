/**
 * The network address of the client behind a web `Request`.
 *
 * A web `Request` carries no peer address, and a header would be whatever the
 * client chose to send. Adapters that know the socket (the Node binding, a
 * Lambda event's source IP) record it here; rate limits for callers without an
 * identity count by it.
 *
 * @since 0.1.0
 */
import { Option } from "effect"
import type { HttpServerRequest } from "effect/http"

const addresses = new WeakMap<Request, string>()

/** Records the client address of a request; adapters call it as they build the request. */
export const set = (request: Request, address: string | undefined): void => {
  if (address !== undefined && address !== "") addresses.set(request, address)
}

/**
 * The client address of a request: the one an adapter recorded for its web
 * `Request`, else the socket address a native binding (`@convoke/core/node`)
 * gives the request.
 */
export const get = (request: HttpServerRequest.HttpServerRequest): string | undefined =>
  addresses.get(request.source as Request) ?? Option.getOrUndefined(request.remoteAddress)
