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
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import pg from "pg"
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

/** Starts the baseline server; resolves with its URL and a `close` function. */
export const serve = async (options: Options) => {
  const pool = new pg.Pool({ connectionString: options.databaseUrl })
  // An idle client the server drops (its database dropped at the end of a run)
  // is reported on the pool; without a listener that error would crash the process.
  pool.on("error", () => {})
  const storeMessage = (
    conversationId: string,
    role: "user" | "assistant",
    content: string,
    status: string
  ) => pool.query(INSERT_MESSAGE, messageParameters(conversationId, role, content, status, randomUUID()))

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
        const found = await pool.query(FIND_CONVERSATION, [requested, USER])
        if (found.rowCount === 1) conversationId = requested.toLowerCase()
      }
      if (conversationId === undefined) {
        conversationId = randomUUID()
        const now = new Date()
        await pool.query(INSERT_CONVERSATION, [conversationId, USER, titleOf(message), now])
      }
    } catch {
      return fail(response, 503, "unavailable", "The database is unavailable")
    }

    response.writeHead(200, SSE_HEADERS)
    response.write(metadataFrame(conversationId))

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
      for (const word of wordsOf(message)) {
        if (closed) break
        await new Promise<void>((resolve) => {
          finish = resolve
          timer = setTimeout(resolve, options.echoDelayMs)
        })
        if (closed) break
        reply += word
        response.write(contentFrame(word))
      }
      await storeMessage(id, "assistant", reply, closed ? "partial" : "complete")
      if (!closed) response.end(DONE_FRAME)
    } catch {
      if (!closed) response.end(UNAVAILABLE_FRAMES)
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

if (import.meta.main) await runAsProcess(serve)
