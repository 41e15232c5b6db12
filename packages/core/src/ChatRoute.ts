/**
 * `POST /api/v0.3/chat`: authenticate, count against the rate limits, read
 * the body, take an in-flight slot, then answer with the metadata-first SSE stream (`stream: true`)
 * or with the whole reply as one JSON object.
 *
 * @since 0.3.0
 */
import { Effect } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import * as ApiRouter from "./ApiRouter.ts"
import { ChatConfig } from "./ChatConfig.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatRateLimit } from "./ChatRateLimit.ts"
import * as ChatRequest from "./ChatRequest.ts"
import { ChatService } from "./ChatService.ts"
import { Identity } from "./Identity.ts"
import { RequestContext } from "./RequestContext.ts"

/** The path of the chat endpoint. */
export const CHAT_PATH = "/api/v0.3/chat"

/** The chat route, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const chat = yield* ChatService
  const identity = yield* Identity
  const config = yield* ChatConfig
  const rateLimit = yield* ChatRateLimit

  const postChat = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { requestId, clientAddress: address, receivedAtMillis } = yield* RequestContext
    // A failed authentication spends the address's budget, so guessing keys is throttled too.
    const principal = yield* identity
      .authenticate(request.headers)
      .pipe(Effect.tapError(() => rateLimit.rejected({ address })))
    // The request counts before its body is read, so a flood of bodies is throttled
    // too; a 429 writes nothing.
    const budget = yield* rateLimit.count({ principal, address })
    const body = yield* ChatRequest.read(request, config)
    // The in-flight slot only once the body is in, so uploads that stall hold none.
    // It is released when the request scope closes, which for a stream is when the
    // stream ends — completion, failure or disconnect.
    const admission = yield* rateLimit.acquire({ principal, address })
    yield* Effect.addFinalizer(() => admission.release)
    const input = { principal, request: body, receivedAtMillis, requestId }
    const headers = { ...budget, ...admission.headers, "x-request-id": requestId }
    if (body.stream === true) {
      return HttpServerResponse.stream(yield* chat.sse(input), {
        headers: { ...ChatEvent.SSE_HEADERS, ...headers }
      })
    }
    return HttpServerResponse.jsonUnsafe(yield* chat.complete(input), { headers })
  })

  return [ApiRouter.route("POST", CHAT_PATH, postChat)]
})
