/**
 * WebSocket tickets: single use, short-lived, bound to their user, kept only
 * as digests — in memory, and in the Redis this machine runs, where a ticket
 * one instance issued opens a socket on another.
 */
import { randomUUID } from "node:crypto"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { Redis } from "effect/persistence"
import { TestClock } from "effect/testing"
import { afterAll } from "vitest"
import { SocketTickets } from "../src/index.ts"
import { deleteKeys, isRedisReachable, keysMatching, REDIS_URL, requireService } from "../src/testing.ts"

const reachable = requireService(it, `Redis at ${new URL(REDIS_URL).host}`, await isRedisReachable(REDIS_URL))
const redisLayer = NodeRedis.layer({ url: REDIS_URL })
const prefix = `convoke:test:ws-ticket:${randomUUID()}:`

afterAll(() => Effect.runPromise(deleteKeys(prefix).pipe(Effect.provide(redisLayer), Effect.ignore)))

const alice = { userId: "alice" }

/** The properties every ticket store has. */
const contract = <R>(
  make: Effect.Effect<SocketTickets.Service, never, R>,
  services: Layer.Layer<R, unknown>
) => {
  it.effect("redeems a ticket once, for the user it was issued to", () =>
    Effect.gen(function* () {
      const tickets = yield* make
      const issued = yield* tickets.issue(alice)
      const other = yield* tickets.issue({ userId: "bob" })
      assert.strictEqual(issued.expiresInSeconds, 30)
      assert.match(issued.ticket, /^[\w-]{43}$/)
      assert.deepStrictEqual(yield* tickets.redeem(issued.ticket), alice)
      const again = yield* Effect.flip(tickets.redeem(issued.ticket))
      assert.strictEqual(again._tag, "Unauthenticated")
      assert.deepStrictEqual(yield* tickets.redeem(other.ticket), { userId: "bob" })
    }).pipe(Effect.provide(services), Effect.orDie)
  )

  it.effect("refuses a ticket it never issued, well-formed or not", () =>
    Effect.gen(function* () {
      const tickets = yield* make
      for (const forged of ["A".repeat(43), "", "x", "../../etc", "A".repeat(5000)]) {
        assert.strictEqual((yield* Effect.flip(tickets.redeem(forged)))._tag, "Unauthenticated")
      }
    }).pipe(Effect.provide(services), Effect.orDie)
  )
}

describe("SocketTickets in memory", () => {
  contract(SocketTickets.makeMemory(), Layer.empty)

  it.effect("refuses a ticket once it has expired", () =>
    Effect.gen(function* () {
      const tickets = yield* SocketTickets.makeMemory({ ttl: Duration.seconds(30) })
      const fresh = yield* tickets.issue(alice)
      const stale = yield* tickets.issue(alice)
      yield* TestClock.adjust(Duration.seconds(29))
      assert.deepStrictEqual(yield* tickets.redeem(fresh.ticket), alice)
      yield* TestClock.adjust(Duration.seconds(1))
      assert.strictEqual((yield* Effect.flip(tickets.redeem(stale.ticket)))._tag, "Unauthenticated")
    })
  )
})

describe.skipIf(!reachable)("SocketTickets in Redis", () => {
  const make = SocketTickets.makeRedis({ prefix })
  contract(make, redisLayer)

  it.effect("keeps only the digest, for the ticket's lifetime, and lets another instance redeem it", () =>
    Effect.gen(function* () {
      const [issuing, redeeming] = [yield* make, yield* make]
      const issued = yield* issuing.issue(alice)
      const keys = yield* keysMatching(`${prefix}*`)
      assert.isAbove(keys.length, 0)
      assert.isFalse(keys.some((key) => key.includes(issued.ticket)))
      const redis = yield* Redis.Redis
      const ttls = yield* Effect.forEach(keys, (key) => redis.send<number>("PTTL", key))
      for (const ttl of ttls) assert.isTrue(ttl > 0 && ttl <= 30_000, `PTTL ${ttl}`)
      assert.deepStrictEqual(yield* redeeming.redeem(issued.ticket), alice)
      assert.strictEqual((yield* Effect.flip(issuing.redeem(issued.ticket)))._tag, "Unauthenticated")
    }).pipe(Effect.provide(redisLayer), Effect.orDie)
  )
})
