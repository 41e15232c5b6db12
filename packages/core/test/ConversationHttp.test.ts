import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AuditLog, ChatHttp, ChatLog, EchoLanguageModel, Identity } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const BASE = "http://localhost/api/v0.3/conversations"
const KEYS = {
  alice: "alice-key-0123456789abcdefghijklmnopqrstuvwxyz",
  bob: "bob-key-0123456789abcdefghijklmnopqrstuvwxyz"
} as const

/**
 * The memory audit log, and a wait for its entries: a cross-user access is
 * recorded by a detached fiber, after the answer has gone out.
 */
const makeAudit = () => {
  const memory = AuditLog.makeMemory()
  const waiting = new Set<() => void>()
  return {
    ...memory,
    record: (entries: ReadonlyArray<AuditLog.Entry>) =>
      Effect.andThen(
        memory.record(entries),
        Effect.sync(() => {
          for (const check of waiting) check()
        })
      ),
    /** Resolves once `count` entries of `action` have been recorded. */
    recorded: (action: AuditLog.Entry["action"], count: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (memory.entries.filter((entry) => entry.action === action).length < count) return
          waiting.delete(check)
          resolve()
        }
        waiting.add(check)
        check()
      })
  }
}

const withApp = async (
  body: (app: ChatHttp.App, audit: ReturnType<typeof makeAudit>) => Promise<void>,
  extra: Layer.Layer<never> = Layer.empty
) => {
  const audit = makeAudit()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      TestStore.make().layer,
      EchoLanguageModel.layer({ delay: 0 }),
      Identity.layerApiKeys([
        { key: KEYS.alice, userId: "alice" },
        { key: KEYS.bob, userId: "bob" }
      ]),
      Layer.succeed(AuditLog.AuditLog, audit),
      extra
    )
  )
  try {
    await body(app, audit)
  } finally {
    await app.dispose()
  }
}

const call = (app: ChatHttp.App, user: keyof typeof KEYS, path: string, init: RequestInit = {}) =>
  app.handler(
    new Request(`${BASE}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${KEYS[user]}`, "content-type": "application/json", ...init.headers }
    })
  )

const chat = async (app: ChatHttp.App, user: keyof typeof KEYS, message: string, conversationId?: string) => {
  const response = await app.handler(
    new Request("http://localhost/api/v0.3/chat", {
      method: "POST",
      headers: { authorization: `Bearer ${KEYS[user]}`, "content-type": "application/json" },
      body: JSON.stringify({ message, conversation_id: conversationId })
    })
  )
  assert.strictEqual(response.status, 200)
  return (await response.json()).conversation_id as string
}

const expectNotFound = async (response: Response) => {
  assert.strictEqual(response.status, 404)
  assert.deepStrictEqual(await response.json(), {
    error: { type: "not_found", message: "Conversation not found" }
  })
}

