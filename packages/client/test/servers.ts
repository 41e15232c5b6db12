/**
 * Servers the client tests talk to over real loopback sockets:
 *
 * - the reference server (`apps/server`, embedded PGlite, echo model);
 * - a test server built from the core (`ChatHttp.makeApp` + `NodeHandler`)
 *   whose model fails mid-reply on request, which can answer the first
 *   requests with 503/429 or a dropped connection (retries), and which serves
 *   the conversation API's shape from fixtures.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  ChatError,
  ChatHooks,
  ChatHttp,
  ConversationStore,
  EchoLanguageModel,
  Identity,
  LanguageModel
} from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import { start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"
import { Duration, Effect, Layer, Stream } from "effect"

/** The reference server on a free port with its own embedded database. */
export const startReferenceServer = async (overrides: Record<string, string> = {}) => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-client-"))
  const server = await start(
    load([], { PORT: "0", CONVOKE_ECHO_DELAY_MS: "5", CONVOKE_DATA_DIR: dataDir, ...overrides })
  )
  return {
    url: server.url,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

/** A model that echoes, except for messages starting with "fail": two deltas, then `overloaded_error`. */
const failingModel = Layer.succeed(LanguageModel.LanguageModel, {
  ...EchoLanguageModel.make({ delay: Duration.millis(2) }),
  streamText: (request) => {
    const last = request.messages.at(-1)?.content ?? ""
    if (!last.startsWith("fail"))
      return EchoLanguageModel.make({ delay: Duration.millis(2) }).streamText(request)
    return Stream.concat(
      Stream.fromIterable<LanguageModel.ModelPart>([
        { _tag: "TextDelta", text: "Partial" },
        { _tag: "TextDelta", text: " reply" }
      ]),
      Stream.fail(
        new ChatError.ModelError({
          type: "overloaded_error",
          message: "The model is overloaded",
          retryable: true
        })
      )
    )
  }
})

/** How the next chat requests are answered before the real handler sees them. */
export type Fault = "503" | "429" | "drop"

export interface TestConversation {
  id: string
  title: string
  created_at: string
  updated_at: string
  owner: string
  messages: Array<{ id: string; role: string; content: string; status: string; created_at: string }>
}

const sendJson = (response: ServerResponse, status: number, body: unknown) => {
  response.writeHead(status, { "content-type": "application/json" })
  response.end(JSON.stringify(body))
}

const notFound = (response: ServerResponse) =>
  sendJson(response, 404, { error: { type: "not_found", message: "Conversation not found" } })

const readBody = async (request: IncomingMessage) => {
  const chunks: Array<Buffer> = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

/**
 * Records how each turn ended (the core's `turnEnded` hook runs after the
 * reply is stored), so a test can wait for the server to finish a turn
 * instead of sleeping.
 */
const makeTurnRecorder = () => {
  const ended = new Map<string, ChatHooks.Outcome>()
  const waiting = new Map<string, Array<(outcome: ChatHooks.Outcome) => void>>()
  const layer = Layer.succeed(
    ChatHooks.ChatHooks,
    ChatHooks.combine({
      turnEnded: (event) =>
        Effect.sync(() => {
          ended.set(event.conversationId, event.outcome)
          for (const resolve of waiting.get(event.conversationId) ?? []) resolve(event.outcome)
          waiting.delete(event.conversationId)
        })
    })
  )
  /** Resolves with the outcome of the conversation's latest turn, once one has ended. */
  const turnEnded = (conversationId: string) =>
    new Promise<ChatHooks.Outcome>((resolve) => {
      const outcome = ended.get(conversationId)
      if (outcome !== undefined) return resolve(outcome)
      waiting.set(conversationId, [...(waiting.get(conversationId) ?? []), resolve])
    })
  return { layer, turnEnded }
}

/** The test server; see the module documentation. */
export const startTestServer = async () => {
  const turns = makeTurnRecorder()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      turns.layer,
      ConversationStore.layerMemory,
      failingModel,
      Identity.layerApiKeys([
        { key: "alice-key-0123456789abcdef", userId: "alice" },
        { key: "bob-key-0123456789abcdef00", userId: "bob" }
      ])
    )
  )
  const handler = NodeHandler.toNodeHandler(app.handler)
  const faults: Array<Fault> = []
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = []
  const conversations: Array<TestConversation> = []
  const userOf = (request: IncomingMessage) =>
    request.headers.authorization === "Bearer alice-key-0123456789abcdef"
      ? "alice"
      : request.headers.authorization === "Bearer bob-key-0123456789abcdef00"
        ? "bob"
        : undefined

  const conversationApi = async (request: IncomingMessage, response: ServerResponse, url: URL) => {
    const user = userOf(request)
    if (user === undefined) {
      return sendJson(response, 401, { error: { type: "unauthenticated", message: "Missing credentials" } })
    }
    const mine = conversations
      .filter((conversation) => conversation.owner === user)
      .sort((a, b) => b.updated_at.localeCompare(a.updated_at))
    const id = url.pathname.split("/")[4]
    const strip = ({ owner: _owner, messages: _messages, ...rest }: TestConversation) => rest
    if (id === undefined || id === "") {
      const limit = Number(url.searchParams.get("limit") ?? "20")
      const offset = Number(url.searchParams.get("cursor") ?? "0")
      const page = mine.slice(offset, offset + limit)
      const next = offset + limit < mine.length ? String(offset + limit) : null
      return sendJson(response, 200, { data: page.map(strip), next_cursor: next })
    }
    const found = mine.find((conversation) => conversation.id === id)
    if (found === undefined) return notFound(response)
    if (request.method === "GET") {
      const { owner: _owner, ...rest } = found
      return sendJson(response, 200, rest)
    }
    if (request.method === "PATCH") {
      const body = JSON.parse(await readBody(request))
      found.title = body.title
      found.updated_at = new Date().toISOString()
      const { owner: _owner, ...rest } = found
      return sendJson(response, 200, rest)
    }
    if (request.method === "DELETE") {
      conversations.splice(conversations.indexOf(found), 1)
      response.writeHead(204)
      return response.end()
    }
    return sendJson(response, 405, { error: { type: "method_not_allowed", message: "No" } })
  }

  const http = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost")
    seen.push({
      method: request.method ?? "",
      url: url.pathname,
      authorization: request.headers.authorization
    })
    if (url.pathname.startsWith("/api/v0.3/conversations")) {
      conversationApi(request, response, url).catch(() => response.destroy())
      return
    }
    const fault = url.pathname === ChatHttp.CHAT_PATH ? faults.shift() : undefined
    if (fault === "drop") {
      request.socket.destroy()
      return
    }
    if (fault === "503" || fault === "429") {
      response.writeHead(Number(fault), { "content-type": "application/json", "retry-after": "0" })
      response.end(
        JSON.stringify({
          error: { type: fault === "503" ? "unavailable" : "rate_limited", message: "Try again" }
        })
      )
      return
    }
    handler(request, response)
  })
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
  const port = (http.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    /** Queues faults for the next chat requests. */
    fail: (...next: Array<Fault>) => faults.push(...next),
    /** Every request the server received. */
    seen,
    conversations,
    /** Resolves with how the conversation's latest turn ended, once it has been stored. */
    turnEnded: turns.turnEnded,
    close: async () => {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
      await app.dispose()
    }
  }
}
