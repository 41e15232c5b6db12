/**
 * The Convoke client: `chat()` streams a reply and hands out the conversation
 * id the moment the first event arrives; `conversations` lists, reads,
 * renames and deletes stored conversations. Works wherever `fetch` and
 * `ReadableStream` do: browsers, Node ≥ 20, Deno, Bun, web and service workers.
 * Replies come over Server-Sent Events, one request each, or with
 * `transport: "websocket"` over one WebSocket that every reply shares; the
 * API is the same.
 *
 * @example
 * const client = new ConvokeClient({ baseUrl: "http://127.0.0.1:3000" })
 * const reply = client.chat({ message: "Hello" })
 * console.log(await reply.conversationId) // before the first word
 * for await (const delta of reply) process.stdout.write(delta)
 */
import * as ChatEvent from "./ChatEvent.ts"
import { type ChatMetadata, ChatReply, type ReplySink } from "./ChatReply.ts"
import { ChatSocket, type Frame, SOCKET_PATH, TICKET_PATH, type WebSocketConstructor } from "./ChatSocket.ts"
import type { ConversationStorage } from "./ConversationStorage.ts"
import { CONVERSATIONS_PATH, Conversations } from "./Conversations.ts"
import {
  ConvokeAbortError,
  ConvokeError,
  ConvokeHttpError,
  ConvokeNetworkError,
  ConvokeProtocolError,
  ConvokeStreamError
} from "./ConvokeError.ts"
import { VERSION } from "./version.ts"

/** The chat path of the v0.3 API. */
export const CHAT_PATH = "/api/v0.3/chat"

/** When and how often a request is retried. */
export interface RetryOptions {
  /** Retries after the first attempt (default 2; `0` disables retries). */
  readonly retries?: number
  /** First backoff delay; doubles each retry, with jitter (default 250 ms). */
  readonly baseDelayMs?: number
  /**
   * Longest wait between attempts (default 10 s). A `Retry-After` longer than
   * this is not waited for: the error is thrown instead.
   */
  readonly maxDelayMs?: number
}

/**
 * How a reply whose connection drops after the first event is resumed: the
 * client reconnects to the resume endpoint with the last event id it saw,
 * waiting `baseDelayMs`, doubling each time (with jitter) up to `maxDelayMs`,
 * and gives up after `attempts` failures in a row (a reconnection that
 * delivers an event starts the count again).
 */
export interface ResumeOptions {
  /** Reconnection attempts in a row before the reply fails (default 5). */
  readonly attempts?: number
  /** First wait before reconnecting (default 250 ms). */
  readonly baseDelayMs?: number
  /** Longest wait between attempts (default 5 s). */
  readonly maxDelayMs?: number
}

/** Options of `client.resume(...)`. */
export interface ResumeTurnOptions {
  /** The conversation whose running (or recently ended) turn to follow. */
  readonly conversationId: string
  /**
   * The last event id seen (`reply.lastEventId`): only later events are sent.
   * Without it the turn is replayed from its first event.
   */
  readonly lastEventId?: string | undefined
  /** Aborts the request, like `reply.abort()`. */
  readonly signal?: AbortSignal | undefined
  /** Overrides the client's `resume` option for this reply. */
  readonly resume?: ResumeOptions | false | undefined
}

