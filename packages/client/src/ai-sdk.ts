/**
 * `@convoke/client/ai-sdk`: a `ChatTransport` for the Vercel AI SDK's
 * `useChat`, so a React (or Vue, Svelte, Angular) page built on the AI SDK
 * talks to a Convoke server unchanged — reload-resume included.
 *
 * - `sendMessages` sends the last user message's text to the chat endpoint,
 *   continuing the conversation this chat (`chatId`) started. The
 *   conversation id is remembered in the client's `storage` under the chat
 *   id, so with `ConversationStorage.localStorage()` it survives a reload.
 * - The v0.3 stream becomes UI message chunks: `start` (with the metadata
 *   event's `{ conversationId, model, turnId }` as `messageMetadata`, the
 *   moment the first event arrives), `text-start`, `text-delta`s, `text-end`
 *   and `finish`; a failure is an `error` chunk.
 * - `reconnectToStream` (`useChat({ resume: true })`) replays the running
 *   turn of the remembered conversation from its start, then follows it
 *   live; `null` when nothing is running or no conversation is known.
 * - The AI SDK's `stop()` ends the turn on the server (`reply.stop()`): the
 *   partial reply is stored as `cancelled`. Pass `stopOnAbort: false` to only
 *   close the connection instead (the server then keeps the turn going for
 *   its disconnect grace window, so it can be resumed).
 *
 * `ai` is an optional peer dependency and only its types are used here: this
 * module adds no runtime code of the AI SDK, and `@convoke/client` itself
 * never imports this module.
 *
 * @example
 * import { useChat } from "@ai-sdk/react"
 * import { ConversationStorage, ConvokeClient } from "@convoke/client"
 * import { ConvokeChatTransport } from "@convoke/client/ai-sdk"
 *
 * const transport = new ConvokeChatTransport({
 *   client: new ConvokeClient({ storage: ConversationStorage.localStorage() })
 * })
 * const { messages, sendMessage, stop } = useChat({ id: "support", transport, resume: true })
 */
import type { ChatTransport, UIMessage, UIMessageChunk } from "ai"
import type { ChatMetadata, ChatReply } from "./ChatReply.ts"
import type { ConvokeClient } from "./ConvokeClient.ts"
import { ConvokeHttpError, ConvokeStreamError } from "./ConvokeError.ts"

/** What the transport puts in each assistant message's `metadata`, from the stream's first event. */
export interface ConvokeMessageMetadata {
  /** The conversation the message belongs to. */
  readonly conversationId: string
  /** The public model name the server reports. */
  readonly model: string
  /** The turn (user message and reply); `undefined` from servers before turns. */
  readonly turnId: string | undefined
}

/** A UI message with Convoke's metadata: `useChat<ConvokeUIMessage>({ transport })`. */
export type ConvokeUIMessage = UIMessage<ConvokeMessageMetadata>

/** Options of `new ConvokeChatTransport(...)`. */
export interface ConvokeChatTransportOptions {
  /**
   * The client to send with. Give it `storage` (e.g.
   * `ConversationStorage.localStorage()`) so each chat's conversation id
   * survives a reload; without one, ids last as long as the transport.
   */
  readonly client: ConvokeClient
  /** A model name from the server's allow-list; a request's `body.model` overrides it. */
  readonly model?: string | undefined
  /**
   * What the AI SDK's abort (`stop()`, or `useChat` unmounting) does to a reply
   * already under way: `true` (default) stops the turn on the server, which
   * stores the partial reply as `cancelled`; `false` only closes the
   * connection, and the server keeps the turn going for its disconnect grace
   * window so another page can resume it. An abort while `reconnectToStream`
   * is still connecting only ever closes that connection.
   */
  readonly stopOnAbort?: boolean | undefined
}

type SendOptions = Parameters<ChatTransport<UIMessage>["sendMessages"]>[0]
type ReconnectOptions = Parameters<ChatTransport<UIMessage>["reconnectToStream"]>[0]

