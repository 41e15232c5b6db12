/**
 * Streamed turns, detached from the connections that read them.
 *
 * A turn runs on a fiber of its own and writes its events to the `TurnLog`;
 * every stream of it — the request that started it, and any resume, here or
 * on another instance — is a reader that follows the log. So a reader that
 * goes away does not end the turn at once: when the last one leaves, the
 * turn keeps going for the disconnect grace window and is cancelled only if
 * no reader, on any instance, is back by then (a zero window cancels it at
 * once). A stop request, from any instance, cancels it right away.
 *
 * However a turn ends, its last events are logged — the error event when it
 * did not complete, then `done` — so every reader ends the same way. With a
 * shared log, turns of an instance that died are claimed here once their
 * lease lapses: their readers end with `interrupted` and the reply, as far
 * as it was logged, is stored with that status.
 *
 * @since 0.3.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import { ServerShutdown } from "./ChatError.ts"
import * as ChatEvent from "./ChatEvent.ts"
import { ChatHooks, type TurnContext } from "./ChatHooks.ts"
import { type Begun, errorEventOf } from "./ChatStream.ts"
import type * as ChatTurn from "./ChatTurn.ts"
import { ConversationStore } from "./ConversationStore.ts"
import * as TurnLog from "./TurnLog.ts"

/** The error event of a turn that was stopped, or whose readers never came back. */
export const cancelledEvent = ChatEvent.error("cancelled", "The reply was stopped before it was complete")

/** How often a shared log is asked for turns whose instance went away. */
const LAPSE_CHECK_INTERVAL = Duration.millis(500)

/** The turns of a chat service, as streams read them. */
export interface TurnRunner {
  /**
   * Logs a turn without starting it: from now on it is its conversation's
   * current turn, which a client holding its ids can follow or stop. It runs,
   * on a fiber of its own, once `run` (or `runUnread`) is.
   */
  readonly begin: (
    context: TurnContext,
    prepared: ChatTurn.Prepared,
    turn: TurnLog.TurnInfo
  ) => Effect.Effect<Begun>
  /** Logs a turn and runs it at once. */
  readonly start: (
    context: TurnContext,
    prepared: ChatTurn.Prepared,
    turn: TurnLog.TurnInfo
  ) => Effect.Effect<void>
  /** Delivers a turn's events after `afterSeq`, counting as its reader while it runs. */
  readonly follow: (
    turnId: string,
    afterSeq: number,
    deliver: (entry: TurnLog.Entry) => Effect.Effect<void>
  ) => Effect.Effect<TurnLog.FollowEnd>
  /** Resolves once no turn runs here and every ended turn's end is in the log (at once when none does). */
  readonly idle: Effect.Effect<void>
}

/**
 * How many events a reader here may fall behind the model before the model
 * waits for it: a slow reader holds the model back instead of growing the log.
 */
const HIGH_WATER = 8

/**
 * How much text a turn with no reader here may produce before the model
 * waits for one to come (or for the grace window to end it): a client that
 * left cannot make the log grow without bound. Replies are far shorter; a
 * reader on another instance (shared log) reads a longer one only up to it.
 */
const MAX_UNREAD_CHARACTERS = 1 << 22

/** A reader of a turn running here: the last event it took. */
interface Reader {
  seq: number
}

/** A turn running here. */
interface Running {
  readonly readers: Set<Reader>
  /** The last event logged. */
  lastSeq: number
  /** Text produced since the last reader here left. */
  unread: number
  /** Resolved once no reader is more than `HIGH_WATER` behind, while the model waits. */
  caughtUp: Deferred.Deferred<void> | undefined
  /** The fiber waiting out the grace window while nobody reads. */
  grace: Fiber.Fiber<void> | undefined
  readonly cancel: (reason: ChatTurn.Interruption) => void
  readonly writer: TurnLog.Writer
}

const isLagging = (turn: Running): boolean => {
  if (turn.readers.size === 0) return turn.unread > MAX_UNREAD_CHARACTERS
  for (const reader of turn.readers) if (turn.lastSeq - reader.seq > HIGH_WATER) return true
  return false
}

