import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { Deadline } from "../src/index.ts"

describe("Deadline.within", () => {
  it.effect("returns the result or the failure of work that finishes in time", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* Effect.succeed(1).pipe(Deadline.within("1 second")), 1)
      const error = yield* Effect.flip(Effect.fail("nope" as const).pipe(Deadline.within("1 second")))
      assert.strictEqual(error, "nope")
    })
  )

  it.effect("gives up at the deadline without waiting for the work to stop", () =>
    Effect.gen(function* () {
      // The work's interruption cannot finish until the test says so.
      const stopped = yield* Deferred.make<void>()
      const released = yield* Deferred.make<void>()
      const work = Effect.never.pipe(
        Effect.onInterrupt(() =>
          Effect.andThen(Deferred.await(released), Deferred.succeed(stopped, undefined))
        )
      )
      const fiber = yield* Effect.forkChild(Effect.exit(work.pipe(Deadline.within("50 millis"))))
      yield* TestClock.adjust("50 millis")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.isTimeoutError(Cause.squash(exit.cause)))
      assert.isFalse(yield* Deferred.isDone(stopped))
      yield* Deferred.succeed(released, undefined)
      yield* Deferred.await(stopped)
    })
  )

  it.effect("interrupts the work when the caller is interrupted", () =>
    Effect.gen(function* () {
      const interrupted = yield* Deferred.make<void>()
      const started = yield* Deferred.make<void>()
      const work = Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
        Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
      )
      const fiber = yield* Effect.forkChild(work.pipe(Deadline.within("1 hour")))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      yield* Deferred.await(interrupted)
    })
  )

  describe("on the default clock (a plain timer)", () => {
    it.live("returns work that finishes in time", () =>
      Effect.gen(function* () {
        const value = yield* Effect.sleep("5 millis").pipe(Effect.as(7), Deadline.within("1 second"))
        assert.strictEqual(value, 7)
      })
    )

    it.live("gives up at the deadline without waiting for the work to stop", () =>
      Effect.gen(function* () {
        const released = yield* Deferred.make<void>()
        const stopped = yield* Deferred.make<void>()
        const work = Effect.never.pipe(
          Effect.onInterrupt(() =>
            Effect.andThen(Deferred.await(released), Deferred.succeed(stopped, undefined))
          )
        )
        const exit = yield* Effect.exit(work.pipe(Deadline.within("20 millis")))
        assert.isTrue(Exit.isFailure(exit) && Cause.isTimeoutError(Cause.squash(exit.cause)))
        assert.isFalse(yield* Deferred.isDone(stopped))
        yield* Deferred.succeed(released, undefined)
        yield* Deferred.await(stopped)
      })
    )
  })
})
