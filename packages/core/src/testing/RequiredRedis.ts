/**
 * The Redis a test suite needs: where it is (`REDIS_URL`, else
 * `redis://127.0.0.1:6379`), whether it answers (for `requireService`), how
 * a test finds and removes its own keys, and a Redis that never answers.
 *
 * @since 0.3.0
 */
import { connect } from "node:net"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"

/** The Redis tests use: `REDIS_URL`, else the local default. */
export const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379"

/** Whether something answers `PING` at `url` within two seconds. */
export const isRedisReachable = (url: string = REDIS_URL): Promise<boolean> =>
  new Promise((resolve) => {
    const { hostname, port } = new URL(url)
    const socket = connect({
      host: hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
      port: Number(port || 6379)
    })
    const answer = (reachable: boolean) => {
      socket.destroy()
      resolve(reachable)
    }
    socket.setTimeout(2_000, () => answer(false))
    socket.once("error", () => answer(false))
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.once("data", () => answer(true))
  })

/** Every key matching `pattern`, read with a whole `SCAN` (one call sees only part of a busy database). */
export const keysMatching = (pattern: string): Effect.Effect<Array<string>, Redis.RedisError, Redis.Redis> =>
  Effect.gen(function* () {
    const redis = yield* Redis.Redis
    const found: Array<string> = []
    let cursor = "0"
    do {
      const [next, page] = yield* redis.send<[string, Array<string>]>(
        "SCAN",
        cursor,
        "MATCH",
        pattern,
        "COUNT",
        "1000"
      )
      cursor = next
      found.push(...page)
    } while (cursor !== "0")
    return found
  })

/** Deletes every key under `prefix`: a test's own keys, once it is done with them. */
export const deleteKeys = (prefix: string): Effect.Effect<void, Redis.RedisError, Redis.Redis> =>
  Effect.gen(function* () {
    const keys = yield* keysMatching(`${prefix}*`)
    if (keys.length > 0) yield* (yield* Redis.Redis).send("DEL", ...keys)
  })

/** A Redis that accepts commands and never replies: a partitioned or overloaded server. */
export const silentRedis: Layer.Layer<Redis.Redis> = Layer.succeed(
  Redis.Redis,
  Redis.Redis.of({
    send: () => Effect.never,
    eval: () => () => Effect.never,
    subscribe: () => Effect.never,
    reserve: Effect.never
  })
)