describe("conversation API", () => {
  it("lists the caller's conversations newest first, a page at a time", () =>
    withApp(async (app) => {
      const ids: Array<string> = []
      for (let index = 0; index < 5; index++) ids.push(await chat(app, "alice", `message ${index}`))
      await chat(app, "bob", "not alice's")
      const seen: Array<string> = []
      let cursor: string | null = null
      let pages = 0
      do {
        const query: string = cursor === null ? "?limit=2" : `?limit=2&cursor=${cursor}`
        const response = await call(app, "alice", query)
        assert.strictEqual(response.status, 200)
        const page = await response.json()
        assert.isAtMost(page.data.length, 2)
        for (const conversation of page.data) {
          assert.deepStrictEqual(Object.keys(conversation), ["id", "title", "created_at", "updated_at"])
          seen.push(conversation.id)
        }
        cursor = page.next_cursor
        pages++
      } while (cursor !== null)
      assert.strictEqual(pages, 3)
      assert.deepStrictEqual(seen, [...ids].reverse())
    }))

  it("returns one conversation with its messages", () =>
    withApp(async (app) => {
      const id = await chat(app, "alice", "hello")
      await chat(app, "alice", "again", id)
      const response = await call(app, "alice", `/${id}`)
      assert.strictEqual(response.status, 200)
      const body = await response.json()
      assert.strictEqual(body.id, id)
      assert.strictEqual(body.title, "hello")
      assert.deepStrictEqual(
        body.messages.map((message: { role: string; content: string; status: string }) => [
          message.role,
          message.status,
          message.content
        ]),
        [
          ["user", "complete", "hello"],
          ["assistant", "complete", "Echo #1: hello"],
          ["user", "complete", "again"],
          ["assistant", "complete", "Echo #2: again"]
        ]
      )
    }))

  it("renames and deletes, and deletion takes the messages along", () =>
    withApp(async (app, audit) => {
      const id = await chat(app, "alice", "hello")
      const renamed = await call(app, "alice", `/${id}`, {
        method: "PATCH",
        body: JSON.stringify({ title: "Plans" })
      })
      assert.strictEqual(renamed.status, 200)
      assert.strictEqual((await renamed.json()).title, "Plans")
      const removed = await call(app, "alice", `/${id}`, { method: "DELETE" })
      assert.strictEqual(removed.status, 204)
      await expectNotFound(await call(app, "alice", `/${id}`))
      const resumed = await app.handler(
        new Request("http://localhost/api/v0.3/chat", {
          method: "POST",
          headers: { authorization: `Bearer ${KEYS.alice}` },
          body: JSON.stringify({ message: "back?", conversation_id: id })
        })
      )
      assert.strictEqual(resumed.status, 404)
      assert.isTrue(
        audit.entries.some((entry) => entry.action === "conversation.deleted" && entry.conversationId === id)
      )
    }))

  it("audits a deletion under the request's id: the caller's when sane, else the one given to it", () =>
    withApp(async (app, audit) => {
      const given = await chat(app, "alice", "first")
      assert.strictEqual(
        (await call(app, "alice", `/${given}`, { method: "DELETE", headers: { "x-request-id": "req-7" } }))
          .status,
        204
      )
      const fresh = await chat(app, "alice", "second")
      assert.strictEqual((await call(app, "alice", `/${fresh}`, { method: "DELETE" })).status, 204)
      const requestIdOf = (id: string) =>
        audit.entries.find((entry) => entry.action === "conversation.deleted" && entry.conversationId === id)
          ?.requestId
      assert.strictEqual(requestIdOf(given), "req-7")
      assert.match(requestIdOf(fresh) ?? "", /^[0-9a-f-]{36}$/)
    }, ChatLog.layer()))

  it("answers another user's conversation exactly like a missing one, on every endpoint, and audits it", () =>
    withApp(async (app, audit) => {
      const id = await chat(app, "alice", "secret")
      const missing = crypto.randomUUID()
      for (const [method, body] of [
        ["GET", undefined],
        ["PATCH", JSON.stringify({ title: "mine now" })],
        ["DELETE", undefined]
      ] as const) {
        const theirs = await call(app, "bob", `/${id}`, { method, ...(body ? { body } : {}) })
        const absent = await call(app, "bob", `/${missing}`, { method, ...(body ? { body } : {}) })
        assert.strictEqual(theirs.status, absent.status)
        assert.strictEqual(await theirs.text(), await absent.text())
      }
      const list = await (await call(app, "bob", "")).json()
      assert.deepStrictEqual(list.data, [])
      const mine = await (await call(app, "alice", `/${id}`)).json()
      assert.strictEqual(mine.title, "secret")
      await audit.recorded("conversation.cross_user_access", 3)
      const attempts = audit.entries.filter((entry) => entry.action === "conversation.cross_user_access")
      assert.strictEqual(attempts.length, 3)
      assert.isTrue(attempts.every((entry) => entry.userId === "bob" && entry.conversationId === id))
    }))

  it("rejects bad input with 400 and the common body", () =>
    withApp(async (app) => {
      const id = await chat(app, "alice", "hello")
      for (const [path, init] of [
        ["?limit=0", {}],
        ["?limit=101", {}],
        ["?limit=abc", {}],
        ["?cursor=not-a-cursor", {}],
        [`/${id}`, { method: "PATCH", body: JSON.stringify({ title: "" }) }],
        [`/${id}`, { method: "PATCH", body: JSON.stringify({ title: 5 }) }],
        [`/${id}`, { method: "PATCH", body: "{oops" }]
      ] as const) {
        const response = await call(app, "alice", path, init)
        assert.strictEqual(response.status, 400, path)
        assert.strictEqual((await response.json()).error.type, "invalid_request")
      }
      await expectNotFound(await call(app, "alice", "/not-a-uuid"))
      // Longer than the router's default parameter limit: still the route's 404, not an unknown path.
      await expectNotFound(await call(app, "alice", `/${"a".repeat(300)}`))
      const anonymous = await app.handler(new Request(BASE))
      assert.strictEqual(anonymous.status, 401)
    }))
})
