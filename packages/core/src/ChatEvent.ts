/**
 * The v0.3 wire events and their Server-Sent Events encoding.
 *
 * A stream is: one `metadata` event, any number of `content` events, at most
 * one `error` event, then the `[DONE]` terminator. Field names and key order
 * are part of the contract: the constructors below build objects in wire order
 * and `encode` serialises them as they are.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/** The first event of every stream: the conversation id, before any content. */
export const MetadataEvent = Schema.Struct({
  type: Schema.Literal("metadata"),
  conversation_id: Schema.String.annotate({ description: "The conversation the turn belongs to." }),
  model: Schema.String.annotate({ description: "The model that answers." }),
  timestamp: Schema.Int.annotate({ description: "When the turn started, in Unix seconds." }),
  /** The turn this stream carries; later events' `id:` lines name it (`<turn_id>:<seq>`). */
  turn_id: Schema.optionalKey(
    Schema.String.annotate({ description: "The turn; later events' `id:` lines are `<turn_id>:<seq>`." })
  ),
  /** Present and `true` when the id is not yet stored (store unavailable). */
  temporary: Schema.optionalKey(
    Schema.Boolean.annotate({ description: "`true` when the conversation is not stored yet (store down)." })
  ),
  /** Present and `true` on a stream that resumes a turn (`GET …/stream`). */
  resumed: Schema.optionalKey(
    Schema.Boolean.annotate({ description: "`true` on a stream that resumes a turn." })
  )
}).annotate({ description: "The first event of every stream, written alone." })
export type MetadataEvent = typeof MetadataEvent.Type

/** A piece of the assistant's reply. */
export const ContentEvent = Schema.Struct({
  type: Schema.Literal("content"),
  delta: Schema.Struct({ content: Schema.String })
}).annotate({ description: "A piece of the reply." })
export type ContentEvent = typeof ContentEvent.Type

/** A failure after the stream has started; always followed by `[DONE]`. */
export const ErrorEvent = Schema.Struct({
  type: Schema.Literal("error"),
  error: Schema.Struct({
    type: Schema.String.annotate({
      description:
        "`cancelled`, `interrupted`, `shutdown`, `unavailable`, or the model's own type (`overloaded_error`…)."
    }),
    message: Schema.String
  })
}).annotate({ description: "A failure after the stream started; `[DONE]` follows." })
export type ErrorEvent = typeof ErrorEvent.Type

/** Any v0.3 event, discriminated on `type`. */
export const ChatEvent = Schema.Union([MetadataEvent, ContentEvent, ErrorEvent])
export type ChatEvent = typeof ChatEvent.Type

/** Builds the metadata event in wire key order: the four fields, then `turn_id`, then the flags. */
export const metadata = (options: {
  readonly conversationId: string
  readonly model: string
  readonly timestampSeconds: number
  readonly turnId?: string | undefined
  readonly temporary?: boolean | undefined
}): MetadataEvent => {
  const event: { -readonly [K in keyof MetadataEvent]: MetadataEvent[K] } = {
    type: "metadata",
    conversation_id: options.conversationId,
    model: options.model,
    timestamp: options.timestampSeconds
  }
  if (options.turnId !== undefined) event.turn_id = options.turnId
  if (options.temporary) event.temporary = true
  return event
}

/** The metadata event of a stream that resumes the turn `event` began. */
export const resumed = (event: MetadataEvent): MetadataEvent => ({ ...event, resumed: true })

/** Builds a content event carrying one delta. */
export const content = (text: string): ContentEvent => ({ type: "content", delta: { content: text } })

/** Builds an error event. */
export const error = (type: string, message: string): ErrorEvent => ({
  type: "error",
  error: { type, message }
})

/** The SSE frame of one event: a single `data:` line and a blank line. */
export const encode = (event: ChatEvent): string => `data: ${JSON.stringify(event)}\n\n`

/** The frame that ends every stream. */
export const DONE = "data: [DONE]\n\n"

/** The SSE event id of a turn's event: `<turn_id>:<seq>`. */
export const eventId = (turnId: string, seq: number): string => `${turnId}:${seq}`

/**
 * A turn's event after the metadata event, with its `id:` line, so a client
 * that reconnects can say where it stopped (`Last-Event-ID`). `undefined`
 * stands for `[DONE]`.
 */
export const encodeWithId = (turnId: string, seq: number, event: ChatEvent | undefined): string =>
  `id: ${turnId}:${seq}\n${event === undefined ? DONE : encode(event)}`

/**
 * Reads an event id back (`<turn_id>:<seq>`; `seq` 0 names the metadata
 * event, which has no id of its own); `undefined` when it cannot be one this
 * server sends.
 */
export const parseEventId = (id: string): { readonly turnId: string; readonly seq: number } | undefined => {
  const match = /^([A-Za-z0-9-]{1,64}):(0|[1-9]\d{0,8})$/.exec(id.trim())
  return match === null ? undefined : { turnId: match[1]!, seq: Number(match[2]) }
}

/** The comment frame sent while the model is silent, so proxies keep the connection. */
export const HEARTBEAT = ": ping\n\n"

/** Response headers of every v0.3 stream. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  connection: "keep-alive"
}
