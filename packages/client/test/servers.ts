/**
 * Servers the client tests talk to over real loopback sockets:
 *
 * - the reference server (`apps/server`, embedded PGlite, echo model);
 * - a test server built from the core (`ChatHttp.makeApp` + `NodeHandler`,
 *   in-memory store, API keys for two users) whose model fails mid-reply on
 *   request, and which can answer the next chat requests with 503/429 or a
 *   dropped connection (retries).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:http"
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
  const http = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost")
    seen.push({
      method: request.method ?? "",
      url: url.pathname,
      authorization: request.headers.authorization
    })
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
    /** Resolves with how the conversation's latest turn ended, once it has been stored. */
    turnEnded: turns.turnEnded,
    close: async () => {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
      await app.dispose()
    }
  }
}
