/**
 * Reading Server-Sent Events the way clients do: split on blank lines, never
 * assume one event per read.
 *
 * @since 0.1.0
 */
import { Sse as CoreSse } from "@convoke/core/testing"

/** A frame's payload: without its `id:` line and its `data: ` prefix (comments keep their `:`). */
const payloadOf = (frame: string): string => {
  const data = CoreSse.withoutId(frame)
  return data.startsWith("data: ") ? data.slice(6) : data
}

/** Splits an SSE body into its frames' payloads (see `payloadOf`). */
export const frames = (text: string): Array<string> => CoreSse.frames(text).map(payloadOf)

/** The `id:` lines of an SSE body's frames, `undefined` for a frame without one. */
export const ids = (text: string): Array<string | undefined> => CoreSse.frames(text).map(CoreSse.id)

/** The parsed JSON events of a stream body (everything but `[DONE]` and comments). */
export const events = (payloads: ReadonlyArray<string>): Array<Record<string, any>> =>
  payloads.filter((payload) => payload !== "[DONE]" && !payload.startsWith(":")).map((p) => JSON.parse(p))

/** Reads a whole response body and returns its `data:` payloads. */
export const readAll = async (response: Response): Promise<Array<string>> => frames(await response.text())

/** Reads frames' payloads one at a time from a response body (`@convoke/core/testing`'s reader, `data: ` removed). */
export const reader = (body: ReadableStream<Uint8Array>) => {
  const frames = CoreSse.reader(body)
  return {
    /** The next frame's payload, or `undefined` when the body ended. */
    next: async (): Promise<string | undefined> => {
      const frame = await frames.next()
      return frame === undefined ? undefined : payloadOf(frame)
    },
    cancel: frames.cancel
  }
}
