/**
 * Convoke as Express middleware (Express 5 and 4), mountable under any prefix
 * beside the app's own routes:
 *
 * ```ts
 * app.use("/chat", ExpressMiddleware.make(convoke))
 * ```
 *
 * It serves the whole API — every path the core's route table claims — and
 * hands every other path on to the app's next handler. It is a thin shell
 * over the core's Node binding, which already does what Express needs: a
 * body that `express.json()` parsed is re-serialised (an unread body is read
 * raw, so the core's limits and content types apply), `response.flush()` is
 * called after each event so `compression` never holds SSE back,
 * back-pressure waits for `drain`, and a closed socket interrupts the model.
 *
 * @since 0.1.0
 */
import type { Server } from "node:http"
import type { ChatHttp } from "@convoke/core"
import { NodeHandler, NodeSocket } from "@convoke/core/node"
import type { ErrorRequestHandler, RequestHandler } from "express"

/**
 * The middleware for `app.use(prefix, …)` or `router.use(…)`: the API under
 * the mount path; every other path goes on to the app's next handler. The
 * second element turns a body-parser failure on the API's paths (malformed
 * JSON, over `express.json()`'s limit) into the common error body instead of
 * Express's HTML page. The app stays yours: call its `shutdown` and
 * `dispose` when the server stops.
 */
export const make = (app: ChatHttp.App): [RequestHandler, ErrorRequestHandler] => {
  const handle = NodeHandler.toNodeHandler(app)
  return [
    (request, response, next) => {
      if (!app.http.claims(request.path)) return next()
      // Express 5 would forward a rejection to `next`; Express 4 needs it said.
      handle(request, response).catch(next)
    },
    (error, request, response, next) => {
      const status = error?.status ?? error?.statusCode
      if (!app.http.claims(request.path) || response.headersSent || !(status >= 400 && status < 500))
        return next(error)
      NodeHandler.writeError(
        response,
        status,
        error.expose === false ? "Invalid request body" : error.message
      )
    }
  ]
}

/**
 * Serves the WebSocket route (`GET /api/v0.3/ws`, see the protocol in
 * `docs/websocket.md`) on the app's HTTP server, which Express does not
 * upgrade itself. `prefix` is the mount path given to `app.use`. Returns the
 * function that detaches it.
 *
 * ```ts
 * const server = app.listen(3000)
 * ExpressMiddleware.attachWebSocket(server, convoke, { prefix: "/chat" })
 * ```
 */
export const attachWebSocket = (
  server: Pick<Server, "on" | "off" | "listenerCount">,
  app: ChatHttp.App,
  options: NodeSocket.AttachOptions = {}
): (() => void) => NodeSocket.attach(server, app, options)
