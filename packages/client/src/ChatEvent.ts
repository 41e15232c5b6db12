/**
 * The v0.3 wire events as the client sees them, and the reader that turns a
 * streaming response body into them. SSE framing (events split across reads,
 * several events in one read, comments, CRLF) is left to `eventsource-parser`;
 * this module only decodes each event's JSON.
 */
import { createParser } from "eventsource-parser"
import { ConvokeProtocolError } from "./ConvokeError.ts"

/** The first event of every stream. */
export interface MetadataEvent {
  readonly type: "metadata"
  readonly conversation_id: string
  readonly model: string
  readonly timestamp: number
  /** `true` when the server could not store the conversation yet (it will). */
  readonly temporary?: boolean
  /** The turn this stream belongs to; later events carry `id: <turn_id>:<seq>`. */
  readonly turn_id?: string
  /** `true` on the resume endpoint, where the metadata event is sent again. */
  readonly resumed?: boolean
}

/** A piece of the reply. */
export interface ContentEvent {
  readonly type: "content"
  readonly delta: { readonly content: string }
}

/** A failure after the stream started; `[DONE]` follows. */
export interface ErrorEvent {
  readonly type: "error"
  readonly error: { readonly type: string; readonly message: string }
}

/** Any v0.3 event, or the end of the stream. */
export type ChatEvent = MetadataEvent | ContentEvent | ErrorEvent | { readonly type: "done" }

const decodeEvent = (data: string): ChatEvent | undefined => {
  if (data === "[DONE]") return { type: "done" }
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    throw new ConvokeProtocolError(`An event is not JSON: ${data.slice(0, 100)}`)
  }
  const event = decode(value)
  // On SSE the end is `[DONE]`, never an event of type "done".
  return event?.type === "done" ? undefined : event
}

/**
 * Checks one event already parsed from JSON (a WebSocket frame, whose extra
 * fields are ignored): `undefined` for a type this client does not know.
 */
export const decode = (value: any): ChatEvent | undefined => {
  switch (value?.type) {
    case "done":
      return { type: "done" }
    case "metadata":
      if (typeof value.conversation_id !== "string" || value.conversation_id === "") {
        throw new ConvokeProtocolError("The metadata event has no conversation_id")
      }
      return value as MetadataEvent
    case "content":
      if (typeof value.delta?.content !== "string") {
        throw new ConvokeProtocolError("A content event has no delta.content")
      }
      return value as ContentEvent
    case "error":
      return {
        type: "error",
        error: {
          type: typeof value.error?.type === "string" ? value.error.type : "unknown_error",
          message: typeof value.error?.message === "string" ? value.error.message : "Unknown error"
        }
      }
    default:
      // Event types added by later versions are skipped, not fatal.
      return undefined
  }
}

/** The parts of an event id `<turn_id>:<seq>`, or `undefined` when it is not one. */
export const parseEventId = (id: string): { readonly turnId: string; readonly seq: number } | undefined => {
  const colon = id.lastIndexOf(":")
  if (colon <= 0) return undefined
  const seq = id.slice(colon + 1)
  return /^\d+$/.test(seq) ? { turnId: id.slice(0, colon), seq: Number(seq) } : undefined
}

/**
 * Reads a `text/event-stream` body and calls `onEvent` for each event (with
 * its `id:` line, if any) as it arrives, stopping after `[DONE]`. Resolves `true` when `[DONE]` was seen,
 * `false` when the body ended without it. Rejects with the reader's error
 * (network failure, abort) or a `ConvokeProtocolError`.
 */
export const read = async (
  body: ReadableStream<Uint8Array>,
  onEvent: (event: ChatEvent, id: string | undefined) => void
): Promise<boolean> => {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let done = false
  let failure: unknown
  const parser = createParser({
    onEvent: (message) => {
      if (done || failure !== undefined) return
      try {
        const event = decodeEvent(message.data)
        if (event === undefined) return
        if (event.type === "done") done = true
        onEvent(event, message.id)
      } catch (error) {
        failure = error
      }
    }
  })
  try {
    while (!done) {
      const { value, done: ended } = await reader.read()
      if (ended) {
        // As in the SSE specification, an event without its closing blank line is dropped.
        parser.feed(decoder.decode())
        break
      }
      parser.feed(decoder.decode(value, { stream: true }))
      if (failure !== undefined) throw failure
    }
    if (failure !== undefined) throw failure
    return done
  } finally {
    // Nothing follows [DONE]; cancelling releases the connection either way.
    await reader.cancel().catch(() => {})
  }
}
