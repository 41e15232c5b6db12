/**
 * The servers the C# end-to-end tests talk to: the reference server (embedded
 * PostgreSQL, echo model), and a faulty server built from the core whose model
 * fails mid-reply for messages starting with "fail", and which answers the
 * next chat requests with the faults queued by `POST /__faults` ("503,429,drop").
 * `GET /__turn-ended/<conversation id>` answers, once that conversation's
 * latest turn has ended and been stored, with its outcome (`client_closed`, …).
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
export const startReferenceServer = async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "convoke-unity-"))
  const server = await start(load([], { PORT: "0", CONVOKE_ECHO_DELAY_MS: "5", CONVOKE_DATA_DIR: dataDir }))
  return {
    url: server.url,
    close: async () => {
      await server.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  }
}

const echo = EchoLanguageModel.make({ delay: Duration.millis(2) })

const failingModel = Layer.succeed(LanguageModel.LanguageModel, {
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
})

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

/** The faulty server; see the module documentation. */
export const startFaultyServer = async () => {
  const turns = makeTurnRecorder()
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      turns.layer,
      ConversationStore.layerMemory,
      failingModel,
      Identity.layerApiKeys([{ key: "alice-key-0123456789abcdef", userId: "alice" }])
    )
  )
  const handler = NodeHandler.toNodeHandler(app.handler)
  const faults: Array<string> = []
  const http = createServer(async (request, response) => {
    if (request.url === "/__faults" && request.method === "POST") {
      let body = ""
      for await (const chunk of request) body += chunk
      faults.push(...body.split(",").filter((fault) => fault !== ""))
      response.writeHead(204).end()
      return
    }
    if (request.url?.startsWith("/__turn-ended/")) {
      const outcome = await turns.turnEnded(request.url.slice("/__turn-ended/".length))
      response.writeHead(200, { "content-type": "text/plain" }).end(outcome)
      return
    }
    const fault = request.url === ChatHttp.CHAT_PATH ? faults.shift() : undefined
    if (fault === "drop") {
      request.socket.destroy()
    } else if (fault === "503" || fault === "429") {
      response.writeHead(Number(fault), { "content-type": "application/json", "retry-after": "0" })
      response.end(JSON.stringify({ error: { type: "unavailable", message: "Try again" } }))
    } else {
      handler(request, response)
    }
  })
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    close: async () => {
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
      await app.dispose()
    }
  }
}
