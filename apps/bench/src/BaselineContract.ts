/**
 * What the baseline (`Baseline.ts`) and the Effect floor (`EffectBaseline.ts`)
 * share, so the two servers do the same job byte for byte: the limits, the
 * statements, the echo model's words and the SSE frames.
 */
import type { ServerResponse } from "node:http"

/** Options of either server's `serve`. */
export interface Options {
  readonly databaseUrl: string
  readonly port?: number | undefined
  readonly echoDelayMs: number
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
export const USER = "anonymous"
export const MAX_BODY_BYTES = 64 * 1024
const PUBLIC_MODEL = "unified-chat"

/** Answers with the common error body. */
export const fail = (response: ServerResponse, status: number, type: string, message: string): void => {
  const body = JSON.stringify({ error: { type, message } })
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body)
  })
  response.end(body)
}

/** A conversation's title: its first message, cut at 50 characters. */
export const titleOf = (message: string): string => {
  const characters = Array.from(message)
  return characters.length > 50 ? `${characters.slice(0, 50).join("")}...` : message
}

/** The echo model's reply to a first message, word by word. */
export const wordsOf = (message: string): Array<string> => [
  `Echo #1:`,
  ...(` ${message}`.match(/\s*\S+/g) ?? [])
]

/** `$1` conversation id, `$2` user id. */
export const FIND_CONVERSATION = "SELECT id FROM convoke_conversations WHERE id = $1::uuid AND user_id = $2"

/** `$1` id, `$2` user id, `$3` title, `$4` created and updated at. */
export const INSERT_CONVERSATION =
  "INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)"

/**
 * A message added to a conversation the user owns. `$1` conversation id,
 * `$2` user id, `$3` now, `$4` message id, `$5` role, `$6` content,
 * `$7` status, `$8` metadata.
 */
export const INSERT_MESSAGE = `
  WITH owner AS (
    UPDATE convoke_conversations SET updated_at = GREATEST(updated_at, $3)
    WHERE id = $1::uuid AND user_id = $2 RETURNING id
  )
  INSERT INTO convoke_messages (id, conversation_id, role, content, status, metadata, created_at)
  SELECT $4::uuid, owner.id, $5, $6, $7, $8::jsonb, $3 FROM owner`

/** The parameters of `INSERT_MESSAGE`. */
export const messageParameters = (
  conversationId: string,
  role: "user" | "assistant",
  content: string,
  status: string,
  id: string
): Array<unknown> => [
  conversationId,
  USER,
  new Date(),
  id,
  role,
  content,
  status,
  role === "assistant" ? JSON.stringify({ model: "echo" }) : null
]

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
  connection: "keep-alive"
} as const

export const metadataFrame = (conversationId: string): string =>
  `data: ${JSON.stringify({
    type: "metadata",
    conversation_id: conversationId,
    model: PUBLIC_MODEL,
    timestamp: Math.floor(Date.now() / 1000)
  })}\n\n`

export const contentFrame = (word: string): string =>
  `data: ${JSON.stringify({ type: "content", delta: { content: word } })}\n\n`

export const DONE_FRAME = "data: [DONE]\n\n"

/** The error event of a store that failed mid-stream, then `[DONE]`. */
export const UNAVAILABLE_FRAMES = `data: ${JSON.stringify({ type: "error", error: { type: "unavailable", message: "The database is unavailable" } })}\n\n${DONE_FRAME}`

/**
 * Runs a server as the bench's child process: `DATABASE_URL`, `PORT` and
 * `ECHO_DELAY_MS` from the environment, `listening <url>` once it is ready,
 * and a normal exit on SIGTERM, so `--cpu-prof` can write its profile.
 */
export const runAsProcess = async (
  serve: (options: Options) => Promise<{ readonly url: string; readonly close: () => Promise<void> }>
): Promise<void> => {
  const { url, close } = await serve({
    databaseUrl: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    port: Number(process.env.PORT ?? 0),
    echoDelayMs: Number(process.env.ECHO_DELAY_MS ?? 20)
  })
  console.log(`listening ${url}`)
  process.once("SIGTERM", () => close().then(() => process.exit(0)))
}
