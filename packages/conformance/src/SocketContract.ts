/**
 * The WebSocket transport through the binding (`docs/websocket.md`): the
 * metadata frame first in every turn, turns interleaved on one socket, stop
 * and resume (after a raw TCP drop), the errors before a turn starts with
 * their HTTP status and type, the same answer for another user's
 * conversation as for a missing one, and the authentication of the upgrade.
 *
 * A runtime that cannot upgrade (AWS Lambda) answers `426`; that is all the
 * suite checks of it.
 *
 * @since 0.3.0
 */

import { CutProxy, SocketClient } from "@convoke/core/testing"
import { afterEach, describe, expect, it } from "vitest"
import { expectError, type Suite, settledPulls, UUID_V4 } from "./Suite.ts"

const SOCKET_PATH = "/api/v0.3/ws"
const TICKET_PATH = "/api/v0.3/ws/ticket"

/** A conversation id nobody created. */
const MISSING_ID = "9d4c1f7e-2a3b-4c5d-8e6f-7a8b9c0d1e2f"

/** Defines the WebSocket tests in a `describe` block of their own. */
export const define = (suite: Suite) =>
  describe("WebSocket transport", () => {
    it("answers a GET that is not an upgrade 426 upgrade_required, with Upgrade: websocket", async () => {
      const response = await suite.request(SOCKET_PATH)
      expect(response.headers.get("upgrade")).toBe("websocket")
      await expectError(response, 426, "upgrade_required")
    })

    if (suite.capabilities.noUpgrade) return

    const { model, token } = suite
    // A test that fails leaves its sockets open; they would keep the binding from closing.
    const opened: Array<SocketClient.SocketClient> = []
    afterEach(() => {
      for (const socket of opened.splice(0)) socket.drop()
    })
    const connect = async (url: string, headers: Record<string, string> = {}) => {
      const socket = await SocketClient.open(url, headers)
      opened.push(socket)
      return socket
    }
    const open = (user: "alice" | "bob" = "alice") =>
      connect(SocketClient.socketUrl(suite.target.url), suite.as(user))

    /** Sends `chat.send` and reads the turn's metadata and `deltas` content frames. */
    const begin = async (
      socket: SocketClient.SocketClient,
      requestId: string,
      message: string,
      deltas: number
    ) => {
      socket.send({ type: "chat.send", request_id: requestId, message })
      const ofRequest = (frame: Record<string, any>) => frame.request_id === requestId
      const metadata = await socket.next(ofRequest)
      const contents: Array<Record<string, any>> = []
      for (let read = 0; read < deltas; read++) contents.push(await socket.next(ofRequest))
      return { metadata, contents }
    }

    it("sends each turn's metadata first, alone, before the model produced; then content with event ids, then done", async () => {
      const socket = await open()
      const gate = token()
      socket.send({ type: "chat.send", request_id: "r1", message: `gated ${gate} hello` })
      const metadata = await socket.next()
      // The model has produced nothing yet: the metadata frame cannot have waited for it.
      expect(metadata).toEqual({
        type: "metadata",
        conversation_id: expect.stringMatching(UUID_V4),
        model: "unified-chat",
        timestamp: expect.any(Number),
        turn_id: expect.stringMatching(UUID_V4),
        request_id: "r1"
      })
      model.release(gate)
      const frames = await socket.turn("r1")
      const turn = metadata.turn_id
      expect(frames.at(-1)).toEqual({ type: "done", request_id: "r1", event_id: `${turn}:${frames.length}` })
      const contents = frames.slice(0, -1)
      contents.forEach((frame, index) => {
        expect(frame).toEqual({
          type: "content",
          delta: { content: expect.any(String) },
          request_id: "r1",
          event_id: `${turn}:${index + 1}`
        })
      })
      const reply = contents.map((frame) => frame.delta.content).join("")
      expect(reply).toContain("hello")
      expect(await suite.turns.ended(metadata.conversation_id)).toBe("complete")
      if (suite.target.probe) {
        expect(await suite.target.probe.transcript(metadata.conversation_id)).toEqual([
          ["user", "complete", `gated ${gate} hello`],
          ["assistant", "complete", reply]
        ])
      }
      socket.close()
    })

    it("carries two turns at once on one socket; stopping one leaves the other running to its end", async () => {
      const socket = await open()
      const [first, second] = [token(), token()]
      const a = await begin(socket, "a", `halting ${first}`, 2)
      const b = await begin(socket, "b", `halting ${second}`, 2)
      expect(a.metadata.conversation_id).not.toBe(b.metadata.conversation_id)
      expect(a.contents.map((frame) => frame.delta.content)).toEqual(["Echo", " partial"])
      expect(b.contents.map((frame) => frame.delta.content)).toEqual(["Echo", " partial"])
      socket.send({ type: "chat.stop", request_id: "s1", conversation_id: a.metadata.conversation_id })
      expect(await socket.next((frame) => frame.type === "stopped")).toEqual({
        type: "stopped",
        request_id: "s1",
        conversation_id: a.metadata.conversation_id,
        turn_id: a.metadata.turn_id
      })
      const rest = await socket.turn("a")
      expect(rest.map((frame) => frame.type)).toEqual(["error", "done"])
      expect(rest[0]!.error.type).toBe("cancelled")
      expect(await suite.turns.ended(a.metadata.conversation_id)).toBe("cancelled")
      model.release(second)
      const frames = await socket.turn("b")
      expect(frames.map((frame) => frame.delta?.content ?? frame.type)).toEqual([" rest", "done"])
      expect(await suite.turns.ended(b.metadata.conversation_id)).toBe("complete")
      // Nothing runs now: a second stop says so.
      socket.send({ type: "chat.stop", conversation_id: a.metadata.conversation_id })
      expect(await socket.next((frame) => frame.type === "stopped")).toEqual({
        type: "stopped",
        conversation_id: a.metadata.conversation_id,
        turn_id: null
      })
      socket.close()
    })

    it("a socket dropped mid-turn (raw TCP cut) is a disconnect: chat.resume on a new socket continues the turn", async () => {
      const proxy = await CutProxy.make(suite.target.url)
      try {
        // The proxy forwards to the binding's host; the binding's path prefix stays in the URL.
        const through = `${proxy.url}${new URL(suite.target.url).pathname.replace(/\/$/, "")}`
        const cut = await connect(SocketClient.socketUrl(through), suite.as("alice"))
        const halting = token()
        const started = await begin(cut, "r1", `halting ${halting}`, 2)
        const turn = started.metadata.turn_id
        expect(started.contents.map((frame) => frame.event_id)).toEqual([`${turn}:1`, `${turn}:2`])
        proxy.cut()
        await cut.closed
        const socket = await open()
        socket.send({
          type: "chat.resume",
          request_id: "again",
          conversation_id: started.metadata.conversation_id,
          last_event_id: `${turn}:2`
        })
        expect(await socket.next()).toEqual({ ...started.metadata, resumed: true, request_id: "again" })
        model.release(halting)
        expect(await socket.turn("again")).toEqual([
          { type: "content", delta: { content: " rest" }, request_id: "again", event_id: `${turn}:3` },
          { type: "done", request_id: "again", event_id: `${turn}:4` }
        ])
        expect(await suite.turns.ended(started.metadata.conversation_id)).toBe("complete")
        // The turn is over and its events were all read: nothing to replay after its last.
        socket.send({
          type: "chat.resume",
          request_id: "late",
          conversation_id: started.metadata.conversation_id,
          last_event_id: `${turn}:4`
        })
        expect(await socket.next((frame) => frame.request_id === "late")).toEqual({
          type: "no_turn",
          request_id: "late",
          conversation_id: started.metadata.conversation_id
        })
        socket.close()
      } finally {
        await proxy.close()
      }
    })

    it("answers requests that fail before a turn starts with their HTTP status and type, and keeps the socket open", async () => {
      const socket = await open()
      const errorOf = async (frame: unknown, requestId?: string) => {
        socket.send(frame)
        const answer = await socket.next((candidate) => candidate.type === "error")
        expect(answer.request_id).toBe(requestId)
        return answer
      }
      const expectFrame = (answer: Record<string, any>, status: number, type: string) =>
        expect(answer).toMatchObject({ type: "error", status, error: { type, message: expect.any(String) } })
      expectFrame(await errorOf("{not json"), 400, "invalid_request")
      expectFrame(await errorOf({ type: "chat.dance", request_id: "x" }, "x"), 400, "invalid_request")
      expectFrame(
        await errorOf({ type: "chat.send", request_id: "e1", message: "" }, "e1"),
        400,
        "invalid_request"
      )
      expectFrame(await errorOf({ type: "chat.send", message: "no id" }), 400, "invalid_request")
      expectFrame(
        await errorOf(
          { type: "chat.resume", request_id: "e3", conversation_id: MISSING_ID, last_event_id: "zzz" },
          "e3"
        ),
        400,
        "invalid_request"
      )
      expectFrame(
        await errorOf({ type: "chat.resume", request_id: "e4", conversation_id: MISSING_ID }, "e4"),
        404,
        "not_found"
      )
      expectFrame(
        await errorOf({ type: "chat.stop", request_id: "e5", conversation_id: "not-a-uuid" }, "e5"),
        404,
        "not_found"
      )
      // A request id already in flight is refused; the turn that holds it is untouched.
      const gate = token()
      socket.send({ type: "chat.send", request_id: "busy", message: `gated ${gate}` })
      await socket.next((frame) => frame.request_id === "busy" && frame.type === "metadata")
      expectFrame(
        await errorOf({ type: "chat.send", request_id: "busy", message: "again" }, "busy"),
        400,
        "invalid_request"
      )
      model.release(gate)
      expect((await socket.turn("busy")).at(-1)!.type).toBe("done")
      socket.send({ type: "ping" })
      expect(await socket.next((frame) => frame.type === "pong")).toEqual({ type: "pong" })
      socket.close()
    })

    it("refuses a turn over the socket's limit of turns in flight with a 429 error frame", async () => {
      const socket = await open()
      const gates = Array.from({ length: 8 }, () => token())
      for (const [index, gate] of gates.entries()) {
        socket.send({ type: "chat.send", request_id: `g${index}`, message: `gated ${gate}` })
      }
      for (let index = 0; index < gates.length; index++) {
        await socket.next((frame) => frame.request_id === `g${index}` && frame.type === "metadata")
      }
      socket.send({ type: "chat.send", request_id: "one-more", message: "hello" })
      const refused = await socket.next((frame) => frame.request_id === "one-more")
      expect(refused).toMatchObject({
        type: "error",
        status: 429,
        error: { type: "rate_limited" },
        retry_after: 1
      })
      for (const gate of gates) model.release(gate)
      for (let index = 0; index < gates.length; index++)
        expect((await socket.turn(`g${index}`)).at(-1)!.type).toBe("done")
      socket.close()
    })

    it("answers another user's conversation exactly like a missing one, for resume and stop", async () => {
      const alice = await open("alice")
      const gate = token()
      const started = await begin(alice, "mine", `gated ${gate}`, 0)
      const bob = await open("bob")
      const answers = async (conversationId: string) => {
        bob.send({ type: "chat.resume", request_id: "r", conversation_id: conversationId })
        const resume = await bob.next((frame) => frame.request_id === "r")
        bob.send({ type: "chat.stop", request_id: "s", conversation_id: conversationId })
        const stop = await bob.next((frame) => frame.request_id === "s")
        return [resume, stop]
      }
      const foreign = await answers(started.metadata.conversation_id)
      const missing = await answers(MISSING_ID)
      expect(foreign).toEqual(missing)
      expect(foreign[0]).toMatchObject({ status: 404, error: { type: "not_found" } })
      // Bob's stop did not reach Alice's turn.
      model.release(gate)
      expect((await alice.turn("mine")).at(-1)!.type).toBe("done")
      expect(await suite.turns.ended(started.metadata.conversation_id)).toBe("complete")
      alice.close()
      bob.close()
    })

    describe("opening a socket", () => {
      it("refuses an upgrade without credentials with 401 and the common error body, before any socket", async () => {
        const refused = await SocketClient.refusal(
          SocketClient.open(SocketClient.socketUrl(suite.target.url))
        )
        expect(refused.status).toBe(401)
        expect(JSON.parse(refused.body)).toEqual({
          error: { type: "unauthenticated", message: expect.any(String) }
        })
      })

      it("opens with a ticket once, for the user it was issued to", async () => {
        const issued = await suite.request(TICKET_PATH, { method: "POST", user: "bob" })
        expect(issued.status).toBe(201)
        expect(issued.headers.get("cache-control")).toBe("no-store")
        const { ticket, expires_in } = (await issued.json()) as { ticket: string; expires_in: number }
        expect(expires_in).toBe(30)
        const url = SocketClient.socketUrl(suite.target.url, `ticket=${encodeURIComponent(ticket)}`)
        const socket = await connect(url)
        const gate = token()
        const started = await begin(socket, "t", `gated ${gate}`, 0)
        model.release(gate)
        await socket.turn("t")
        socket.close()
        // The socket acted for Bob: the conversation is his, and not Alice's.
        const asBob = await suite.request(`/api/v0.3/conversations/${started.metadata.conversation_id}`, {
          user: "bob"
        })
        expect(asBob.status).toBe(200)
        await asBob.arrayBuffer()
        const asAlice = await suite.request(`/api/v0.3/conversations/${started.metadata.conversation_id}`)
        expect(asAlice.status).toBe(404)
        await asAlice.arrayBuffer()
        // Used once: it opens nothing more.
        const again = await SocketClient.refusal(SocketClient.open(url))
        expect(again.status).toBe(401)
        const forged = await SocketClient.refusal(
          SocketClient.open(SocketClient.socketUrl(suite.target.url, `ticket=${"A".repeat(43)}`))
        )
        expect(forged.status).toBe(401)
      })

      it("refuses a browser page of another origin with 403; the server's own origin opens", async () => {
        const foreign = await SocketClient.refusal(
          SocketClient.open(SocketClient.socketUrl(suite.target.url), {
            ...suite.as("alice"),
            origin: "https://evil.example"
          })
        )
        expect(foreign.status).toBe(403)
        expect(JSON.parse(foreign.body).error.type).toBe("forbidden")
        const own = await connect(SocketClient.socketUrl(suite.target.url), {
          ...suite.as("alice"),
          origin: new URL(suite.target.url).origin
        })
        own.send({ type: "ping" })
        expect(await own.next()).toEqual({ type: "pong" })
        own.close()
      })
    })

    // Last: the reply it leaves is many megabytes, which a single-connection store (PGlite) takes a while to write.
    it("holds the model back while the client reads nothing, and lets it go on when it reads again", async () => {
      const socket = await open()
      const flood = token()
      socket.send({ type: "chat.send", request_id: "f", message: `flood ${flood}` })
      await socket.next((frame) => frame.request_id === "f" && frame.type === "metadata")
      socket.raw.pause()
      // Read nothing more: the count of deltas pulled from the model settles.
      const last = await settledPulls(() => model.pulled(flood))
      socket.raw.resume()
      // Back-pressure, not the end: reading again lets the model go on.
      while (model.pulled(flood) <= last) await socket.next((frame) => frame.request_id === "f")
      socket.drop()
      await model.interrupted(flood)
    })
  })
