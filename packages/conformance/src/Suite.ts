/**
 * What every part of the conformance suite shares: its users, the binding
 * under test, the recording model, and requests made the way clients make
 * them.
 *
 * @since 0.1.0
 */
import { ChatHttp, type Identity, type LanguageModel } from "@convoke/core"
import type * as Layer from "effect/Layer"
import { expect } from "vitest"
import type * as ConformanceModel from "./ConformanceModel.ts"
import * as Sse from "./Sse.ts"
import type { StoreProbe } from "./StoreProbe.ts"
import type * as TurnObserver from "./TurnObserver.ts"

/** The API keys of the suite's users. */
export const KEYS = {
  alice: "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz",
  bob: "bob-key-0123456789abcdef00-ghijklmnopqrstuvwxyz",
  // Only the listing test acts as Carol, so her pages hold exactly the conversations it created.
  carol: "carol-key-0123456789abcdef-ghijklmnopqrstuvwxyz",
  // The suite's rate limits hold Dave over his budget: every route answers him 429.
  dave: "dave-key-0123456789abcdef-ghijklmnopqrstuvwxyz"
} as const

/**
 * The admin token every binding is served with (`AdminAccess`): the details
 * of `/health` and `/metrics` answer only requests that send it.
 */
export const ADMIN_TOKEN = "conformance-admin-token-0123456789"

/** The `authorization` header of the operator. */
export const ADMIN_HEADERS = { authorization: `Bearer ${ADMIN_TOKEN}` } as const

/**
 * Credentials that start with this come, for the suite's rate limits, from an
 * address that has spent its budget of failed authentications.
 */
export const SPENT_CREDENTIAL_PREFIX = "spent-"

/** One of the suite's users. */
export type User = keyof typeof KEYS

/** What the suite hands a binding's setup. */
export interface SetupOptions {
  /**
   * The suite's model, identity (`alice`, `bob`, `carol` and `dave` by API
   * key), settings, rate limits, turn observer, admin token (`ADMIN_TOKEN`)
   * and metrics (`ChatMetrics.layer()`, which serves `GET /metrics` to the
   * admin token). The binding adds a store, builds the app and serves it; it
   * must not add metrics of its own (two would claim `/metrics`), and the
   * suite's rate limits must win over any of its own.
   */
  readonly layer: Layer.Layer<LanguageModel.LanguageModel | Identity.Identity>
}

/** The answer of an application's own fallback handler, byte for byte. */
export interface ApplicationFallback {
  readonly status: number
  readonly body: string
}

/** A binding under test, served on loopback. */
export interface Target {
  /** Base URL; the chat endpoint is `${url}/api/v0.3/chat`, health is `${url}/health`. */
  readonly url: string
  /** Reads the binding's store; row assertions are skipped without it. */
  readonly probe?: StoreProbe | undefined
  /**
   * Set by bindings mounted beside an application's own routes (Express,
   * Fastify): they hand a path Convoke does not serve to the application's
   * next handler, whose fallback answers exactly this. Absent: the binding
   * answers such a path itself, `404` with the common error body.
   */
  readonly applicationFallback?: ApplicationFallback | undefined
  /** Stops the binding and releases its resources. */
  readonly close: () => Promise<void>
}

/** The v4 UUID format of conversation ids. */
export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** The format of every date the API answers with (`created_at`, `updated_at`). */
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

/** The first chunk of every stream: the metadata event, alone, its turn's id after the four fields. */
export const METADATA_FRAME =
  /^data: \{"type":"metadata","conversation_id":"[0-9a-f-]{36}","model":"unified-chat","timestamp":\d+,"turn_id":"[0-9a-f-]{36}"\}\n\n$/

/**
 * How long a turn whose client left keeps going for a reader to come back,
 * in every binding the suite runs: long enough for a resume to make it on a
 * busy machine, short enough that the tests which wait it out stay quick.
 */
export const DISCONNECT_GRACE_MILLIS = 1500

/** How long every binding the suite runs waits for a request body: short, so the slow-body test is quick. */
export const BODY_TIMEOUT_MILLIS = 1000

/** The answer to a conversation that is missing, or another user's: the same bytes either way. */
export const CONVERSATION_NOT_FOUND = '{"error":{"type":"not_found","message":"Conversation not found"}}'

/** Checks that a response is an error with the common body: `{"error":{"type","message"}}`. */
export const expectError = async (response: Response, status: number, type: string, label?: string) => {
  const text = await response.text()
  // A body that is not JSON (a framework's HTML page) shows as itself in the failure.
  const body = (() => {
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  })()
  expect(response.status, label).toBe(status)
  expect(body, label).toEqual({ error: { type, message: expect.any(String) } })
  expect(response.headers.get("content-type"), label).toMatch(/^application\/json/)
}

/**
 * How many deltas a `flood <token>` reply has had pulled once the count
 * stopped growing while the client reads nothing: at most `bound` — far above
 * what sockets and stream buffers hold, far below "unbounded" — and at least
 * one. A count cannot be seen to stop but by watching it stand still a while.
 */