/** Replies the transport asked to stop: cancelling their chunk stream must not abort the stop under way. */
const stopping = new WeakSet<ChatReply>()

const abortError = (signal: AbortSignal): unknown =>
  signal.reason instanceof Error && signal.reason.name === "AbortError"
    ? signal.reason
    : new DOMException("The request was aborted", "AbortError")

/** The text of the last user message: its text parts, joined. */
const lastUserText = (messages: ReadonlyArray<UIMessage>): string => {
  const message = messages.findLast((candidate) => candidate.role === "user")
  if (message === undefined) throw new TypeError("useChat sent no user message")
  return message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("\n")
}

/** `body.model`, when the request's body has a string there. */
const requestedModel = (body: object | undefined): string | undefined => {
  const model = (body as { model?: unknown } | undefined)?.model
  return typeof model === "string" ? model : undefined
}

/** Waits for the reply's metadata, rejecting with an `AbortError` as soon as `signal` aborts. */
const metadataOf = (reply: ChatReply, signal: AbortSignal | undefined): Promise<ChatMetadata> => {
  if (signal === undefined) return reply.metadata
  if (signal.aborted) return Promise.reject(abortError(signal))
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal))
    signal.addEventListener("abort", onAbort, { once: true })
    reply.metadata.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort))
  })
}

/**
 * The UI message chunks of a reply whose metadata has arrived: `start` with
 * the metadata, one text part, then `finish` — or `error` when the stream
 * fails. A turn stopped elsewhere (`cancelled`) ends with an `abort` chunk.
 */
export const toUIMessageChunks = (
  reply: ChatReply,
  metadata: ChatMetadata
): ReadableStream<UIMessageChunk<ConvokeMessageMetadata>> => {
  const iterator = reply[Symbol.asyncIterator]()
  const textId = `text-${metadata.turnId ?? metadata.conversationId}`
  let textStarted = false
  return new ReadableStream<UIMessageChunk<ConvokeMessageMetadata>>({
    start(controller) {
      controller.enqueue({
        type: "start",
        ...(metadata.turnId === undefined ? {} : { messageId: metadata.turnId }),
        messageMetadata: {
          conversationId: metadata.conversationId,
          model: metadata.model,
          turnId: metadata.turnId
        }
      })
    },
    async pull(controller) {
      const endText = () => {
        if (textStarted) controller.enqueue({ type: "text-end", id: textId })
        textStarted = false
      }
      try {
        const next = await iterator.next()
        if (next.done !== true) {
          if (!textStarted) controller.enqueue({ type: "text-start", id: textId })
          textStarted = true
          controller.enqueue({ type: "text-delta", id: textId, delta: next.value })
          return
        }
        endText()
        controller.enqueue({ type: "finish", finishReason: "stop" })
      } catch (error) {
        endText()
        if (error instanceof ConvokeStreamError && error.type === "cancelled") {
          // No `reason`: ai 5's abort chunk has none.
          controller.enqueue({ type: "abort" })
        } else {
          controller.enqueue({
            type: "error",
            errorText: error instanceof Error ? error.message : String(error)
          })
        }
      }
      controller.close()
    },
    cancel() {
      // The reader went away (useChat aborted, or the page stopped reading):
      // release the connection, unless a stop is already ending the reply.
      if (!stopping.has(reply)) reply.abort()
    }
  })
}

/**
 * A `ChatTransport` of the Vercel AI SDK (`ai` 5 and later) over a Convoke
 * server: pass it to `useChat({ transport })`. See the module documentation.
 */
