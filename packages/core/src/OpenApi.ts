/**
 * The OpenAPI 3.1 document of the HTTP API, served at
 * `GET /api/v0.3/openapi.json` by every binding.
 *
 * Its schemas are generated from the `effect/Schema` definitions the server
 * decodes requests with and types its answers by (`ChatRequest`,
 * `ChatEvent`, `ChatService.Completion`, `ConversationHttp`, `TurnHttp`,
 * `Health`, `HttpError.ErrorBody`), so a field added there reaches the
 * document at once. The statuses, error types and headers of every refusal
 * come from `HttpError.fromError`, the one place that maps errors to HTTP,
 * applied to an instance of each error a route can fail with. What is
 * written here is only which route answers what.
 *
 * A stream's body is `text/event-stream`: its `data:` lines carry the JSON
 * of a `ChatEvent` (named by the media type's `x-event-schema`), the last
 * one `[DONE]`. The WebSocket frames are described in `docs/websocket.md`.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as JsonSchema from "effect/JsonSchema"
import type * as Schema from "effect/Schema"
import * as SchemaRepresentation from "effect/SchemaRepresentation"
import * as ApiRouter from "./ApiRouter.ts"
import {
  type ApiError,
  ConversationNotFound,
  Forbidden,
  InvalidRequest,
  ModelError,
  RateLimited,
  RequestTimeout,
  RequestTooLarge,
  ServerShutdown,
  StoreUnavailable,
  Unauthenticated,
  UnsupportedMediaType,
  UpgradeRequired
} from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatRequest } from "./ChatRequest.ts"
import { CHAT_PATH } from "./ChatRoute.ts"
import { Completion } from "./ChatService.ts"
import * as ConversationHttp from "./ConversationHttp.ts"
import * as Health from "./Health.ts"
import * as HttpError from "./HttpError.ts"
import * as SocketHttp from "./SocketHttp.ts"
import * as TurnHttp from "./TurnHttp.ts"

/** The path of the document. */
export const OPENAPI_PATH = "/api/v0.3/openapi.json"

/** The path of the metrics route when it is served on the application (`ChatMetrics.DEFAULT_PATH`). */
const METRICS_PATH = "/metrics"

/** The version of the wire contract the document describes. */
export const API_VERSION = "0.3"

/** A JSON object of the document. */
export type Json = { readonly [key: string]: unknown }

/** The schemas of the document, by component name. */
const SCHEMAS: Readonly<Record<string, Schema.Top>> = {
  ChatRequest,
  ChatCompletion: Completion,
  ChatEvent: ChatEvent.ChatEvent,
  MetadataEvent: ChatEvent.MetadataEvent,
  ContentEvent: ChatEvent.ContentEvent,
  ErrorEvent: ChatEvent.ErrorEvent,
  ErrorBody: HttpError.ErrorBody,
  Conversation: ConversationHttp.ConversationSummary,
  ConversationPage: ConversationHttp.ConversationPage,
  ConversationDetail: ConversationHttp.ConversationDetail,
  Message: ConversationHttp.MessageJson,
  RenameRequest: ConversationHttp.RenameRequest,
  StopAccepted: TurnHttp.StopAccepted,
  SocketTicket: SocketHttp.SocketTicket,
  HealthStatus: Health.Status,
  HealthDetails: Health.Details
}

/**
 * The JSON Schemas of `SCHEMAS` as OpenAPI 3.1 components: one shared
 * table, so a schema used inside another (an event in the union, a message
 * in a conversation) is a `$ref` to its own component.
 */
