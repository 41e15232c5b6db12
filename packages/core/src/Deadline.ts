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
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"

/** The clock of a context that provides none: its sleeps are plain timers. */
const defaultClock = Effect.runSync(Clock.Clock)

/**
 * Runs `f` once the event loop has polled for I/O and run the fibers that I/O
 * woke (Effect's scheduler runs them in a `setImmediate` of its own, queued
 * after a first one of ours): two hops. Returns its cancel.
 */
const afterIo = (f: () => void): (() => void) => {
  if (typeof setImmediate !== "function") {
    const handle = setTimeout(f, 0)
    return () => clearTimeout(handle)
  }
  let handle = setImmediate(() => {
    handle = setImmediate(f)
  })
  return () => clearImmediate(handle)
}

/**
 * Runs `effect`, failing with `Cause.TimeoutError` once `duration` has passed
 * without waiting for the abandoned work to stop. Interrupting the caller
 * interrupts the work too, also without waiting.
 */
export const within =
  (duration: Duration.Input) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Cause.TimeoutError, R> => {
    const millis = Duration.toMillis(Duration.fromInputUnsafe(duration))
    return givingUp(effect, millis, () => undefined, String(duration))
  }

/** Options of `withinWhileProgressing`. */
export interface ProgressOptions {
  /** How long the work may go without the thing it waits on making progress. */
  readonly slice: Duration.Input
  /** How long the work may take in all, progress or not (at least one slice). */
  readonly ceiling: Duration.Input
  /**
   * A count that grows while the thing the work waits on makes progress (the
   * calls a store has answered, say). Read at the start and end of each slice.
   */
  readonly progress: () => number
}

/**
 * Like `within`, but the deadline moves while there is progress: the work is
 * given up after a `slice` in which `progress` did not move, or after
 * `ceiling` in all. Work queued behind a busy but healthy resource (other
 * calls finishing) keeps waiting; work on a resource that answers nothing
 * gives up after one slice.
 */
export const withinWhileProgressing =
  (options: ProgressOptions) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Cause.TimeoutError, R> => {
    const slice = Duration.toMillis(Duration.fromInputUnsafe(options.slice))
    const ceiling = Math.max(slice, Duration.toMillis(Duration.fromInputUnsafe(options.ceiling)))
    // Each run measures progress from its own start.
    return Effect.suspend(() => {
      let mark = options.progress()
      let waited = slice
      const next = () => {
        const now = options.progress()
        if (now === mark || waited >= ceiling) return undefined
        mark = now
        const more = Math.min(slice, ceiling - waited)
        waited += more
        return more
      }
      return givingUp(effect, slice, next, `${String(options.slice)} without progress`)
    })
  }

/**
 * Runs `effect` for `millis`, then for as long more as `next` says each time
 * the time runs out (`undefined`: give up with a `TimeoutError`).
 */
const givingUp = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  millis: number,
  next: () => number | undefined,
  description: string
): Effect.Effect<A, E | Cause.TimeoutError, R> => {
  // Forking and arming the interrupt handler happen uninterruptibly, so a
  // caller interrupted in between cannot leave the work running.
  return Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      Effect.forkDetach(effect, { startImmediately: true, uninterruptible: false }),
      (work: Fiber.Fiber<A, E>): Effect.Effect<A, E | Cause.TimeoutError> => {
        const finished = work.pollUnsafe()
        if (finished !== undefined) return finished
        return Effect.clockWith((clock) => restore(firstOf(work, clock, millis, next))).pipe(
          // Ask the work to stop, without waiting for it to have stopped.
          Effect.onInterrupt(() => Effect.sync(() => work.interruptUnsafe())),
          Effect.flatMap((exit): Effect.Effect<A, E | Cause.TimeoutError> => {
            if (exit !== undefined) return exit
            work.interruptUnsafe()
            return Effect.fail(new Cause.TimeoutError(`Gave up after ${description}`))
          })
        )
      }
    )
  )
}

/**
 * The work's exit if it ends within `millis` (and the further times `next`
 * gives), `undefined` if the time runs out first.
 */
const firstOf = <A, E>(
  work: Fiber.Fiber<A, E>,
  clock: Clock.Clock,
  millis: number,
  next: () => number | undefined
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
    const expired = () => {
      if (settled) return
      const more = next()
      if (more === undefined) settle(undefined)
      else arm(more)
    }
    const arm = (after: number) => {
      if (clock === defaultClock) {
        // Timers run before I/O in each turn of the event loop: after a busy
        // turn, the answer may be waiting behind the timer. Deciding after
        // that I/O, a late timer is not taken for a silent store.
        let cancel = () => clearTimeout(handle)
        const handle = setTimeout(() => {
          cancel = afterIo(expired)
        }, after)
        stopTimer = () => cancel()
      } else {
        const timer = Effect.runForkWith(Context.make(Clock.Clock, clock))(
          clock.sleep(Duration.millis(after))
        )
        const removeTimer = timer.addObserver(expired)
        stopTimer = () => {
          removeTimer()
          timer.interruptUnsafe()
        }
      }
    }
    arm(millis)
    return Effect.sync(() => {
      settled = true
      removeWork()
      stopTimer()
    })
  })
