/**
 * The route table of the API and how a request finds its route.
 *
 * Every route of Convoke — chat, the conversation API, `/health`, the
 * routes extensions add (`/metrics`) — is one `Route` in one table, owned by
 * the core. Bindings never list paths: an adapter mounted beside an app's own
 * routes asks `claims(path)` and hands everything else back to its framework,
 * so a route added here reaches every binding at once.
 *
 * Every route acts for a user unless it says it is `public`: the router runs
 * the application's `Guard` before it — authentication, then the rate
 * limits (`RouteGuard`) — and hands the route the caller as `Caller`. A route
 * added later, by the core or by an extension, is authenticated and counted
 * without doing anything; only `/health`, `/metrics` and the OpenAPI document
 * (`/api/v0.3/openapi.json`) opt out, by name.
 *
 * A path the table knows, asked with a method it does not serve, is a `405`
 * whose `Allow` lists the methods it does serve; `HEAD` is served by `GET`.
 * An unknown path is a `404`. They fail with `MethodNotAllowed` and
 * `RouteNotFound`, which `HttpError` turns into the common error body.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FindMyWay from "effect/http/FindMyWay"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { MethodNotAllowed, type RateLimited, RouteNotFound } from "./ChatError.ts"
import type { Admission, AdmitOptions } from "./ChatRateLimit.ts"
import type { Principal } from "./Identity.ts"

/** The HTTP methods a route can serve. */
export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE"

/**
 * Who a route acts for, and so what the router does before it:
 * - `user` (the default): authenticate the caller and count the request
 *   against the rate limits; the handler reads the principal from `Caller`;
 * - `turn`: the same, and the request holds an in-flight turn slot until its
 *   response ends (resume); a route that starts a turn only once its body
 *   is read (chat) is a `user` route that takes the slot itself (`TurnSlot`);
 * - `socket`: a `user` route that may also be opened with a single-use
 *   ticket (`?ticket=`) instead of credentials in headers — the WebSocket
 *   route, which browsers cannot give headers;
 * - `public`: nothing — for `/health`, `/metrics` and the OpenAPI document alone.
 */
export type Access = "user" | "turn" | "socket" | "public"

/** The authenticated caller of a route that acts for a user. */
export class Caller extends Context.Service<Caller, Principal>()("@convoke/core/ApiRouter/Caller") {}

/**
 * Takes the caller's in-flight turn slot, held until the request's scope
 * closes, or fails with `RateLimited` (429). For a route that starts a turn
 * only once it has read its body, so an upload that stalls holds no slot.
 */
export class TurnSlot extends Context.Service<TurnSlot, Effect.Effect<void, unknown, Scope.Scope>>()(
  "@convoke/core/ApiRouter/TurnSlot"
) {}

/**
 * Counts one more request of the caller against the rate limits, as the
 * guard counted this one; with `inFlight` it also takes a turn slot, held
 * until the admission is released. For a route that carries many requests
 * on one connection (the WebSocket route counts each frame that asks for
 * something).
 */
export class Budget extends Context.Service<
  Budget,
  (options: AdmitOptions) => Effect.Effect<Admission, RateLimited>
>()("@convoke/core/ApiRouter/Budget") {}

/** What a route's handler may use besides its own services. */
export type HandlerContext =
  | HttpServerRequest.HttpServerRequest
  | Params
  | Scope.Scope
  | Caller
  | TurnSlot
  | Budget

/** A route's handler: any failure it has is mapped to a response by `HttpError`. */
export type Handler<R = never> = Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  unknown,
  HandlerContext | R
>

/** One route of the API. */
export interface Route<R = never> {
  readonly method: Method
  /** A path such as `/api/v0.3/conversations/:id`; `:name` segments become `Params`. */
  readonly path: `/${string}`
  readonly handler: Handler<R>
  /** Who the route acts for; `user` when absent. */
  readonly access?: Access | undefined
}

/**
 * Builds a route; its handler may use the request, `Params`, the request's
 * scope and — unless the route is `public` — the `Caller`.
 */
export const route = <R = never>(
  method: Method,
  path: `/${string}`,
  handler: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, R>,
  access: Access = "user"
): Route<Exclude<R, HandlerContext>> => ({
  method,
  path,
  handler: handler as Handler<Exclude<R, HandlerContext>>,
  access
})

