/**
 * Reading Server-Sent Events the way clients do: split on blank lines, never
 * assume one event per read.
 *
 * @since 0.1.0
 */
import { Sse as CoreSse } from "@convoke/core/testing"

/** Splits an SSE body into its frames, each without the `data: ` prefix (comments keep their `:`). */
export const frames = (text: string): Array<string> =>
  CoreSse.frames(text).map((frame) => (frame.startsWith("data: ") ? frame.slice(6) : frame))

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
      return frame?.startsWith("data: ") ? frame.slice(6) : frame
    },
    cancel: frames.cancel
  }
}