export class ConvokeChatTransport<UI_MESSAGE extends UIMessage = ConvokeUIMessage>
  implements ChatTransport<UI_MESSAGE>
{
  /** A resumed stream starts over with the turn's first event, so `useChat` rebuilds the message. */
  readonly resumeStreamIsReplay = true

  readonly #client: ConvokeClient
  readonly #model: string | undefined
  readonly #stopOnAbort: boolean
  /** Conversation ids learnt in this session, per chat id (the client's storage keeps them across reloads). */
  readonly #conversations = new Map<string, string>()

  constructor(options: ConvokeChatTransportOptions) {
    this.#client = options.client
    this.#model = options.model
    this.#stopOnAbort = options.stopOnAbort ?? true
  }

  /** The conversation id this chat continues, if one is known. */
  async conversationId(chatId: string): Promise<string | undefined> {
    return this.#conversations.get(chatId) ?? (await this.#client.currentConversationId(chatId))
  }

  /** Sends the last user message; resolves once the first event has arrived. */
  sendMessages = async (options: SendOptions): Promise<ReadableStream<UIMessageChunk>> => {
    const { chatId, abortSignal } = options
    if (abortSignal?.aborted) throw abortError(abortSignal)
    const model = requestedModel(options.body) ?? this.#model
    const reply = this.#client.chat({
      message: lastUserText(options.messages),
      key: chatId,
      // Unknown here: the client reads its storage under `key`.
      conversationId: this.#conversations.get(chatId),
      ...(model === undefined ? {} : { model })
    })
    this.#onAbort(reply, abortSignal)
    const metadata = await metadataOf(reply, abortSignal)
    this.#conversations.set(chatId, metadata.conversationId)
    return toUIMessageChunks(reply, metadata)
  }

  /**
   * Follows the running turn of the chat's conversation from its start;
   * `null` when no turn is running (a finished reply is in the conversation's
   * messages, as the AI SDK expects) or no conversation is known.
   */
  reconnectToStream = async (options: ReconnectOptions): Promise<ReadableStream<UIMessageChunk> | null> => {
    const { chatId, abortSignal } = options
    if (abortSignal?.aborted) throw abortError(abortSignal)
    const conversationId = await this.conversationId(chatId)
    if (conversationId === undefined) return null
    // While connecting, an abort closes the connection; the reply itself is
    // not tied to the signal, so that a later abort can stop the turn instead.
    const connecting = new AbortController()
    const forward = () => connecting.abort(abortSignal?.reason)
    abortSignal?.addEventListener("abort", forward, { once: true })
    let reply: ChatReply | undefined
    let metadata: ChatMetadata
    try {
      // The resume endpoint also replays a turn that ended minutes ago; useChat
      // has that reply already (from the page's stored messages), so ask first.
      const conversation = await this.#client.conversations.get(conversationId, { signal: connecting.signal })
      if (conversation.runningTurn === null) return null
      reply = await this.#client.resume({ conversationId, signal: connecting.signal })
      if (reply === undefined) return null
      metadata = await metadataOf(reply, abortSignal)
    } catch (error) {
      reply?.abort()
      if (abortSignal?.aborted) throw abortError(abortSignal)
      // A deleted (or someone else's) conversation has nothing to resume.
      if (error instanceof ConvokeHttpError && error.status === 404) return null
      throw error
    } finally {
      abortSignal?.removeEventListener("abort", forward)
    }
    this.#conversations.set(chatId, metadata.conversationId)
    // Only now does an abort mean "stop": before, it may just be `useChat`
    // replacing this reconnection with another one.
    this.#onAbort(reply, abortSignal)
    return toUIMessageChunks(reply, metadata)
  }

  #onAbort(reply: ChatReply, signal: AbortSignal | undefined): void {
    if (signal === undefined) return
    const onAbort = () => {
      if (!this.#stopOnAbort) {
        reply.abort()
        return
      }
      stopping.add(reply)
      reply.stop().catch(() => reply.abort())
    }
    if (signal.aborted) {
      onAbort()
      return
    }
    signal.addEventListener("abort", onAbort, { once: true })
    const forget = () => signal.removeEventListener("abort", onAbort)
    reply.text.then(forget, forget)
  }
}
