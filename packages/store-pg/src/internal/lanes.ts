/**
 * Two lanes of statements over one connection pool. At most as many
 * statements as the pool has connections are in flight; when one ends, its
 * place goes to a waiting `urgent` statement (one a client waits on before
 * its response starts: creating or finding a conversation, checking a key)
 * ahead of `background` ones (appends inside a stream, audit records,
 * cleanup). Under load this keeps the metadata event from queueing behind
 * the writes of streams already under way.
 *
 * It also keeps the pool from queueing at all: the pool hands a freed
 * connection to its next waiter a scheduler hop later, leaving the
 * connection idle for a turn of a busy event loop; here the freed place
 * passes to the next statement at once.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"

/** Runs a statement in a lane. */
export type Lane = <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** The two lanes of one pool. */
export interface Lanes {
  readonly urgent: Lane
  readonly background: Lane
}

/** Lanes without a limit: statements go straight to the pool, whose size is not known. */
export const unlimited: Lanes = { urgent: (self) => self, background: (self) => self }

/** While background statements wait, at most this many urgent ones pass in a row: neither lane starves. */
const URGENT_RUN = 4

/** Lanes sharing `connections` places. */
export const make = (connections: number): Lanes => {
  let free = Math.max(1, Math.floor(connections))
  let urgentRun = 0
  // Sets iterate in insertion order: each lane is first come, first served.
  const urgentWaiters = new Set<() => void>()
  const backgroundWaiters = new Set<() => void>()

  const first = (waiters: Set<() => void>) => {
    for (const waiter of waiters) return waiter
    return undefined
  }

  /** Frees a place, or hands it to the next waiter, whose fiber resumes inline. */
  const release = () => {
    const takeBackground = backgroundWaiters.size > 0 && (urgentWaiters.size === 0 || urgentRun >= URGENT_RUN)
    const waiter = takeBackground ? first(backgroundWaiters) : first(urgentWaiters)
    if (waiter === undefined) {
      free++
      return
    }
    if (takeBackground) {
      urgentRun = 0
      backgroundWaiters.delete(waiter)
    } else {
      urgentRun++
      urgentWaiters.delete(waiter)
    }
    waiter()
  }

  const acquire = (waiters: Set<() => void>) =>
    Effect.callback<void>((resume) => {
      if (free > 0) {
        free--
        resume(Effect.void)
        return
      }
      const waiter = () => resume(Effect.void)
      waiters.add(waiter)
      // Interrupted while waiting: leave the line. (A place handed over
      // resumes the fiber at once, so none is lost to an interruption.)
      return Effect.sync(() => {
        waiters.delete(waiter)
      })
    })

  const lane =
    (waiters: Set<() => void>): Lane =>
    (self) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.andThen(restore(acquire(waiters)), Effect.ensuring(restore(self), Effect.sync(release)))
      )

  return { urgent: lane(urgentWaiters), background: lane(backgroundWaiters) }
}

/**
 * The lanes of the pool the `SqlClient` in context draws from; `unlimited`
 * unless a layer that knows the pool's size provides them.
 */
export const CurrentLanes = Context.Reference<Lanes>("@convoke/store-pg/CurrentLanes", {
  defaultValue: () => unlimited
})

/** Lanes for a pool of `connections`, or the lanes in context when its size is not given. */
export const forPool = (connections: number | undefined): Effect.Effect<Lanes> =>
  connections === undefined ? Effect.service(CurrentLanes) : Effect.succeed(make(connections))
