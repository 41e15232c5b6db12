import { randomUUID } from "node:crypto"
import { ConversationStatistics, ConversationStore } from "@convoke/core"
import { PgConversationStatistics, PgConversationStore, PgEmbedded } from "@convoke/store-pg"
import * as PgTesting from "@convoke/store-pg/testing"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"

// Skipped on a machine without the test PostgreSQL server; under CI its absence fails the run.
const reachable = await PgTesting.requireServer(it)

const hour = 3_600_000
const base = Date.UTC(2026, 5, 1, 12)
const at = (hours: number) => new Date(base + hours * hour)

/**
 * Conversations around the window [0 h, 24 h): in it, one never continued (one
 * user message), one continued (two), one whose first message was never stored
 * (none); before it and at its exclusive end, one each that must not count.
 */
const scenario = Effect.gen(function* () {
  const store = yield* ConversationStore.ConversationStore
  const statistics = yield* ConversationStatistics.ConversationStatistics
  const userId = `user-${randomUUID()}`
  const conversation = (createdAt: Date, userMessages: number) =>
    Effect.gen(function* () {
      const { id } = yield* store.create({ id: randomUUID(), userId, title: "t", now: createdAt })
      for (let turn = 0; turn < userMessages; turn++) {
        yield* store.append({
          userId,
          conversationId: id,
          messages: [
            { id: randomUUID(), role: "user", content: "q", status: "complete", createdAt },
            { id: randomUUID(), role: "assistant", content: "a", status: "complete", createdAt }
          ]
        })
      }
    })
  yield* conversation(at(1), 1)
  yield* conversation(at(2), 2)
  yield* conversation(at(3), 0)
  yield* conversation(at(-1), 1)
  yield* conversation(at(24), 1)
  return yield* statistics.abandonment({ from: at(0), to: at(24) })
})

describe("PgConversationStatistics", () => {
  it.live("counts conversations created in the window and those never continued (PGlite)", () =>
    scenario.pipe(
      Effect.map((result) => expect(result).toEqual({ created: 3, abandoned: 2 })),
      Effect.provide(
        Layer.mergeAll(PgConversationStore.layer(), PgConversationStatistics.layer).pipe(
          Layer.provide(PgEmbedded.layer({ dataDir: "memory://" }))
        )
      )
    )
  )

  // Needs the PostgreSQL server of the test machines (see `reachable`).
  describe.skipIf(!reachable)("on a PostgreSQL server", () => {
    let database: PgTesting.TestDatabase | undefined
    beforeAll(async () => {
      database = await PgTesting.makeTestDatabase()
    })
    afterAll(async () => {
      await database?.drop()
    })

    it.live("gives the same answer through layerUrl's own pool", () =>
      scenario.pipe(
        Effect.map((result) => expect(result).toEqual({ created: 3, abandoned: 2 })),
        Effect.provide(
          Layer.mergeAll(
            PgConversationStore.layerUrl(database!.url),
            PgConversationStatistics.layerUrl(database!.url)
          )
        )
      )
    )

    it.live("fails with StoreUnavailable when the server cannot be reached", () =>
      Effect.gen(function* () {
        const statistics = yield* ConversationStatistics.ConversationStatistics
        return yield* statistics.abandonment({ from: at(0), to: at(24) })
      }).pipe(
        Effect.provide(
          PgConversationStatistics.layerUrl("postgres://postgres@127.0.0.1:1/postgres", {
            connectTimeout: 500
          })
        ),
        Effect.flip,
        Effect.map((error) => expect(error._tag).toBe("StoreUnavailable"))
      )
    )
  })
})