/** A caller the guard let through, and the headers (`RateLimit-*`) its response carries. */
export interface Admitted {
  readonly principal: Principal
  readonly headers: Readonly<Record<string, string>>
  /** Takes the caller's turn slot for the rest of the request (`TurnSlot`). */
  readonly turnSlot: Effect.Effect<void, unknown, Scope.Scope>
  /** Counts more requests of the caller (`Budget`). */
  readonly budget: Budget["Service"]
}

/**
 * What the router runs before every route that is not `public`: it
 * authenticates the caller and counts the request, or fails (401, 429…).
 * Resources it holds (an in-flight slot) belong to the request's scope.
 */
export type Guard<R> = (
  access: Exclude<Access, "public">
) => Effect.Effect<Admitted, unknown, HttpServerRequest.HttpServerRequest | Scope.Scope | R>

/** The path parameters of the matched route (`:id` → `params.id`). */
export class Params extends Context.Service<Params, Readonly<Record<string, string | undefined>>>()(
  "@convoke/core/ApiRouter/Params"
) {}

/** A route table ready to serve. */
export interface Router<R> {
  /** Whether a path (with or without its query) belongs to the API, whatever the method. */
  readonly claims: (path: string) => boolean
  /** Runs the route of the request in context, or fails with `RouteNotFound` (404) or `MethodNotAllowed` (405). */
  readonly handle: Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    unknown,
    HttpServerRequest.HttpServerRequest | Scope.Scope | R
  >
}

/** The routes of one path, by method. */
type Methods<R> = Map<string, Handler<R>>

// Every path is registered under this one key: the table is looked up by
// path, and the method is chosen among the path's routes afterwards, which
// is what tells a 405 from a 404.
const ANY = "GET"

/** Runs the guard before a route, hands the route its `Caller`, and adds the guard's headers to its answer. */
const guarded = <R>(route: Route<R>, guard: Guard<R> | undefined): Handler<R> => {
  const access = route.access ?? "user"
  if (access === "public") return route.handler
  if (guard === undefined) {
    throw new Error(
      `${route.method} ${route.path} acts for a user: build the router with a guard (ChatHttp.fromRoutes does)`
    )
  }
  return Effect.flatMap(guard(access), ({ principal, headers, turnSlot, budget }) =>
    route.handler.pipe(
      Effect.provideService(Caller, principal),
      Effect.provideService(TurnSlot, turnSlot),
      Effect.provideService(Budget, budget),
      Effect.map((response) => HttpServerResponse.setHeaders(response, headers))
    )
  )
}

/**
 * Builds the router of a route table; `guard` runs before every route that
 * is not `public` (a table with such a route and no guard is a defect, as
 * are two routes with the same method and path).
 */
export const make = <R>(routes: ReadonlyArray<Route<R>>, guard?: Guard<R>): Router<R> => {
  // A parameter as long as a request line may be: an over-long id is the route's
  // to answer (a 404 like any unknown id), not a path that no binding claims.
  const table = FindMyWay.make<Methods<R>>({ ignoreTrailingSlash: false, maxParamLength: 16_384 })
  const byPath = new Map<string, Methods<R>>()
  for (const route of routes) {
    const { method, path } = route
    const handler = guarded(route, guard)
    let methods = byPath.get(path)
    if (methods === undefined) {
      methods = new Map()
      byPath.set(path, methods)
      table.on(ANY, path, methods)
    }
    if (methods.has(method)) throw new Error(`Two routes for ${method} ${path}`)
    methods.set(method, handler)
  }

  const handle = Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request): Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HandlerContext | R> => {
      const found = table.find(ANY, request.url)
      if (found === undefined) return Effect.fail(new RouteNotFound())
      const methods = found.handler
      const handler =
        methods.get(request.method) ?? (request.method === "HEAD" ? methods.get("GET") : undefined)
      if (handler === undefined) return Effect.fail(new MethodNotAllowed({ allow: [...methods.keys()] }))
      // The request's fiber runs uninterruptibly; a client that leaves must be able to stop the route.
      return Effect.interruptible(Effect.provideService(handler, Params, found.params))
    }
  )

  return {
    claims: (path) => table.find(ANY, path) !== undefined,
    handle: handle as Router<R>["handle"]
  }
}

/** The path of a request target, without its query or fragment. */
export const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}
