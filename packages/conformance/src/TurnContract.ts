/**
 * Resume and stop, through the binding: `GET /api/v0.3/conversations/{id}/stream`
 * with `Last-Event-ID`, and `POST /api/v0.3/conversations/{id}/stop`, as the
 * contract's §7 table says — replay then live events, 204, 400, 404, 202.
 *
 * @since 0.3.0
 */
import { describe, expect, it } from "vitest"
import * as Sse from "./Sse.ts"
import { CONVERSATION_NOT_FOUND, expectError, type Suite, UUID_V4 } from "./Suite.ts"

// The documented path, not the core's constant: the suite checks the contract clients rely on.
const CONVERSATIONS = "/api/v0.3/conversations"

/** Defines the turn routes' tests in a `describe` block of their own. */
export const define = (suite: Suite) =>
  describe("resume and stop", () => {
    const { model, chat, token } = suite
    const streamPath = (id: string) => `${CONVERSATIONS}/${id}/stream`
    const stopPath = (id: string) => `${CONVERSATIONS}/${id}/stop`

    /** Starts a streamed turn and reads its metadata event and `deltas` content events. */
    const begin = async (message: string, deltas: number) => {
      const controller = new AbortController()
      const response = await chat({ message, stream: true }, { signal: controller.signal })
      expect(response.status).toBe(200)
      const reader = Sse.reader(response.body!)
      const metadata = JSON.parse((await reader.next())!)
      const contents: Array<string> = []
      for (let read = 0; read < deltas; read++)
        contents.push(JSON.parse((await reader.next())!).delta.content)
      return { metadata, contents, reader, cut: () => controller.abort() }
    }

    it("a reader that lost its connection resumes with its last event id: exactly the rest, once, then [DONE]", async () => {
      const halting = token()
      const message = `halting ${halting}`
      const first = await begin(message, 2)
      expect(first.contents).toEqual(["Echo", " partial"])
      first.cut()
      await first.reader.cancel().catch(() => {})
      const turn = first.metadata.turn_id
      const response = await suite.request(streamPath(first.metadata.conversation_id), {
        headers: { "last-event-id": `${turn}:2` }
      })
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8")
      model.release(halting)
      const text = await response.text()
      expect(Sse.frames(text)).toEqual([
        JSON.stringify({ ...first.metadata, resumed: true }),
        '{"type":"content","delta":{"content":" rest"}}',
        "[DONE]"
      ])
      expect(Sse.ids(text)).toEqual([undefined, `${turn}:3`, `${turn}:4`])
      expect(await suite.turns.ended(first.metadata.conversation_id)).toBe("complete")
      if (suite.target.probe) {
        expect(await suite.target.probe.transcript(first.metadata.conversation_id)).toEqual([
          ["user", "complete", message],
          ["assistant", "complete", "Echo partial rest"]
        ])
      }
    })

    it("replays a turn from its start without Last-Event-ID, and takes ?last_event_id= like the header", async () => {
      const response = await chat({ message: "replay me", stream: true })
      const original = await response.text()
      const metadata = JSON.parse(Sse.frames(original)[0]!)
      const whole = await (await suite.request(streamPath(metadata.conversation_id))).text()
      expect(Sse.frames(whole)).toEqual([
        JSON.stringify({ ...metadata, resumed: true }),
        ...Sse.frames(original).slice(1)
      ])
      expect(Sse.ids(whole)).toEqual(Sse.ids(original))
      const after = await suite.request(
        `${streamPath(metadata.conversation_id)}?last_event_id=${encodeURIComponent(`${metadata.turn_id}:1`)}`
      )
      expect(after.status).toBe(200)
      expect(Sse.frames(await after.text()).slice(1)).toEqual(Sse.frames(original).slice(2))
    })

    it("answers 204 when nothing is left to replay: another turn's id, a turn read to its end, no turn at all", async () => {
      const original = await (await chat({ message: "done already", stream: true })).text()
      const metadata = JSON.parse(Sse.frames(original)[0]!)
      const lastId = Sse.ids(original).at(-1)!
      const ended = await suite.request(streamPath(metadata.conversation_id), {
        headers: { "last-event-id": lastId }
      })
      expect(ended.status).toBe(204)
      expect(await ended.text()).toBe("")
      const other = await suite.request(streamPath(metadata.conversation_id), {
        headers: { "last-event-id": `${crypto.randomUUID()}:1` }
      })
      expect(other.status).toBe(204)
      // A conversation whose turns were not streamed has nothing to replay.
      const plain = await (await chat({ message: "not streamed" })).json()
      expect((await suite.request(streamPath(plain.conversation_id))).status).toBe(204)
    })

    it("answers 400 for a malformed Last-Event-ID, 401 without credentials, and 404 for a missing or another user's conversation, byte for byte", async () => {
      const halting = token()
      const { metadata, reader } = await begin(`halting ${halting}`, 0)
      const id = metadata.conversation_id
      for (const bad of ["garbage", `${metadata.turn_id}:x`, `${metadata.turn_id}:-1`]) {
        await expectError(
          await suite.request(streamPath(id), { headers: { "last-event-id": bad } }),
          400,
          "invalid_request",
          bad
        )
      }
      await expectError(await suite.request(streamPath(id), { user: null }), 401, "unauthenticated")
      await expectError(
        await suite.request(stopPath(id), { method: "POST", user: null }),
        401,
        "unauthenticated"
      )
      for (const [path, method] of [
        [streamPath, "GET"],
        [stopPath, "POST"]
      ] as const) {
        const theirs = await suite.request(path(id), { method, user: "bob" })
        const missing = await suite.request(path(crypto.randomUUID()), { method, user: "bob" })
        const malformed = await suite.request(path("not-a-uuid"), { method, user: "bob" })
        for (const response of [theirs, missing, malformed]) {
          expect(response.status, `${method} ${path(id)}`).toBe(404)
          expect(await response.text()).toBe(CONVERSATION_NOT_FOUND)
        }
      }
      model.release(halting)
      while ((await reader.next()) !== undefined) {}
    })

    it("stops a running turn: 202 with its id, its readers get cancelled then [DONE], the reply is stored cancelled; then 204", async () => {
      const endless = token()
      const message = `endless ${endless}`
      const { metadata, reader } = await begin(message, 2)
      const id = metadata.conversation_id
      const shown = await (await suite.request(`${CONVERSATIONS}/${id}`)).json()
      expect(shown.running_turn.turn_id).toBe(metadata.turn_id)
      expect(shown.messages.at(-1)).toMatchObject({
        role: "assistant",
        status: "streaming",
        content: "Echo partial"
      })
      const stopped = await suite.request(stopPath(id), { method: "POST" })
      expect(stopped.status).toBe(202)
      expect(await stopped.json()).toEqual({ turn_id: metadata.turn_id })
      expect(metadata.turn_id).toMatch(UUID_V4)
      const error = JSON.parse((await reader.next())!)
      expect(error).toEqual({ type: "error", error: { type: "cancelled", message: expect.any(String) } })
      expect(await reader.next()).toBe("[DONE]")
      expect(await reader.next()).toBeUndefined()
      await model.interrupted(endless)
      expect(await suite.turns.ended(id)).toBe("cancelled")
      if (suite.target.probe) {
        expect(await suite.target.probe.transcript(id)).toEqual([
          ["user", "complete", message],
          ["assistant", "cancelled", "Echo partial"]
        ])
      }
      const again = await suite.request(stopPath(id), { method: "POST" })
      expect(again.status).toBe(204)
      expect(await again.text()).toBe("")
      expect((await (await suite.request(`${CONVERSATIONS}/${id}`)).json()).running_turn).toBeNull()
    })
  })