/** Lets the model go on once the readers caught up. */
const release = (turn: Running) => {
  const caughtUp = turn.caughtUp
  if (caughtUp === undefined || isLagging(turn)) return
  // Cleared first: resolving it may run the model on at once, and it must then wait on a new one.
  turn.caughtUp = undefined
  Deferred.doneUnsafe(caughtUp, Effect.void)
}

/** Builds the runner on the turns, the log, the store and the hooks in context; its fibers live in the scope. */
export const make = (turns: ChatTurn.Turns, options: { readonly disconnectGrace: Duration.Duration }) =>
  Effect.gen(function* () {
    const log = yield* TurnLog.TurnLog
    const store = yield* ConversationStore
    const hooks = yield* ChatHooks
    const scope = yield* Effect.scope
    const clock = yield* Clock.Clock
    const graceMillis = Duration.toMillis(options.disconnectGrace)
    const running = new Map<string, Running>()
    // Turns that left `running` and are still writing their end to the log.
    let ending = 0
    // Resolved whenever the last running turn ends and its end is in the log.
    let idle = Deferred.makeUnsafe<void>()
    const isIdle = () => running.size === 0 && ending === 0

    /** What a turn that ended this way logs before `done`. */
    const lastEventOf = (
      exit: Exit.Exit<void, ChatTurn.TurnError>,
      reason: ChatTurn.Interruption | undefined
    ): ChatEvent.ErrorEvent | undefined => {
      if (Exit.isSuccess(exit)) return undefined
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "Some") return errorEventOf(error.value)
      if (turns.isShuttingDown() || reason === undefined) return errorEventOf(new ServerShutdown())
      return cancelledEvent
    }

    const begin: TurnRunner["begin"] = (context, prepared, turn) =>
      Effect.gen(function* () {
        const writer = yield* log.begin(turn)
        let reason: ChatTurn.Interruption | undefined
        let fiber: Fiber.Fiber<void> | undefined
        const entry: Running = {
          readers: new Set(),
          lastSeq: 0,
          unread: 0,
          caughtUp: undefined,
          grace: undefined,
          writer,
          cancel: (why) => {
            reason ??= why
            fiber?.interruptUnsafe()
          }
        }
        /** Logs a piece of the reply; waits while a reader here is too far behind. */
        const append = (text: string) =>
          Effect.suspend(() => {
            entry.lastSeq = writer.append(ChatEvent.content(text))
            if (entry.readers.size === 0) entry.unread += text.length
            if (!isLagging(entry)) return Effect.void
            entry.caughtUp ??= Deferred.makeUnsafe<void>()
            return Deferred.await(entry.caughtUp)
          })
        let logging = false
        const body = turns.run(
          context,
          { ...prepared, replyId: turn.replyId },
          (text) =>
            Effect.suspend(() => {
              // The turn runs from the moment it is forked (below): its first event waits a tick,
              // so the stream that started it is its reader before it logs anything.
              if (logging) return append(text)
              logging = true
              return Effect.andThen(Effect.yieldNow, append(text))
            }),
          () => reason ?? "client_closed"
        )
        const finish = (exit: Exit.Exit<void, ChatTurn.TurnError>) =>
          Effect.suspend(() => {
            const last = lastEventOf(exit, reason)
            if (last !== undefined) writer.append(last)
            writer.append(TurnLog.done)
            running.delete(turn.turnId)
            ending++
            entry.grace?.interruptUnsafe()
            // Idle only once the end is written (a shared log's `end` waits, bounded, for it): a
            // runtime that freezes the process when idle (AWS Lambda) must not freeze a turn whose
            // end is still on its way to Redis, or its lease lapses and the turn reads as interrupted.
            return Effect.andThen(
              Effect.ensuring(
                writer.end,
                Effect.sync(() => {
                  ending--
                  if (!isIdle()) return
                  const wasIdle = idle
                  idle = Deferred.makeUnsafe<void>()
                  Deferred.doneUnsafe(wasIdle, Effect.void)
                })
              ),
              Effect.suspend(() => hooks.turnLogSize(log.stats()))
            )
          })
        running.set(turn.turnId, entry)
        let ran = false
        // Uninterruptible: a begun turn that never runs would read as running forever.
        const run = (withoutReader: boolean) =>
          Effect.uninterruptible(
            Effect.suspend(() => {
              if (ran) return Effect.void
              ran = true
              // The turn's failure is in its log (the error event); the fiber itself just ends.
              // Started at once, so that its exit handlers are in place before a stop can interrupt it: a
              // fiber interrupted before it first ran runs none of them, and its readers would wait forever.
              return Effect.map(
                Effect.forkIn(Effect.ignore(Effect.onExit(body, finish)), scope, { startImmediately: true }),
                (forked) => {
                  fiber = forked
                  // Cancelled before it ran (a reader came and went, and nobody came back): it ends now.
                  if (reason !== undefined) forked.interruptUnsafe()
                  // A stop asked for anywhere ends the turn, at once if one already was.
                  writer.onStop(() => entry.cancel("cancelled"))
                }
              ).pipe(Effect.andThen(withoutReader ? unread(turn.turnId, entry) : Effect.void))
            })
          )
        return { run: run(false), runUnread: run(true) } satisfies Begun
      })

    const start: TurnRunner["start"] = (context, prepared, turn) =>
      Effect.flatMap(begin(context, prepared, turn), (begun) => begun.run)

    /** The last reader of a running turn left: cancel it unless one is back within the window. */
    const awaitReaders = (entry: Running): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          if (graceMillis > 0) yield* Effect.sleep(Duration.millis(graceMillis))
          // Readers on other instances count too.
          if ((yield* entry.writer.readers) === 0) return entry.cancel("client_closed")
          if (graceMillis === 0) yield* Effect.sleep(Duration.seconds(1))
        }
      })

    /** Nobody reads a running turn here: it goes on for the grace window, cancelled then unless a reader is back. */
    const unread = (turnId: string, entry: Running): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (entry.readers.size > 0 || !running.has(turnId)) return Effect.void
        return Effect.map(Effect.forkIn(awaitReaders(entry), scope, { startImmediately: true }), (grace) => {
          if (entry.readers.size === 0 && running.has(turnId)) entry.grace = grace
          else grace.interruptUnsafe()
        })
      })

    const follow: TurnRunner["follow"] = (turnId, afterSeq, deliver) => {
      const entry = running.get(turnId)
      if (entry === undefined) return log.follow(turnId, afterSeq, deliver)
      const reader: Reader = { seq: afterSeq }
      return Effect.acquireUseRelease(
        Effect.sync(() => {
          entry.readers.add(reader)
          entry.unread = 0
          entry.grace?.interruptUnsafe()
          entry.grace = undefined
        }),
        () =>
          log.follow(turnId, afterSeq, (logged) =>
            Effect.map(deliver(logged), () => {
              reader.seq = logged.seq
              release(entry)
            })
          ),
        () =>
          Effect.suspend(() => {
            entry.readers.delete(reader)
            release(entry)
            return unread(turnId, entry)
          })
      )
    }

    /** Stores the replies of turns whose instance went away, as far as they were logged. */
    const storeLapsed = Effect.gen(function* () {
      for (const { turn, content } of yield* log.claimLapsed) {
        const now = clock.currentTimeMillisUnsafe()
        yield* store
          .append({
            userId: turn.userId,
            conversationId: turn.conversationId,
            messages: [
              {
                id: turn.replyId,
                role: "assistant",
                content,
                status: "interrupted",
                createdAt: new Date(now),
                metadata: { model: turn.model }
              }
            ]
          })
          .pipe(
            Effect.catchCause((cause) =>
              Effect.logError("Could not store an interrupted reply", cause).pipe(
                Effect.annotateLogs({ conversationId: turn.conversationId, turnId: turn.turnId })
              )
            )
          )
        yield* hooks.turnEnded({
          userId: turn.userId,
          requestId: undefined,
          stream: true,
          conversationId: turn.conversationId,
          outcome: "interrupted",
          durationMillis: now - turn.startedAt
        })
      }
    })

    if (log.shared) {
      yield* Effect.forkIn(
        storeLapsed.pipe(
          Effect.catchCause((cause) => Effect.logWarning("Could not check for interrupted turns", cause)),
          Effect.repeat(Schedule.spaced(LAPSE_CHECK_INTERVAL))
        ),
        scope
      )
    }

    return {
      begin,
      start,
      follow,
      idle: Effect.suspend(() => (isIdle() ? Effect.void : Deferred.await(idle)))
    } satisfies TurnRunner
  })