const components = (): Record<string, Json> => {
  const names = new Map<unknown, string>()
  const asts = Object.entries(SCHEMAS).map(([name, schema]) => {
    names.set(schema.ast, name)
    return schema.ast
  }) as [Schema.Top["ast"], ...Array<Schema.Top["ast"]>]
  const representations = SchemaRepresentation.toRepresentations(asts, {
    referencePolicy: ({ ast, identifier }) => names.get(ast) ?? identifier
  })
  const multi = JsonSchema.toMultiDocumentOpenApi3_1(
    SchemaRepresentation.toJsonSchemaMultiDocument(representations)
  )
  return multi.definitions
}

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` })

// ---------------------------------------------------------------------------
// Refusals: what `HttpError.fromError` answers for each error a route can fail with.

/** One error a route can answer with, and when. */
interface Refusal {
  readonly error: ApiError
  readonly when: string
}

const refusal = (error: ApiError, when: string): Refusal => ({ error, when })

const R = {
  invalidBody: refusal(
    new InvalidRequest({ message: "message: must be a non-empty string" }),
    "the body is not JSON, misses a field, has a wrong type or breaks a limit"
  ),
  unauthenticated: refusal(
    new Unauthenticated({ message: "Missing or invalid credentials" }),
    "missing or invalid credentials"
  ),
  rateLimited: refusal(
    new RateLimited({ retryAfterSeconds: 30, message: "Too many requests", limit: 60, scope: "user" }),
    "over a rate limit (requests, or failed logins from the address)"
  ),
  turnSlots: refusal(
    new RateLimited({ retryAfterSeconds: 1, message: "Too many turns in flight", scope: "concurrent" }),
    "every in-flight turn slot of the caller taken"
  ),
  notFound: refusal(
    new ConversationNotFound(),
    "no conversation of the caller has this id (another user's answers the same)"
  ),
  timeout: refusal(new RequestTimeout({ timeoutMillis: 10_000 }), "the body did not arrive in time"),
  tooLarge: refusal(new RequestTooLarge({ limitBytes: 32_768 }), "the body is over the limit"),
  mediaType: refusal(
    new UnsupportedMediaType({ contentType: "application/xml" }),
    "a content type that is neither JSON nor plain text"
  ),
  storeDown: refusal(
    new StoreUnavailable({ message: "The conversation store is unavailable" }),
    "the conversation store is down or did not answer in time"
  ),
  shutdown: refusal(new ServerShutdown(), "the server is shutting down"),
  modelFailed: refusal(
    new ModelError({ type: "api_error", message: "The model failed", retryable: false }),
    "the model failed (its own error type, e.g. `api_error`), before the reply started"
  ),
  modelBusy: refusal(
    new ModelError({
      type: "overloaded_error",
      message: "The model is overloaded",
      retryable: true,
      retryAfterSeconds: 5
    }),
    "the model is overloaded or rate limited (its own error type), before the reply started"
  ),
  badHandshake: refusal(
    new InvalidRequest({
      message: "Not a WebSocket handshake: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required"
    }),
    "an upgrade that is not a WebSocket handshake"
  ),
  origin: refusal(
    new Forbidden({ message: "Origin https://elsewhere.example may not open a WebSocket here" }),
    "an `Origin` the CORS allow-list does not name"
  ),
  upgrade: refusal(
    new UpgradeRequired(),
    "a `GET` without `Upgrade: websocket`, or a binding that cannot upgrade (AWS Lambda, the web handler)"
  )
} as const

/** A response header, by name, as the refusals send it. */
const HEADERS: Readonly<Record<string, string>> = {
  "www-authenticate": "`Bearer`: the credentials the API takes.",
  "retry-after": "Seconds to wait before trying again.",
  "ratelimit-limit": "The request budget of the limit that refused the request.",
  "ratelimit-remaining": "Requests left in the budget: `0`.",
  "ratelimit-reset": "Seconds until the budget is renewed.",
  allow: "The methods the path serves.",
  upgrade: "`websocket`."
}

/** The responses of a route's refusals, one per status, every error type of that status as an example. */
const refusals = (list: ReadonlyArray<Refusal>): Record<string, Json> => {
  const byStatus = new Map<
    number,
    Array<{ readonly answer: HttpError.ErrorResponse; readonly when: string }>
  >()
  for (const { error, when } of list) {
    const answer = HttpError.fromError(error)
    const same = byStatus.get(answer.status) ?? []
    same.push({ answer, when })
    byStatus.set(answer.status, same)
  }
  byStatus.set(500, [
    { answer: HttpError.ofStatus(500, "Internal server error"), when: "an unexpected failure (logged)" }
  ])
  const responses: Record<string, Json> = {}
  for (const [status, answers] of [...byStatus].sort(([a], [b]) => a - b)) {
    const headers = new Set(answers.flatMap(({ answer }) => Object.keys(answer.headers ?? {})))
    const examples: Record<string, Json> = {}
    for (const { answer, when } of answers) {
      let key = answer.body.error.type
      for (let n = 2; key in examples; n++) key = `${answer.body.error.type}_${n}`
      examples[key] = { summary: when, value: answer.body }
    }
    responses[String(status)] = {
      description: answers.map(({ answer, when }) => `\`${answer.body.error.type}\`: ${when}.`).join(" "),
      ...(headers.size === 0
        ? {}
        : {
            headers: Object.fromEntries(
              [...headers].map((name) => [
                name,
                { description: HEADERS[name] ?? name, schema: { type: "string" } }
              ])
            )
          }),
      content: { "application/json": { schema: ref("ErrorBody"), examples } }
    }
  }
  return responses
}

