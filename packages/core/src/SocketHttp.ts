/**
 * The WebSocket routes (`docs/websocket.md`):
 *
 * - `GET  /api/v0.3/ws` — opens a socket (`ChatSocket`) for the caller,
 *   authenticated by headers or by a ticket (`?ticket=`) before it opens;
 * - `POST /api/v0.3/ws/ticket` — trades the caller's credentials for a
 *   single-use ticket (`SocketTickets`), for clients that cannot put them in
 *   the headers of a WebSocket (browsers, Unity WebGL).
 *
 * The route is the router's like any other, so the guard (authentication,
 * rate limits), the error mapping and the security headers apply to the
 * upgrade request; a refused upgrade gets an ordinary HTTP answer and no
 * socket. A binding that can upgrade provides `SocketUpgrade` with the
 * request; without it (AWS Lambda, the web handler) the route answers 426.
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Schema from "effect/Schema"
import * as ApiRouter from "./ApiRouter.ts"
import { ChatConfig } from "./ChatConfig.ts"
import { Forbidden, InvalidRequest, ServerShutdown, UpgradeRequired } from "./ChatError.ts"
import { ChatService } from "./ChatService.ts"
import * as ChatSocket from "./ChatSocket.ts"
import * as HttpSecurity from "./HttpSecurity.ts"
import { RequestContext } from "./RequestContext.ts"
import { SocketTickets } from "./SocketTickets.ts"

/** The path of the WebSocket endpoint. */
export const SOCKET_PATH = "/api/v0.3/ws"

/** The path that issues tickets. */
export const TICKET_PATH = "/api/v0.3/ws/ticket"

/** The answer of `POST /api/v0.3/ws/ticket`. */
export const SocketTicket = Schema.Struct({
  ticket: Schema.String.annotate({ description: "Single use: open `GET /api/v0.3/ws?ticket=` with it." }),
  expires_in: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)).annotate({
    description: "Seconds the ticket stays valid."
  })
}).annotate({ description: "A single-use ticket that opens a WebSocket for the user it was issued to." })

/** What the socket's binding needs to know from the application. */
export interface AcceptOptions {
  /** Frames larger than this close the socket (1009). */
  readonly maxFrameBytes: number
  /** How often to ping the client. */
  readonly pingInterval: Duration.Duration
}

/**
 * Completes the upgrade of the request being served: provided, with the
 * request, by a binding that can (`NodeSocket`).
 */
export class SocketUpgrade extends Context.Service<
  SocketUpgrade,
  { readonly accept: (options: AcceptOptions) => Effect.Effect<ChatSocket.Connection> }
>()("@convoke/core/SocketHttp/SocketUpgrade") {}

const isUpgrade = (request: HttpServerRequest.HttpServerRequest) =>
  request.headers.upgrade?.toLowerCase() === "websocket"

// RFC 6455 §4.2.1: a base64 nonce of 16 bytes, and version 13.
const isHandshake = (request: HttpServerRequest.HttpServerRequest) =>
  /^[+/0-9A-Za-z]{22}==$/.test(request.headers["sec-websocket-key"] ?? "") &&
  request.headers["sec-websocket-version"] === "13"

/** The routes, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const chat = yield* ChatService
  const config = yield* ChatConfig
  const security = yield* HttpSecurity.HttpSecurity
  const tickets = yield* SocketTickets
  const sessions = yield* ChatSocket.make
  const settings = yield* ChatSocket.ChatSocketSettings
  const acceptOptions: AcceptOptions = {
    maxFrameBytes: config.maxBodyBytes,
    pingInterval: settings.pingInterval
  }

  const open = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const upgrade = yield* Effect.serviceOption(SocketUpgrade)
    if (upgrade._tag === "None" || !isUpgrade(request)) return yield* new UpgradeRequired()
    if (!isHandshake(request)) {
      return yield* new InvalidRequest({
        message: "Not a WebSocket handshake: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required"
      })
    }
    const origin = request.headers.origin
    if (!HttpSecurity.allowsSocketOrigin(security, origin, request.headers.host)) {
      return yield* new Forbidden({ message: `Origin ${origin} may not open a WebSocket here` })
    }
    if (chat.isShuttingDown()) return yield* new ServerShutdown()
    const connection = yield* upgrade.value.accept(acceptOptions)
    yield* sessions.run({
      connection,
      principal: yield* ApiRouter.Caller,
      budget: yield* ApiRouter.Budget
    })
    // The socket is closed; the binding writes nothing more on it.
    return HttpServerResponse.empty({ status: 101 })
  })

  const issue = Effect.gen(function* () {
    const { requestId } = yield* RequestContext
    const ticket = yield* tickets.issue(yield* ApiRouter.Caller)
    const body: typeof SocketTicket.Type = { ticket: ticket.ticket, expires_in: ticket.expiresInSeconds }
    return HttpServerResponse.jsonUnsafe(
      body,
      // A ticket is a credential: never cached.
      { status: 201, headers: { "x-request-id": requestId, "cache-control": "no-store" } }
    )
  })

  return [ApiRouter.route("GET", SOCKET_PATH, open, "socket"), ApiRouter.route("POST", TICKET_PATH, issue)]
})
