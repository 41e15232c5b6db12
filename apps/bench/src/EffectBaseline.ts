/**
 * The Effect floor: the baseline's server (`Baseline.ts`) written as the
 * leanest Effect program — the same contract, statements and echo timing,
 * but each request a fiber, the database reached through `@effect/sql-pg`
 * (the pool Convoke uses, multiplexed the same way) and the pauses Effect
 * sleeps. No layers per request, no routing, no schema, no turn log, no
 * metrics: what running the job on Effect costs before any of Convoke.
 *
 * Its CPU per request over the baseline's is the part of Convoke's that an
 * Effect core pays whatever it does; Convoke's over it is Convoke's own.
 *
 * Run it as a child process: `node src/EffectBaseline.ts` with
 * `DATABASE_URL`, `PORT` and `ECHO_DELAY_MS`; it prints `listening <url>`
 * when ready. The tables must exist (run Convoke's migrations first).
 */
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Scope from "effect/Scope"
import * as SqlClient from "effect/sql/SqlClient"

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const USER = "anonymous"
const PUBLIC_MODEL = "unified-chat"
const MAX_BODY_BYTES = 64 * 1024

/** Options of `serve`. */
export interface Options {
  readonly databaseUrl: string
  readonly port?: number | undefined
  readonly echoDelayMs: number
}

/** A request the server answers with an error body. */
class Refused {
  readonly status: number
  readonly type: string
  readonly message: string
  constructor(status: number, type: string, message: string) {
    this.status = status
    this.type = type
    this.message = message
  }
}

const fail = (response: ServerResponse, { status, type, message }: Refused) => {
  const body = JSON.stringify({ error: { type, message } })
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body)
  })
  response.end(body)
}

const titleOf = (message: string): string => {
  const characters = Array.from(message)
  return characters.length > 50 ? `${characters.slice(0, 50).join("")}...` : message
}

const readBody = (request: IncomingMessage): Effect.Effect<Buffer, Refused> =>
  Effect.callback((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) chunks.push(chunk)
    }
    const onEnd = () =>
      resume(
        size > MAX_BODY_BYTES
          ? Effect.fail(new Refused(413, "request_too_large", "Body too large"))
          : Effect.succeed(Buffer.concat(chunks))
      )
    request.on("data", onData)
    request.once("end", onEnd)
    return Effect.sync(() => {
      request.off("data", onData)
      request.off("end", onEnd)
    })
  })

const parse = (bytes: Buffer): Effect.Effect<{ message: string; requested: unknown }, Refused> =>
  Effect.suspend(() => {
    let body: { message?: unknown; conversation_id?: unknown; stream?: unknown }
    try {
      body = JSON.parse(bytes.toString("utf8"))
    } catch {
      return Effect.fail(new Refused(400, "invalid_request_error", "The body is not JSON"))
    }
    if (typeof body !== "object" || body === null || typeof body.message !== "string" || body.message === "")
      return Effect.fail(new Refused(400, "invalid_request_error", "message must be a non-empty string"))
    if (body.stream !== true)
      return Effect.fail(new Refused(400, "invalid_request_error", "Only streaming is served"))
    return Effect.succeed({ message: body.message, requested: body.conversation_id })
  })

