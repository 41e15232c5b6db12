/**
 * The conversation API, scoped to the caller:
 *
 * - `GET    /api/v0.3/conversations?limit=&cursor=` — newest first, cursor paginated
 * - `GET    /api/v0.3/conversations/:id` — one conversation with its messages
 *   (and, while a turn runs, its reply so far as a `streaming` message and
 *   the turn in `running_turn`)
 * - `PATCH  /api/v0.3/conversations/:id` — `{"title": "..."}`
 * - `DELETE /api/v0.3/conversations/:id` — the conversation and its messages
 *
 * The router authenticates every request and counts it against the rate
 * limits before a route runs.
 *
 * Another user's conversation answers exactly like a missing one (404, same
 * body, same work on the request path); the attempt is audited in the
 * background.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Base64Url from "effect/encoding/Base64Url"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as ApiRouter from "./ApiRouter.ts"
import { AuditLog } from "./AuditLog.ts"
import { ConversationNotFound, InvalidRequest } from "./ChatError.ts"
import { ChatService } from "./ChatService.ts"
import { isUuid, titleFrom } from "./ConversationResolver.ts"
import { type Conversation, ConversationStore, type Cursor, type Message } from "./ConversationStore.ts"
import * as RequestBody from "./RequestBody.ts"
import { RequestContext } from "./RequestContext.ts"
import type { Snapshot } from "./TurnLog.ts"

/** The path of the conversation collection. */
export const CONVERSATIONS_PATH = "/api/v0.3/conversations"

/** Page size when `limit` is not given, and the largest accepted. */
export const DEFAULT_LIMIT = 20
export const MAX_LIMIT = 100

const MAX_TITLE_LENGTH = 200

/** A rename body holds one short title. */
const MAX_RENAME_BODY_BYTES = 4 * 1024

/** The body of `PATCH /api/v0.3/conversations/:id`. */
export const RenameRequest = Schema.Struct({
  title: Schema.String.check(
    Schema.makeFilter((title: string) => title.trim() !== "" || "must be a non-empty string"),
    Schema.makeFilter(
      (title: string) => title.length <= MAX_TITLE_LENGTH || `must be at most ${MAX_TITLE_LENGTH} characters`
    ),
    Schema.makeFilter((title: string) => !title.includes("\u0000") || "must not contain NUL characters")
  )
})

/** A conversation as the API shows it (the list's items, the rename's answer). */
export const ConversationSummary = Schema.Struct({
  id: Schema.String.annotate({ description: "A UUID." }),
  title: Schema.String.annotate({ description: "The first message, cut short, until renamed." }),
  created_at: Schema.String.annotate({ description: "ISO 8601." }),
  updated_at: Schema.String.annotate({ description: "ISO 8601; the list is ordered by it, newest first." })
}).annotate({ description: "A conversation of the caller." })

/** A message as the API shows it; `streaming` is the reply of a turn that still runs. */
export const MessageJson = Schema.Struct({
  id: Schema.String,
  role: Schema.Literals(["user", "assistant"]),
  content: Schema.String,
  status: Schema.Literals(["complete", "partial", "cancelled", "interrupted", "error", "streaming"]).annotate(
    {
      description:
        "`cancelled`: stopped, or its client left and did not come back; `interrupted`: the server running it " +
        "went away; `partial`: either, written by an earlier version; `error`: the model failed; " +
        "`streaming`: the reply of the running turn, so far."
    }
  ),
  created_at: Schema.String.annotate({ description: "ISO 8601." })
}).annotate({ description: "A message of a conversation." })

/** The answer of `GET /api/v0.3/conversations`: a page, most recently updated first. */
export const ConversationPage = Schema.Struct({
  data: Schema.Array(ConversationSummary),
  /** Pass it back as `cursor` for the next page; `null` on the last. */
  next_cursor: Schema.NullOr(Schema.String).annotate({
    description: "Pass it back as `cursor` for the next page; `null` on the last."
  })
}).annotate({ description: "A page of the caller's conversations, most recently updated first." })