/** Options of `new ConvokeClient(...)`. */
export interface ClientOptions {
  /** Where the server is, e.g. `https://chat.example.com`. Default: the page's own origin. */
  readonly baseUrl?: string
  /**
   * Sent as `Authorization: Bearer <apiKey>`. A function is called before each
   * request, for tokens that expire.
   */
  readonly apiKey?: string | (() => string | Promise<string>)
  /** Extra headers on every request. */
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Retries of network errors, 429 and 503 — only before the metadata event,
   * so a reply is never sent twice. Default `{ retries: 2 }`; `false` disables.
   */
  readonly retry?: RetryOptions | false
  /**
   * Resuming a reply whose connection drops after the first event. Default
   * `{ attempts: 5, baseDelayMs: 250, maxDelayMs: 5000 }`; `false` lets the
   * reply fail with `ConvokeNetworkError` instead.
   */
  readonly resume?: ResumeOptions | false
  /** Remembers the current conversation per key; see `ChatOptions.key`. */
  readonly storage?: ConversationStorage
  /** The `fetch` to use (default `globalThis.fetch`). */
  readonly fetch?: typeof fetch
  /**
   * How replies travel: `"sse"` (default), one streaming HTTP request per
   * reply, or `"websocket"`, one socket for the whole client that every reply
   * shares (`GET /api/v0.3/ws`). The API is the same; the conversation API
   * (`client.conversations`) is HTTP either way. Close the socket with
   * `client.close()` when done (it would keep a Node process running).
   */
  readonly transport?: "sse" | "websocket"
  /**
   * The WebSocket class (default `globalThis.WebSocket`). Node 20 has none:
   * pass the `ws` package's (`import WebSocket from "ws"`).
   */
  readonly WebSocket?: WebSocketConstructor
  /**
   * How the socket is authenticated: `"headers"` sends the client's
   * credentials and headers on the upgrade request (Node's `WebSocket` and
   * `ws` allow it); `"ticket"` first gets a single-use ticket from
   * `POST /api/v0.3/ws/ticket` and opens `…/ws?ticket=…`, a fresh one for
   * each connection (browsers cannot set headers on a WebSocket). Default:
   * `"headers"` in Node, Bun and Deno, `"ticket"` elsewhere.
   */
  readonly webSocketAuth?: "headers" | "ticket"
  /**
   * While replies stream over the socket, a link quiet this long gets a
   * `ping`, and one still quiet after as long again counts as dropped (the
   * replies resume on a new socket). Default 15 000 ms; `0` turns it off.
   */
  readonly heartbeatMs?: number
}

/** Options of `client.chat(...)`. */
export interface ChatOptions {
  /** The user's message. */
  readonly message: string
  /**
   * The conversation to continue; `"new"` or `null` starts one. When omitted,
   * the stored id for `key` is used if the client has `storage`, otherwise a
   * new conversation starts. An id the server does not know (or that belongs
   * to someone else) starts a new conversation: compare `reply.conversationId`.
   */
  readonly conversationId?: string | null | undefined
  /** A model name from the server's allow-list. */
  readonly model?: string | undefined
  /** Aborts the request, like `reply.abort()`. */
  readonly signal?: AbortSignal | undefined
  /** Which remembered conversation to use and update (default `"default"`). */
  readonly key?: string | undefined
  /** Overrides the client's `resume` option for this reply. */
  readonly resume?: ResumeOptions | false | undefined
}

const DEFAULT_KEY = "default"

/** Whether this runs in Node (or in Bun or Deno, which say so too), whose WebSocket takes headers. */
const isNode =
  typeof (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions?.node === "string"

/** The client kind and version sent as `X-Convoke-Client`: `web/…` in a page, `node/…` elsewhere. */
const CLIENT_HEADER = `${typeof document === "undefined" ? "node" : "web"}/${VERSION}`

/** Where a reply's stream is: its turn and the last event delivered. */
interface Cursor {
  turnId: string | undefined
  lastSeq: number
}

/** Thrown when a resumed stream belongs to another turn than the reply's. */
class OtherTurn extends Error {}

const streamPath = (conversationId: string) =>
  `${CONVERSATIONS_PATH}/${encodeURIComponent(conversationId)}/stream`

/** Whether `error` is the network's doing: a dropped connection, a reset, an unreachable server. */
const isNetworkFailure = (error: unknown) =>
  error instanceof ConvokeNetworkError || (error instanceof TypeError && !(error instanceof ConvokeError))

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort)
      resolve()
    }, ms)
    signal.addEventListener("abort", onAbort, { once: true })
  })

const isRetryableStatus = (status: number) => status === 429 || status === 503

/** A controller that also aborts when the caller's `signal` does. */
const linkedController = (external: AbortSignal | undefined): AbortController => {
  const controller = new AbortController()
  if (external !== undefined) {
    if (external.aborted) controller.abort(external.reason)
    else external.addEventListener("abort", () => controller.abort(external.reason), { once: true })
  }
  return controller
}

/** The reply's view of a metadata event. */
const metadataOf = (event: ChatEvent.MetadataEvent): ChatMetadata => ({
  conversationId: event.conversation_id,
  model: event.model,
  timestamp: event.timestamp,
  temporary: event.temporary === true,
  turnId: event.turn_id
})

