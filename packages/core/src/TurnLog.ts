/**
 * Where a turn's events are kept while it runs and for a while after, so a
 * client that lost its connection can read the rest of the reply — from this
 * instance or, with a shared log, from any other — and so a turn can be
 * stopped wherever it runs.
 *
 * Every event after the metadata event gets a sequence number, counting from
 * 1 with no gaps: on the wire it is the `id: <turn_id>:<seq>` line. The turn
 * that runs appends to its `Writer` without waiting (a shared log writes in
 * the background, in batches); readers `follow` a turn from the last
 * sequence number they saw: what is logged is replayed, then new events are
 * delivered as they come, to the `done` event.
 *
 * `layerMemory` keeps the log in the process (one instance: bounded per turn
 * and in total); `RedisTurnLog.layer` keeps it in Redis Streams, with the
 * lease of each running turn and the stop signal, so every instance can
 * serve every turn.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ChatEvent from "./ChatEvent.ts"

/** What a log keeps of a turn besides its events. */
export interface TurnInfo {
  readonly turnId: string
  readonly conversationId: string
  /** The owner: only they may resume or stop it. */
  readonly userId: string
  /** The metadata event the turn's stream began with (`turn_id` included). */
  readonly metadata: ChatEvent.MetadataEvent
  /** The id the assistant reply is stored under, so whoever stores it stores it once. */
  readonly replyId: string
  /** The provider's model id, for the stored reply's metadata. */
  readonly model: string
  /** When the turn started (epoch millis). */
  readonly startedAt: number
}

/** The terminator of a turn's events: `[DONE]` on the wire. */
export interface DoneEvent {
  readonly type: "done"
}

/** The `done` event. */
export const done: DoneEvent = { type: "done" }

/**
 * The error event a shared log ends a turn with when the instance running it
 * went away (`claimLapsed`).
 */
export const interruptedEvent = {
  type: "error",
  error: {
    type: "interrupted",
    message: "The server running the reply went away; the reply is stored as far as it was streamed"
  }
} as const satisfies ChatEvent.ErrorEvent

/** What a turn logs: its content, at most one error, then `done`. */
export type TurnEvent = ChatEvent.ContentEvent | ChatEvent.ErrorEvent | DoneEvent

/** One logged event and its place in the turn. */
export interface Entry {
  readonly seq: number
  readonly event: TurnEvent
}

/** The running turn's side of the log. */
export interface Writer {
  /**
   * Logs the next event and returns its sequence number. Never waits: a shared
   * log writes in the background, several events per round trip.
   */
  readonly append: (event: TurnEvent) => number
  /** Writes what is pending, marks the turn ended (kept for the retention window) and lets go of its lease. */
  readonly end: Effect.Effect<void>
  /**
   * Calls `listener` once a stop is asked for, from any instance (at once if
   * one was already). A callback, not an effect to wait on: no fiber per turn
   * waits for a stop that rarely comes.
   */
  readonly onStop: (listener: () => void) => void
  /** How many readers follow the turn now, on any instance. */
  readonly readers: Effect.Effect<number>
}

/** A turn as the log knows it. */
export interface Snapshot {
  readonly turn: TurnInfo
  /** `false` once the turn logged `done`. */
  readonly running: boolean
  /** The lowest sequence number still kept (events before it were dropped); `1` when nothing was. */
  readonly firstSeq: number
  /** The sequence number of the last logged event; `0` before the first. */
  readonly lastSeq: number
  /** The reply's text as far as it is logged. */
  readonly content: string
}

/** How following a turn ended. */
export type FollowEnd =
  /** Delivered through `done`. */
  | "done"
  /** The turn is gone (retention over), or events the reader needs were dropped. */
  | "gone"

/** A turn whose instance stopped renewing its lease, claimed by this instance to be ended. */
export interface Lapsed {
  readonly turn: TurnInfo
  /** The reply as far as it was logged, to store with status `interrupted`. */
  readonly content: string
}

/** Sizes, for metrics. */
export interface Stats {
  /** Turns kept (running and ended). */
  readonly turns: number
  /** Events kept. */
  readonly events: number
  /** Events dropped since start to stay within the bounds. */
  readonly dropped: number
  /** The memory the kept turns take, estimated (see `Options.maxBytes`). */
  readonly bytes: number
}