/** The answer of `GET /api/v0.3/conversations/:id`: the conversation, its messages and its running turn. */
export const ConversationDetail = Schema.Struct({
  ...ConversationSummary.fields,
  messages: Schema.Array(MessageJson),
  running_turn: Schema.NullOr(Schema.Struct({ turn_id: Schema.String, started_at: Schema.String })).annotate({
    description: "The turn that runs now, which `GET …/stream` resumes and `POST …/stop` stops; else `null`."
  })
}).annotate({ description: "A conversation with its messages, oldest first." })

const conversationJson = (conversation: Conversation): typeof ConversationSummary.Type => ({
  id: conversation.id,
  title: conversation.title,
  created_at: conversation.createdAt.toISOString(),
  updated_at: conversation.updatedAt.toISOString()
})

const messageJson = (message: Message): typeof MessageJson.Type => ({
  id: message.id,
  role: message.role,
  content: message.content,
  status: message.status,
  created_at: message.createdAt.toISOString()
})

/** The reply of a running turn, as far as it is logged. */
const streamingMessageJson = ({ turn, content }: Snapshot): typeof MessageJson.Type => ({
  id: turn.replyId,
  role: "assistant",
  content,
  status: "streaming",
  created_at: new Date(turn.startedAt).toISOString()
})

/** Encodes a cursor as an opaque URL-safe token. */
export const encodeCursor = (cursor: Cursor): string =>
  Base64Url.encode(JSON.stringify([cursor.updatedAt.toISOString(), cursor.id]))

/** Decodes a cursor token; `undefined` when it is not one this API issued. */
export const decodeCursor = (token: string): Cursor | undefined => {
  try {
    const decoded = Base64Url.decodeString(token)
    if (decoded._tag === "Failure") return undefined
    const value: unknown = JSON.parse(decoded.success)
    if (!Array.isArray(value) || value.length !== 2) return undefined
    const [updatedAt, id] = value as [unknown, unknown]
    if (typeof updatedAt !== "string" || typeof id !== "string" || !isUuid(id)) return undefined
    const date = new Date(updatedAt)
    return Number.isNaN(date.getTime()) ? undefined : { updatedAt: date, id }
  } catch {
    return undefined
  }
}

const parseLimit = (raw: string | undefined): number | undefined => {
  if (raw === undefined) return DEFAULT_LIMIT
  if (!/^\d{1,3}$/.test(raw)) return undefined
  const limit = Number(raw)
  return limit >= 1 && limit <= MAX_LIMIT ? limit : undefined
}

/**
 * How a route finds the conversation its `:id` names for the caller: the
 * conversation when the caller owns it, else the common 404. Another user's
 * conversation answers exactly like a missing one (same body, same work on
 * the request path); the attempt is audited in a detached fiber.
 */
export const makeOwnership = Effect.gen(function* () {
  const store = yield* ConversationStore
  const audit = yield* AuditLog

  /** An id as the API takes it, when it can name a conversation at all. */
  const normalized = (id: string | undefined) =>
    id !== undefined && isUuid(id) ? id.toLowerCase() : undefined

  /** The `:id` of the route, when it can name a conversation at all. */
  const idParam = Effect.map(ApiRouter.Params, (params) => normalized(params.id))

  /** Answers a miss, auditing an attempt on someone else's conversation in the background. */
  const notFound = (userId: string, id: string | undefined) =>
    Effect.gen(function* () {
      const { requestId } = yield* RequestContext
      if (id !== undefined) {
        yield* Effect.forkDetach(
          store.exists(id).pipe(
            Effect.flatMap((exists) =>
              exists
                ? Effect.flatMap(Clock.currentTimeMillis, (millis) =>
                    audit.record([
                      {
                        action: "conversation.cross_user_access",
                        userId,
                        conversationId: id,
                        requestId,
                        at: new Date(millis)
                      }
                    ])
                  )
                : Effect.void
            ),
            Effect.ignore
          )
        )
      }
      return yield* new ConversationNotFound()
    })

  /** The conversation `rawId` names, when `userId` owns it; another user's answers as a missing one. */
  const ownedById = (userId: string, rawId: string | undefined) =>
    Effect.gen(function* () {
      const id = normalized(rawId)
      const found = id === undefined ? Option.none() : yield* store.find({ userId, id })
      if (Option.isNone(found)) return yield* notFound(userId, id)
      return found.value
    })

  /** The conversation the route's `:id` names, when `userId` owns it. */
  const owned = (userId: string) => Effect.flatMap(ApiRouter.Params, (params) => ownedById(userId, params.id))

  return { idParam, notFound, owned, ownedById }
})

