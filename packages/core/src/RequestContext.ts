/**
 * What every route, middleware and hook of one request shares about it: its
 * id, the client's address and when it arrived. The application reads them
 * once, as it starts handling the request, and provides them as a service for
 * the rest of the request, so log lines, audit entries, rate limits and the
 * response's `x-request-id` header agree without anything being recomputed
 * or kept beside the request.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Headers from "effect/http/Headers"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Option from "effect/Option"
import { uuid } from "./IdGenerator.ts"

/** The request's shared facts. */
export interface Shape {
  /** The caller's `X-Request-Id` when it is a sane token, else a fresh UUID. */
  readonly requestId: string
  /** The client's network address when the binding knows it (the socket's peer, a Lambda event's source IP). */
  readonly clientAddress: string | undefined
  /** When the application started handling the request (epoch millis). */
  readonly receivedAtMillis: number
}

/** The context of the request being handled. */
export class RequestContext extends Context.Service<RequestContext, Shape>()(
  "@convoke/core/RequestContext"
) {}

/**
 * The client address a runtime knows when the request object carries none:
 * a web-standard `Request` has no peer address, so the web handler takes it
 * from its caller (`app.handler(request, { remoteAddress })`).
 */
export const PeerAddress = Context.Reference<string | undefined>("@convoke/core/RequestContext/PeerAddress", {
  defaultValue: () => undefined
})

const REQUEST_ID = /^[\w.:-]{1,128}$/

/** The caller's `X-Request-Id` when it is a sane token, else a fresh UUID. */
export const requestIdOf = (headers: Headers.Headers): string => {
  const given = headers["x-request-id"]
  return given !== undefined && REQUEST_ID.test(given) ? given : uuid()
}

/** Runs `effect` with the context of the request in hand. */
export const provide = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, RequestContext> | HttpServerRequest.HttpServerRequest> =>
  Effect.withFiber((fiber) => {
    const request = Context.getUnsafe(fiber.context, HttpServerRequest.HttpServerRequest)
    const address = Option.getOrUndefined(request.remoteAddress) ?? fiber.getRef(PeerAddress)
    const shared: Shape = {
      requestId: requestIdOf(request.headers),
      clientAddress: address === "" ? undefined : address,
      receivedAtMillis: fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()
    }
    return Effect.provideService(effect, RequestContext, shared)
  })
