/**
 * A small Convoke server for client tests, built from the core
 * (`ChatHttp.makeApp` + `NodeHandler`, in-memory store, API keys):
 *
 * - its model echoes, except for messages starting with "fail": two deltas,
 *   then an `overloaded_error` (a real mid-stream error event);
 * - it can answer the next chat requests with 503, 429 or a dropped
 *   connection, queued with `fail(...)` or, for clients in other languages,
 *   `POST /__faults` with a body like `503,429,drop`;
 * - it tells when a conversation's latest turn has ended and been stored,
 *   through `turnEnded(id)` or `GET /__turn-ended/<id>`, so tests wait for the
 *   server instead of sleeping.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import {
  ChatConfig,
  ChatError,
  ChatHooks,
  ChatHttp,
  ChatRateLimit,
  ConversationStore,
  EchoLanguageModel,
  Identity,
  LanguageModel
} from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"

/** How a queued chat request is answered instead of by the handler. */
export type Fault = "503" | "429" | "drop"

const echo = EchoLanguageModel.make({ delay: Duration.millis(2) })

/** The echo model, except for messages starting with "fail": two deltas, then `overloaded_error`. */
export const failingModel: Layer.Layer<LanguageModel.LanguageModel> = Layer.succeed(
  LanguageModel.LanguageModel,
  {
    ...echo,
    streamText: (request) =>
      (request.messages.at(-1)?.content ?? "").startsWith("fail")
        ? Stream.concat(
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
        : echo.streamText(request)
  }
)

/**
 * Records how each turn ended (the core's `turnEnded` hook runs after the
 * reply is stored) and resolves waiters for it.
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
  const turnEnded = (conversationId: string) =>
    new Promise<ChatHooks.Outcome>((resolve) => {
      const outcome = ended.get(conversationId)
      if (outcome !== undefined) return resolve(outcome)
      waiting.set(conversationId, [...(waiting.get(conversationId) ?? []), resolve])
    })
  return { layer, turnEnded }
}

const FAULT_BODIES: Record<"503" | "429", { readonly type: string; readonly message: string }> = {
  "503": { type: "unavailable", message: "Try again" },
  "429": { type: "rate_limited", message: "Try again" }
}

/** A running faulty server. */
export interface Server {
  readonly url: string
  /** Queues faults for the next chat requests. */
  readonly fail: (...next: ReadonlyArray<Fault>) => void
  /** Every request the server received, control requests aside. */
  readonly seen: ReadonlyArray<{
    readonly method: string
    readonly url: string
    readonly authorization: string | undefined
  }>
  /** Resolves with how the conversation's latest turn ended, once it has been stored. */
  readonly turnEnded: (conversationId: string) => Promise<ChatHooks.Outcome>
  readonly close: () => Promise<void>
}

/** Starts the server on a free loopback port; see the module documentation. */
export const start = async (options: {
  readonly keys: ReadonlyArray<{ readonly key: string; readonly userId: string }>
  /** How long a turn whose client left keeps going (default: none, it ends at once). */
  readonly disconnectGrace?: Duration.Input | undefined
}): Promise<Server> => {
  const turns = makeTurnRecorder()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      Layer.succeed(
        ChatConfig.ChatConfig,
        ChatConfig.make({
          disconnectGrace: Duration.fromInputUnsafe(options.disconnectGrace ?? Duration.zero)
        })
      ),
      turns.layer,
      ConversationStore.layerMemory,
      failingModel,
      // Clients retry on purpose here; rate limits are not what this server checks.
      ChatRateLimit.layerUnlimited,
      Identity.layerApiKeys(options.keys).pipe(Layer.orDie)
    )
  )
  const handler = NodeHandler.toNodeHandler(app)
  const faults: Array<Fault> = []
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = []
  const http = createServer(async (request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost")
    if (url.pathname === "/__faults" && request.method === "POST") {
      let body = ""
      for await (const chunk of request) body += chunk
      faults.push(...(body.split(",").filter((fault) => fault !== "") as Array<Fault>))
      response.writeHead(204).end()
      return
    }
    if (url.pathname.startsWith("/__turn-ended/")) {
      const outcome = await turns.turnEnded(url.pathname.slice("/__turn-ended/".length))
      response.writeHead(200, { "content-type": "text/plain" }).end(outcome)
      return
    }
    seen.push({
      method: request.method ?? "",
      url: url.pathname,
      authorization: request.headers.authorization
    })
    const fault = url.pathname === ChatHttp.CHAT_PATH ? faults.shift() : undefined
    if (fault === "drop") {
      request.socket.destroy()
    } else if (fault === "503" || fault === "429") {
      response.writeHead(Number(fault), { "content-type": "application/json", "retry-after": "0" })
      response.end(JSON.stringify({ error: FAULT_BODIES[fault] }))
    } else {
      handler(request, response)
    }
  })
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    fail: (...next) => {
      faults.push(...next)
    },
    seen,
    turnEnded: turns.turnEnded,
    close: async () => {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
      await app.dispose()
    }
  }
}