export const settledPulls = async (pulled: () => number, bound = 64): Promise<number> => {
  let last = -1
  for (let unchanged = 0; unchanged < 10; ) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    const now = pulled()
    expect(now, "the model kept being pulled while nobody read").toBeLessThanOrEqual(bound)
    unchanged = now === last ? unchanged + 1 : 0
    last = now
  }
  expect(last).toBeGreaterThanOrEqual(1)
  return last
}

/** A request to the binding. */
export interface RequestOptions {
  readonly method?: string | undefined
  /** Who sends it (`alice` unless said); `null` sends no credentials. */
  readonly user?: User | null | undefined
  readonly headers?: Record<string, string> | undefined
  /** Sent as is when a string, else as JSON. */
  readonly body?: unknown
  readonly signal?: AbortSignal | undefined
}

/** The shared state and helpers the parts of the suite are written with. */
/** What a binding cannot do by its nature, known before it starts: the suite leaves those tests out. */
export interface Capabilities {
  /**
   * The runtime reads the whole request body before Convoke sees it
   * (Lambda): a body that stops arriving is the runtime's to time out, so the
   * suite has no slow-body test for it.
   */
  readonly bufferedBody?: boolean | undefined
  /**
   * The runtime cannot upgrade a request to a WebSocket (Lambda): the suite
   * checks that `GET /api/v0.3/ws` answers `426` and nothing more of it.
   */
  readonly noUpgrade?: boolean | undefined
}

export interface Suite {
  /** The binding under test; read it inside tests, once the suite's `beforeAll` has run. */
  readonly target: Target
  /** What the binding cannot do by its nature (`describeConformance`'s third argument). */
  readonly capabilities: Capabilities
  readonly model: ConformanceModel.ConformanceModel
  /** Resolves when a turn has ended and its reply is stored. */
  readonly turns: TurnObserver.TurnObserver
  /** The `authorization` header of a user. */
  readonly as: (user: User) => Record<string, string>
  /** Sends a request to `path` under the binding's base URL. */
  readonly request: (path: string, options?: RequestOptions) => Promise<Response>
  /** Posts a chat request (JSON unless `body` is a string), as `user` (`null`: no credentials). */
  readonly chat: (
    body: unknown,
    init?: { readonly headers?: Record<string, string>; readonly signal?: AbortSignal },
    user?: User | null
  ) => Promise<Response>
  /** Streams a chat turn to the end and returns its parsed events. */
  readonly streamed: (body: Record<string, unknown>, user?: User) => Promise<Array<Record<string, any>>>
  /** A fresh token for the model's commands (`gated <token>`, …). */
  readonly token: () => string
  /**
   * Starts a reply the model never ends (`endless <token>`), reads the
   * metadata event and both deltas ("Echo", " partial"), then disconnects:
   * the turn goes on for the grace window, then is cancelled. Returns the
   * metadata event and the message sent.
   */
  readonly disconnectMidReply: () => Promise<{
    readonly metadata: Record<string, any>
    readonly message: string
  }>
}

/** The suite's helpers around the binding that `target` returns once it is up. */
export const make = (options: {
  readonly target: () => Target
  readonly capabilities?: Capabilities | undefined
  readonly model: ConformanceModel.ConformanceModel
  readonly turns: TurnObserver.TurnObserver
}): Suite => {
  const as = (user: User) => ({ authorization: `Bearer ${KEYS[user]}` })
  const request = (path: string, init: RequestOptions = {}) => {
    const user = init.user === undefined ? "alice" : init.user
    return fetch(`${options.target().url}${path}`, {
      method: init.method ?? "GET",
      headers: {
        ...(init.body === undefined || typeof init.body === "string"
          ? {}
          : { "content-type": "application/json" }),
        ...(user === null ? {} : as(user)),
        ...init.headers
      },
      ...(init.body === undefined
        ? {}
        : { body: typeof init.body === "string" ? init.body : JSON.stringify(init.body) }),
      ...(init.signal === undefined ? {} : { signal: init.signal })
    })
  }
  const chat: Suite["chat"] = (body, init = {}, user = "alice") =>
    fetch(`${options.target().url}${ChatHttp.CHAT_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(user ? as(user) : {}), ...init.headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
      ...(init.signal === undefined ? {} : { signal: init.signal })
    })
  const token = () => crypto.randomUUID().slice(0, 8)
  const disconnectMidReply: Suite["disconnectMidReply"] = async () => {
    const message = `endless ${token()}`
    const controller = new AbortController()
    const response = await chat({ message, stream: true }, { signal: controller.signal })
    const reader = Sse.reader(response.body!)
    const metadata = JSON.parse((await reader.next())!)
    expect(metadata.type).toBe("metadata")
    // Both deltas reached the client before it leaves: the partial reply holds them.
    expect(JSON.parse((await reader.next())!).delta.content).toBe("Echo")
    expect(JSON.parse((await reader.next())!).delta.content).toBe(" partial")
    controller.abort()
    await reader.cancel().catch(() => {})
    return { metadata, message }
  }
  return {
    get target() {
      return options.target()
    },
    capabilities: options.capabilities ?? {},
    model: options.model,
    turns: options.turns,
    as,
    request,
    chat,
    streamed: async (body, user = "alice") =>
      Sse.events(await Sse.readAll(await chat({ ...body, stream: true }, {}, user))),
    token,
    disconnectMidReply
  }
}
