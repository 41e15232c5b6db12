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

const addresses = new WeakMap<Request, string>()

/** Records the client address of a request; adapters call it as they build the request. */
export const set = (request: Request, address: string | undefined): void => {
  if (address !== undefined && address !== "") addresses.set(request, address)
}

/** The client address recorded for a request, if an adapter recorded one. */
export const get = (request: unknown): string | undefined =>
  typeof request === "object" && request !== null ? addresses.get(request as Request) : undefined
