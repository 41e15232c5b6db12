/**
 * The outbox's entries in Redis, shared by every instance that uses the same
 * key prefix: what one instance queued while the store was down, any of them
 * writes — after that instance crashed, or while it cannot reach the store.
 * Instances that share a prefix must share the store too.
 *
 * Keys (all under the prefix, so one Redis serves several deployments):
 *
 * - `sequence`: a counter that numbers entries in the order they are queued;
 * - `queue`: a sorted set of the numbers of the entries waiting;
 * - `entries`: a hash from number to entry (JSON, dates kept);
 * - `lease`: which instance holds the turn to write, expiring on its own.
 *
 * One instance writes at a time, oldest entry first, so a conversation's
 * entries land in order (its creation before its messages) whichever
 * instances queued them. The holder of the lease takes the oldest entry,
 * writes it, and removes it only if it still holds the lease and the entry
 * is still the oldest; the lease is renewed with every entry and given up
 * after a failed write, so an instance that cannot reach the store lets
 * another try. If the holder stalls past its lease, another instance takes
 * over and writes the same entry again — harmless, every write is
 * idempotent — and the stalled one's late removal is refused.
 *
 * Each instance polls for entries others queued, so it can answer reads with
 * them too, and learns which are written: everything numbered below the
 * oldest entry waiting. Every key of a prefix must live on one Redis node (on
 * Redis Cluster, put a hash tag in the prefix, e.g. `{convoke}:outbox:`).
 *
 * @since 0.3.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"
import type { Entry } from "./ConversationOutbox.ts"
import * as Deadline from "./Deadline.ts"
import {
  type Changes,
  decode,
  encode,
  isEntry,
  OutboxPersistence,
  OutboxPersistenceError,
  type Service,
  type Stored
} from "./OutboxPersistence.ts"

/** Options of `make` and `layer`. */
export interface Options {
  /** Key prefix shared by the instances that drain each other's entries (default `convoke:outbox:`). */
  readonly prefix?: string | undefined
  /**
   * How long the turn to write outlives its holder's last sign of life
   * (default 10 s); longer than the outbox's `attemptTimeout`.
   */
  readonly lease?: Duration.Input | undefined
  /** How often to look for entries other instances queued or wrote (default 1 s). */
  readonly pollInterval?: Duration.Input | undefined
}

const appendScript = Redis.script(
  (sequence: string, queue: string, entries: string, payload: string) => [sequence, queue, entries, payload],
  {
    numberOfKeys: 3,
    lua: `
local sequence = redis.call("INCR", KEYS[1])
redis.call("ZADD", KEYS[2], sequence, sequence)
redis.call("HSET", KEYS[3], sequence, ARGV[1])
return sequence
`
  }
).withReturnType<number>()

// Replies with the number below which every entry is written, then number and payload of each entry after `after`.
const pollScript = Redis.script(
  (sequence: string, queue: string, entries: string, after: number, limit: number) => [
    sequence,
    queue,
    entries,
    after,
    limit
  ],
  {
    numberOfKeys: 3,
    lua: `
local oldest = redis.call("ZRANGE", KEYS[2], 0, 0)[1]
local reply = { oldest and tonumber(oldest) or tonumber(redis.call("GET", KEYS[1]) or "0") + 1 }
for _, sequence in ipairs(redis.call("ZRANGEBYSCORE", KEYS[2], "(" .. ARGV[1], "+inf", "LIMIT", 0, ARGV[2])) do
  reply[#reply + 1] = sequence
  reply[#reply + 1] = redis.call("HGET", KEYS[3], sequence) or ""
end
return reply
`
  }
).withReturnType<ReadonlyArray<string | number>>()

// {0}: another instance holds the turn; {1}: nothing waits; {2, number, payload}: the oldest entry, lease taken or renewed.
const nextScript = Redis.script(
  (lease: string, queue: string, entries: string, token: string, leaseMillis: number) => [
    lease,
    queue,
    entries,
    token,
    leaseMillis
  ],
  {
    numberOfKeys: 3,
    lua: `
local holder = redis.call("GET", KEYS[1])
if holder and holder ~= ARGV[1] then return { 0 } end
local oldest = redis.call("ZRANGE", KEYS[2], 0, 0)[1]
if not oldest then
  if holder then redis.call("DEL", KEYS[1]) end
  return { 1 }
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return { 2, oldest, redis.call("HGET", KEYS[3], oldest) or "" }
`
  }
).withReturnType<ReadonlyArray<string | number>>()

