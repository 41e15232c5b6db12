/**
 * The turn log kept in Redis, so that any instance can resume, stop or rescue
 * any turn (ARCHITECTURE §7).
 *
 * The turns this instance runs are also kept in the in-memory log: a turn
 * starts, appends and is read by local readers without waiting on Redis. One
 * writer fiber copies what was appended to Redis in the background, every
 * local turn's new events in one round trip, so a fast model does not cost a
 * round trip per token. If Redis fails, the writer logs a warning and retries
 * while the turn carries on from memory.
 *
 * Keys, all under `prefix` (default `convoke:turns:`):
 *
 * - `<turn>:events`: a Stream with entry ids `<seq>-0` and a field `event`
 *   holding the event's JSON, capped at `maxEventsPerTurn`
 * - `<turn>:info`: a hash of `turn` (the TurnInfo JSON), `conversation`,
 *   `state` (`running` or `ended`) and `last` (the last seq written)
 * - `conversation:<conversation>`: the id of the conversation's current turn
 * - `<turn>:readers`: a sorted set of readers on other instances, scored by
 *   when their presence expires
 * - `<turn>:stop`: set when someone asked for a stop. The stop is also
 *   published on the channel `<prefix>stop`.
 * - `leases`: a sorted set of running turns, scored by when their lease
 *   expires
 *
 * Leases and presence are scored in Redis server time, so instances whose
 * clocks are skewed still agree. A turn's keys expire `retention` after it
 * ends. While it runs they are kept `retention + lease` ahead, so the keys of
 * a turn that nobody claims still go away eventually.
 *
 * The scripts build key names from the prefix, because a claim does not know
 * in advance which turns have lapsed. This works with a standalone Redis, but
 * not with Redis Cluster.
 *
 * @since 0.3.0
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redis from "effect/persistence/Redis"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Scripts from "./RedisTurnLogScripts.ts"
import * as TurnLog from "./TurnLog.ts"

/** Options of the Redis log: the in-memory log's options, which bound the local part here, plus where and how long. */
export interface Options extends TurnLog.Options {
  /** Prefix of every key and of the stop channel (default `convoke:turns:`). Instances that use the same prefix share their turns. */
  readonly prefix?: string | undefined
  /**
   * How long a running turn's lease lasts without renewal (default 3 s). An
   * instance renews its leases every third of it, and a crashed instance's
   * turns can be claimed this long after it died.
   */
  readonly lease?: Duration.Input | undefined
}

/** The defaults of the options added to `TurnLog.Options`. */
export const defaults = {
  prefix: "convoke:turns:",
  lease: Duration.seconds(3)
} as const

// The writer waits this long after a round trip, so that the events appended
// in the meantime, by every turn, share the next one. This caps an instance at
// 100 round trips a second, except when a backlog is written in full batches.
// After a quiet spell, the first append is still written at once.
const batchInterval = Duration.millis(10)
// A round trip is limited to this many events, so one script never holds Redis up for long.
const maxBatch = 1_000
// Readers replay a turn in pages of this many entries.
const page = 500

/** A turn this instance runs, as far as Redis is concerned. */
interface Local {
  readonly turn: TurnLog.TurnInfo
  readonly json: string
  /** Appended, not yet written to Redis. */
  unwritten: Array<TurnLog.Entry>
  /** Its info is in Redis, so the heartbeat renews its lease. */
  begun: boolean
  /** `end` was called, or another instance claimed the turn. Nothing more is written after that. */
  ending: boolean
  endedAt: number
  /** Resolved once the end is written, or once writing it was given up. */
  readonly written: Deferred.Deferred<void>
}

/**
 * A turn log on Redis, with the turns this instance runs served from memory.
 * Its background fibers (writer, heartbeat, stop subscription) live in the
 * scope. Closing the scope stops them and ends no turn: the turns still
 * running are left to lapse, as if the instance had crashed.
 */
