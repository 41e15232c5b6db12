/**
 * Heartbeats for open streams: a stream that has sent nothing for about an
 * interval gets a ping (an SSE comment), so proxies keep its connection.
 *
 * One fiber serves every open stream, not one each: it looks every third of
 * an interval and pings a stream that sent nothing for 90% of one, so a
 * silent stream gets a comment after 0.9–1.25 intervals (13.5–18.5 s at the
 * default 15 s) and a talkative one never does. It runs only while streams
 * are open.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** An open stream, as the heartbeat sees it. */
export interface Listener {
  /** When the stream last sent something (epoch millis); the heartbeat updates it when it pings. */
  lastSent: number
  readonly ping: () => void
}

/** The heartbeat of a set of streams. */
export interface Heartbeat {
  /** Starts watching a stream; stop with `unwatch`. */
  readonly watch: (listener: Listener) => Effect.Effect<void>
  readonly unwatch: (listener: Listener) => void
}

/** A heartbeat whose fiber lives in the current scope. */
export const make = (interval: Duration.Duration): Effect.Effect<Heartbeat, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const clock = yield* Clock.Clock
    const intervalMillis = Duration.toMillis(interval)
    const silent = new Set<Listener>()
    let pinging = false

    const pingSilent = Effect.gen(function* () {
      while (silent.size > 0) {
        yield* Effect.sleep(Duration.millis(intervalMillis / 3))
        const at = clock.currentTimeMillisUnsafe()
        for (const listener of silent) {
          if (at - listener.lastSent >= intervalMillis * 0.9) {
            listener.lastSent = at
            listener.ping()
          }
        }
      }
    }).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          pinging = false
        })
      )
    )

    return {
      watch: (listener) =>
        Effect.suspend(() => {
          silent.add(listener)
          if (pinging) return Effect.void
          pinging = true
          return Effect.asVoid(Effect.forkIn(pingSilent, scope))
        }),
      unwatch: (listener) => {
        silent.delete(listener)
      }
    }
  })
