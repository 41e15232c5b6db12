/**
 * Helpers for the conversation API (`/api/v0.3/conversations`): list your
 * conversations newest first, read one with its messages, rename, delete.
 * Reach them as `client.conversations`. Field names are camelCased; a missing
 * conversation (or another user's) rejects with `ConvokeHttpError` status 404.
 */
import type { TransportRequest } from "./ConvokeClient.ts"
import { ConvokeProtocolError } from "./ConvokeError.ts"

/** The conversations path of the v0.3 API. */
export const CONVERSATIONS_PATH = "/api/v0.3/conversations"

/** A conversation as listed. */
export interface ConversationSummary {
  readonly id: string
  readonly title: string
  /** ISO 8601 timestamps, as the server sends them. */
  readonly createdAt: string
  readonly updatedAt: string
}

/** One stored message. */
export interface ConversationMessage {
  readonly id: string
  readonly role: "user" | "assistant"
  readonly content: string
  /**
   * `complete`; for replies that did not finish `cancelled` (stopped, or the
   * client did not come back), `interrupted` (the server stopped) or `error`;
   * `partial` on older rows; `streaming` for the reply of a turn still running.
   */
  readonly status: string
  readonly createdAt: string
}

/** The turn a conversation is running: its reply is the `streaming` message. */
export interface RunningTurn {
  readonly turnId: string
  /** ISO 8601. */
  readonly startedAt: string
}

/** A conversation with its messages, oldest first. */
export interface Conversation extends ConversationSummary {
  readonly messages: ReadonlyArray<ConversationMessage>
  /** The turn running now, if any (`null` from servers before turns). */
  readonly runningTurn: RunningTurn | null
}

/** One page of `list`. */
export interface ConversationPage {
  readonly data: ReadonlyArray<ConversationSummary>
  /** Pass as `cursor` to get the next page; `null` on the last page. */
  readonly nextCursor: string | null
}

/** Options of `list`. */
export interface ListOptions {
  /** Page size (the server caps it). */
  readonly limit?: number
  /** `nextCursor` of the previous page. */
  readonly cursor?: string | null
  readonly signal?: AbortSignal
}

type Send = (request: TransportRequest) => Promise<Response>

const summary = (raw: any): ConversationSummary => {
  if (typeof raw?.id !== "string") throw new ConvokeProtocolError("A conversation has no id")
  return {
    id: raw.id,
    title: String(raw.title ?? ""),
    createdAt: String(raw.created_at ?? ""),
    updatedAt: String(raw.updated_at ?? "")
  }
}

const conversation = (raw: any): Conversation => ({
  ...summary(raw),
  messages: (Array.isArray(raw?.messages) ? raw.messages : []).map((message: any) => ({
    id: String(message.id),
    role: message.role,
    content: String(message.content ?? ""),
    status: String(message.status ?? "complete"),
    createdAt: String(message.created_at ?? "")
  })),
  runningTurn:
    typeof raw?.running_turn?.turn_id === "string"
      ? { turnId: raw.running_turn.turn_id, startedAt: String(raw.running_turn.started_at ?? "") }
      : null
})

const never = new AbortController().signal

/** The conversation API; use it through `client.conversations`. */
export class Conversations {
  readonly #send: Send

  /** @internal */
  constructor(send: Send) {
    this.#send = send
  }

  /** One page of your conversations, newest first. */
  async list(options: ListOptions = {}): Promise<ConversationPage> {
    const query = new URLSearchParams()
    if (options.limit !== undefined) query.set("limit", String(options.limit))
    if (options.cursor != null) query.set("cursor", options.cursor)
    const search = query.toString() === "" ? "" : `?${query}`
    const response = await this.#send({
      method: "GET",
      path: `${CONVERSATIONS_PATH}${search}`,
      accept: "application/json",
      signal: options.signal ?? never
    })
    const body: any = await response.json()
    if (!Array.isArray(body?.data)) throw new ConvokeProtocolError("The conversation list has no data array")
    return { data: body.data.map(summary), nextCursor: body.next_cursor ?? null }
  }

  /** Every conversation, newest first, fetching pages of `limit` as the loop goes on. */
  async *all(
    options: { readonly limit?: number; readonly signal?: AbortSignal } = {}
  ): AsyncGenerator<ConversationSummary> {
    let cursor: string | null = null
    do {
      const page: ConversationPage = await this.list({ ...options, cursor })
      yield* page.data
      cursor = page.nextCursor
    } while (cursor !== null)
  }

  /** A conversation with its messages. */
  async get(id: string, options: { readonly signal?: AbortSignal } = {}): Promise<Conversation> {
    const response = await this.#send({
      method: "GET",
      path: `${CONVERSATIONS_PATH}/${encodeURIComponent(id)}`,
      accept: "application/json",
      signal: options.signal ?? never
    })
    return conversation(await response.json())
  }

  /** Renames a conversation; resolves with it as stored (without its messages). */
  async rename(
    id: string,
    title: string,
    options: { readonly signal?: AbortSignal } = {}
  ): Promise<ConversationSummary> {
    const response = await this.#send({
      method: "PATCH",
      path: `${CONVERSATIONS_PATH}/${encodeURIComponent(id)}`,
      body: { title },
      accept: "application/json",
      signal: options.signal ?? never
    })
    return summary(await response.json())
  }

  /**
   * Stops the conversation's running turn, wherever it runs: the reply so far
   * is stored as `cancelled` and every open stream of the turn ends. Resolves
   * with the stopped turn's id, or `undefined` when no turn was running.
   */
  async stop(id: string, options: { readonly signal?: AbortSignal } = {}): Promise<string | undefined> {
    const response = await this.#send({
      method: "POST",
      path: `${CONVERSATIONS_PATH}/${encodeURIComponent(id)}/stop`,
      accept: "application/json",
      signal: options.signal ?? never
    })
    if (response.status === 204) {
      await response.body?.cancel().catch(() => {})
      return undefined
    }
    const body: any = await response.json().catch(() => undefined)
    return typeof body?.turn_id === "string" ? body.turn_id : undefined
  }

  /** Deletes a conversation and its messages. */
  async delete(id: string, options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const response = await this.#send({
      method: "DELETE",
      path: `${CONVERSATIONS_PATH}/${encodeURIComponent(id)}`,
      signal: options.signal ?? never
    })
    await response.body?.cancel().catch(() => {})
  }
}
