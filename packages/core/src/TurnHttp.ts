/**
 * The turn routes of a conversation:
 *
 * - `GET  /api/v0.3/conversations/:id/stream` — resumes the conversation's
 *   turn: the metadata event again (`"resumed":true`), every event after the
 *   one `Last-Event-ID` (or `?last_event_id=`) names, then live events to
 *   `[DONE]`; `204` when there is nothing to replay, `400` for an id this
 *   server cannot have sent;
 * - `POST /api/v0.3/conversations/:id/stop` — stops the running turn
 *   wherever it runs: `202 {"turn_id"}`, or `204` when none runs.
 *
 * The router authenticates both and counts them against the rate limits;
 * a resume is a turn (it holds an in-flight slot while it streams), a stop
 * is not, so a user with every slot taken can still stop a turn. Both
 * answer another user's conversation exactly like a missing one.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as ApiRouter from "./ApiRouter.ts"
import { InvalidRequest } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatHooks } from "./ChatHooks.ts"
import { ChatService } from "./ChatService.ts"
import { CONVERSATIONS_PATH, makeOwnership } from "./ConversationHttp.ts"
import { RequestContext } from "./RequestContext.ts"

/** The answer of a stop that found a turn running (`202`): the turn it stops. */
export const StopAccepted = Schema.Struct({ turn_id: Schema.String })

/** Where a resume starts, from the header or the query parameter; `undefined` for the start. */
const lastEventIdOf = (request: HttpServerRequest.HttpServerRequest) => {
  const header = request.headers["last-event-id"]
  const raw =
    header !== undefined && header !== ""
      ? header
      : (new URL(request.url, "http://localhost").searchParams.get("last_event_id") ?? "")
  if (raw === "") return Effect.succeed(undefined)
  const parsed = ChatEvent.parseEventId(raw)
  return parsed === undefined
    ? Effect.fail(
        new InvalidRequest({
          message: "Last-Event-ID must be the id of an event this server sent (<turn_id>:<seq>)"
        })
      )
    : Effect.succeed(parsed)
}

/** The routes, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const chat = yield* ChatService
  const hooks = yield* ChatHooks
  const { idParam, owned } = yield* makeOwnership

  /** The request, its caller and the headers every answer carries. */
  const admitted = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const principal = yield* ApiRouter.Caller
    const { requestId } = yield* RequestContext
    return { request, requestId, principal, headers: { "x-request-id": requestId } }
  })

  const resume = Effect.gen(function* () {
    const { request, requestId, principal, headers } = yield* admitted
    const after = yield* lastEventIdOf(request)
    const userId = principal.userId
    const conversation = yield* owned(userId).pipe(
      Effect.tapError(() =>
        Effect.flatMap(idParam, (id) =>
          hooks.turnResumed({ userId, requestId, conversationId: id ?? "", outcome: "not_found" })
        )
      )
    )
    const conversationId = conversation.id
    const stream = yield* chat.resume({ userId, conversationId, after })
    yield* hooks.turnResumed({
      userId,
      requestId,
      conversationId,
      outcome: Option.isSome(stream) ? "replayed" : "no_turn"
    })
    return Option.match(stream, {
      onNone: () => HttpServerResponse.empty({ status: 204, headers }),
      onSome: (body) => HttpServerResponse.stream(body, { headers: { ...ChatEvent.SSE_HEADERS, ...headers } })
    })
  })

  const stop = Effect.gen(function* () {
    const { requestId, principal, headers } = yield* admitted
    const userId = principal.userId
    const conversation = yield* owned(userId)
    const stopped = yield* chat.stop({ userId, conversationId: conversation.id })
    yield* hooks.stopRequested({
      userId,
      requestId,
      conversationId: conversation.id,
      running: Option.isSome(stopped)
    })
    return Option.match(stopped, {
      onNone: () => HttpServerResponse.empty({ status: 204, headers }),
      onSome: (turnId) => {
        const body: typeof StopAccepted.Type = { turn_id: turnId }
        return HttpServerResponse.jsonUnsafe(body, { status: 202, headers })
      }
    })
  })

  return [
    ApiRouter.route("GET", `${CONVERSATIONS_PATH}/:id/stream`, resume, "turn"),
    ApiRouter.route("POST", `${CONVERSATIONS_PATH}/:id/stop`, stop)
  ]
})
