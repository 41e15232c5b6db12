import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { ChatEvent } from "../src/index.ts"

const ID = "0b7a1c52-8f0e-4d3a-9c6b-2e4f5a6b7c8d"

describe("ChatEvent", () => {
  it("metadata is built in wire key order", () => {
    const event = ChatEvent.metadata({
      conversationId: ID,
      model: "unified-chat",
      timestampSeconds: 1764081000
    })
    assert.strictEqual(
      JSON.stringify(event),
      `{"type":"metadata","conversation_id":"${ID}","model":"unified-chat","timestamp":1764081000}`
    )
  })

  it("temporary follows the four fields and is absent unless true", () => {
    const temporary = ChatEvent.metadata({
      conversationId: ID,
      model: "unified-chat",
      timestampSeconds: 1,
      temporary: true
    })
    assert.deepStrictEqual(Object.keys(temporary), [
      "type",
      "conversation_id",
      "model",
      "timestamp",
      "temporary"
    ])
    const notTemporary = ChatEvent.metadata({
      conversationId: ID,
      model: "unified-chat",
      timestampSeconds: 1,
      temporary: false
    })
    assert.isFalse("temporary" in notTemporary)
  })

  it("encodes one event as a single data line and a blank line", () => {
    assert.strictEqual(
      ChatEvent.encode(ChatEvent.content("Hello\nworld")),
      'data: {"type":"content","delta":{"content":"Hello\\nworld"}}\n\n'
    )
    assert.strictEqual(
      ChatEvent.encode(ChatEvent.error("overloaded_error", "Overloaded")),
      'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    // A line break inside the content never breaks the frame.
    assert.strictEqual(ChatEvent.encode(ChatEvent.content("a\r\n\nb")).split("\n").length, 3)
  })

  it("the terminator, the heartbeat and the SSE headers", () => {
    assert.strictEqual(ChatEvent.DONE, "data: [DONE]\n\n")
    assert.strictEqual(ChatEvent.HEARTBEAT, ": ping\n\n")
    assert.deepStrictEqual(ChatEvent.SSE_HEADERS, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      "x-accel-buffering": "no",
      connection: "keep-alive"
    })
  })

  it("the schema accepts the three event kinds and rejects a non-integer timestamp", () => {
    const decode = Schema.decodeUnknownSync(ChatEvent.ChatEvent)
    for (const event of [
      ChatEvent.metadata({ conversationId: ID, model: "m", timestampSeconds: 1 }),
      ChatEvent.content("x"),
      ChatEvent.error("t", "m")
    ]) {
      assert.deepStrictEqual(decode(JSON.parse(JSON.stringify(event))), event)
    }
    assert.throws(() => decode({ type: "metadata", conversation_id: ID, model: "m", timestamp: 1.5 }))
  })
})
