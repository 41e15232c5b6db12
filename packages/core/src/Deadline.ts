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
 * It sits on every store call of a chat turn, so it is lean: work that
 * finishes at once (an in-memory store) costs one fiber and no timer, and
 * otherwise the work and the timer are the only fibers.
 *
 * @since 0.1.0
 */
import { Cause, type Duration, Effect, type Exit, type Fiber } from "effect"

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
      Effect.flatMap(
        Effect.forkDetach(effect, { startImmediately: true, uninterruptible: false }),
        (work: Fiber.Fiber<A, E>): Effect.Effect<A, E | Cause.TimeoutError> => {
          const finished = work.pollUnsafe()
          if (finished !== undefined) return finished
          return Effect.flatMap(
            Effect.forkDetach(Effect.sleep(duration), { startImmediately: true }),
            (timer) =>
              restore(firstOf(work, timer)).pipe(
                // Ask the work to stop, without waiting for it to have stopped.
                Effect.onInterrupt(() => Effect.sync(() => work.interruptUnsafe())),
                Effect.ensuring(Effect.sync(() => timer.interruptUnsafe())),
                Effect.flatMap((exit): Effect.Effect<A, E | Cause.TimeoutError> => {
                  if (exit !== undefined) return exit
                  work.interruptUnsafe()
                  return Effect.fail(new Cause.TimeoutError(`Gave up after ${String(duration)}`))
                })
              )
          )
        }
      )
    )

/** The work's exit if it ends first, `undefined` if the timer does. */
const firstOf = <A, E>(
  work: Fiber.Fiber<A, E>,
  timer: Fiber.Fiber<void>
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.callback((resume) => {
    let removeWork = () => {}
    let removeTimer = () => {}
    let settled = false
    const settle = (result: Exit.Exit<A, E> | undefined) => {
      if (settled) return
      settled = true
      removeWork()
      removeTimer()
      resume(Effect.succeed(result))
    }
    removeWork = work.addObserver(settle)
    removeTimer = timer.addObserver(() => settle(undefined))
    return Effect.sync(() => {
      settled = true
      removeWork()
      removeTimer()
    })
  })