// ---------------------------------------------------------------------------
// Routes.

const REQUEST_ID = {
  "x-request-id": { description: "The request's id, as the server logs it.", schema: { type: "string" } }
}

const json = (schema: Json, description: string, headers: Record<string, Json> = REQUEST_ID): Json => ({
  description,
  headers,
  content: { "application/json": { schema } }
})

const noContent = (description: string): Json => ({ description, headers: REQUEST_ID })

/** A Server-Sent Events stream of chat events. */
const eventStream = (description: string): Json => ({
  description,
  headers: REQUEST_ID,
  content: {
    "text/event-stream": {
      schema: {
        type: "string",
        description:
          "Frames separated by a blank line. The first is `data: <MetadataEvent>` alone; every later one " +
          "has an `id: <turn_id>:<seq>` line and `data: <ContentEvent | ErrorEvent>`, at most one error, " +
          "the last `data: [DONE]`. `: ping` comments keep an idle connection open."
      },
      "x-event-schema": ref("ChatEvent"),
      example:
        'data: {"type":"metadata","conversation_id":"7d0f…","model":"unified-chat","timestamp":1764081000,"turn_id":"6f1c…"}\n\n' +
        'id: 6f1c…:1\ndata: {"type":"content","delta":{"content":"Hello"}}\n\n' +
        "id: 6f1c…:2\ndata: [DONE]\n\n"
    }
  }
})

const jsonBody = (schema: Json, description: string): Json => ({
  required: true,
  description,
  content: {
    "application/json": { schema },
    // Browsers' `fetch` with a string body sends it as text; it is read as JSON all the same.
    "text/plain": { schema }
  }
})

const idParameter: Json = {
  name: "id",
  in: "path",
  required: true,
  description: "The conversation's id (a UUID).",
  schema: { type: "string" }
}

/** A path of the route table (`:id`) as OpenAPI writes it (`{id}`). */
const pathOf = (path: string): string => path.replace(/:([A-Za-z_]\w*)/g, "{$1}")

const CONVERSATION = `${ConversationHttp.CONVERSATIONS_PATH}/:id`

const USER = [R.unauthenticated, R.rateLimited] as const

