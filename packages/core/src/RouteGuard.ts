/**
 * What runs before every route that acts for a user (`ApiRouter.Guard`): the
 * one place where a request is authenticated and counted against the rate
 * limits, whatever its route.
 *
 * 1. An address or key prefix that has spent its budget of failed
 *    authentications is refused (`429`) before its credentials are checked,
 *    so guessing keys is throttled and a right guess after the budget is
 *    spent learns nothing.
 * 2. The credentials are checked (`Identity`); a failure (`401`) is counted
 *    against the address and the key prefix, and reported to the hooks.
 *    A route opened with a single-use ticket (`socket` access, the
 *    WebSocket route) is authenticated by redeeming `?ticket=` instead, when
 *    the request carries no credentials; a bad ticket counts as a failure.
 * 3. The request is counted against the caller's budget (`ChatRateLimit`);
 *    a turn also takes an in-flight slot — with its admission (resume), or
 *    through `TurnSlot` once its body is read (chat) — released when the
 *    request's scope closes: for a stream, when it ends, whatever ends it.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as ApiRouter from "./ApiRouter.ts"
import type { RateLimited } from "./ChatError.ts"
import type * as ChatHooks from "./ChatHooks.ts"
import type * as ChatRateLimit from "./ChatRateLimit.ts"
import { credentialFrom, type Service as IdentityService } from "./Identity.ts"
import { RequestContext } from "./RequestContext.ts"
import type * as SocketTickets from "./SocketTickets.ts"

/** The `ticket` query parameter of a URL, when there is one. */
const ticketOf = (url: string): string | undefined => {
  const query = url.indexOf("?")
  if (query === -1) return undefined
  const ticket = new URLSearchParams(url.slice(query + 1)).get("ticket")
  return ticket === null || ticket === "" ? undefined : ticket
}

/** The guard of an application, from its identity, rate limits and hooks. */
export const make = (options: {
  readonly identity: IdentityService
  readonly rateLimit: ChatRateLimit.Service
  readonly hooks: ChatHooks.Service
  /** Where `socket` routes redeem tickets; without it they take credentials in headers only. */
  readonly tickets?: SocketTickets.Service | undefined
}): ApiRouter.Guard<RequestContext> => {
  const { identity, rateLimit, hooks, tickets } = options
  const refused = (path: string) => (error: RateLimited) =>
    hooks.requestRefused({ path, reason: "rate_limited", scope: error.scope })
  return (access) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const { clientAddress: address } = yield* RequestContext
      const subject = { address, credential: credentialFrom(request.headers) }
      const path = ApiRouter.pathOf(request.url)
      yield* rateLimit.beforeAuthentication(subject).pipe(Effect.tapError(refused(path)))
      const ticket =
        access === "socket" && subject.credential === undefined ? ticketOf(request.url) : undefined
      const authenticate =
        ticket !== undefined && tickets !== undefined
          ? tickets.redeem(ticket)
          : identity.authenticate(request.headers)
      const principal = yield* authenticate.pipe(
        Effect.tapError((error) =>
          error._tag === "Unauthenticated"
            ? Effect.andThen(
                hooks.requestRefused({ path, reason: "unauthenticated" }),
                rateLimit.rejected(subject).pipe(Effect.tapError(refused(path)))
              )
            : Effect.void
        )
      )
      const admission = yield* rateLimit
        .admit({ principal, address }, { inFlight: access === "turn" })
        .pipe(Effect.tapError(refused(path)))
      yield* Effect.addFinalizer(() => admission.release)
      const turnSlot = Effect.flatMap(
        rateLimit.acquire({ principal, address }).pipe(Effect.tapError(refused(path))),
        (slot) => Effect.addFinalizer(() => slot.release)
      )
      const budget: ApiRouter.Budget["Service"] = (admitOptions) =>
        rateLimit.admit({ principal, address }, admitOptions).pipe(Effect.tapError(refused(path)))
      return { principal, headers: admission.headers, turnSlot, budget }
    })
}
