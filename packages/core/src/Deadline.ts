/**
 * Time limits that do not wait for the work they give up on.
 *
 * `Effect.timeout` interrupts the timed-out effect and waits for that
 * interruption to finish. A database driver interrupted mid-query may need
 * seconds to clean up (it cancels the query over a new connection, which a
 * network fault can hang as well), so a 50 ms budget could cost several
 * seconds. `within` returns at the deadline and lets the interruption finish
 * in the background.
 *
 * @since 0.1.0
 */
import { Cause, type Duration, Effect, Fiber, Option } from "effect"

/**
 * Runs `effect`, failing with `Cause.TimeoutError` once `duration` has passed
 * without waiting for the abandoned work to stop. Interrupting the caller
 * interrupts the work too, also without waiting.
 */
export const within =
  (duration: Duration.Input) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Cause.TimeoutError, R> =>
    // Forking and arming the interrupt handler happen uninterruptibly, so a
    // caller interrupted in between cannot leave the work running.
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.forkDetach(effect, { startImmediately: true, uninterruptible: false })
        // Ask the work to stop, without waiting for it to have stopped.
        const abandon = Effect.sync(() => fiber.interruptUnsafe())
        const exit = yield* restore(Effect.timeoutOption(Fiber.await(fiber), duration)).pipe(
          Effect.onInterrupt(() => abandon)
        )
        if (Option.isNone(exit)) {
          yield* abandon
          return yield* Effect.fail(new Cause.TimeoutError(`Gave up after ${String(duration)}`))
        }
        return yield* exit.value
      })
    )