/**
 * Feeds one stream of a turn into the reply, whichever transport carries it:
 * the first event must be metadata (handed to `onMetadata`); events already
 * delivered (by their id) are skipped; an `error` event is kept for the end.
 * `end` throws that error as `ConvokeStreamError`, or a network error when
 * the stream stopped before its end.
 */
const turnReader = (
  sink: ReplySink,
  cursor: Cursor,
  onMetadata: (event: ChatEvent.MetadataEvent) => void
) => {
  let started = false
  let failure: ChatEvent.ErrorEvent | undefined
  return {
    event: (event: ChatEvent.ChatEvent, id: string | undefined): void => {
      if (!started) {
        if (event.type !== "metadata") {
          throw new ConvokeProtocolError(`The first event is "${event.type}", not "metadata"`)
        }
        started = true
        onMetadata(event)
        return
      }
      if (event.type === "metadata") return
      const parsed = id === undefined ? undefined : ChatEvent.parseEventId(id)
      if (parsed !== undefined && (cursor.turnId === undefined || parsed.turnId === cursor.turnId)) {
        // Defensive: an event at or before the last one delivered is not delivered again.
        if (parsed.seq <= cursor.lastSeq) return
        cursor.lastSeq = parsed.seq
        sink.eventId(id!)
      }
      switch (event.type) {
        case "content":
          sink.delta(event.delta.content)
          return
        case "error":
          failure = event
          return
      }
    },
    end: (completed: boolean): void => {
      if (failure !== undefined) {
        throw new ConvokeStreamError({
          type: failure.error.type,
          message: failure.error.message,
          conversationId: sink.conversationId() ?? "",
          partialText: sink.partialText()
        })
      }
      if (!completed) {
        const conversationId = sink.conversationId()
        if (!started || conversationId === undefined)
          throw new TypeError("The stream ended before its first event")
        throw new ConvokeNetworkError("The connection closed before the reply was complete", {
          conversationId,
          partialText: sink.partialText()
        })
      }
    }
  }
}

/** A WebSocket error frame with a status (a request refused before its turn started), as the HTTP error it stands for. */
const httpErrorOf = (frame: Frame): ConvokeHttpError => {
  const status = frame.status as number
  const error = frame.error as { type?: unknown; message?: unknown } | undefined
  return new ConvokeHttpError({
    status,
    type: typeof error?.type === "string" ? error.type : `http_${status}`,
    message: typeof error?.message === "string" ? error.message : `HTTP ${status}`,
    retryAfterSeconds: typeof frame.retry_after === "number" ? frame.retry_after : undefined,
    body: { error: frame.error }
  })
}

/** A request the transport sends; the body is JSON. */
export interface TransportRequest {
  readonly method: "GET" | "POST" | "PATCH" | "DELETE"
  readonly path: string
  readonly body?: unknown
  readonly accept?: string
  /** Extra headers for this request. */
  readonly headers?: Readonly<Record<string, string>>
  readonly signal: AbortSignal
}

/** The client; create one per server and reuse it. */
export class ConvokeClient {
  /** List, read, rename and delete conversations. */
  readonly conversations: Conversations

  readonly #baseUrl: string
  readonly #options: ClientOptions
  readonly #retry: Required<RetryOptions>
  /** The shared socket of `transport: "websocket"`. */
  readonly #socket: ChatSocket | undefined

  constructor(options: ClientOptions = {}) {
    this.#options = options
    this.#baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "")
    this.#retry =
      options.retry === false
        ? { retries: 0, baseDelayMs: 0, maxDelayMs: 0 }
        : {
            retries: options.retry?.retries ?? 2,
            baseDelayMs: options.retry?.baseDelayMs ?? 250,
            maxDelayMs: options.retry?.maxDelayMs ?? 10_000
          }
    this.conversations = new Conversations((request) =>
      this.withRetry(request.signal, () => this.send(request))
    )
    this.#socket = options.transport === "websocket" ? this.#makeSocket(options) : undefined
  }

