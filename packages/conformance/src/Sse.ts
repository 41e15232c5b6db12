/**
 * Reading Server-Sent Events the way clients do: split on blank lines, never
 * assume one event per read.
 *
 * @since 0.1.0
 */

/** Splits an SSE body into its frames, each without the `data: ` prefix (comments keep their `:`). */
export const frames = (text: string): Array<string> =>
  text
    .split("\n\n")
    .filter((frame) => frame !== "")
    .map((frame) => (frame.startsWith("data: ") ? frame.slice(6) : frame))

/** The parsed JSON events of a stream body (everything but `[DONE]` and comments). */
export const events = (payloads: ReadonlyArray<string>): Array<Record<string, any>> =>
  payloads.filter((payload) => payload !== "[DONE]" && !payload.startsWith(":")).map((p) => JSON.parse(p))

/** Reads a whole response body and returns its `data:` payloads. */
export const readAll = async (response: Response): Promise<Array<string>> => frames(await response.text())

/** Reads frames one at a time from a response body. */
export const reader = (body: ReadableStream<Uint8Array>) => {
  const source = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  return {
    /** The next frame's payload, or `undefined` when the body ended. */
    next: async (): Promise<string | undefined> => {
      for (;;) {
        const end = buffer.indexOf("\n\n")
        if (end !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          return frame.startsWith("data: ") ? frame.slice(6) : frame
        }
        const { done, value } = await source.read()
        if (done) return undefined
        buffer += decoder.decode(value, { stream: true })
      }
    },
    cancel: () => source.cancel()
  }
}
