/**
 * The stream reader over every way a body can be cut into reads: each split
 * point, several events per read, comments, CRLF line endings.
 */
import { describe, expect, it } from "vitest"
import { ChatEvent } from "../src/index.ts"

const bodyOf = (chunks: ReadonlyArray<string>) => {
  const encoder = new TextEncoder()
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk))
      controller.close()
    }
  })
}

const collect = async (chunks: ReadonlyArray<string>) => {
  const seen: Array<ChatEvent.ChatEvent> = []
  const completed = await ChatEvent.read(bodyOf(chunks), (event) => seen.push(event))
  return { seen, completed }
}

const STREAM =
  'data: {"type":"metadata","conversation_id":"c-1","model":"unified-chat","timestamp":1764081000}\n\n' +
  ": ping\n\n" +
  'data: {"type":"content","delta":{"content":"Héllo 👋"}}\n\n' +
  'data: {"type":"content","delta":{"content":" there!"}}\n\n' +
  "data: [DONE]\n\n"

const EXPECTED = [
  { type: "metadata", conversation_id: "c-1", model: "unified-chat", timestamp: 1764081000 },
  { type: "content", delta: { content: "Héllo 👋" } },
  { type: "content", delta: { content: " there!" } },
  { type: "done" }
]

describe("ChatEvent.read", () => {
  it("reads the whole stream from one chunk", async () => {
    expect(await collect([STREAM])).toEqual({ seen: EXPECTED, completed: true })
  })

  it("gives the same events wherever the body is split, even inside a UTF-8 character", async () => {
    const bytes = new TextEncoder().encode(STREAM)
    for (let split = 1; split < bytes.length; split++) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes.slice(0, split))
          controller.enqueue(bytes.slice(split))
          controller.close()
        }
      })
      const seen: Array<ChatEvent.ChatEvent> = []
      expect(await ChatEvent.read(body, (event) => seen.push(event))).toBe(true)
      expect(seen, `split at byte ${split}`).toEqual(EXPECTED)
    }
  })

  it("reads CRLF line endings and one byte per read", async () => {
    const crlf = STREAM.replaceAll("\n", "\r\n")
    expect(await collect([...crlf])).toEqual({ seen: EXPECTED, completed: true })
  })

  it("reports a body that ends without [DONE], dropping an unterminated event", async () => {
    const cut = `${STREAM.slice(0, STREAM.indexOf("data: [DONE]"))}data: {"type":"content","delta":{"content":"x"}}`
    const { seen, completed } = await collect([cut])
    expect(completed).toBe(false)
    expect(seen).toEqual(EXPECTED.slice(0, 3))
  })

  it("skips unknown event types and rejects malformed JSON", async () => {
    const { seen } = await collect([
      'data: {"type":"metadata","conversation_id":"c","model":"m","timestamp":1}\n\ndata: {"type":"usage","tokens":3}\n\ndata: [DONE]\n\n'
    ])
    expect(seen.map((event) => event.type)).toEqual(["metadata", "done"])
    await expect(collect(["data: {not json\n\n"])).rejects.toMatchObject({ name: "ConvokeProtocolError" })
  })

  it("stops at [DONE] even when more bytes follow", async () => {
    const { seen } = await collect([`${STREAM}data: {"type":"content","delta":{"content":"late"}}\n\n`])
    expect(seen).toEqual(EXPECTED)
  })
})

describe("event ids", () => {
  it("hands each event its id, and parses <turn_id>:<seq>", async () => {
    const ids: Array<string | undefined> = []
    await ChatEvent.read(
      bodyOf([
        'data: {"type":"metadata","conversation_id":"c","model":"m","timestamp":1,"turn_id":"t"}\n\n',
        'id: t:1\ndata: {"type":"content","delta":{"content":"a"}}\n\n',
        "id: t:2\ndata: [DONE]\n\n"
      ]),
      (_event, id) => ids.push(id)
    )
    expect(ids).toEqual([undefined, "t:1", "t:2"])
    expect(ChatEvent.parseEventId("1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed:42")).toEqual({
      turnId: "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
      seq: 42
    })
    expect(ChatEvent.parseEventId("no-seq")).toBeUndefined()
    expect(ChatEvent.parseEventId("t:x")).toBeUndefined()
    expect(ChatEvent.parseEventId(":3")).toBeUndefined()
  })
})
