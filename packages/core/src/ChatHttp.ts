/**
 * The HTTP application: every route of the API in one table (`ApiRouter`) —
 * chat, the conversation API, `/health`, and the routes extensions add — with
 * the error mapping, the security headers and the extensions' middleware
 * around it. Bindings serve it in one of two ways:
 *
 * - natively on Node streams (`@convoke/core/node`: `node:http`, Express,
 *   Fastify, the Lambda runtime's response stream);
 * - as a web-standard `Request → Response` handler (`app.handler`), for
 *   runtimes that speak fetch.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HttpEffect from "effect/http/HttpEffect"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import type * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as ApiRouter from "./ApiRouter.ts"
import * as ChatExtension from "./ChatExtension.ts"
import * as ChatHooks from "./ChatHooks.ts"
import * as ChatRateLimit from "./ChatRateLimit.ts"
import * as ChatRoute from "./ChatRoute.ts"
import * as ChatService from "./ChatService.ts"
import * as ConversationHttp from "./ConversationHttp.ts"
import type * as ConversationOutbox from "./ConversationOutbox.ts"
import type { ConversationStore } from "./ConversationStore.ts"
import * as Health from "./Health.ts"
import * as HttpError from "./HttpError.ts"
import * as HttpSecurity from "./HttpSecurity.ts"
import { Identity } from "./Identity.ts"
import type { LanguageModel } from "./LanguageModel.ts"
import * as OpenApi from "./OpenApi.ts"
import * as RequestContext from "./RequestContext.ts"
import * as RouteGuard from "./RouteGuard.ts"
import * as SocketHttp from "./SocketHttp.ts"
import { SocketTickets } from "./SocketTickets.ts"
import * as TurnHttp from "./TurnHttp.ts"
import type * as TurnLog from "./TurnLog.ts"

/** The path of the chat endpoint. */
export const CHAT_PATH = ChatRoute.CHAT_PATH

/** A web-standard request handler; `remoteAddress` is the client's, when the runtime knows it. */
export type WebHandler = (
  request: Request,
  options?: { readonly remoteAddress?: string | undefined }
) => Promise<Response>

/** The services a user provides to build an application: the store, the model and the identity. */
export type Services = ConversationStore | LanguageModel | Identity

/** The services the HTTP application needs. */
export type Requirements =
  | ChatService.ChatService
  | Identity
  | LanguageModel
  | ConversationStore
  | ConversationOutbox.ConversationOutbox
  | TurnLog.TurnLog
  | SocketTickets

/** Every route of the API, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const extensions = ChatExtension.fromContext(yield* Effect.context<never>())
  return [
    ...(yield* ChatRoute.routes),
    ...(yield* ConversationHttp.routes),
    ...(yield* TurnHttp.routes),
    ...(yield* SocketHttp.routes),
    ...(yield* Health.routes),
    ...(yield* OpenApi.routes),
    ...extensions.flatMap((extension) => extension.routes ?? [])
  ]
})

/**
 * An application of more routes on the services of `app`, e.g. the admin
 * routes (`Health.detailsRoutes`, `ChatMetrics.route`) for a port only
 * operators reach.
 */
export const withServicesOf = <E>(
  app: HttpApp,
  routes: Effect.Effect<ReadonlyArray<ApiRouter.Route<RequestContext.RequestContext>>, E, Requirements>
): Effect.Effect<HttpApp, E> =>
  Effect.flatMap(routes, fromRoutes).pipe(Effect.provideContext(app.context as Context.Context<Requirements>))

/** An HTTP application ready to serve, one request at a time. */
export interface HttpApp {
  readonly effect: Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    never,
    Scope.Scope | HttpServerRequest.HttpServerRequest
  >
  /** The services `effect` runs with. */
  readonly context: Context.Context<never>
  /** Whether a path belongs to the application: adapters hand every other path back to their framework. */
  readonly claims: (path: string) => boolean
}

