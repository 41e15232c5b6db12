/**
 * The Convoke client: `chat()` streams a reply and hands out the conversation
 * id the moment the first event arrives; `conversations` lists, reads,
 * renames and deletes stored conversations. Works wherever `fetch` and
 * `ReadableStream` do: browsers, Node ≥ 20, Deno, Bun, web and service workers.
 *
 * @example
 * const client = new ConvokeClient({ baseUrl: "http://127.0.0.1:3000" })
 * const reply = client.chat({ message: "Hello" })
 * console.log(await reply.conversationId) // before the first word
 * for await (const delta of reply) process.stdout.write(delta)
 */
import * as ChatEvent from "./ChatEvent.ts"
import { type ChatMetadata, ChatReply, type ReplySink } from "./ChatReply.ts"
import type { ConversationStorage } from "./ConversationStorage.ts"
import { Conversations } from "./Conversations.ts"
import {
  ConvokeAbortError,
  ConvokeError,
  ConvokeHttpError,
  ConvokeNetworkError,
  ConvokeProtocolError,
  ConvokeStreamError
} from "./ConvokeError.ts"

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
  /** Remembers the current conversation per key; see `ChatOptions.key`. */
  readonly storage?: ConversationStorage
  /** The `fetch` to use (default `globalThis.fetch`). */
  readonly fetch?: typeof fetch
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
}

const DEFAULT_KEY = "default"

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

/** A request the transport sends; the body is JSON. */
export interface TransportRequest {
  readonly method: "GET" | "POST" | "PATCH" | "DELETE"
  readonly path: string
  readonly body?: unknown
  readonly accept?: string
  readonly signal: AbortSignal
}

/** The client; create one per server and reuse it. */
export class ConvokeClient {
  /** List, read, rename and delete conversations. */
  readonly conversations: Conversations

  readonly #baseUrl: string
  readonly #options: ClientOptions
  readonly #retry: Required<RetryOptions>

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
  }

  /**
   * Sends a message and streams the reply. Returns at once; the request runs
   * in the background. See `ChatReply` for what the result offers.
   */
  chat(options: ChatOptions): ChatReply {
    const controller = new AbortController()
    const external = options.signal
    if (external !== undefined) {
      if (external.aborted) controller.abort(external.reason)
      else external.addEventListener("abort", () => controller.abort(external.reason), { once: true })
    }
    return new ChatReply(controller, (sink) => {
      this.#runChat(options, controller.signal, sink).then(sink.finish, (error: unknown) =>
        sink.fail(this.#normalise(error, controller.signal, sink))
      )
    })
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

    // Retries happen only while no metadata event has arrived: after it the
    // server has started the turn, and sending the message again would repeat it.
    for (let attempt = 0; ; attempt++) {
      let delayMs: number | undefined
      try {
        const response = await this.send({
          method: "POST",
          path: CHAT_PATH,
          body,
          accept: "text/event-stream",
          signal
        })
        const contentType = response.headers.get("content-type") ?? ""
        if (!contentType.startsWith("text/event-stream") || response.body === null) {
          await response.body?.cancel().catch(() => {})
          throw new ConvokeProtocolError(`Expected an event stream, got "${contentType}"`)
        }
        let metadata: ChatMetadata | undefined
        let failure: ChatEvent.ErrorEvent | undefined
        const completed = await ChatEvent.read(response.body, (event) => {
          if (metadata === undefined && event.type !== "metadata") {
            throw new ConvokeProtocolError(`The first event is "${event.type}", not "metadata"`)
          }
          switch (event.type) {
            case "metadata":
              if (metadata !== undefined) return
              metadata = {
                conversationId: event.conversation_id,
                model: event.model,
                timestamp: event.timestamp,
                temporary: event.temporary === true
              }
              if (storage !== undefined) {
                // Best effort: a storage failure must not break the reply.
                Promise.resolve()
                  .then(() => storage.set(key, metadata!.conversationId))
                  .catch(() => {})
              }
              sink.metadata(metadata)
              return
            case "content":
              sink.delta(event.delta.content)
              return
            case "error":
              failure = event
              return
          }
        })
        if (failure !== undefined) {
          throw new ConvokeStreamError({
            type: failure.error.type,
            message: failure.error.message,
            conversationId: metadata!.conversationId,
            partialText: sink.partialText()
          })
        }
        if (!completed) {
          if (metadata === undefined) throw new TypeError("The stream ended before its first event")
          throw new ConvokeNetworkError("The connection closed before the reply was complete", {
            conversationId: metadata.conversationId,
            partialText: sink.partialText()
          })
        }
        return
      } catch (error) {
        if (signal.aborted || sink.conversationId() !== undefined || attempt >= this.#retry.retries) {
          throw error
        }
        delayMs = this.#retryDelay(error, attempt)
        if (delayMs === undefined) throw error
      }
      await sleep(delayMs, signal)
    }
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
    const headers: Record<string, string> = { ...this.#options.headers }
    if (request.accept !== undefined) headers.accept = request.accept
    if (request.body !== undefined) headers["content-type"] = "application/json"
    const apiKey = this.#options.apiKey
    const key = typeof apiKey === "function" ? await apiKey() : apiKey
    if (key !== undefined) headers.authorization = `Bearer ${key}`
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