  #makeSocket(options: ClientOptions): ChatSocket {
    const WebSocket = options.WebSocket ?? (globalThis.WebSocket as WebSocketConstructor | undefined)
    if (WebSocket === undefined) {
      throw new ConvokeError(
        'This runtime has no global WebSocket (Node 20): pass one as the `WebSocket` option, e.g. `import WebSocket from "ws"`'
      )
    }
    const auth = options.webSocketAuth ?? (isNode ? "headers" : "ticket")
    const never = new AbortController().signal
    return new ChatSocket({
      WebSocket,
      heartbeatMs: options.heartbeatMs ?? 15_000,
      target: async () => {
        const url = new URL(
          `${this.#baseUrl}${SOCKET_PATH}`,
          typeof location === "undefined" ? undefined : location.href
        )
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
        if (auth === "headers") return { url: url.href, headers: await this.#headers() }
        const response = await this.send({ method: "POST", path: TICKET_PATH, signal: never })
        const body = (await response.json()) as { ticket?: unknown }
        if (typeof body?.ticket !== "string")
          throw new ConvokeProtocolError("The ticket answer has no ticket")
        url.searchParams.set("ticket", body.ticket)
        return { url: url.href }
      },
      diagnose: async () => {
        // The same route over plain HTTP: a refusal (401, 403, 429, 503) is the socket's; 426 means it would open.
        try {
          await this.send({ method: "GET", path: SOCKET_PATH, signal: AbortSignal.timeout(10_000) })
        } catch (error) {
          if (error instanceof ConvokeHttpError && error.status !== 426) throw error
        }
      }
    })
  }