/** The turn log's operations. */
export interface Service {
  /** `memory` or `redis`, for banners and `/health`. */
  readonly name: string
  /** Whether other instances share the log: only then do leases lapse (`claimLapsed`). */
  readonly shared: boolean
  /** Starts logging a turn; it becomes its conversation's current turn. Never waits on a remote store. */
  readonly begin: (turn: TurnInfo) => Effect.Effect<Writer>
  /** The conversation's latest turn, running or ended within the retention window. */
  readonly current: (conversationId: string) => Effect.Effect<Option.Option<Snapshot>>
  /**
   * Delivers the turn's events after `afterSeq` in order — the logged ones,
   * then each new one as it is logged — through `done`. The reader counts as
   * following the turn (see `Writer.readers`) until it returns or is
   * interrupted; `deliver` may wait (a slow reader).
   */
  readonly follow: (
    turnId: string,
    afterSeq: number,
    deliver: (entry: Entry) => Effect.Effect<void>
  ) => Effect.Effect<FollowEnd>
  /** Asks whichever instance runs the turn to stop it; `false` when it is not running. */
  readonly requestStop: (turnId: string) => Effect.Effect<boolean>
  /**
   * Turns whose owner stopped renewing its lease (the instance died), each
   * claimed by exactly one caller across instances, with `interrupted` and
   * `done` already logged so their readers end. The caller stores the reply.
   */
  readonly claimLapsed: Effect.Effect<ReadonlyArray<Lapsed>>
  readonly stats: () => Stats
}

/** The turn log service. */
export class TurnLog extends Context.Service<TurnLog, Service>()("@convoke/core/TurnLog") {}

/** Options of the in-memory log (and of the shared logs, which share their meaning). */
export interface Options {
  /** How long an ended turn stays readable (default 10 minutes). */
  readonly retention?: Duration.Input | undefined
  /** Most events kept per turn (default 10,000): beyond it the oldest are dropped. */
  readonly maxEventsPerTurn?: number | undefined
  /** Most events kept in all (default 1,000,000): beyond it ended turns are dropped, oldest first. */
  readonly maxEvents?: number | undefined
  /**
   * Most memory the kept turns may take, estimated, in bytes (default 64 MiB):
   * beyond it ended turns are dropped, oldest first. A turn is counted at
   * about 1 KiB, plus 32 bytes and its text's length for each event (text
   * outside Latin-1 takes twice that, which the estimate does not see). The
   * default holds some 9,000 replies of 150 events of 10 characters: the
   * retention window at fifteen turns a second. The process holds more than
   * this: the garbage collector keeps room to grow.
   */
  readonly maxBytes?: number | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  retention: Duration.minutes(10),
  maxEventsPerTurn: 10_000,
  maxEvents: 1_000_000,
  maxBytes: 64 * 1024 * 1024
} as const

/** The reply's text in a run of entries. */
export const contentOf = (entries: Iterable<Entry>): string => {
  let text = ""
  for (const { event } of entries) if (event.type === "content") text += event.delta.content
  return text
}

/**
 * An event as the in-memory log keeps it: a content event as its text alone.
 * Most of a turn is content, and an ended turn is kept for the retention
 * window: one string a piece, not an entry, an event and a delta object.
 */
type Kept = Exclude<TurnEvent, ChatEvent.ContentEvent> | string

const eventOf = (kept: Kept): TurnEvent => (typeof kept === "string" ? ChatEvent.content(kept) : kept)

/**
 * What a kept turn takes in the heap besides its events: the buffer, the
 * turn's ids and metadata, its places in the maps. Measured at about 900
 * bytes with UUID ids; rounded up.
 */
const TURN_BYTES = 1024

/** What a kept event takes: a string's header and its slot (measured 24 + 8), plus its text. */
const bytesOf = (kept: Kept): number => (typeof kept === "string" ? 32 + kept.length : 8)

interface Buffer {
  readonly turn: TurnInfo
  /** The events kept, oldest first; `entries[i]` is the event `firstSeq + i`. */
  readonly entries: Array<Kept>
  /** Sequence number of `entries[0]` (or of the next event while empty). */
  firstSeq: number
  /** The estimated memory the turn takes (`TURN_BYTES` and its entries). */
  bytes: number
  nextSeq: number
  endedAt: number | undefined
  readers: number
  /** Set once a stop was asked for. */
  stopped: boolean
  onStop: (() => void) | undefined
  /** What readers that caught up wait on; resolved and cleared by the next append. */
  appended: Deferred.Deferred<void> | undefined
}

