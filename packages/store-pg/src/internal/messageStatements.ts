/**
 * The SQL texts of the two statements that write messages on every chat
 * turn: `create` (a new conversation with its first messages) and `append`.
 * Each text depends only on the number of messages, so it is built once per
 * count and reused; a tagged template would be compiled into a new string
 * on every call, on the path to a stream's first event. Parameters are
 * positional: the statement's own first, then six per message, in order.
 */
import type { ConversationStore } from "@convoke/core"
import { storable } from "./text.ts"

/** Counts up to this have their texts kept; larger ones (an import, say) are built per call. */
const CACHED_COUNTS = 8

const cached = (build: (count: number) => string) => {
  const texts = new Map<number, string>()
  return (count: number): string => {
    if (count > CACHED_COUNTS) return build(count)
    let text = texts.get(count)
    if (text === undefined) {
      text = build(count)
      texts.set(count, text)
    }
    return text
  }
}

/**
 * Inserts `count` messages, in order, into the conversation whose id the CTE
 * `row` returns (none when it returns no row); their parameters start at `$first`.
 */
const insertFrom = (row: "created" | "owner", count: number, first: number): string => {
  const values = Array.from({ length: count }, (_, index) => {
    const at = first + index * 6
    return `($${at}::uuid, ${index}::int4, $${at + 1}::text, $${at + 2}::text, $${at + 3}::text, $${at + 4}::jsonb, $${at + 5}::timestamptz)`
  })
  return `INSERT INTO convoke_messages (id, conversation_id, role, content, status, metadata, created_at)
      SELECT v.id, ${row}.id, v.role, v.content, v.status, v.metadata, v.created_at
      FROM ${row} CROSS JOIN (VALUES ${values.join(", ")}) AS v (id, ord, role, content, status, metadata, created_at)
      ORDER BY v.ord`
}

/**
 * A new conversation and its messages, stored together; the id comes back
 * only if the conversation is new. `$1` id, `$2` user id, `$3` title,
 * `$4` created at, `$5` updated at, then `parameters(messages)`.
 */
export const create = cached(
  (count) => `
    WITH created AS (
      INSERT INTO convoke_conversations (id, user_id, title, created_at, updated_at)
      VALUES ($1::uuid, $2::text, $3::text, $4::timestamptz, $5::timestamptz)
      ON CONFLICT (id) DO NOTHING
      RETURNING id
    ), added AS (${insertFrom("created", count, 6)})
    SELECT id FROM created`
)

/**
 * Messages (ids that exist are skipped) added to a conversation if the user
 * owns it: the update proves ownership and the insert selects from its
 * result, so another user's id inserts nothing; the id comes back if owned.
 * `$1` latest message date, `$2` conversation id, `$3` user id, then
 * `parameters(messages)`.
 */
export const append = cached(
  (count) => `
    WITH owner AS (
      UPDATE convoke_conversations
      SET updated_at = GREATEST(updated_at, $1::timestamptz)
      WHERE id = $2::uuid AND user_id = $3::text
      RETURNING id
    ), added AS (${insertFrom("owner", count, 4)} ON CONFLICT (id) DO NOTHING)
    SELECT id FROM owner`
)

/** The metadata as `jsonb` text, or `null`; `toJSON` and dropped values resolved as `JSON.stringify` does. */
const metadataJson = (metadata: ConversationStore.NewMessage["metadata"]): string | null =>
  metadata === undefined || metadata === null
    ? null
    : JSON.stringify(storableJson(JSON.parse(JSON.stringify(metadata))))

const storableJson = (value: unknown): unknown => {
  if (typeof value === "string") return storable(value)
  if (Array.isArray(value)) return value.map(storableJson)
  if (value !== null && typeof value === "object") {
    const result: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) result[storable(key)] = storableJson(item)
    return result
  }
  return value
}

/** The six parameters of each message, in the order the texts number them. */
export const parameters = (messages: ReadonlyArray<ConversationStore.NewMessage>): Array<unknown> =>
  messages.flatMap((message) => [
    message.id,
    message.role,
    storable(message.content),
    message.status,
    metadataJson(message.metadata),
    message.createdAt
  ])