  /** Asks the server to stop a conversation's running turn: over the socket with `transport: "websocket"`. */
  #stop(conversationId: string): Promise<unknown> {
    if (this.#socket === undefined) return this.conversations.stop(conversationId)
    return this.#socket.request({ type: "chat.stop", conversation_id: conversationId }, (answer) => {
      if (answer.type === "stopped") return true
      if (answer.type === "error" && typeof answer.status === "number") throw httpErrorOf(answer)
      return undefined
    })
  }

  /**
   * Closes the WebSocket of `transport: "websocket"`, if one is open: replies
   * still streaming on it fail with `ConvokeAbortError` (their turns go on on
   * the server). A later `chat` opens a new socket. Does nothing with SSE.
   */
  close(): void {
    this.#socket?.close()
  }

  /**
   * Sends a message and streams the reply. Returns at once; the request runs
   * in the background. See `ChatReply` for what the result offers.
   */
  chat(options: ChatOptions): ChatReply {
    const controller = linkedController(options.signal)
    return new ChatReply(
      controller,
      (sink) => {
        this.#runChat(options, controller.signal, sink).then(sink.finish, (error: unknown) =>
          sink.fail(this.#normalise(error, controller.signal, sink))
        )
      },
      (conversationId) => this.#stop(conversationId)
    )
  }

  /**
   * Follows a conversation's running turn from outside the reply that started
   * it — after a page reload, or on another device. Resolves `undefined` when
   * the server has nothing to replay (no turn running or recently ended, or
   * `lastEventId` names an earlier turn: read the conversation instead), and
   * otherwise a `ChatReply` that has its metadata and streams the rest of the
   * reply (from `lastEventId` on), resuming and stopping like any other.
   * Rejects with `ConvokeHttpError` for 400 (a malformed `lastEventId`) or 404.
   */
  async resume(options: ResumeTurnOptions): Promise<ChatReply | undefined> {
    if (this.#socket !== undefined) return this.#resumeOnSocket(options)
    const controller = linkedController(options.signal)
    const signal = controller.signal
    const after = options.lastEventId === undefined ? undefined : ChatEvent.parseEventId(options.lastEventId)
    const response = await this.withRetry(signal, () =>
      this.#openStream(options.conversationId, options.lastEventId, signal)
    )
    if (response === undefined) return undefined
    const cursor: Cursor = { turnId: after?.turnId, lastSeq: after?.seq ?? 0 }
    const resume = this.#resumeOptions(options.resume)
    const reply = new ChatReply(
      controller,
      (sink) => {
        if (options.lastEventId !== undefined) sink.eventId(options.lastEventId)
        const run = async () => {
          try {
            await this.#readStream(response, sink, cursor, (event) => {
              cursor.turnId = event.turn_id ?? cursor.turnId
              sink.metadata(metadataOf(event))
            })
          } catch (error) {
            return this.#recover(error, sink, cursor, resume, signal)
          }
        }
        run().then(sink.finish, (error: unknown) => sink.fail(this.#normalise(error, signal, sink)))
      },
      (conversationId) => this.#stop(conversationId)
    )
    // Errors before the first event are the caller's to see, as for any request.
    await reply.metadata
    return reply
  }

  /** `resume` over the socket: `chat.resume`, answered by the turn's frames or by `no_turn`. */
  async #resumeOnSocket(options: ResumeTurnOptions): Promise<ChatReply | undefined> {
    const controller = linkedController(options.signal)
    const signal = controller.signal
    const after = options.lastEventId === undefined ? undefined : ChatEvent.parseEventId(options.lastEventId)
    const cursor: Cursor = { turnId: after?.turnId, lastSeq: after?.seq ?? 0 }
    const resume = this.#resumeOptions(options.resume)
    let nothingToReplay = false
    const reply = new ChatReply(
      controller,
      (sink) => {
        if (options.lastEventId !== undefined) sink.eventId(options.lastEventId)
        const follow = () =>
          this.#follow(options.conversationId, options.lastEventId, sink, cursor, signal, (event) => {
            cursor.turnId = event.turn_id ?? cursor.turnId
            sink.metadata(metadataOf(event))
          })
        this.#startTurn(follow, sink, cursor, resume, signal).then(
          (followed) => {
            if (followed === false) nothingToReplay = true
            sink.finish()
          },
          (error: unknown) => sink.fail(this.#normalise(error, signal, sink))
        )
      },
      (conversationId) => this.#stop(conversationId)
    )
    try {
      await reply.metadata
    } catch (error) {
      if (nothingToReplay) return undefined
      throw error
    }
    return reply
  }

  /** The remembered conversation id for `key`, if the client has storage and one is stored. */
  async currentConversationId(key: string = DEFAULT_KEY): Promise<string | undefined> {
    return (await this.#options.storage?.get(key)) ?? undefined
  }

  /** Forgets the remembered conversation for `key`: the next `chat` with that key starts a new one. */
  async forgetConversation(key: string = DEFAULT_KEY): Promise<void> {
    await this.#options.storage?.delete(key)
  }

  async #runChat(options: ChatOptions, signal: AbortSignal, sink: ReplySink): Promise<void> {
    const storage = this.#options.storage
    const key = options.key ?? DEFAULT_KEY
    const conversationId =
      options.conversationId !== undefined
        ? options.conversationId
        : storage === undefined
          ? undefined
          : ((await storage.get(key)) ?? undefined)
    const body: Record<string, unknown> = { message: options.message, stream: true }
    if (conversationId !== undefined) body.conversation_id = conversationId
    if (options.model !== undefined) body.model = options.model

    const cursor: Cursor = { turnId: undefined, lastSeq: 0 }
    const resume = this.#resumeOptions(options.resume)
    const onMetadata = (event: ChatEvent.MetadataEvent) => {
      const metadata = metadataOf(event)
      cursor.turnId = metadata.turnId
      if (storage !== undefined) {
        // Best effort: a storage failure must not break the reply.
        Promise.resolve()
          .then(() => storage.set(key, metadata.conversationId))
          .catch(() => {})
      }
      sink.metadata(metadata)
    }
    const socket = this.#socket
    const attempt =
      socket === undefined
        ? async () => {
            const response = await this.send({
              method: "POST",
              path: CHAT_PATH,
              body,
              accept: "text/event-stream",
              signal
            })
            await this.#readStream(response, sink, cursor, onMetadata)
          }
        : async () => {
            const { stream: _, ...fields } = body
            await this.#readSocketTurn(
              socket,
              { type: "chat.send", ...fields },
              sink,
              cursor,
              signal,
              onMetadata
            )
          }
    await this.#startTurn(attempt, sink, cursor, resume, signal)
  }

  /**
   * Runs `attempt` (a request that starts or follows a turn) with the
   * client's retry policy while no metadata event has arrived. After it the
   * server has started the turn, and sending the message again would repeat
   * it: a failure then is resumed (`#recover`), and resolves `undefined`.
   */
  async #startTurn<A>(
    attempt: () => Promise<A>,
    sink: ReplySink,
    cursor: Cursor,
    resume: Required<ResumeOptions> | false,
    signal: AbortSignal
  ): Promise<A | undefined> {
    for (let count = 0; ; count++) {
      let delayMs: number | undefined
      try {
        return await attempt()
      } catch (error) {
        if (sink.conversationId() !== undefined) {
          await this.#recover(error, sink, cursor, resume, signal)
          return undefined
        }
        if (signal.aborted || count >= this.#retry.retries) throw error
        delayMs = this.#retryDelay(error, count)
        if (delayMs === undefined) throw error
      }
      await sleep(delayMs, signal)
    }
  }

  #resumeOptions(override: ResumeOptions | false | undefined): Required<ResumeOptions> | false {
    const options = override === undefined ? this.#options.resume : override
    if (options === false) return false
    return {
      attempts: options?.attempts ?? 5,
      baseDelayMs: options?.baseDelayMs ?? 250,
      maxDelayMs: options?.maxDelayMs ?? 5000
    }
  }

  /**
   * Reads one event stream into the reply: the first event must be metadata
   * (handed to `onMetadata`); later events already delivered (by their id)
   * are skipped. Resolves on `[DONE]`; rejects with the stream's error event
   * as `ConvokeStreamError`, or with a network error when the body breaks.
   */
  async #readStream(
    response: Response,
    sink: ReplySink,
    cursor: Cursor,
    onMetadata: (event: ChatEvent.MetadataEvent) => void
  ): Promise<void> {
    const contentType = response.headers.get("content-type") ?? ""
    if (!contentType.startsWith("text/event-stream") || response.body === null) {
      await response.body?.cancel().catch(() => {})
      throw new ConvokeProtocolError(`Expected an event stream, got "${contentType}"`)
    }
    const reader = turnReader(sink, cursor, onMetadata)
    reader.end(await ChatEvent.read(response.body, reader.event))
  }

  /**
   * Runs one turn request (`chat.send` or `chat.resume`) on the socket into
   * the reply, as `#readStream` reads an SSE body: resolves `true` after the
   * turn's `done` frame, `false` when the server has nothing to replay
   * (`no_turn`, HTTP's 204). Rejects with `ConvokeHttpError` for an error
   * frame before the turn started, `ConvokeStreamError` for the turn's
   * `error` event, `ConvokeNetworkError` when the socket drops.
   */
  async #readSocketTurn(
    socket: ChatSocket,
    frame: Record<string, unknown>,
    sink: ReplySink,
    cursor: Cursor,
    signal: AbortSignal,
    onMetadata: (event: ChatEvent.MetadataEvent) => void
  ): Promise<boolean> {
    const reader = turnReader(sink, cursor, onMetadata)
    try {
      return await socket.request(
        frame,
        (answer) => {
          if (answer.type === "no_turn") return false
          if (answer.type === "error" && typeof answer.status === "number") throw httpErrorOf(answer)
          const event = ChatEvent.decode(answer)
          if (event === undefined) return undefined
          reader.event(event, typeof answer.event_id === "string" ? answer.event_id : undefined)
          if (event.type !== "done") return undefined
          reader.end(true)
          return true
        },
        signal
      )
    } catch (error) {
      const conversationId = sink.conversationId()
      if (error instanceof ConvokeNetworkError && conversationId !== undefined) {
        throw new ConvokeNetworkError(error.message, {
          cause: error,
          conversationId,
          partialText: sink.partialText()
        })
      }
      throw error
    }
  }

  /**
   * Follows a conversation's turn from after `lastEventId` (from its start
   * without it) on the client's transport: the resume endpoint, or
   * `chat.resume` on the socket. Resolves `false` when the server has
   * nothing to replay.
   */
  async #follow(
    conversationId: string,
    lastEventId: string | undefined,
    sink: ReplySink,
    cursor: Cursor,
    signal: AbortSignal,
    onMetadata: (event: ChatEvent.MetadataEvent) => void
  ): Promise<boolean> {
    if (this.#socket !== undefined) {
      const frame = {
        type: "chat.resume",
        conversation_id: conversationId,
        ...(lastEventId === undefined ? {} : { last_event_id: lastEventId })
      }
      return this.#readSocketTurn(this.#socket, frame, sink, cursor, signal, onMetadata)
    }
    const response = await this.#openStream(conversationId, lastEventId, signal)
    if (response === undefined) return false
    await this.#readStream(response, sink, cursor, onMetadata)
    return true
  }

  /**
   * After the metadata event, a dropped connection is resumed through the
   * resume endpoint (with the last event id), with backoff, until the reply
   * ends or `attempts` reconnections in a row have failed. When the server
   * has nothing to replay (204), the reply is finished from the stored
   * conversation. Anything but a network failure is the reply's error.
   */
  async #recover(
    error: unknown,
    sink: ReplySink,
    cursor: Cursor,
    resume: Required<ResumeOptions> | false,
    signal: AbortSignal
  ): Promise<void> {
    const conversationId = sink.conversationId()
    if (sink.stopping()) return
    if (
      resume === false ||
      signal.aborted ||
      conversationId === undefined ||
      cursor.turnId === undefined ||
      !isNetworkFailure(error)
    ) {
      throw error
    }
    let lastError = error
    let failures = 0
    while (true) {
      if (failures >= resume.attempts) throw lastError
      sink.state("reconnecting")
      await sleep(
        Math.min(resume.maxDelayMs, resume.baseDelayMs * 2 ** failures * (0.5 + Math.random() / 2)),
        signal
      )
      failures++
      try {
        const seqBefore = cursor.lastSeq
        let followed: boolean
        try {
          followed = await this.#follow(
            conversationId,
            cursor.lastSeq > 0 ? `${cursor.turnId}:${cursor.lastSeq}` : undefined,
            sink,
            cursor,
            signal,
            (event) => {
              if (event.turn_id !== cursor.turnId) throw new OtherTurn()
              sink.state("streaming")
            }
          )
        } finally {
          // A reconnection that delivered something worked: the count starts again. One that
          // only sent the metadata again did not, or a link that drops at once would loop forever.
          if (cursor.lastSeq > seqBefore) failures = 0
        }
        if (followed) return
        if (await this.#finishFromStore(sink, cursor, conversationId, signal)) return
        lastError = new ConvokeNetworkError(
          "The turn is still running but the server has nothing to replay",
          {
            conversationId,
            partialText: sink.partialText()
          }
        )
      } catch (caught) {
        if (signal.aborted || sink.stopping()) throw caught
        if (caught instanceof OtherTurn) {
          if (await this.#finishFromStore(sink, cursor, conversationId, signal)) return
          continue
        }
        const transient =
          isNetworkFailure(caught) ||
          (caught instanceof ConvokeHttpError && (caught.status === 429 || caught.status >= 500))
        if (!transient) throw caught
        lastError = caught
      }
    }
  }

  /**
   * Opens the resume stream of a conversation, from after `lastEventId` (from
   * the turn's start without it); `undefined` when the server has nothing to
   * replay (204).
   */
  async #openStream(
    conversationId: string,
    lastEventId: string | undefined,
    signal: AbortSignal
  ): Promise<Response | undefined> {
    const response = await this.send({
      method: "GET",
      path: streamPath(conversationId),
      accept: "text/event-stream",
      ...(lastEventId === undefined ? {} : { headers: { "last-event-id": lastEventId } }),
      signal
    })
    if (response.status !== 204) return response
    await response.body?.cancel().catch(() => {})
    return undefined
  }

  /**
   * Ends the reply from the stored conversation: the text beyond what was
   * received is delivered as one delta, and the stored status decides how
   * the reply ends. Resolves `false` when the turn is still running (or its
   * reply is not stored yet): worth another reconnection.
   */
  async #finishFromStore(
    sink: ReplySink,
    cursor: Cursor,
    conversationId: string,
    signal: AbortSignal
  ): Promise<boolean> {
    const conversation = await this.conversations.get(conversationId, { signal })
    if (conversation.runningTurn?.turnId === cursor.turnId) return false
    const stored = conversation.messages.findLast(
      (message) => message.role === "assistant" && message.status !== "streaming"
    )
    if (stored === undefined) return false
    const received = sink.partialText()
    // Text that does not continue what was received belongs to something else: deliver nothing.
    if (stored.content.startsWith(received) && stored.content.length > received.length) {
      sink.delta(stored.content.slice(received.length))
    }
    if (stored.status === "cancelled" || stored.status === "interrupted" || stored.status === "error") {
      throw new ConvokeStreamError({
        type: stored.status,
        message: `The reply ended as ${stored.status}`,
        conversationId,
        partialText: sink.partialText()
      })
    }
    return true
  }

  /** Milliseconds before the next attempt, or `undefined` when `error` is not worth retrying. */
  #retryDelay(error: unknown, attempt: number): number | undefined {
    const backoff = Math.min(
      this.#retry.maxDelayMs,
      this.#retry.baseDelayMs * 2 ** attempt * (0.5 + Math.random() / 2)
    )
    if (error instanceof ConvokeHttpError) {
      if (!isRetryableStatus(error.status)) return undefined
      if (error.retryAfterSeconds === undefined) return backoff
      const wait = error.retryAfterSeconds * 1000
      return wait > this.#retry.maxDelayMs ? undefined : wait
    }
    // fetch rejects with a TypeError when the server cannot be reached or the
    // connection drops; a body that broke before its first event is the same.
    if (
      error instanceof ConvokeNetworkError ||
      (error instanceof TypeError && !(error instanceof ConvokeError))
    ) {
      return backoff
    }
    return undefined
  }

  /** Turns whatever a request failed with into the client's error types. */
  #normalise(error: unknown, signal: AbortSignal, sink: ReplySink): unknown {
    if (signal.aborted) {
      return signal.reason instanceof ConvokeAbortError
        ? signal.reason
        : new ConvokeAbortError({ conversationId: sink.conversationId(), partialText: sink.partialText() })
    }
    if (error instanceof ConvokeError) return error
    const conversationId = sink.conversationId()
    return new ConvokeNetworkError(
      `Request failed: ${error instanceof Error ? error.message : String(error)}`,
      conversationId === undefined
        ? { cause: error, partialText: sink.partialText() }
        : { cause: error, conversationId, partialText: sink.partialText() }
    )
  }

  /**
   * Sends one request with the client's base URL, headers and credentials.
   * Error statuses become `ConvokeHttpError`; the response is returned as is
   * otherwise. No retries here (see `chat` and `Conversations`).
   */
  async send(request: TransportRequest): Promise<Response> {
    const headers = await this.#headers(request.headers)
    if (request.accept !== undefined) headers.accept = request.accept
    if (request.body !== undefined) headers["content-type"] = "application/json"
    const fetchImpl = this.#options.fetch ?? globalThis.fetch
    const response = await fetchImpl(`${this.#baseUrl}${request.path}`, {
      method: request.method,
      headers,
      signal: request.signal,
      ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) })
    })
    if (!response.ok) throw await ConvokeHttpError.fromResponse(response)
    return response
  }

  /** The headers of every request: the client's own, `X-Convoke-Client` and the credentials. */
  async #headers(extra?: Readonly<Record<string, string>>): Promise<Record<string, string>> {
    const headers: Record<string, string> = { ...this.#options.headers, ...extra }
    // The caller's own X-Convoke-Client, in any case, wins.
    if (!Object.keys(headers).some((name) => name.toLowerCase() === "x-convoke-client")) {
      headers["x-convoke-client"] = CLIENT_HEADER
    }
    const apiKey = this.#options.apiKey
    const key = typeof apiKey === "function" ? await apiKey() : apiKey
    if (key !== undefined) headers.authorization = `Bearer ${key}`
    return headers
  }

  /** Runs `operation` with the client's retry policy (network errors, 429, 503). */
  async withRetry<A>(signal: AbortSignal, operation: () => Promise<A>): Promise<A> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await operation()
      } catch (error) {
        if (signal.aborted) throw new ConvokeAbortError()
        const delayMs = attempt < this.#retry.retries ? this.#retryDelay(error, attempt) : undefined
        if (delayMs === undefined) {
          throw error instanceof ConvokeError
            ? error
            : new ConvokeNetworkError(`Request failed: ${(error as Error)?.message ?? String(error)}`, {
                cause: error
              })
        }
        await sleep(delayMs, signal)
      }
    }
  }
}
