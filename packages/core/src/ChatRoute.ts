/**
 * `POST /api/v0.3/chat`: read the body, take an in-flight slot, then answer
 * with the metadata-first SSE stream (`stream: true`) or with the whole reply
 * as one JSON object. The router has authenticated the caller and counted
 * the request before the body is read or a conversation touched, so a
 * refused request wrote nothing; the slot is taken only once the body is in.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as ApiRouter from "./ApiRouter.ts"
import { ChatConfig } from "./ChatConfig.ts"
import * as ChatEvent from "./ChatEvent.ts"
import * as ChatRequest from "./ChatRequest.ts"
import { ChatService } from "./ChatService.ts"
import { RequestContext } from "./RequestContext.ts"

/** The path of the chat endpoint. */
export const CHAT_PATH = "/api/v0.3/chat"

/** The chat route, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const chat = yield* ChatService
  const config = yield* ChatConfig

  const postChat = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const principal = yield* ApiRouter.Caller
    const { requestId, receivedAtMillis } = yield* RequestContext
    const body = yield* ChatRequest.read(request, config)
    // The in-flight slot only once the body is in, so uploads that stall hold none.
    // It is released when the request scope closes, which for a stream is when the
    // stream ends — completion, failure or disconnect.
    yield* yield* ApiRouter.TurnSlot
    const input = { principal, request: body, receivedAtMillis, requestId }
    const headers = { "x-request-id": requestId }
    if (body.stream === true) {
      return HttpServerResponse.stream(yield* chat.sse(input), {
        headers: { ...ChatEvent.SSE_HEADERS, ...headers }
      })
    }
    return HttpServerResponse.jsonUnsafe(yield* chat.complete(input), { headers })
  })

  // Counted by the router like any route; the turn's slot is taken above (`TurnSlot`), once the body is read.
  return [ApiRouter.route("POST", CHAT_PATH, postChat, "user")]
})