const paths = (): Record<string, Json> => ({
  [pathOf(CHAT_PATH)]: {
    post: {
      operationId: "chat",
      tags: ["chat"],
      summary: "Send a message; the reply streams (`stream: true`) or comes whole",
      description:
        "With `stream: true` the answer is a Server-Sent Events stream whose first event names the " +
        "conversation (`metadata`); a failure after it has started is an `error` event, never a status. " +
        "Without it the answer is the whole reply as one JSON object. `conversation_id` omitted, `null`, " +
        '`""` or `"new"` starts a conversation.',
      requestBody: jsonBody(ref("ChatRequest"), "The message, and which conversation it continues."),
      responses: {
        "200": {
          description: "The reply: an event stream when `stream` is `true`, else the whole reply.",
          headers: REQUEST_ID,
          content: {
            ...(eventStream("").content as Record<string, Json>),
            "application/json": { schema: ref("ChatCompletion") }
          }
        },
        ...refusals([
          R.invalidBody,
          ...USER,
          R.turnSlots,
          { ...R.notFound, when: "`stream: false` with an id no conversation of the caller has" },
          R.timeout,
          R.tooLarge,
          R.mediaType,
          R.modelFailed,
          { ...R.storeDown, when: "`stream: false` while the conversation store is down" },
          R.shutdown,
          R.modelBusy
        ])
      }
    }
  },
  [pathOf(ConversationHttp.CONVERSATIONS_PATH)]: {
    get: {
      operationId: "listConversations",
      tags: ["conversations"],
      summary: "The caller's conversations, most recently updated first",
      parameters: [
        {
          name: "limit",
          in: "query",
          description: "Page size.",
          schema: {
            type: "integer",
            minimum: 1,
            maximum: ConversationHttp.MAX_LIMIT,
            default: ConversationHttp.DEFAULT_LIMIT
          }
        },
        {
          name: "cursor",
          in: "query",
          description: "`next_cursor` of the previous page.",
          schema: { type: "string" }
        }
      ],
      responses: {
        "200": json(ref("ConversationPage"), "A page of conversations.", {}),
        ...refusals([
          {
            error: new InvalidRequest({ message: "limit must be a whole number from 1 to 100" }),
            when: "a `limit` out of range or a `cursor` this API did not issue"
          },
          ...USER,
          R.storeDown
        ])
      }
    }
  },
  [pathOf(CONVERSATION)]: {
    parameters: [idParameter],
    get: {
      operationId: "getConversation",
      tags: ["conversations"],
      summary: "One conversation with its messages, and its running turn",
      responses: {
        "200": json(ref("ConversationDetail"), "The conversation.", {}),
        ...refusals([...USER, R.notFound, R.storeDown])
      }
    },
    patch: {
      operationId: "renameConversation",
      tags: ["conversations"],
      summary: "Rename a conversation",
      requestBody: jsonBody(ref("RenameRequest"), "The new title (1–200 characters)."),
      responses: {
        "200": json(ref("Conversation"), "The renamed conversation.", {}),
        ...refusals([
          { ...R.invalidBody, error: new InvalidRequest({ message: "title: must be a non-empty string" }) },
          ...USER,
          R.notFound,
          R.timeout,
          R.tooLarge,
          R.mediaType,
          R.storeDown
        ])
      }
    },
    delete: {
      operationId: "deleteConversation",
      tags: ["conversations"],
      summary: "Delete a conversation and its messages",
      responses: {
        "204": { description: "Deleted." },
        ...refusals([...USER, R.notFound, R.storeDown])
      }
    }
  },
  [pathOf(`${CONVERSATION}/stream`)]: {
    parameters: [idParameter],
    get: {
      operationId: "resumeTurn",
      tags: ["turns"],
      summary: "Resume the conversation's turn after the last event read",
      description:
        "The metadata event again (`resumed: true`), every event after the one `Last-Event-ID` names " +
        "(from the turn's start without it), then the live ones to `[DONE]`. Holds an in-flight turn slot.",
      parameters: [
        {
          name: "Last-Event-ID",
          in: "header",
          description: "The id of the last event read: `<turn_id>:<seq>`.",
          schema: { type: "string" }
        },
        {
          name: "last_event_id",
          in: "query",
          description: "`Last-Event-ID` for clients that cannot set headers.",
          schema: { type: "string" }
        }
      ],
      responses: {
        "200": eventStream("The rest of the turn."),
        "204": noContent(
          "Nothing to replay: no turn, another turn's id, a turn read to its end or past its retention."
        ),
        ...refusals([
          {
            error: new InvalidRequest({
              message: "Last-Event-ID must be the id of an event this server sent (<turn_id>:<seq>)"
            }),
            when: "an event id this server cannot have sent"
          },
          ...USER,
          R.turnSlots,
          R.notFound,
          R.storeDown
        ])
      }
    }
  },
  [pathOf(`${CONVERSATION}/stop`)]: {
    parameters: [idParameter],
    post: {
      operationId: "stopTurn",
      tags: ["turns"],
      summary: "Stop the conversation's running turn, wherever it runs",
      responses: {
        "202": json(ref("StopAccepted"), "The turn being stopped."),
        "204": noContent("No turn runs."),
        ...refusals([...USER, R.notFound, R.storeDown])
      }
    }
  },
  [pathOf(SocketHttp.TICKET_PATH)]: {
    post: {
      operationId: "issueSocketTicket",
      tags: ["websocket"],
      summary: "Trade the caller's credentials for a single-use WebSocket ticket",
      responses: {
        "201": json(ref("SocketTicket"), "The ticket; never cached.", {
          ...REQUEST_ID,
          "cache-control": { description: "`no-store`.", schema: { type: "string" } }
        }),
        ...refusals(USER)
      }
    }
  },
  [pathOf(SocketHttp.SOCKET_PATH)]: {
    get: {
      operationId: "openSocket",
      tags: ["websocket"],
      summary: "Open a WebSocket that carries many turns",
      description:
        "An upgrade request (RFC 6455), authenticated like any request or by `?ticket=`. Its frames are " +
        "described in docs/websocket.md.",
      security: [{ bearer: [] }, { apiKey: [] }, { ticket: [] }],
      parameters: [
        { name: "Upgrade", in: "header", required: true, schema: { type: "string", const: "websocket" } },
        { name: "Sec-WebSocket-Key", in: "header", required: true, schema: { type: "string" } },
        {
          name: "Sec-WebSocket-Version",
          in: "header",
          required: true,
          schema: { type: "string", const: "13" }
        }
      ],
      responses: {
        "101": { description: "Switching Protocols: the socket is open." },
        ...refusals([R.badHandshake, ...USER, R.origin, R.upgrade, R.shutdown])
      }
    }
  },
  [pathOf(Health.HEALTH_PATH)]: {
    get: {
      operationId: "health",
      tags: ["operations"],
      summary: "Whether the application is up; its details with the admin token",
      security: [{}, { adminToken: [] }],
      responses: {
        "200": {
          description: 'Up: `{"status":"ok"}` to anyone, the details to the admin token.',
          content: {
            "application/json": { schema: { anyOf: [ref("HealthStatus"), ref("HealthDetails")] } }
          }
        },
        "503": {
          description: 'Shutting down: `{"status":"shutting_down"}`.',
          content: { "application/json": { schema: ref("HealthStatus") } }
        }
      }
    }
  },
  [METRICS_PATH]: {
    get: {
      operationId: "metrics",
      tags: ["operations"],
      summary: "The metrics in the Prometheus text format",
      description:
        "Served here when the application has `ChatMetrics.layer` (its `path` option moves it), only to the " +
        "admin token when one is configured.",
      security: [{ adminToken: [] }],
      responses: {
        "200": {
          description: "The metrics.",
          content: { "text/plain; version=0.0.4; charset=utf-8": { schema: { type: "string" } } }
        },
        ...refusals([R.unauthenticated])
      }
    }
  },
  [OPENAPI_PATH]: {
    get: {
      operationId: "openapi",
      tags: ["operations"],
      summary: "This document",
      security: [],
      responses: {
        "200": {
          description: "The OpenAPI 3.1 document of the API.",
          content: { "application/json": { schema: { type: "object" } } }
        }
      }
    }
  }
})

