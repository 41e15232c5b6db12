/**
 * Extensions of the HTTP application: extra routes served beside the chat
 * endpoint (`GET /metrics`), and middleware that sees every request and its
 * final response (request counters, access logs, traces).
 *
 * Extensions are collected in the `HttpExtensions` reference, empty by
 * default, so an application that installs none pays nothing for the
 * mechanism. `layer` appends one extension to those already provided beneath
 * it, so several compose:
 *
 * ```ts
 * Layer.mergeAll(store, model, identity).pipe(
 *   Layer.provideMerge(ChatMetrics.layer()),
 *   Layer.provideMerge(HttpExtension.layer({ routes: [myRoute] }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"

/** The whole application as an effect: every error is already a response. */
export type App = Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  HttpServerRequest.HttpServerRequest | Scope.Scope
>

/** One extension. */
export interface Extension {
  /** Routes added beside the chat routes; their failures get the common error body. */
  readonly routes?: ReadonlyArray<HttpRouter.Route<any, never>> | undefined
  /**
   * Wraps the whole application, outside the error mapping, so it sees the
   * status every client sees. The first extension is the innermost.
   */
  readonly middleware?: ((app: App) => App) | undefined
}

/** The extensions in effect, in the order they were added; none by default. */
export const HttpExtensions = Context.Reference<ReadonlyArray<Extension>>("@convoke/core/HttpExtensions", {
  defaultValue: () => []
})

/** Adds an extension to those provided beneath this layer. */
export const layer = (extension: Extension): Layer.Layer<never> =>
  Layer.effect(
    HttpExtensions,
    Effect.gen(function* () {
      const existing = yield* HttpExtensions
      return [...existing, extension]
    })
  ) as Layer.Layer<never>

/** Applies every middleware to an application, first extension innermost. */
export const applyMiddleware = (app: App, extensions: ReadonlyArray<Extension>): App =>
  extensions.reduce((wrapped, extension) => extension.middleware?.(wrapped) ?? wrapped, app)