/** The routes, built once from the services in context. */
export const routes = Effect.gen(function* () {
  const store = yield* ConversationStore
  const audit = yield* AuditLog
  const chat = yield* ChatService
  const { idParam, notFound, owned } = yield* makeOwnership

  const list = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const principal = yield* ApiRouter.Caller
    const url = new URL(request.url, "http://localhost")
    const limit = parseLimit(url.searchParams.get("limit") ?? undefined)
    if (limit === undefined) {
      return yield* new InvalidRequest({ message: `limit must be a whole number from 1 to ${MAX_LIMIT}` })
    }
    const token = url.searchParams.get("cursor")
    const after = token === null || token === "" ? undefined : decodeCursor(token)
    if (token !== null && token !== "" && after === undefined) {
      return yield* new InvalidRequest({
        message: "cursor is not valid; pass next_cursor from a previous page"
      })
    }
    const page = yield* store.list({ userId: principal.userId, limit, after })
    const body: typeof ConversationPage.Type = {
      data: page.conversations.map(conversationJson),
      next_cursor: page.next === undefined ? null : encodeCursor(page.next)
    }
    return HttpServerResponse.jsonUnsafe(body)
  })

  const show = Effect.gen(function* () {
    const principal = yield* ApiRouter.Caller
    const conversation = yield* owned(principal.userId)
    const scope = { userId: principal.userId, conversationId: conversation.id }
    const [messages, runningTurn] = yield* Effect.all([store.history(scope), chat.runningTurn(scope)], {
      concurrency: 2
    })
    // A reply already stored has ended, though a shared log may not say so yet.
    const running = Option.filter(
      runningTurn,
      ({ turn }) => !messages.some((message) => message.id === turn.replyId)
    )
    const body: typeof ConversationDetail.Type = {
      ...conversationJson(conversation),
      messages: [...messages.map(messageJson), ...Option.toArray(Option.map(running, streamingMessageJson))],
      running_turn: Option.match(running, {
        onNone: () => null,
        onSome: ({ turn }) => ({ turn_id: turn.turnId, started_at: new Date(turn.startedAt).toISOString() })
      })
    }
    return HttpServerResponse.jsonUnsafe(body)
  })

  const rename = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const principal = yield* ApiRouter.Caller
    const id = yield* idParam
    const body = yield* RequestBody.read(request, {
      maxBodyBytes: MAX_RENAME_BODY_BYTES,
      decode: RequestBody.decodeJson(RenameRequest)
    })
    const now = new Date(yield* Clock.currentTimeMillis)
    const renamed =
      id === undefined
        ? Option.none()
        : yield* store.rename({ userId: principal.userId, id, title: titleFrom(body.title.trim()), now })
    if (Option.isNone(renamed)) return yield* notFound(principal.userId, id)
    return HttpServerResponse.jsonUnsafe(conversationJson(renamed.value))
  })

  const remove = Effect.gen(function* () {
    const principal = yield* ApiRouter.Caller
    const id = yield* idParam
    const removed = id === undefined ? false : yield* store.remove({ userId: principal.userId, id })
    if (!removed || id === undefined) return yield* notFound(principal.userId, id)
    yield* audit.record([
      {
        action: "conversation.deleted",
        cause: "user",
        userId: principal.userId,
        conversationId: id,
        requestId: (yield* RequestContext).requestId,
        at: new Date(yield* Clock.currentTimeMillis)
      }
    ])
    return HttpServerResponse.empty({ status: 204 })
  })

  return [
    ApiRouter.route("GET", CONVERSATIONS_PATH, list),
    ApiRouter.route("GET", `${CONVERSATIONS_PATH}/:id`, show),
    ApiRouter.route("PATCH", `${CONVERSATIONS_PATH}/:id`, rename),
    ApiRouter.route("DELETE", `${CONVERSATIONS_PATH}/:id`, remove)
  ]
})