/** Starts the server; resolves with its URL and a `close` function. */
export const serve = async (options: Options) => {
  const scope = Scope.makeUnsafe()
  const client = await Effect.runPromise(
    PgClient.make({
      url: Redacted.make(options.databaseUrl),
      maxConnections: 10,
      multiplex: true,
      multiplexConcurrency: 4
    }).pipe(Effect.provide(Reactivity.layer), Scope.provide(scope))
  )
  const sql: SqlClient.SqlClient = client
  const services = Context.make(SqlClient.SqlClient, sql)

  const storeMessage = (conversationId: string, role: string, content: string, status: string) =>
    sql`
      WITH owner AS (
        UPDATE convoke_conversations SET updated_at = GREATEST(updated_at, ${new Date()})
        WHERE id = ${conversationId}::uuid AND user_id = ${USER} RETURNING id
      )
      INSERT INTO convoke_messages (id, conversation_id, role, content, status, metadata, created_at)
      SELECT ${randomUUID()}::uuid, owner.id, ${role}, ${content}, ${status},
        ${role === "assistant" ? JSON.stringify({ model: "echo" }) : null}::jsonb, ${new Date()} FROM owner`

  const conversationOf = (message: string, requested: unknown): Effect.Effect<string, Refused> =>
    Effect.gen(function* () {
      if (typeof requested === "string" && UUID.test(requested)) {
        const found =
          yield* sql`SELECT id FROM convoke_conversations WHERE id = ${requested}::uuid AND user_id = ${USER}`
        if (found.length === 1) return requested.toLowerCase()
      }
      const id = randomUUID()
      const now = new Date()
      yield* sql`INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at)
        VALUES (${id}, ${USER}, ${titleOf(message)}, ${now}, ${now})`
      return id
    }).pipe(Effect.mapError(() => new Refused(503, "unavailable", "The database is unavailable")))

  const handle = (request: IncomingMessage, response: ServerResponse) =>
    Effect.gen(function* () {
      if (request.method !== "POST" || request.url !== "/api/v0.3/chat")
        return yield* Effect.fail(new Refused(404, "not_found", "Not found"))
      const { message, requested } = yield* Effect.flatMap(readBody(request), parse)
      const conversationId = yield* conversationOf(message, requested)
      response.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",
        connection: "keep-alive"
      })
      response.write(
        `data: ${JSON.stringify({
          type: "metadata",
          conversation_id: conversationId,
          model: PUBLIC_MODEL,
          timestamp: Math.floor(Date.now() / 1000)
        })}\n\n`
      )
      let reply = ""
      const words = [`Echo #1:`, ...(` ${message}`.match(/\s*\S+/g) ?? [])]
      // The reply is stored however the stream ends (an exit handler runs when the client left, too),
      // partial if it was cut short, as the baseline's is.
      const end = (streamed: Exit.Exit<unknown, unknown>) =>
        Effect.flatMap(
          Effect.exit(
            storeMessage(
              conversationId,
              "assistant",
              reply,
              Exit.isSuccess(streamed) ? "complete" : "partial"
            )
          ),
          (stored) =>
            Effect.sync(() => {
              if (response.destroyed) return
              if (Exit.isSuccess(streamed) && Exit.isSuccess(stored)) response.end("data: [DONE]\n\n")
              else
                response.end(
                  `data: ${JSON.stringify({ type: "error", error: { type: "unavailable", message: "The database is unavailable" } })}\n\ndata: [DONE]\n\n`
                )
            })
        )
      yield* Effect.gen(function* () {
        yield* storeMessage(conversationId, "user", message, "complete")
        for (const word of words) {
          yield* Effect.sleep(options.echoDelayMs)
          reply += word
          response.write(`data: ${JSON.stringify({ type: "content", delta: { content: word } })}\n\n`)
        }
      }).pipe(Effect.onExit(end), Effect.ignore)
    }).pipe(Effect.catch((refused) => Effect.sync(() => fail(response, refused))))

  const server = createServer((request, response) => {
    const fiber = Effect.runForkWith(services)(handle(request, response))
    response.once("close", () => {
      if (!response.writableFinished) fiber.interruptUnsafe()
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

if (import.meta.main) {
  const { url, close } = await serve({
    databaseUrl: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    port: Number(process.env.PORT ?? 0),
    echoDelayMs: Number(process.env.ECHO_DELAY_MS ?? 20)
  })
  console.log(`listening ${url}`)
  // A normal exit, so `--cpu-prof` can write its profile.
  process.once("SIGTERM", () => close().then(() => process.exit(0)))
}
