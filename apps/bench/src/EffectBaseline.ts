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
import {
  contentFrame,
  DONE_FRAME,
  FIND_CONVERSATION,
  fail,
  INSERT_CONVERSATION,
  INSERT_MESSAGE,
  MAX_BODY_BYTES,
  messageParameters,
  metadataFrame,
  type Options,
  runAsProcess,
  SSE_HEADERS,
  titleOf,
  UNAVAILABLE_FRAMES,
  USER,
  UUID,
  wordsOf
} from "./BaselineContract.ts"

export type { Options } from "./BaselineContract.ts"

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

  // The baseline's statement texts, sent as they are, as the baseline sends them.
  const storeMessage = (
    conversationId: string,
    role: "user" | "assistant",
    content: string,
    status: string
  ) => sql.unsafe(INSERT_MESSAGE, messageParameters(conversationId, role, content, status, randomUUID()))

  const conversationOf = (message: string, requested: unknown): Effect.Effect<string, Refused> =>
    Effect.gen(function* () {
      if (typeof requested === "string" && UUID.test(requested)) {
        const found = yield* sql.unsafe(FIND_CONVERSATION, [requested, USER])
        if (found.length === 1) return requested.toLowerCase()
      }
      const id = randomUUID()
      yield* sql.unsafe(INSERT_CONVERSATION, [id, USER, titleOf(message), new Date()])
      return id
    }).pipe(Effect.mapError(() => new Refused(503, "unavailable", "The database is unavailable")))

  const handle = (request: IncomingMessage, response: ServerResponse) =>
    Effect.gen(function* () {
      if (request.method !== "POST" || request.url !== "/api/v0.3/chat")
        return yield* Effect.fail(new Refused(404, "not_found", "Not found"))
      const { message, requested } = yield* Effect.flatMap(readBody(request), parse)
      const conversationId = yield* conversationOf(message, requested)
      response.writeHead(200, SSE_HEADERS)
      response.write(metadataFrame(conversationId))
      let reply = ""
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
              response.end(
                Exit.isSuccess(streamed) && Exit.isSuccess(stored) ? DONE_FRAME : UNAVAILABLE_FRAMES
              )
            })
        )
      yield* Effect.gen(function* () {
        yield* storeMessage(conversationId, "user", message, "complete")
        for (const word of wordsOf(message)) {
          yield* Effect.sleep(options.echoDelayMs)
          reply += word
          response.write(contentFrame(word))
        }
      }).pipe(Effect.onExit(end), Effect.ignore)
    }).pipe(
      Effect.catch((refused) =>
        Effect.sync(() => fail(response, refused.status, refused.type, refused.message))
      )
    )

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

if (import.meta.main) await runAsProcess(serve)
