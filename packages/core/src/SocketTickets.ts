/**
 * Single-use tickets that open a WebSocket (`POST /api/v0.3/ws/ticket`, then
 * `GET /api/v0.3/ws?ticket=`): browsers and Unity WebGL cannot put
 * credentials in the headers of a WebSocket, so they trade them for a ticket
 * first, over HTTP, where they can.
 *
 * A ticket is 32 random bytes, short-lived (30 s by default), bound to the
 * user it was issued to, and redeemed at most once. Only its SHA-256 digest
 * is kept — in memory, or in Redis so that any instance accepts a ticket
 * another one issued — so a leaked store opens nothing.
 *
 * @since 0.3.0
 */
import { createHash, randomBytes } from "node:crypto"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"
import { StoreUnavailable, Unauthenticated } from "./ChatError.ts"
import type { Principal } from "./Identity.ts"

/** An issued ticket and how long it is valid. */
export interface Ticket {
  readonly ticket: string
  readonly expiresInSeconds: number
}

/** The ticket service. */
export interface Service {
  /** Issues a ticket for the principal. */
  readonly issue: (principal: Principal) => Effect.Effect<Ticket, StoreUnavailable>
  /** The principal a ticket was issued to, once: an unknown, used or expired ticket is `Unauthenticated`. */
  readonly redeem: (ticket: string) => Effect.Effect<Principal, Unauthenticated | StoreUnavailable>
}

/** The ticket service tag. */
export class SocketTickets extends Context.Service<SocketTickets, Service>()("@convoke/core/SocketTickets") {}

/** Options of the ticket stores. */
export interface Options {
  /** How long a ticket is valid (default 30 s). */
  readonly ttl?: Duration.Input | undefined
}

const DEFAULT_TTL = Duration.seconds(30)

/** A ticket is base64url of 32 bytes: 43 characters. */
const TICKET = /^[\w-]{43}$/

const invalid = () => new Unauthenticated({ message: "The ticket is unknown, used or expired" })

const digestOf = (ticket: string): string => createHash("sha256").update(ticket).digest("base64url")

const newTicket = (): string => randomBytes(32).toString("base64url")

const ttlMillisOf = (options: Options) =>
  Duration.toMillis(Duration.fromInputUnsafe(options.ttl ?? DEFAULT_TTL))

/** Tickets kept in this process: right for a single instance. Expired tickets are swept as new ones are issued. */
export const makeMemory = (options: Options = {}): Effect.Effect<Service> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const ttlMillis = ttlMillisOf(options)
    const tickets = new Map<string, { readonly principal: Principal; readonly expiresAt: number }>()
    const sweep = (now: number) => {
      // Insertion order is expiry order: stop at the first live one.
      for (const [digest, entry] of tickets) {
        if (entry.expiresAt > now) return
        tickets.delete(digest)
      }
    }
    return {
      issue: (principal) =>
        Effect.sync(() => {
          const now = clock.currentTimeMillisUnsafe()
          sweep(now)
          const ticket = newTicket()
          tickets.set(digestOf(ticket), { principal, expiresAt: now + ttlMillis })
          return { ticket, expiresInSeconds: Math.ceil(ttlMillis / 1000) }
        }),
      redeem: (ticket) =>
        Effect.suspend(() => {
          if (!TICKET.test(ticket)) return Effect.fail(invalid())
          const digest = digestOf(ticket)
          const entry = tickets.get(digest)
          tickets.delete(digest)
          return entry === undefined || entry.expiresAt <= clock.currentTimeMillisUnsafe()
            ? Effect.fail(invalid())
            : Effect.succeed(entry.principal)
        })
    }
  })

/** Tickets in this process's memory. */
export const layerMemory = (options: Options = {}): Layer.Layer<SocketTickets> =>
  Layer.effect(SocketTickets, makeMemory(options))

// Redeems a ticket atomically: whoever reads it deletes it, so it opens one socket.
const redeemScript = Redis.script((key: string) => [key], {
  numberOfKeys: 1,
  lua: `
local value = redis.call("GET", KEYS[1])
if value then redis.call("DEL", KEYS[1]) end
return value
`
}).withReturnType<string | null>()

/** How long a Redis command may take before the ticket is refused (503) rather than the socket waiting. */
const REDIS_TIMEOUT = Duration.seconds(2)

/** Tickets in Redis, under `prefix` (default `convoke:ws-ticket:`): any instance redeems what another issued. */
export const makeRedis = (
  options: Options & { readonly prefix?: string | undefined } = {}
): Effect.Effect<Service, never, Redis.Redis> =>
  Effect.gen(function* () {
    const redis = yield* Redis.Redis
    const prefix = options.prefix ?? "convoke:ws-ticket:"
    const ttlMillis = ttlMillisOf(options)
    const redeem = redis.eval(redeemScript)
    const unavailable = (cause: unknown) =>
      Effect.andThen(
        Effect.logWarning("Could not reach Redis for a WebSocket ticket", cause),
        Effect.fail(new StoreUnavailable({ message: "Tickets cannot be checked right now; try again" }))
      )
    const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.timeout(REDIS_TIMEOUT), Effect.catchCause(unavailable))
    return {
      issue: (principal) => {
        const ticket = newTicket()
        return bounded(
          redis.send(
            "SET",
            `${prefix}${digestOf(ticket)}`,
            JSON.stringify(principal),
            "PX",
            String(ttlMillis)
          )
        ).pipe(Effect.as({ ticket, expiresInSeconds: Math.ceil(ttlMillis / 1000) }))
      },
      redeem: (ticket) =>
        TICKET.test(ticket)
          ? Effect.flatMap(bounded(redeem(`${prefix}${digestOf(ticket)}`)), (value) =>
              value === null ? Effect.fail(invalid()) : Effect.succeed(JSON.parse(value) as Principal)
            )
          : Effect.fail(invalid())
    }
  })

/** Tickets in Redis; needs the `Redis` service (`NodeRedis.layer`). */
export const layerRedis = (
  options: Options & { readonly prefix?: string | undefined } = {}
): Layer.Layer<SocketTickets, never, Redis.Redis> => Layer.effect(SocketTickets, makeRedis(options))
