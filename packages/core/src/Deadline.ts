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
 * otherwise the work is the only other fiber. On the default clock the
 * deadline is a plain timer; another clock (`TestClock`) gets a sleeping
 * fiber, so tests can move time.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Context, Duration, Effect, type Exit, type Fiber } from "effect"

/** The clock of a context that provides none: its sleeps are plain timers. */
const defaultClock = Effect.runSync(Clock.Clock)

/**
 * Runs `effect`, failing with `Cause.TimeoutError` once `duration` has passed
 * without waiting for the abandoned work to stop. Interrupting the caller
 * interrupts the work too, also without waiting.
 */
export const within =
  (duration: Duration.Input) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Cause.TimeoutError, R> => {
    const millis = Duration.toMillis(Duration.fromInputUnsafe(duration))
    // Forking and arming the interrupt handler happen uninterruptibly, so a
    // caller interrupted in between cannot leave the work running.
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.forkDetach(effect, { startImmediately: true, uninterruptible: false }),
        (work: Fiber.Fiber<A, E>): Effect.Effect<A, E | Cause.TimeoutError> => {
          const finished = work.pollUnsafe()
          if (finished !== undefined) return finished
          return Effect.clockWith((clock) => restore(firstOf(work, clock, millis))).pipe(
            // Ask the work to stop, without waiting for it to have stopped.
            Effect.onInterrupt(() => Effect.sync(() => work.interruptUnsafe())),
            Effect.flatMap((exit): Effect.Effect<A, E | Cause.TimeoutError> => {
              if (exit !== undefined) return exit
              work.interruptUnsafe()
              return Effect.fail(new Cause.TimeoutError(`Gave up after ${String(duration)}`))
            })
          )
        }
      )
    )
  }

/** The work's exit if it ends within `millis`, `undefined` if the time runs out first. */
const firstOf = <A, E>(
  work: Fiber.Fiber<A, E>,
  clock: Clock.Clock,
  millis: number
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.callback((resume) => {
    let settled = false
    let removeWork = () => {}
    let stopTimer = () => {}
    const settle = (result: Exit.Exit<A, E> | undefined) => {
      if (settled) return
      settled = true
      removeWork()
      stopTimer()
      resume(Effect.succeed(result))
    }
    removeWork = work.addObserver(settle)
    // The work may have ended by now (the caller can yield on its way here).
    if (settled) return
    if (clock === defaultClock) {
      const handle = setTimeout(() => settle(undefined), millis)
      stopTimer = () => clearTimeout(handle)
    } else {
      const timer = Effect.runForkWith(Context.make(Clock.Clock, clock))(clock.sleep(Duration.millis(millis)))
      const removeTimer = timer.addObserver(() => settle(undefined))
      stopTimer = () => {
        removeTimer()
        timer.interruptUnsafe()
      }
    }
    return Effect.sync(() => {
      settled = true
      removeWork()
      stopTimer()
    })
  })