const completeScript = Redis.script(
  (lease: string, queue: string, entries: string, token: string, sequence: number) => [
    lease,
    queue,
    entries,
    token,
    sequence
  ],
  {
    numberOfKeys: 3,
    lua: `
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call("ZRANGE", KEYS[2], 0, 0)[1] ~= ARGV[2] then return 0 end
redis.call("ZREM", KEYS[2], ARGV[2])
redis.call("HDEL", KEYS[3], ARGV[2])
return 1
`
  }
).withReturnType<number>()

const releaseScript = Redis.script((lease: string, token: string) => [lease, token], {
  numberOfKeys: 1,
  lua: `
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("DEL", KEYS[1]) end
return 1
`
}).withReturnType<number>()

const POLL_BATCH = 500

const failure = (message: string) => (cause: unknown) => new OutboxPersistenceError({ message, cause })

/** Entries in Redis under `options.prefix`; the lease is given up with the scope. */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const redis = yield* Redis.Redis
  const prefix = options.prefix ?? "convoke:outbox:"
  const keys = {
    sequence: `${prefix}sequence`,
    queue: `${prefix}queue`,
    entries: `${prefix}entries`,
    lease: `${prefix}lease`
  }
  const leaseMillis = Duration.toMillis(Duration.fromInputUnsafe(options.lease ?? Duration.seconds(10)))
  const pollInterval = Duration.fromInputUnsafe(options.pollInterval ?? Duration.seconds(1))
  // This instance, as the holder of the lease.
  const token = crypto.randomUUID()
  const appendEval = redis.eval(appendScript)
  const pollEval = redis.eval(pollScript)
  const nextEval = redis.eval(nextScript)
  const completeEval = redis.eval(completeScript)
  const releaseEval = redis.eval(releaseScript)
  // The highest number this instance has read.
  let seen = 0

  const poll = Effect.gen(function* () {
    const added: Array<Stored> = []
    let doneBelow = 0
    let skipped = 0
    while (true) {
      const reply = yield* pollEval(keys.sequence, keys.queue, keys.entries, seen, POLL_BATCH)
      doneBelow = Math.max(doneBelow, Number(reply[0]))
      for (let index = 1; index < reply.length; index += 2) {
        const sequence = Number(reply[index])
        seen = Math.max(seen, sequence)
        const entry = decode(String(reply[index + 1]))
        if (isEntry(entry)) added.push({ sequence, entry })
        else skipped++
      }
      if (reply.length - 1 < POLL_BATCH * 2) break
    }
    if (skipped > 0) {
      yield* Effect.logError("Entries in the outbox's Redis could not be read; they are skipped").pipe(
        Effect.annotateLogs({ prefix, skipped })
      )
    }
    return { added, doneBelow, skipped } satisfies Changes
  }).pipe(Effect.mapError(failure("Could not read the outbox's entries from Redis")))

  const complete = (sequence: number) =>
    completeEval(keys.lease, keys.queue, keys.entries, token, sequence).pipe(
      Effect.mapError(failure("Could not record a written outbox entry in Redis")),
      Effect.asVoid
    )

  const next = Effect.gen(function* () {
    const reply = yield* nextEval(keys.lease, keys.queue, keys.entries, token, leaseMillis).pipe(
      Effect.mapError(failure("Could not take the outbox's next entry from Redis"))
    )
    if (reply[0] !== 2) return undefined
    const sequence = Number(reply[1])
    const entry = decode(String(reply[2]))
    if (isEntry(entry)) return { sequence, entry } satisfies Stored
    // Unreadable (counted by the poll that met it): removed, or it would hold up every entry after it.
    yield* complete(sequence)
    return undefined
  })

  const release = Effect.ignore(releaseEval(keys.lease, token))
  // Bounded: a Redis that does not answer must not hold up a shutdown (the lease lapses on its own).
  yield* Effect.addFinalizer(() => Effect.ignore(Deadline.within(Duration.seconds(1))(release)))

  return {
    name: "redis",
    durable: true,
    pollInterval,
    poll,
    append: (entry: Entry) =>
      // `seen` stays: other instances may have queued entries numbered below this one, which the next poll reads.
      appendEval(keys.sequence, keys.queue, keys.entries, encode(entry)).pipe(
        Effect.mapError(failure("Could not queue an outbox entry in Redis"))
      ),
    next: () => next,
    complete,
    release
  } satisfies Service
})

/**
 * The outbox's entries in Redis under `options.prefix`. Provide the `Redis`
 * service, e.g. `NodeRedis.layer({ url })` from `@effect/platform-node`.
 */
export const layer = (options: Options = {}) => Layer.effect(OutboxPersistence, make(options))