export const make: (options?: Options) => Effect.Effect<TurnLog.Service, never, Redis.Redis | Scope.Scope> =
  Effect.fnUntraced(function* (options: Options = {}) {
    const redis = yield* Redis.Redis
    const clock = yield* Clock.Clock
    const memory = yield* TurnLog.makeMemory(options)
    const prefix = options.prefix ?? defaults.prefix
    const lease = Duration.fromInputUnsafe(options.lease ?? defaults.lease)
    const leaseMillis = Duration.toMillis(lease)
    const retentionMillis = Duration.toMillis(
      Duration.fromInputUnsafe(options.retention ?? TurnLog.defaults.retention)
    )
    const maxPerTurn = Math.max(1, options.maxEventsPerTurn ?? TurnLog.defaults.maxEventsPerTurn)
    const keyOf = (turnId: string, suffix: string) => `${prefix}${turnId}:${suffix}`
    // A call that does not answer within a lease counts as failed; only the reader's blocking XREAD waits longer.
    const bounded = Effect.timeout(lease)

    const write = redis.eval(Scripts.writeScript)
    const heartbeat = redis.eval(Scripts.heartbeatScript)
    const open = redis.eval(Scripts.openScript)
    const countReaders = redis.eval(Scripts.readersScript)
    const stop = redis.eval(Scripts.stopScript)
    const current = redis.eval(Scripts.currentScript)
    const claim = redis.eval(Scripts.claimScript)

    const locals = new Map<string, Local>()
    /** Token → turn id of each reader that follows from here a turn run elsewhere. */
    const remoteReaders = new Map<string, string>()

    // The writer: every round trip takes what all dirty turns appended since the last one.
    const dirty = new Set<Local>()
    const pending = Latch.makeUnsafe(false)
    const touch = (local: Local) => {
      dirty.add(local)
      pending.openUnsafe()
    }
    /** Stops writing a turn, because it was written through its end, given up, or claimed by another instance. */
    const close = (local: Local) => {
      local.ending = true
      local.unwritten = []
      dirty.delete(local)
      if (locals.get(local.turn.turnId) === local) locals.delete(local.turn.turnId)
      Deferred.doneUnsafe(local.written, Effect.void)
    }

    /**
     * Turns that Redis says have ended although this instance runs them:
     * another instance claimed them after their lease lapsed (Redis was out
     * of reach too long), and their readers got `interrupted`. A turn that is
     * ending here may just have had its own end written.
     */
    const taken = Effect.fnUntraced(function* (turnIds: ReadonlyArray<string>) {
      for (const turnId of turnIds) {
        const local = locals.get(turnId)
        if (local === undefined) continue
        const ending = local.ending
        close(local)
        if (ending) continue
        yield* Effect.logWarning(
          `Turn log: turn ${turnId} was claimed by another instance after its lease lapsed; stopping it`
        )
        yield* memory.requestStop(turnId)
      }
    })

    /** Writes what the dirty turns appended, at most `maxBatch` events. Says whether the batch was full. */
    const writeRound = Effect.gen(function* () {
      const now = clock.currentTimeMillisUnsafe()
      const batch: Array<{
        readonly local: Local
        readonly entries: Array<TurnLog.Entry>
        readonly ending: boolean
      }> = []
      let room = maxBatch
      for (const local of dirty) {
        // An ended turn whose retention passed while Redis was away is not worth writing any more.
        if (local.ending && now - local.endedAt >= retentionMillis) {
          close(local)
          continue
        }
        if (room <= 0) break
        const entries = local.unwritten.splice(0, room)
        room -= entries.length
        batch.push({ local, entries, ending: local.ending && local.unwritten.length === 0 })
        if (local.unwritten.length === 0) dirty.delete(local)
      }
      if (dirty.size === 0) pending.closeUnsafe()
      if (batch.length === 0) return "written" as const
      const args: Array<string | number> = [prefix, leaseMillis, retentionMillis, maxPerTurn]
      for (const { local, entries, ending } of batch) {
        // The info goes with every round until it is written, not after: it is most of a round trip's bytes.
        const json = local.begun ? "" : local.json
        args.push(local.turn.turnId, json, local.turn.conversationId, ending ? 1 : 0, entries.length)
        for (const entry of entries) args.push(entry.seq, JSON.stringify(entry.event))
      }
      const result = yield* Effect.exit(bounded(write(args)))
      if (Exit.isFailure(result)) {
        // Put the entries back in front of anything appended since, to be written by the next round.
        for (const { local, entries } of batch) {
          if (locals.get(local.turn.turnId) !== local) continue
          local.unwritten = [...entries, ...local.unwritten].slice(-maxPerTurn)
          touch(local)
        }
        yield* Effect.logWarning(
          "Turn log: writing to Redis failed; retrying, local readers are unaffected",
          result.cause
        )
        return "failed" as const
      }
      for (const { local, ending } of batch) {
        local.begun = true
        if (ending) close(local)
      }
      const [claimed, missing] = result.value
      yield* taken(claimed)
      // The events of this round are lost with the keys: readers that need them are told the turn is gone.
      for (const turnId of missing) {
        const local = locals.get(turnId)
        if (local === undefined) continue
        local.begun = false
        touch(local)
      }
      return room <= 0 ? ("full" as const) : ("written" as const)
    })

    yield* Effect.gen(function* () {
      let failures = 0
      while (true) {
        yield* pending.await
        const outcome = yield* writeRound
        failures = outcome === "failed" ? failures + 1 : 0
        // A full batch means a backlog, which is written without waiting.
        // After a failure, back off so that a Redis in trouble is not hammered.
        if (outcome !== "full")
          yield* Effect.sleep(
            failures === 0 ? batchInterval : Duration.millis(Math.min(100 * 2 ** failures, leaseMillis))
          )
      }
    }).pipe(Effect.forkScoped)

    // One heartbeat for all local turns and remote readers: it renews the
    // leases and presence, and it catches the stop requests whose message
    // was missed.
    yield* Effect.gen(function* () {
      const running = [...locals.values()].filter((local) => local.begun)
      if (running.length === 0 && remoteReaders.size === 0) return
      const args: Array<string | number> = [prefix, leaseMillis, retentionMillis, running.length]
      for (const local of running) args.push(local.turn.turnId)
      for (const [token, turnId] of remoteReaders) args.push(token, turnId)
      const [stops, claimed] = yield* bounded(heartbeat(args))
      for (const turnId of stops) yield* memory.requestStop(turnId)
      yield* taken(claimed)
    }).pipe(
      Effect.catchCause((cause) => Effect.logWarning("Turn log: renewing leases in Redis failed", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(leaseMillis / 3))),
      Effect.forkScoped
    )

    // Stop requests from other instances. The subscription is set up in the
    // background, so building the log never waits on Redis.
    yield* Effect.scoped(
      Effect.gen(function* () {
        const messages = yield* redis.subscribe(`${prefix}stop`)
        while (true) {
          const { message: turnId } = yield* Queue.take(messages)
          if (locals.has(turnId)) yield* memory.requestStop(turnId)
        }
      })
    ).pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning("Turn log: the stop subscription failed; subscribing again", cause)
      ),
      Effect.andThen(Effect.sleep(lease)),
      Effect.forever,
      Effect.forkScoped
    )

    const begin = (turn: TurnLog.TurnInfo) =>
      Effect.map(memory.begin(turn), (writer): TurnLog.Writer => {
        const local: Local = {
          turn,
          json: JSON.stringify(turn),
          unwritten: [],
          begun: false,
          ending: false,
          endedAt: 0,
          written: Deferred.makeUnsafe<void>()
        }
        locals.set(turn.turnId, local)
        touch(local)
        return {
          append: (event) => {
            const seq = writer.append(event)
            if (local.ending) return seq
            local.unwritten.push({ seq, event })
            // While Redis is away, keep no more than Redis would keep after trimming.
            if (local.unwritten.length > maxPerTurn) local.unwritten.shift()
            touch(local)
            return seq
          },
          end: Effect.gen(function* () {
            yield* writer.end
            if (!local.ending) {
              local.ending = true
              local.endedAt = clock.currentTimeMillisUnsafe()
              touch(local)
            }
            // The turn's end must never stall on Redis, so writing carries on in the background after this wait.
            const written = yield* Effect.timeoutOption(Deferred.await(local.written), lease)
            if (Option.isNone(written))
              yield* Effect.logWarning(
                `Turn log: turn ${turn.turnId} ended before Redis had all of it; still writing`
              )
          }),
          onStop: writer.onStop,
          readers: Effect.gen(function* () {
            const here = yield* writer.readers
            const elsewhere = yield* Effect.exit(bounded(countReaders([prefix, turn.turnId])))
            if (Exit.isSuccess(elsewhere)) return here + elsewhere.value
            yield* Effect.logWarning(
              "Turn log: counting readers in Redis failed; counting local readers only",
              elsewhere.cause
            )
            return here
          })
        }
      })

    /** Follows a turn from Redis: replay after `cursor.seq`, then block for new entries, through `done`. */
    const followRemote = (
      turnId: string,
      cursor: { seq: number },
      deliver: (entry: TurnLog.Entry) => Effect.Effect<void>
    ) =>
      Effect.gen(function* () {
        const events = keyOf(turnId, "events")
        const token = crypto.randomUUID()
        yield* Effect.acquireRelease(
          Effect.sync(() => remoteReaders.set(token, turnId)),
          () => {
            remoteReaders.delete(token)
            return Effect.ignore(bounded(redis.send("ZREM", keyOf(turnId, "readers"), token)))
          }
        )
        const state = yield* bounded(open([prefix, turnId, token, leaseMillis]))
        if (state === null) return "gone" as const

        /** Delivers entries in order. Returns how following ended, or `undefined` if it goes on. */
        const deliverAll = Effect.fnUntraced(function* (raw: ReadonlyArray<Scripts.StreamEntry>) {
          for (const entry of yield* Scripts.decodeEntries(raw)) {
            // A gap means that entries this reader needs were trimmed.
            if (entry.seq !== cursor.seq + 1) return "gone" as const
            yield* deliver(entry)
            cursor.seq = entry.seq
            if (entry.event.type === "done") return "done" as const
          }
          return undefined
        })
        const replay = Effect.gen(function* () {
          while (true) {
            const entries = yield* bounded(
              redis.send<ReadonlyArray<Scripts.StreamEntry>>(
                "XRANGE",
                events,
                `(${cursor.seq}-0`,
                "+",
                "COUNT",
                String(page)
              )
            )
            const end = yield* deliverAll(entries)
            if (end !== undefined || entries.length < page) return end
          }
        })

        const replayed = yield* replay
        if (replayed !== undefined) return replayed
        // An ended turn's entries are all logged: nothing more will come.
        if (state === "ended") return "gone" as const
        // Blocking reads get a connection of their own: on the shared one, they would hold up every other command.
        const connection = yield* redis.reserve
        while (true) {
          const reply = yield* connection
            .send<Scripts.StreamsReply | null>(
              "XREAD",
              "BLOCK",
              String(leaseMillis),
              "COUNT",
              String(page),
              "STREAMS",
              events,
              `${cursor.seq}-0`
            )
            .pipe(Effect.timeout(Duration.times(lease, 2)))
          if (reply !== null) {
            const end = yield* deliverAll(Scripts.onlyStream(reply))
            if (end !== undefined) return end
            continue
          }
          // A quiet turn may have expired, or ended without `done`.
          const latest = yield* bounded(redis.send<string | null>("HGET", keyOf(turnId, "info"), "state"))
          if (latest === null) return "gone" as const
          if (latest === "ended") return (yield* replay) ?? ("gone" as const)
        }
      }).pipe(Effect.scoped)

    const follow: TurnLog.Service["follow"] = (turnId, afterSeq, deliver) =>
      Effect.gen(function* () {
        const cursor = { seq: afterSeq }
        // Local turns are read from memory. The memory log says "gone" at once for turns it does not have.
        const local = yield* memory.follow(turnId, afterSeq, (entry) =>
          Effect.andThen(
            deliver(entry),
            Effect.sync(() => {
              cursor.seq = entry.seq
            })
          )
        )
        if (local === "done") return local
        // After a Redis failure the reader picks up where it was, a few times, before giving up.
        return yield* followRemote(turnId, cursor, deliver).pipe(
          Effect.tapError((error) =>
            Effect.logWarning(`Turn log: following turn ${turnId} from Redis failed`, error)
          ),
          Effect.retry({ times: 3, schedule: Schedule.exponential(Duration.millis(200)) }),
          Effect.orElseSucceed(() => "gone" as const)
        )
      })

    const currentRemote = Effect.fnUntraced(function* (conversationId: string) {
      const reply = yield* bounded(current([prefix, conversationId]))
      if (reply === null) return Option.none<TurnLog.Snapshot>()
      const [json, state, raw] = reply
      const entries = yield* Scripts.decodeEntries(raw)
      return Option.some<TurnLog.Snapshot>({
        turn: yield* Scripts.decodeTurn(json),
        // `done` is written in the round before the end when the writer was idle: the turn is over either way.
        running: state !== "ended" && entries.at(-1)?.event.type !== "done",
        firstSeq: entries[0]?.seq ?? 1,
        lastSeq: entries.at(-1)?.seq ?? 0,
        content: TurnLog.contentOf(entries)
      })
    })

    return {
      name: "redis",
      shared: true,
      begin,
      current: (conversationId) =>
        Effect.gen(function* () {
          const here = yield* memory.current(conversationId)
          // A turn begun here that Redis does not know yet is the current turn.
          if (Option.isSome(here) && locals.get(here.value.turn.turnId)?.begun === false) return here
          const shared = yield* Effect.exit(currentRemote(conversationId))
          if (Exit.isFailure(shared)) {
            yield* Effect.logWarning("Turn log: reading the current turn from Redis failed", shared.cause)
            return here
          }
          if (Option.isNone(shared.value)) return here
          // Memory is fresher than Redis for the same turn.
          return Option.isSome(here) && here.value.turn.turnId === shared.value.value.turn.turnId
            ? here
            : shared.value
        }),
      follow,
      requestStop: (turnId) =>
        Effect.gen(function* () {
          if (locals.has(turnId)) return yield* memory.requestStop(turnId)
          const result = yield* Effect.exit(bounded(stop([prefix, turnId, retentionMillis + leaseMillis])))
          if (Exit.isSuccess(result)) return result.value === 1
          yield* Effect.logWarning(`Turn log: asking Redis to stop turn ${turnId} failed`, result.cause)
          return false
        }),
      claimLapsed: Effect.gen(function* () {
        const args: Array<string | number> = [
          prefix,
          retentionMillis,
          maxPerTurn,
          JSON.stringify(TurnLog.interruptedEvent),
          JSON.stringify(TurnLog.done),
          ...locals.keys()
        ]
        const claimed = yield* bounded(claim(args))
        return yield* Effect.forEach(claimed, ([json, raw]) =>
          Effect.map(
            Effect.all([Scripts.decodeTurn(json), Scripts.decodeEntries(raw)]),
            ([turn, entries]): TurnLog.Lapsed => ({ turn, content: TurnLog.contentOf(entries) })
          )
        )
      }).pipe(
        Effect.catchCause((cause) =>
          Effect.as(Effect.logWarning("Turn log: claiming lapsed turns in Redis failed", cause), [])
        )
      ),
      stats: memory.stats
    } satisfies TurnLog.Service
  })

/** The Redis turn log as a layer. Provide `Redis`, e.g. `NodeRedis.layer({ url })` from `@effect/platform-node`. */
export const layer = (options: Options = {}): Layer.Layer<TurnLog.TurnLog, never, Redis.Redis> =>
  Layer.effect(TurnLog.TurnLog, make(options))