/** A log kept in this process. */
export const makeMemory = (options: Options = {}): Effect.Effect<Service> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const retentionMillis = Duration.toMillis(
      Duration.fromInputUnsafe(options.retention ?? defaults.retention)
    )
    const maxPerTurn = Math.max(1, options.maxEventsPerTurn ?? defaults.maxEventsPerTurn)
    const maxEvents = Math.max(1, options.maxEvents ?? defaults.maxEvents)
    const maxBytes = Math.max(1, options.maxBytes ?? defaults.maxBytes)
    const turns = new Map<string, Buffer>()
    const latest = new Map<string, string>()
    // Ended turns in the order they ended: the retention sweep and the total bound drop from the front.
    const ended = new Set<Buffer>()
    let events = 0
    let bytes = 0
    let dropped = 0

    const forget = (buffer: Buffer) => {
      turns.delete(buffer.turn.turnId)
      ended.delete(buffer)
      events -= buffer.entries.length
      bytes -= buffer.bytes
      if (latest.get(buffer.turn.conversationId) === buffer.turn.turnId)
        latest.delete(buffer.turn.conversationId)
    }

    /** Drops turns past the retention window, then ended turns while over a total bound. */
    const sweep = () => {
      const now = clock.currentTimeMillisUnsafe()
      for (const buffer of ended) {
        const expired = now - buffer.endedAt! >= retentionMillis
        if (!expired && events <= maxEvents && bytes <= maxBytes) break
        if (!expired) dropped += buffer.entries.length
        forget(buffer)
      }
    }

    const wake = (buffer: Buffer) => {
      const appended = buffer.appended
      if (appended === undefined) return
      // Cleared first: a reader it wakes may wait again at once.
      buffer.appended = undefined
      Deferred.doneUnsafe(appended, Effect.void)
    }

    const snapshotOf = (buffer: Buffer): Snapshot => ({
      turn: buffer.turn,
      running: buffer.endedAt === undefined,
      firstSeq: buffer.firstSeq,
      lastSeq: buffer.nextSeq - 1,
      // Joined only when read (as far as logged then): resume and stop never need the text.
      get content() {
        let text = ""
        for (const kept of buffer.entries) if (typeof kept === "string") text += kept
        return text
      }
    })

    const begin = (turn: TurnInfo) =>
      Effect.sync((): Writer => {
        sweep()
        const buffer: Buffer = {
          turn,
          entries: [],
          firstSeq: 1,
          bytes: TURN_BYTES,
          nextSeq: 1,
          endedAt: undefined,
          readers: 0,
          stopped: false,
          onStop: undefined,
          appended: undefined
        }
        // A turn id is new each time; were one begun twice, the first is forgotten, not counted twice.
        const previous = turns.get(turn.turnId)
        if (previous !== undefined) forget(previous)
        turns.set(turn.turnId, buffer)
        latest.set(turn.conversationId, turn.turnId)
        bytes += TURN_BYTES
        return {
          append: (event) => {
            const seq = buffer.nextSeq++
            const kept = event.type === "content" ? event.delta.content : event
            buffer.entries.push(kept)
            buffer.bytes += bytesOf(kept)
            bytes += bytesOf(kept)
            events++
            if (buffer.entries.length > maxPerTurn) {
              const gone = buffer.entries.shift()!
              buffer.bytes -= bytesOf(gone)
              bytes -= bytesOf(gone)
              buffer.firstSeq++
              events--
              dropped++
            }
            wake(buffer)
            return seq
          },
          end: Effect.sync(() => {
            if (buffer.endedAt !== undefined) return
            buffer.endedAt = clock.currentTimeMillisUnsafe()
            // An ended turn cannot be stopped; its listener holds the turn's whole runner.
            buffer.onStop = undefined
            if (turns.get(turn.turnId) === buffer) ended.add(buffer)
            wake(buffer)
            sweep()
          }),
          onStop: (listener) => {
            if (buffer.stopped) listener()
            else buffer.onStop = listener
          },
          readers: Effect.sync(() => buffer.readers)
        }
      })

    const follow: Service["follow"] = (turnId, afterSeq, deliver) =>
      Effect.suspend(() => {
        const buffer = turns.get(turnId)
        if (buffer === undefined) return Effect.succeed("gone" as const)
        let next = afterSeq + 1
        const loop: Effect.Effect<FollowEnd> = Effect.suspend(() => {
          if (turns.get(turnId) !== buffer || next < buffer.firstSeq) return Effect.succeed("gone" as const)
          if (next < buffer.nextSeq) {
            const entry: Entry = { seq: next, event: eventOf(buffer.entries[next - buffer.firstSeq]!) }
            next++
            if (entry.event.type === "done") return Effect.as(deliver(entry), "done" as const)
            return Effect.andThen(deliver(entry), loop)
          }
          if (buffer.endedAt !== undefined) return Effect.succeed("gone" as const)
          buffer.appended ??= Deferred.makeUnsafe<void>()
          return Effect.andThen(Deferred.await(buffer.appended), loop)
        })
        return Effect.acquireUseRelease(
          Effect.sync(() => {
            buffer.readers++
          }),
          () => loop,
          () =>
            Effect.sync(() => {
              buffer.readers--
            })
        )
      })

    return {
      name: "memory",
      shared: false,
      begin,
      current: (conversationId) =>
        Effect.sync(() => {
          sweep()
          const turnId = latest.get(conversationId)
          const buffer = turnId === undefined ? undefined : turns.get(turnId)
          return buffer === undefined ? Option.none() : Option.some(snapshotOf(buffer))
        }),
      follow,
      requestStop: (turnId) =>
        Effect.sync(() => {
          const buffer = turns.get(turnId)
          if (buffer === undefined || buffer.endedAt !== undefined) return false
          if (!buffer.stopped) {
            buffer.stopped = true
            buffer.onStop?.()
          }
          return true
        }),
      claimLapsed: Effect.succeed([]),
      stats: () => ({ turns: turns.size, events, dropped, bytes })
    } satisfies Service
  })

/** The in-memory log as a layer. */
export const layerMemory = (options?: Options): Layer.Layer<TurnLog> =>
  Layer.effect(TurnLog, makeMemory(options))
