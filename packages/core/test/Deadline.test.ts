import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { Deadline } from "../src/index.ts"

/**
 * Work whose interruption cannot finish until released, under a 50 ms
 * deadline: `run` gets its exit (moving the clock if it must), which must be
 * a timeout while the work has still not stopped.
 */
const givesUpWithoutWaiting = (
  run: (
    timedOut: Effect.Effect<Exit.Exit<never, Cause.TimeoutError>>
  ) => Effect.Effect<Exit.Exit<never, Cause.TimeoutError>>
) =>
  Effect.gen(function* () {
    const stopped = yield* Deferred.make<void>()
    const released = yield* Deferred.make<void>()
    const work = Effect.never.pipe(
      Effect.onInterrupt(() => Effect.andThen(Deferred.await(released), Deferred.succeed(stopped, undefined)))
    )
    const exit = yield* run(Effect.exit(work.pipe(Deadline.within("50 millis"))))
    assert.isTrue(Exit.isFailure(exit) && Cause.isTimeoutError(Cause.squash(exit.cause)))
    assert.isFalse(yield* Deferred.isDone(stopped))
    yield* Deferred.succeed(released, undefined)
    yield* Deferred.await(stopped)
  })

describe("Deadline.within", () => {
  it.effect("returns the result or the failure of work that finishes in time", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* Effect.succeed(1).pipe(Deadline.within("1 second")), 1)
      const error = yield* Effect.flip(Effect.fail("nope" as const).pipe(Deadline.within("1 second")))
      assert.strictEqual(error, "nope")
    })
  )

  it.effect("gives up at the deadline without waiting for the work to stop", () =>
    givesUpWithoutWaiting((timedOut) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.forkChild(timedOut)
        yield* TestClock.adjust("50 millis")
        return yield* Fiber.join(fiber)
      })
    )
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
      givesUpWithoutWaiting((timedOut) => timedOut)
    )
  })
})

describe("Deadline.withinWhileProgressing", () => {
  /** Runs `work` under a 50 ms slice and a 200 ms ceiling, `progress` counting what else got done. */
  const timed = <A>(work: Effect.Effect<A>, progress: () => number) =>
    Effect.forkChild(
      Effect.exit(
        work.pipe(Deadline.withinWhileProgressing({ slice: "50 millis", ceiling: "200 millis", progress }))
      ),
      { startImmediately: true }
    )

  it.effect("keeps waiting while what the work waits on makes progress", () =>
    Effect.gen(function* () {
      let answered = 0
      const done = yield* Deferred.make<number>()
      const fiber = yield* timed(Deferred.await(done), () => answered)
      for (let slice = 0; slice < 3; slice++) {
        answered++
        yield* TestClock.adjust("50 millis")
      }
      yield* Deferred.succeed(done, 7)
      const exit = yield* Fiber.join(fiber)
      assert.deepStrictEqual(exit, Exit.succeed(7))
    })
  )

  it.effect("gives up after one slice without progress", () =>
    Effect.gen(function* () {
      let answered = 0
      const fiber = yield* timed(Effect.never, () => answered)
      answered++
      yield* TestClock.adjust("50 millis")
      assert.isUndefined(fiber.pollUnsafe())
      // Nothing answered in the second slice: the store looks down.
      yield* TestClock.adjust("50 millis")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.isTimeoutError(Cause.squash(exit.cause)))
    })
  )

  it.effect("gives up at the ceiling however much progress there is", () =>
    Effect.gen(function* () {
      let answered = 0
      const fiber = yield* timed(Effect.never, () => answered)
      for (let slice = 0; slice < 3; slice++) {
        answered++
        yield* TestClock.adjust("50 millis")
        assert.isUndefined(fiber.pollUnsafe())
      }
      answered++
      yield* TestClock.adjust("50 millis")
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isFailure(exit) && Cause.isTimeoutError(Cause.squash(exit.cause)))
    })
  )

  it.live("moves on the default clock too", () =>
    Effect.gen(function* () {
      let answered = 0
      const ticking = setInterval(() => answered++, 5)
      try {
        const value = yield* Effect.sleep("120 millis").pipe(
          Effect.as(3),
          Deadline.withinWhileProgressing({
            slice: "30 millis",
            ceiling: "10 seconds",
            progress: () => answered
          })
        )
        assert.strictEqual(value, 3)
      } finally {
        clearInterval(ticking)
      }
    })
  )
})
