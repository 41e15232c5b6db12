import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { AuditLog, ConversationCleanup, ConversationStore } from "../src/index.ts"

const HOUR = 3_600_000

/** Creates a conversation `ageHours` old, answered or not. */
const seed = (
  store: ConversationStore.Service,
  options: { readonly id: string; readonly ageHours: number; readonly reply?: "complete" | "empty" | "none" }
) =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const at = new Date(now - options.ageHours * HOUR)
    yield* store.create({ id: options.id, userId: "alice", title: options.id, now: at })
    const messages: Array<ConversationStore.NewMessage> = [
      { id: `${options.id}-u`, role: "user", content: "hi", status: "complete", createdAt: at }
    ]
    if (options.reply === "complete") {
      messages.push({
        id: `${options.id}-a`,
        role: "assistant",
        content: "hello",
        status: "complete",
        createdAt: at
      })
    }
    if (options.reply === "empty") {
      messages.push({
        id: `${options.id}-a`,
        role: "assistant",
        content: "",
        status: "partial",
        createdAt: at
      })
    }
    yield* store.append({ userId: "alice", conversationId: options.id, messages })
  })

const remaining = (store: ConversationStore.Service) =>
  Effect.map(store.list({ userId: "alice", limit: 100 }), (page) =>
    page.conversations.map(({ id }) => id).sort()
  )

describe("ConversationCleanup", () => {
  it.effect(
    "deletes exactly the abandoned conversations older than the cut-off, in batches, and audits them",
    () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(Date.parse("2026-11-25T12:00:00Z"))
        const store = ConversationStore.makeMemory()
        const audit = AuditLog.makeMemory()
        yield* seed(store, { id: "old-unanswered", ageHours: 30, reply: "none" })
        yield* seed(store, { id: "old-empty-reply", ageHours: 30, reply: "empty" })
        yield* seed(store, { id: "old-unanswered-2", ageHours: 25, reply: "none" })
        yield* seed(store, { id: "old-answered", ageHours: 30, reply: "complete" })
        yield* seed(store, { id: "young-unanswered", ageHours: 2, reply: "none" })
        yield* seed(store, { id: "young-answered", ageHours: 2, reply: "complete" })
        const job = yield* ConversationCleanup.make({
          abandonedAfter: Duration.hours(24),
          batchSize: 2
        }).pipe(
          Effect.provideService(ConversationStore.ConversationStore, store),
          Effect.provideService(AuditLog.AuditLog, audit)
        )
        const report = yield* job.run
        assert.strictEqual(report.deleted, 3)
        assert.deepStrictEqual(yield* remaining(store), [
          "old-answered",
          "young-answered",
          "young-unanswered"
        ])
        // Created in the 24 h before the cut-off: the four old ones, three abandoned.
        assert.strictEqual(report.created, 4)
        assert.strictEqual(report.abandoned, 3)
        assert.strictEqual(report.abandonmentRatio, 0.75)
        assert.deepStrictEqual(
          audit.entries.map((entry) =>
            entry.action === "conversation.deleted" ? entry.cause : entry.action
          ),
          ["cleanup", "cleanup", "cleanup"]
        )
        assert.strictEqual(job.latest()?.deleted, 3)

        // A day later the young unanswered one has aged past the cut-off too.
        yield* TestClock.adjust("24 hours")
        assert.strictEqual((yield* job.run).deleted, 1)
        assert.deepStrictEqual(yield* remaining(store), ["old-answered", "young-answered"])
      })
  )

  it.effect("runs on its schedule", () => {
    const store = ConversationStore.makeMemory()
    return Effect.gen(function* () {
      yield* seed(store, { id: "stale", ageHours: 48 })
      const job = yield* ConversationCleanup.ConversationCleanup
      assert.isUndefined(job.latest())
      yield* TestClock.adjust("10 minutes")
      assert.strictEqual(job.latest()?.deleted, 1)
    }).pipe(
      Effect.provide(
        ConversationCleanup.layer({ interval: Duration.minutes(10) }).pipe(
          Layer.provide(Layer.succeed(ConversationStore.ConversationStore, store))
        )
      )
    )
  })
})
