/**
 * The chat endpoint's part of the wire contract (the README's "The v0.3
 * contract"): the metadata event first and alone, SSE headers, resume and
 * history, unknown and other users' ids, content types, malformed bodies,
 * 401, 405, a model failure as an event, back-pressure reaching the model,
 * and a disconnect ending it, once the grace window is over, with the partial
 * reply stored.
 *
 * @since 0.1.0
 */
import { ChatHttp } from "@convoke/core"
import { expect, it } from "vitest"
import * as ConformanceModel from "./ConformanceModel.ts"
import * as Sse from "./Sse.ts"
import { DISCONNECT_GRACE_MILLIS, METADATA_FRAME, type Suite, settledPulls, UUID_V4 } from "./Suite.ts"

// Only the back-pressure test waits on time: it samples the model to see that
// nothing more is pulled, which no event can signal.

/** Defines the chat endpoint's tests in the current `describe` block. */
export const define = (suite: Suite) => {
  const { model, chat, streamed, as, token } = suite

  it("flushes the metadata event alone as the first chunk, before the model produces, then content and [DONE]", async () => {
    const gate = token()
    const response = await chat({ message: `gated ${gate} hello there`, stream: true })
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
    expect(response.headers.get("cache-control")).toBe("no-cache, no-transform")
    expect(response.headers.get("x-accel-buffering")).toBe("no")
    expect(response.headers.get("content-encoding")).toBeNull()
    const reader = response.body!.getReader()
    // The model's reply is held at the gate until this read returns: had the
    // binding buffered the metadata event, the read would never complete.
    const first = await reader.read()
    const text = new TextDecoder().decode(first.value)
    expect(text).toMatch(METADATA_FRAME)
    const metadata = JSON.parse(text.slice(6))
    expect(metadata.conversation_id).toMatch(UUID_V4)
    expect(metadata.turn_id).toMatch(UUID_V4)
    expect(Math.abs(metadata.timestamp - Date.now() / 1000)).toBeLessThan(600)
    model.release(gate)
    let rest = ""
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      rest += new TextDecoder().decode(value, { stream: true })
    }
    const payloads = Sse.frames(rest)
    expect(payloads.at(-1)).toBe("[DONE]")
    // Every later event, [DONE] included, names its turn and its place in it, counting from 1.
    expect(Sse.ids(rest)).toEqual(payloads.map((_, index) => `${metadata.turn_id}:${index + 1}`))
    const content = Sse.events(payloads).map((event) => {
      expect(event.type).toBe("content")
      return event.delta.content as string
    })
    expect(content.join("")).toBe(`Echo #1: gated ${gate} hello there`)
  })

  it("gives every new conversation its own v4 UUID", async () => {
    const ids = await Promise.all(
      Array.from({ length: 5 }, async () => (await streamed({ message: "hi" }))[0]!.conversation_id)
    )
    for (const id of ids) expect(id).toMatch(UUID_V4)
    expect(new Set(ids).size).toBe(5)
  })

  it("resumes a conversation by id, streaming or not, and the model sees its history", async () => {
    const id = (await streamed({ message: "one" }))[0]!.conversation_id
    const second = await streamed({ message: "two", conversation_id: id })
    expect(second[0]!.conversation_id).toBe(id)
    expect(
      second
        .slice(1)
        .map((event) => event.delta.content)
        .join("")
    ).toBe("Echo #2: two")
    const third = await chat({ message: "three", conversation_id: id })
    expect(third.status).toBe(200)
    const body = await third.json()
    expect(body).toEqual({
      conversation_id: id,
      model: "unified-chat",
      message: { role: "assistant", content: "Echo #3: three" },
      created_at: expect.any(String)
    })
    expect(Number.isNaN(Date.parse(body.created_at))).toBe(false)
    if (suite.target.probe) {
      expect(await suite.target.probe.transcript(id)).toEqual([
        ["user", "complete", "one"],
        ["assistant", "complete", "Echo #1: one"],
        ["user", "complete", "two"],
        ["assistant", "complete", "Echo #2: two"],
        ["user", "complete", "three"],
        ["assistant", "complete", "Echo #3: three"]
      ])
    }
  })

  it.each([
    ["a malformed id", "not-a-uuid"],
    ["an unknown id", "3f0c8f7e-2a8b-4c1e-9d2a-6b8e5f4a1c3d"]
  ])("starts a new conversation for %s when streaming, and answers 404 otherwise", async (_, id) => {
    const [metadata] = await streamed({ message: "hi", conversation_id: id })
    expect(metadata!.type).toBe("metadata")
    expect(metadata!.conversation_id).toMatch(UUID_V4)
    expect(metadata!.conversation_id).not.toBe(id)
    const response = await chat({ message: "hi", conversation_id: id })
    expect(response.status).toBe(404)
    expect(response.headers.get("content-type")).toMatch(/^application\/json/)
    expect(await response.text()).toBe('{"error":{"type":"not_found","message":"Conversation not found"}}')
  })

  it("treats another user's conversation exactly like a missing one", async () => {
    const id = (await streamed({ message: "secret" }))[0]!.conversation_id
    const [theirs] = await streamed({ message: "peek", conversation_id: id }, "bob")
    expect(theirs!.conversation_id).not.toBe(id)
    const other = await chat({ message: "peek", conversation_id: id }, {}, "bob")
    const missing = await chat({ message: "peek", conversation_id: crypto.randomUUID() }, {}, "bob")
    expect(other.status).toBe(404)
    expect(missing.status).toBe(404)
    expect(await other.text()).toBe(await missing.text())
    // Alice's conversation is untouched by Bob's attempts.
    const again = await chat({ message: "still mine", conversation_id: id })
    expect((await again.json()).message.content).toBe("Echo #2: still mine")
  })

  it("accepts a JSON body sent as text/plain or with no content type (the release notes' browser snippet)", async () => {
    const plain = await chat(JSON.stringify({ message: "plain", stream: true }), {
      headers: { "content-type": "text/plain;charset=UTF-8" }
    })
    expect(plain.status).toBe(200)
    expect(Sse.events(await Sse.readAll(plain))[0]!.type).toBe("metadata")
    const plainComplete = await chat(JSON.stringify({ message: "plain" }), {
      headers: { "content-type": "text/plain" }
    })
    expect((await plainComplete.json()).message.content).toBe("Echo #1: plain")
    const none = await fetch(`${suite.target.url}${ChatHttp.CHAT_PATH}`, {
      method: "POST",
      headers: { Accept: "text/event-stream", ...as("alice") },
      body: new Blob([JSON.stringify({ message: "no type", stream: true })])
    })
    expect(none.status).toBe(200)
    const reader = none.body!.getReader()
    const { value } = await reader.read()
    const firstEvent = JSON.parse(
      new TextDecoder()
        .decode(value)
        .replace(/^data: /, "")
        .trim()
    )
    expect(firstEvent.type).toBe("metadata")
    // Read to the end: a cancelled stream would store its partial reply while later tests count rows.
    while (!(await reader.read()).done) {}
  })

  it("rejects malformed requests with a 4xx and the common error body, writing nothing", async () => {
    const before = await suite.target.probe?.counts()
    const cases: Array<[unknown, number, string, Record<string, string>?]> = [
      ["{not json", 400, "invalid_request"],
      ["[1,2]", 400, "invalid_request"],
      ["", 400, "invalid_request"],
      [{}, 400, "invalid_request"],
      [{ message: "" }, 400, "invalid_request"],
      [{ message: 42 }, 400, "invalid_request"],
      [{ message: "hi", stream: "yes" }, 400, "invalid_request"],
      [{ message: "hi", conversation_id: 7 }, 400, "invalid_request"],
      ["{not json", 400, "invalid_request", { "content-type": "text/plain" }],
      [{ message: "x".repeat(40_000) }, 413, "request_too_large"],
      [{ message: "x".repeat(40_000) }, 413, "request_too_large", { "content-type": "text/plain" }],
      [
        { message: "hi" },
        415,
        "unsupported_media_type",
        { "content-type": "application/x-www-form-urlencoded" }
      ],
      [{ message: "hi" }, 415, "unsupported_media_type", { "content-type": "application/xml" }]
    ]
    for (const [body, status, type, headers] of cases) {
      const label = `${headers?.["content-type"] ?? "json"} ${JSON.stringify(body).slice(0, 40)}`
      const response = await chat(body, headers ? { headers } : {})
      expect(response.status, label).toBe(status)
      expect(await response.json(), label).toEqual({ error: { type, message: expect.any(String) } })
    }
    if (before && suite.target.probe) expect(await suite.target.probe.counts()).toEqual(before)
  })

  it("answers 401 with the common body without credentials or with a wrong key, writing nothing", async () => {
    const before = await suite.target.probe?.counts()
    for (const headers of [{}, { authorization: "Bearer not-a-key-0123456789" }, { "x-api-key": "nope" }]) {
      for (const stream of [true, false]) {
        const response = await chat({ message: "hi", stream }, { headers }, null)
        expect(response.status).toBe(401)
        expect((await response.json()).error.type).toBe("unauthenticated")
      }
    }
    if (before && suite.target.probe) expect(await suite.target.probe.counts()).toEqual(before)
  })

  it("answers 405 with the common body and Allow: POST for other methods on the chat path", async () => {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const response = await fetch(`${suite.target.url}${ChatHttp.CHAT_PATH}`, {
        method,
        headers: as("alice")
      })
      expect(response.status, method).toBe(405)
      expect(response.headers.get("allow")).toBe("POST")
      expect((await response.json()).error.type).toBe("method_not_allowed")
    }
  })

  it("turns a model failure after the start into an error event, then [DONE]", async () => {
    const payloads = await Sse.readAll(await chat({ message: "overloaded now", stream: true }))
    expect(payloads.at(-1)).toBe("[DONE]")
    const events = Sse.events(payloads)
    expect(events[0]!.type).toBe("metadata")
    expect(events.at(-1)).toEqual({
      type: "error",
      error: { type: "overloaded_error", message: "Overloaded" }
    })
  })

  it("holds the model back while the client does not read, and lets it go on when it reads again", async () => {
    const flood = token()
    const controller = new AbortController()
    const response = await chat({ message: `flood ${flood}`, stream: true }, { signal: controller.signal })
    const reader = response.body!.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toMatch(METADATA_FRAME)
    // Read nothing more: the count of deltas pulled from the model settles.
    const BOUND = 64
    const last = await settledPulls(() => model.pulled(flood), BOUND)
    // It was back-pressure, not the end: reading again lets the model continue.
    let read = 0
    while (model.pulled(flood) <= last) {
      const { done, value } = await reader.read()
      expect(done).toBe(false)
      read += value!.byteLength
      expect(read, "reading did not resume the model").toBeLessThanOrEqual(
        (BOUND + 8) * ConformanceModel.FLOOD_DELTA_BYTES * 1.1
      )
    }
    controller.abort()
    await reader.cancel().catch(() => {})
    await model.interrupted(flood)
  })

  it("stops the model once the client has been gone for the grace window, and stores the partial reply as cancelled", async () => {
    const left = Date.now()
    const { metadata, message } = await suite.disconnectMidReply()
    const endless = message.slice("endless ".length)
    // The model's stream never ends by itself: only the expired grace window can end it.
    await model.interrupted(endless)
    expect(Date.now() - left).toBeGreaterThanOrEqual(DISCONNECT_GRACE_MILLIS)
    expect(model.calls(endless)).toBe(1)
    expect((await fetch(`${suite.target.url}/health`)).status).toBe(200)
    // Reported once the partial reply is stored: the rows are there to read.
    expect(await suite.turns.ended(metadata.conversation_id)).toBe("client_closed")
    if (suite.target.probe) {
      expect(await suite.target.probe.transcript(metadata.conversation_id)).toEqual([
        ["user", "complete", message],
        ["assistant", "cancelled", "Echo partial"]
      ])
    }
  })
}