/** Builds the document. */
export const make = (): Json => ({
  openapi: "3.1.0",
  info: {
    title: "Convoke HTTP API",
    version: API_VERSION,
    description:
      "Streaming chat with conversations: the conversation id arrives in the first Server-Sent Event. " +
      'Every error has one body, `{"error":{"type":"...","message":"..."}}`. A path the API serves, ' +
      "asked with a method it does not serve, is a `405 method_not_allowed` with `Allow`; an unknown path " +
      "is a `404 not_found`; request headers over 16 KiB are a `431 request_header_fields_too_large`.",
    license: { name: "MIT", identifier: "MIT" }
  },
  tags: [
    { name: "chat", description: "A turn: the message and its reply." },
    { name: "conversations", description: "The caller's conversations." },
    { name: "turns", description: "Resume or stop a conversation's turn." },
    { name: "websocket", description: "Many turns on one socket (docs/websocket.md)." },
    { name: "operations", description: "Health, metrics and this document." }
  ],
  security: [{ bearer: [] }, { apiKey: [] }],
  paths: paths(),
  components: {
    schemas: components(),
    securitySchemes: {
      bearer: { type: "http", scheme: "bearer", description: "An API key or a JWT." },
      apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "An API key." },
      ticket: {
        type: "apiKey",
        in: "query",
        name: "ticket",
        description: "A single-use ticket from `POST /api/v0.3/ws/ticket`, for the WebSocket route alone."
      },
      adminToken: { type: "http", scheme: "bearer", description: "The admin token (`CONVOKE_ADMIN_TOKEN`)." }
    }
  }
})

/** The document's bytes, built once. */
let cached: string | undefined
const body = (): string => (cached ??= JSON.stringify(make()))

/** The route that serves the document: public, like `/health`. */
export const routes = Effect.sync(() => [
  ApiRouter.route(
    "GET",
    OPENAPI_PATH,
    Effect.sync(() =>
      HttpServerResponse.text(body(), {
        contentType: "application/json",
        headers: { "cache-control": "no-cache" }
      })
    ),
    "public"
  )
])
