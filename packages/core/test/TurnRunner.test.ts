import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect } from "effect"
import { ChatEvent, type ChatTurn, TurnLog, TurnRunner } from "../src/index.ts"
import * as TestStore from "../src/testing/TestStore.ts"

const turn: TurnLog.TurnInfo = {
  turnId: "turn-1",
  conversationId: "conversation-1",
  userId: "alice",
  metadata: ChatEvent.metadata({
    conversationId: "conversation-1",
    model: "echo",
    timestampSeconds: 0,
    turnId: "turn-1"
  }),
  replyId: "reply-1",
  model: "echo",
  startedAt: 0
}

describe("TurnRunner", () => {
  it.effect(
    "a stop that comes before the turn's fiber first runs still ends the turn: cancelled, then done",
    () =>
      Effect.gen(function* () {
        const ran = yield* Deferred.make<void>()
        const stopped = yield* Deferred.make<void>()
        // A model that never answers: only the stop can end this turn.
        const turns: ChatTurn.Turns = {
          run: () =>
            Effect.andThen(Deferred.succeed(ran, undefined), Effect.never).pipe(
              Effect.onInterrupt(() => Deferred.succeed(stopped, undefined))
            ),
          isShuttingDown: () => false,
          shutdown: Effect.void
        }
        const log = yield* TurnLog.TurnLog
        const runner = yield* TurnRunner.make(turns, { disconnectGrace: Duration.zero })
        yield* runner.start(
          { userId: "alice", requestId: undefined, stream: true },
          {} as ChatTurn.Prepared,
          turn
        )
        // In the same step as the start, as a stop request handled before the next tick is.
        assert.isTrue(yield* log.requestStop(turn.turnId))

        const events: Array<TurnLog.TurnEvent> = []
        const end = yield* runner.follow(turn.turnId, 0, (entry) =>
          Effect.sync(() => events.push(entry.event))
        )

        assert.strictEqual(end, "done")
        assert.deepStrictEqual(events, [TurnRunner.cancelledEvent, TurnLog.done])
        // The turn ran, and was stopped in it: its reply and its end are the turn's to store and report.
        assert.isTrue(yield* Deferred.isDone(ran))
        assert.isTrue(yield* Deferred.isDone(stopped))
        yield* runner.idle
      }).pipe(Effect.scoped, Effect.provide(TurnLog.layerMemory()), Effect.provide(TestStore.make().layer))
  )
})
