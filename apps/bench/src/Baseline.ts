/**
 * The baseline: the leanest honest server of the v0.3 streaming contract,
 * written by hand with `node:http` and the `pg` driver and nothing else, so
 * the benchmark can say what Convoke costs over it.
 *
 * It does what the contract needs and no more: validates the body, creates
 * (or resumes) the conversation in Convoke's own tables BEFORE the first
 * event, writes the metadata event first and alone, stores the user message,
 * streams the echo model's words with the same pause before each word, stores
 * the assistant reply (partial if the client leaves), then `[DONE]`. No
 * framework, no audit log, no metrics, no rate limits; anonymous, as Convoke
 * is when configured without keys on loopback.
 *
 * Run it as a child process: `node src/Baseline.ts` with `DATABASE_URL`,
 * `PORT` and `ECHO_DELAY_MS`; it prints `listening <url>` when ready. The
 * tables must exist (run Convoke's migrations first).
 */
import { randomUUID } from "node:crypto"
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import pg from "pg"

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

const fail = (response: ServerResponse, status: number, type: string, message: string) => {
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

const INSERT_MESSAGE = `
  WITH owner AS (
    UPDATE convoke_conversations SET updated_at = GREATEST(updated_at, $3)
    WHERE id = $1::uuid AND user_id = $2 RETURNING id
  )
  INSERT INTO convoke_messages (id, conversation_id, role, content, status, metadata, created_at)
  SELECT $4::uuid, owner.id, $5, $6, $7, $8::jsonb, $3 FROM owner`

/** Starts the baseline server; resolves with its URL and a `close` function. */
export const serve = async (options: Options) => {
  const pool = new pg.Pool({ connectionString: options.databaseUrl })
  // An idle client the server drops (its database dropped at the end of a run)
  // is reported on the pool; without a listener that error would crash the process.
  pool.on("error", () => {})
  const storeMessage = (conversationId: string, role: string, content: string, status: string) => {
    const now = new Date()
    return pool.query(INSERT_MESSAGE, [
      conversationId,
      USER,
      now,
      randomUUID(),
      role,
      content,
      status,
      role === "assistant" ? JSON.stringify({ model: "echo" }) : null
    ])
  }

  const server = createServer(async (request, response) => {
    if (request.method !== "POST" || request.url !== "/api/v0.3/chat") {
      return fail(response, 404, "not_found", "Not found")
    }
    const chunks: Array<Buffer> = []
    let size = 0
    for await (const chunk of request) {
      size += (chunk as Buffer).length
      if (size > MAX_BODY_BYTES) return fail(response, 413, "request_too_large", "Body too large")
      chunks.push(chunk as Buffer)
    }
    let body: { message?: unknown; conversation_id?: unknown; stream?: unknown }
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
    } catch {
      return fail(response, 400, "invalid_request_error", "The body is not JSON")
    }
    if (
      typeof body !== "object" ||
      body === null ||
      typeof body.message !== "string" ||
      body.message === ""
    ) {
      return fail(response, 400, "invalid_request_error", "message must be a non-empty string")
    }
    if (body.stream !== true) return fail(response, 400, "invalid_request_error", "Only streaming is served")
    const message = body.message
    const requested = body.conversation_id

    let conversationId: string | undefined
    try {
      if (typeof requested === "string" && UUID.test(requested)) {
        const found = await pool.query(
          "SELECT id FROM convoke_conversations WHERE id = $1::uuid AND user_id = $2",
          [requested, USER]
        )
        if (found.rowCount === 1) conversationId = requested.toLowerCase()
      }
      if (conversationId === undefined) {
        conversationId = randomUUID()
        const now = new Date()
        await pool.query(
          "INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
          [conversationId, USER, titleOf(message), now]
        )
      }
    } catch {
      return fail(response, 503, "unavailable", "The database is unavailable")
    }

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

    const id = conversationId
    let reply = ""
    let closed = false
    let timer: NodeJS.Timeout | undefined
    let finish: (() => void) | undefined
    response.on("close", () => {
      if (response.writableFinished) return
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      finish?.()
    })
    try {
      await storeMessage(id, "user", message, "complete")
      const words = [`Echo #1:`, ...(` ${message}`.match(/\s*\S+/g) ?? [])]
      for (const word of words) {
        if (closed) break
        await new Promise<void>((resolve) => {
          finish = resolve
          timer = setTimeout(resolve, options.echoDelayMs)
        })
        if (closed) break
        reply += word
        response.write(`data: ${JSON.stringify({ type: "content", delta: { content: word } })}\n\n`)
      }
      await storeMessage(id, "assistant", reply, closed ? "partial" : "complete")
      if (!closed) response.end("data: [DONE]\n\n")
    } catch {
      if (!closed) {
        response.write(
          `data: ${JSON.stringify({ type: "error", error: { type: "unavailable", message: "The database is unavailable" } })}\n\ndata: [DONE]\n\n`
        )
        response.end()
      }
    }
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await pool.end()
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
