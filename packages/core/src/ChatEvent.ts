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
import { Schema } from "effect"

/** The first event of every stream: the conversation id, before any content. */
export const MetadataEvent = Schema.Struct({
  type: Schema.Literal("metadata"),
  conversation_id: Schema.String,
  model: Schema.String,
  timestamp: Schema.Int,
  /** Present and `true` when the id is not yet stored (store unavailable). */
  temporary: Schema.optionalKey(Schema.Boolean)
})
export type MetadataEvent = typeof MetadataEvent.Type

/** A piece of the assistant's reply. */
export const ContentEvent = Schema.Struct({
  type: Schema.Literal("content"),
  delta: Schema.Struct({ content: Schema.String })
})
export type ContentEvent = typeof ContentEvent.Type

/** A failure after the stream has started; always followed by `[DONE]`. */
export const ErrorEvent = Schema.Struct({
  type: Schema.Literal("error"),
  error: Schema.Struct({ type: Schema.String, message: Schema.String })
})
export type ErrorEvent = typeof ErrorEvent.Type

/** Any v0.3 event, discriminated on `type`. */
export const ChatEvent = Schema.Union([MetadataEvent, ContentEvent, ErrorEvent])
export type ChatEvent = typeof ChatEvent.Type

/** Builds the metadata event in wire key order. */
export const metadata = (options: {
  readonly conversationId: string
  readonly model: string
  readonly timestampSeconds: number
  readonly temporary?: boolean | undefined
}): MetadataEvent =>
  options.temporary
    ? {
        type: "metadata",
        conversation_id: options.conversationId,
        model: options.model,
        timestamp: options.timestampSeconds,
        temporary: true
      }
    : {
        type: "metadata",
        conversation_id: options.conversationId,
        model: options.model,
        timestamp: options.timestampSeconds
      }

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

/** The comment frame sent while the model is silent, so proxies keep the connection. */
export const HEARTBEAT = ": ping\n\n"

/** Response headers of every v0.3 stream. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  connection: "keep-alive"
}
