/**
 * The store with the outbox in front: the history of a conversation with
 * writes still waiting is what reached the store plus what waits, and a busy
 * store (answering others, slowly) is waited for rather than taken for down.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { ChatConfig, ConversationOutbox, type ConversationStore, OutboxStore } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const at = new Date("2026-03-01T10:00:00.000Z")
const message = (id: string, role: ConversationStore.Role, content: string): ConversationStore.Message => ({
  id,
  conversationId: "c-1",
  role,
  content,
  status: "complete",
  createdAt: at
})

describe("OutboxStore.history of a conversation with writes waiting", () => {
  /** The history while the store takes five budgets to answer; `answering`: whether it answers other calls meanwhile. */
  const historyOfBusyStore = (answering: boolean) =>
    Effect.gen(function* () {
      const inner = TestStore.make()
      const release = yield* Deferred.make<void>()
      const stored = [message("m-1", "user", "hello"), message("m-2", "assistant", "Echo #1: hello")]
      let answers = 0
      const outbox = {
        holds: () => true,
        pendingMessages: () => [message("m-3", "user", "again")],
        storeAnswers: () => answers,
        storeLatency: () => 0,
        storeAnswered: () => {
          answers++
        }
      } as unknown as ConversationOutbox.Service
      const slow: ConversationStore.Service = {
        ...inner.service,
        history: () => Effect.as(Deferred.await(release), stored)
      }
      const store = yield* OutboxStore.make(slow).pipe(
        Effect.provide(
          Layer.mergeAll(
            Layer.succeed(ConversationOutbox.ConversationOutbox, outbox),
            Layer.succeed(
              ChatConfig.ChatConfig,
              ChatConfig.make({ creationBudget: Duration.millis(20), storeTimeout: Duration.seconds(2) })
            )
          )
        )
      )
      const reading = yield* Effect.forkChild(store.history({ userId: "alice", conversationId: "c-1" }), {
        startImmediately: true
      })
      for (let budget = 0; budget < 5; budget++) {
        if (answering) answers++
        yield* TestClock.adjust("20 millis")
      }
      yield* Deferred.succeed(release, undefined)
      return (yield* Fiber.join(reading)).map((entry) => entry.content)
    })

  it.effect("waits for a store that keeps answering others: what it stored, then what waits", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* historyOfBusyStore(true), ["hello", "Echo #1: hello", "again"])
    })
  )

  it.effect("gives up on a store that answers nothing: only what waits", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* historyOfBusyStore(false), ["again"])
    })
  )
})
