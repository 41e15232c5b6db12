/**
 * What the resume loop does with answers the reference server never gives:
 * a replay that repeats events already delivered (skipped by seq), and the
 * `Last-Event-ID` it asks with. Served by a `fetch` of the test's own.
 */
import { expect, it } from "vitest"
import { ConvokeClient } from "../src/index.ts"

const encoder = new TextEncoder()
const metadata = (resumed: boolean) =>
  `data: {"type":"metadata","conversation_id":"c1","model":"m","timestamp":1,"turn_id":"t1"${resumed ? ',"resumed":true' : ""}}\n\n`
const content = (seq: number, text: string) =>
  `id: t1:${seq}\ndata: {"type":"content","delta":{"content":"${text}"}}\n\n`

/** A response whose body sends `frames`, then breaks (or ends, when `breaks` is false). */
const sse = (frames: ReadonlyArray<string>, breaks: boolean) => {
  let next = 0
  return new Response(
    // One frame per read, then the break: an error would drop frames still queued.
    new ReadableStream<Uint8Array>({
      pull(controller) {
        if (next < frames.length) controller.enqueue(encoder.encode(frames[next++]!))
        else if (breaks) controller.error(new TypeError("terminated"))
        else controller.close()
      }
    }),
    { headers: { "content-type": "text/event-stream" } }
  )
}

it("skips replayed events it already delivered, and asks from the last id it saw", async () => {
  const asked: Array<string | null> = []
  const client = new ConvokeClient({
    baseUrl: "http://convoke.test",
    resume: { baseDelayMs: 0 },
    fetch: async (input, init) => {
      const url = String(input)
      if (url.endsWith("/api/v0.3/chat"))
        return sse([metadata(false), content(1, "a"), content(2, "b")], true)
      asked.push(new Headers(init?.headers).get("last-event-id"))
      expect(url).toBe("http://convoke.test/api/v0.3/conversations/c1/stream")
      return sse(
        [
          metadata(true),
          content(1, "a"),
          content(2, "b"),
          content(3, "c"),
          content(4, "d"),
          "id: t1:5\ndata: [DONE]\n\n"
        ],
        false
      )
    }
  })
  const reply = client.chat({ message: "hi" })
  const deltas: Array<string> = []
  for await (const delta of reply) deltas.push(delta)
  expect(deltas).toEqual(["a", "b", "c", "d"])
  expect(asked).toEqual(["t1:2"])
  expect(reply.lastEventId).toBe("t1:5")
  expect(reply.state).toBe("done")
})
