/**
 * The conversation API's part of the wire contract (the README's
 * "Conversations API"): listing with `limit` and cursor pagination, one
 * conversation with its messages, rename, delete, invalid parameters and
 * bodies, malformed ids, 401 on every route, and isolation between users —
 * another user's conversation answers exactly like a missing one and is left
 * untouched.
 *
 * @since 0.1.0
 */
import { describe, expect, it } from "vitest"
import { CONVERSATION_NOT_FOUND, expectError, ISO_DATE, type Suite, type User, UUID_V4 } from "./Suite.ts"

// The documented path, not the core's constant: the suite checks the contract clients rely on.
const CONVERSATIONS = "/api/v0.3/conversations"

/** One item of a conversation list. */
interface Listed {
  readonly id: string
  readonly title: string
  readonly created_at: string
  readonly updated_at: string
}

/** A page of `GET /api/v0.3/conversations`. */
interface Page {
  readonly data: ReadonlyArray<Listed>
  readonly next_cursor: string | null
}

/** A page of this many pages means the cursor never ended. */
const MAX_PAGES = 200

/** Defines the conversation API's tests in a `describe` block of their own. */
export const define = (suite: Suite) =>
  describe("conversation API", () => {
    const { chat, token } = suite
    const conversation = (id: string) => `${CONVERSATIONS}/${id}`

    /** Starts a conversation with one complete turn; resolves with its id. */
    const create = async (message: string, user: User = "alice"): Promise<string> => {
      const response = await chat({ message }, {}, user)
      expect(response.status, "POST /api/v0.3/chat").toBe(200)
      return (await response.json()).conversation_id
    }

    /** A user's view of one of their conversations, byte for byte. */
    const shownText = async (id: string, user: User = "alice") => {
      const response = await suite.request(conversation(id), { user })
      expect(response.status, `GET ${conversation(id)}`).toBe(200)
      return response.text()
    }
    const show = async (id: string, user: User = "alice") => JSON.parse(await shownText(id, user))

    /** Reads every page of a user's list, following `next_cursor`. */
    const walk = async (user: User, limit?: number): Promise<Array<Page>> => {
      const pages: Array<Page> = []
      let cursor: string | null = null
      do {
        const query = new URLSearchParams({
          ...(limit === undefined ? {} : { limit: String(limit) }),
          ...(cursor === null ? {} : { cursor })
        })
        const response = await suite.request(`${CONVERSATIONS}?${query}`, { user })
        expect(response.status, `GET ${CONVERSATIONS}?${query}`).toBe(200)
        expect(response.headers.get("content-type")).toMatch(/^application\/json/)
        const page: Page = await response.json()
        pages.push(page)
        cursor = page.next_cursor
        expect(pages.length, "next_cursor never became null").toBeLessThan(MAX_PAGES)
      } while (cursor !== null)
      return pages
    }
    const listed = async (user: User, limit?: number) =>
      (await walk(user, limit)).flatMap((page) => page.data)

    it("lists a user's conversations newest updated first, limit at a time, next_cursor passed back as cursor", async () => {
      const run = token()
      const first = await create(`first ${run}`, "carol")
      const second = await create(`second ${run}`, "carol")
      const third = await create(`third ${run}`, "carol")
      // Continuing the first conversation makes it the most recently updated.
      expect((await chat({ message: "again", conversation_id: first }, {}, "carol")).status).toBe(200)

      const whole = await walk("carol")
      expect(whole).toHaveLength(1)
      expect(whole[0]!.next_cursor).toBeNull()
      const items = whole[0]!.data
      for (const item of items) {
        expect(item).toEqual({
          id: expect.stringMatching(UUID_V4),
          title: expect.any(String),
          created_at: expect.stringMatching(ISO_DATE),
          updated_at: expect.stringMatching(ISO_DATE)
        })
        expect(Date.parse(item.updated_at)).toBeGreaterThanOrEqual(Date.parse(item.created_at))
      }
      const byId = new Map(items.map((item) => [item.id, item]))
      expect([...byId.keys()].sort()).toEqual([first, second, third].sort())
      expect(byId.get(first)!.title).toBe(`first ${run}`)
      expect(byId.get(third)!.title).toBe(`third ${run}`)
      // Time moves forward: the continued conversation was updated last, the
      // others in the order they were created.
      const updated = (id: string) => Date.parse(byId.get(id)!.updated_at)
      expect(updated(first)).toBeGreaterThanOrEqual(updated(third))
      expect(updated(third)).toBeGreaterThanOrEqual(updated(second))
      // Newest updated first; conversations updated in the same millisecond
      // keep one order, by id, as the (updated_at, id) cursor needs.
      const newestFirst = [...items].sort(
        (left, right) =>
          Date.parse(right.updated_at) - Date.parse(left.updated_at) || (right.id < left.id ? -1 : 1)
      )
      expect(items.map((item) => item.id)).toEqual(newestFirst.map((item) => item.id))

      for (const limit of [1, 2]) {
        const pages = await walk("carol", limit)
        expect(
          pages.map((page) => page.data.length),
          `limit ${limit}`
        ).toEqual(limit === 1 ? [1, 1, 1] : [2, 1])
        for (const page of pages.slice(0, -1))
          expect(page.next_cursor, `limit ${limit}`).toEqual(expect.any(String))
        expect(pages.at(-1)!.next_cursor, `limit ${limit}`).toBeNull()
        expect(pages.flatMap((page) => page.data)).toEqual(items)
      }
    })

    it("shows one conversation with its messages: roles, contents and statuses", async () => {
      const run = token()
      const id = await create(`hello ${run}`)
      expect((await chat({ message: "second", conversation_id: id })).status).toBe(200)
      // A model failure after the start: the partial reply is stored with status error.
      const failed = await suite.streamed({ message: "overloaded now", conversation_id: id })
      expect(failed.at(-1)!.type).toBe("error")

      const shown = await show(id)
      expect(shown).toEqual({
        id,
        title: `hello ${run}`,
        created_at: expect.stringMatching(ISO_DATE),
        updated_at: expect.stringMatching(ISO_DATE),
        messages: [
          ["user", `hello ${run}`, "complete"],
          ["assistant", `Echo #1: hello ${run}`, "complete"],
          ["user", "second", "complete"],
          ["assistant", "Echo #2: second", "complete"],
          ["user", "overloaded now", "complete"],
          ["assistant", "Hel", "error"]
        ].map(([role, content, status]) => ({
          id: expect.any(String),
          role,
          content,
          status,
          created_at: expect.stringMatching(ISO_DATE)
        })),
        // No turn runs once its stream has ended.
        running_turn: null
      })
      const messages: ReadonlyArray<{ id: string; created_at: string }> = shown.messages
      expect(new Set(messages.map((message) => message.id)).size).toBe(messages.length)
      const times = messages.map((message) => Date.parse(message.created_at))
      expect(times).toEqual([...times].sort((left, right) => left - right))
      expect(Date.parse(shown.updated_at)).toBeGreaterThanOrEqual(times.at(-1)!)
    })

    it("shows a reply cut short by a disconnect as cancelled", async () => {
      const { metadata, message } = await suite.disconnectMidReply()
      expect(await suite.turns.ended(metadata.conversation_id)).toBe("client_closed")
      const shown = await show(metadata.conversation_id)
      expect(
        shown.messages.map((message: Record<string, string>) => [
          message.role,
          message.content,
          message.status
        ])
      ).toEqual([
        ["user", message, "complete"],
        ["assistant", "Echo partial", "cancelled"]
      ])
    })

    it("renames a conversation: PATCH answers it with the new title, and get and list show it", async () => {
      const id = await create(`to rename ${token()}`)
      const before = await show(id)
      const title = `Renamed ${token()}`
      const response = await suite.request(conversation(id), { method: "PATCH", body: { title } })
      expect(response.status, `PATCH ${conversation(id)}`).toBe(200)
      expect(response.headers.get("content-type")).toMatch(/^application\/json/)
      const renamed = await response.json()
      expect(renamed).toEqual({
        id,
        title,
        created_at: before.created_at,
        updated_at: expect.stringMatching(ISO_DATE)
      })
      expect(Date.parse(renamed.updated_at)).toBeGreaterThanOrEqual(Date.parse(before.updated_at))
      expect(await show(id)).toEqual({ ...before, title, updated_at: renamed.updated_at })
      expect((await listed("alice")).find((item) => item.id === id)).toEqual(renamed)
    })

    it("deletes a conversation: 204, then get answers 404 and the list leaves it out", async () => {
      const id = await create(`to delete ${token()}`)
      const response = await suite.request(conversation(id), { method: "DELETE" })
      expect(response.status, `DELETE ${conversation(id)}`).toBe(204)
      expect(await response.text()).toBe("")
      const gone = await suite.request(conversation(id))
      expect(gone.status).toBe(404)
      expect(await gone.text()).toBe(CONVERSATION_NOT_FOUND)
      expect((await listed("alice")).map((item) => item.id)).not.toContain(id)
      // Its messages went with it: the id no longer resumes.
      const resumed = await chat({ message: "still there?", conversation_id: id })
      expect(resumed.status).toBe(404)
      expect(await resumed.text()).toBe(CONVERSATION_NOT_FOUND)
      if (suite.target.probe) expect(await suite.target.probe.transcript(id)).toEqual([])
      const again = await suite.request(conversation(id), { method: "DELETE" })
      expect(again.status).toBe(404)
      expect(await again.text()).toBe(CONVERSATION_NOT_FOUND)
    })

    it("rejects an invalid limit or cursor with 400 and the common body", async () => {
      const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
      const queries = [
        ...["0", "101", "-1", "2.5", "ten", "1e1"].map((limit) => ({ limit })),
        ...[
          "not-a-cursor",
          cursorOf([1, 2]),
          cursorOf({ updated_at: "2026-01-01T00:00:00.000Z" }),
          cursorOf(["2026-01-01T00:00:00.000Z", "not-a-uuid"]),
          cursorOf(["yesterday", crypto.randomUUID()])
        ].map((cursor) => ({ cursor }))
      ]
      for (const query of queries) {
        const response = await suite.request(`${CONVERSATIONS}?${new URLSearchParams(query)}`)
        await expectError(response, 400, "invalid_request", JSON.stringify(query))
      }
    })

    it("rejects an invalid rename body with 400 and the common body, changing nothing", async () => {
      const id = await create(`keep my title ${token()}`)
      const before = await show(id)
      const bodies: Array<unknown> = [
        "{not json",
        "[1]",
        {},
        { title: "" },
        { title: "   " },
        { title: 42 },
        { title: null },
        { title: "x".repeat(201) },
        { title: "nul \u0000 inside" }
      ]
      for (const body of bodies) {
        const response = await suite.request(conversation(id), {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body
        })
        await expectError(response, 400, "invalid_request", JSON.stringify(body))
      }
      expect(await show(id)).toEqual(before)
    })

    it("answers a malformed id with 404, exactly like a missing one", async () => {
      const missing = crypto.randomUUID()
      for (const malformed of ["not-a-uuid", "123", `${missing}x`]) {
        for (const [method, body] of [
          ["GET", undefined],
          ["PATCH", { title: "Renamed" }],
          ["DELETE", undefined]
        ] as const) {
          const label = `${method} ${malformed}`
          const [response, reference] = await Promise.all([
            suite.request(conversation(malformed), { method, body }),
            suite.request(conversation(missing), { method, body })
          ])
          expect(response.status, label).toBe(404)
          expect(reference.status, label).toBe(404)
          expect(await response.text(), label).toBe(CONVERSATION_NOT_FOUND)
          expect(await reference.text(), label).toBe(CONVERSATION_NOT_FOUND)
        }
      }
    })

    it("answers another user's conversation exactly like a missing one, and changes nothing of it", async () => {
      const id = await create(`alice only ${token()}`)
      await chat({ message: "more", conversation_id: id })
      const before = await shownText(id)
      const bobs = await create(`bob's own ${token()}`, "bob")
      const missing = crypto.randomUUID()
      for (const [method, body] of [
        ["GET", undefined],
        ["PATCH", { title: "Bob was here" }],
        ["DELETE", undefined]
      ] as const) {
        const theirs = await suite.request(conversation(id), { method, body, user: "bob" })
        const absent = await suite.request(conversation(missing), { method, body, user: "bob" })
        expect(theirs.status, method).toBe(absent.status)
        expect(theirs.status, method).toBe(404)
        expect(theirs.headers.get("content-type"), method).toBe(absent.headers.get("content-type"))
        expect(await theirs.text(), method).toBe(await absent.text())
      }
      // Nothing of Alice's changed: not the title, not a message, not the time of the last update.
      expect(await shownText(id)).toBe(before)
      const alices = (await listed("alice")).map((item) => item.id)
      expect(alices).toContain(id)
      const bobsList = (await listed("bob")).map((item) => item.id)
      expect(bobsList).toContain(bobs)
      expect(bobsList.filter((listedId) => alices.includes(listedId))).toEqual([])
    })

    it("answers 401 with the common body on every conversation route without credentials or with a wrong key", async () => {
      const id = await create(`guarded ${token()}`)
      const before = await shownText(id)
      const requests = [
        ["GET", CONVERSATIONS, undefined],
        ["GET", conversation(id), undefined],
        ["PATCH", conversation(id), { title: "Anonymous was here" }],
        ["DELETE", conversation(id), undefined]
      ] as const
      for (const headers of [{}, { authorization: "Bearer not-a-key-0123456789" }]) {
        for (const [method, path, body] of requests) {
          const response = await suite.request(path, { method, body, headers, user: null })
          await expectError(response, 401, "unauthenticated", `${method} ${path} ${JSON.stringify(headers)}`)
        }
      }
      expect(await shownText(id)).toBe(before)
    })
  })