/**
 * An application of the given routes: the router with its guard (every route
 * that is not `public` is authenticated by the `Identity` in context and
 * counted against the `ChatRateLimit` in context — the defaults when none is
 * provided), the error mapping, the security headers (from `HttpSecurity` in
 * context) and the middleware of the extensions in context, every request
 * with its `RequestContext`.
 */
export const fromRoutes = (
  routes: ReadonlyArray<ApiRouter.Route<RequestContext.RequestContext>>
): Effect.Effect<HttpApp> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const identity = Context.getOption(context, Identity)
    // Only an application with routes that act for a user needs an identity
    // (a metrics-only application on its own port has none).
    const guard =
      identity._tag === "Some"
        ? RouteGuard.make({
            identity: identity.value,
            rateLimit: ChatRateLimit.forApplication(yield* ChatRateLimit.ChatRateLimit),
            hooks: yield* ChatHooks.ChatHooks,
            tickets: Option.getOrUndefined(Context.getOption(context, SocketTickets))
          })
        : undefined
    const router = ApiRouter.make(routes, guard)
    const security = HttpSecurity.middleware(yield* HttpSecurity.HttpSecurity)
    const extensions = ChatExtension.fromContext(context)
    const effect = RequestContext.provide(
      security(ChatExtension.applyMiddleware(HttpError.catchAll(router.handle), extensions))
    )
    return { effect, context, claims: router.claims }
  })

/** The whole API with the services in context, for a binding to serve (see `@convoke/core/node`). */
export const makeHttpApp: Effect.Effect<HttpApp, never, Requirements> = Effect.flatMap(routes, fromRoutes)

/** The web-standard handler of an application. */
export const toWebHandler = (app: HttpApp): WebHandler => {
  const handler = HttpEffect.toWebHandlerWith<never, Scope.Scope | HttpServerRequest.HttpServerRequest>(
    app.context
  )(app.effect)
  return (request, options) =>
    handler(
      request,
      options?.remoteAddress === undefined
        ? undefined
        : Context.make(RequestContext.PeerAddress, options.remoteAddress)
    )
}

/** A running Convoke application: how to serve it and how to stop it. */
export interface App {
  /** The web-standard handler. */
  readonly handler: WebHandler
  /** The application itself, which `NodeHandler.toNodeHandler(app)` serves natively. */
  readonly http: HttpApp
  /** Ends open streams with an error event and `[DONE]`; new requests get 503. */
  readonly shutdown: () => Promise<void>
  /**
   * Resolves once no streamed turn runs (a turn whose client left keeps going
   * for the disconnect grace window) and every ended turn's end is in the
   * turn log. AWS Lambda's handlers wait for it, since the runtime freezes the
   * process once an invocation returns.
   */
  readonly settled: () => Promise<void>
  /** Releases every resource of the layers (database connections, servers). */
  readonly dispose: () => Promise<void>
}

/**
 * Builds the application from a layer that provides the store, the model and
 * the identity (the chat service, its outbox and the hooks are added here).
 * Resolves once every layer is built, so a database that cannot start fails
 * here, not on the first request.
 */
export const makeApp = async <A, E>(
  layer: Layer.Layer<Services | A, E>,
  options: ChatService.Options = {}
): Promise<App> => {
  const scope = Scope.makeUnsafe()
  const full = Layer.provideMerge(
    ChatService.layerWith(options),
    Layer.provideMerge(ChatExtension.layerHooks, layer)
  )
  try {
    // The layers live in `scope` until `dispose`: their connections and
    // servers must outlive this function.
    const { http, chat } = await Effect.runPromise(
      Effect.gen(function* () {
        const context = yield* Layer.buildWithScope(full, scope)
        return yield* Effect.gen(function* () {
          return { http: yield* makeHttpApp, chat: yield* ChatService.ChatService }
        }).pipe(Effect.provideContext(context))
      })
    )
    let disposing: Promise<void> | undefined
    return {
      handler: toWebHandler(http),
      http,
      shutdown: () => Effect.runPromise(chat.shutdown),
      settled: () => Effect.runPromise(chat.idle),
      dispose: () => (disposing ??= Effect.runPromise(Scope.close(scope, Exit.void)))
    }
  } catch (error) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  }
}
