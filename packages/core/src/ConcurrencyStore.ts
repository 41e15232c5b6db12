/**
 * Where the chat turns in flight are counted, per user (or address): in the
 * process, or in Redis so every instance shares the count. A slot is held
 * from admission to the end of the response; in Redis it is a lease that
 * expires unless renewed, so an instance that crashes gives its slots back.
 *
 * @since 0.3.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redis from "effect/persistence/Redis"

/** Counts in-flight turns; `acquire` answers whether a slot was free. */
export interface ConcurrencyStore {
  readonly acquire: (key: string, token: string, limit: number) => Effect.Effect<boolean, unknown>
  readonly renew: (key: string, token: string) => Effect.Effect<void, unknown>
  readonly release: (key: string, token: string) => Effect.Effect<void, unknown>
}

/** In-process in-flight counters. */
export const memory = (): ConcurrencyStore => {
  const holders = new Map<string, Set<string>>()
  return {
    acquire: (key, token, limit) =>
      Effect.sync(() => {
        const set = holders.get(key) ?? new Set<string>()
        if (set.size >= limit) return false
        set.add(token)
        holders.set(key, set)
        return true
      }),
    renew: () => Effect.void,
    release: (key, token) =>
      Effect.sync(() => {
        const set = holders.get(key)
        set?.delete(token)
        if (set?.size === 0) holders.delete(key)
      })
  }
}

// A sorted set per user: member = slot token, score = lease expiry (Redis
// server time, so instances with skewed clocks agree).
const acquireScript = Redis.script(
  (key: string, token: string, limit: number, ttlMillis: number) => [key, token, limit, ttlMillis],
  {
    numberOfKeys: 1,
    lua: `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[3]))
return 1
`
  }
).withReturnType<number>()

const renewScript = Redis.script((key: string, token: string, ttlMillis: number) => [key, token, ttlMillis], {
  numberOfKeys: 1,
  lua: `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call("ZADD", KEYS[1], "XX", now + tonumber(ARGV[2]), ARGV[1])
redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[2]))
return 1
`
}).withReturnType<number>()

/** In-flight counters in Redis, shared by every instance; slots are leases that expire. */
export const redis = (options: {
  readonly prefix: string
  readonly leaseTtl: Duration.Input
}): Effect.Effect<ConcurrencyStore, never, Redis.Redis> =>
  Effect.gen(function* () {
    const redis = yield* Redis.Redis
    const ttl = String(Duration.toMillis(Duration.fromInputUnsafe(options.leaseTtl)))
    const acquire = redis.eval(acquireScript)
    const renew = redis.eval(renewScript)
    return {
      acquire: (key, token, limit) =>
        Effect.map(acquire(`${options.prefix}${key}`, token, limit, Number(ttl)), (result) => result === 1),
      renew: (key, token) => Effect.asVoid(renew(`${options.prefix}${key}`, token, Number(ttl))),
      release: (key, token) => Effect.asVoid(redis.send("ZREM", `${options.prefix}${key}`, token))
    }
  })
