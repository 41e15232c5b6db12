/**
 * Servers the client tests talk to over real loopback sockets: the reference
 * server (`apps/server`, embedded PGlite, echo model), the conformance
 * package's `FaultyServer` (a model that fails mid-reply on request, queued
 * 503/429/dropped-connection answers, turn-end notifications), and a server
 * built from the core whose turn log forgets a turn as soon as it ends.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Duplex } from "node:stream"
import { FaultyServer } from "@convoke/conformance"
import {
  ChatConfig,
  ChatHooks,
  ChatHttp,
  ConversationStore,
  EchoLanguageModel,
  Identity,
  type LanguageModel,
  TurnLog
} from "@convoke/core"
import { NodeHandler, NodeSocket } from "@convoke/core/node"
import { start } from "@convoke/server/src/Server.ts"
import { load } from "@convoke/server/src/Settings.ts"
import { Duration, Effect, Layer } from "effect"

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

/** The test server (`FaultyServer` of the conformance package), with API keys for two users. */
export const startTestServer = (): Promise<FaultyServer.Server> =>
  FaultyServer.start({
    keys: [
      { key: "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz", userId: "alice" },
      { key: "bob-key-0123456789abcdef00-ghijklmnopqrstuvwxyz", userId: "bob" }
    ]
  })

/**
 * A server built from the core (HTTP and WebSocket) whose turn log forgets a
 * turn the moment it ends, so a client that reconnects after the end gets
 * nothing to replay (204, `no_turn`) and must finish from the stored
 * conversation. Its `turnEnded` hook (run once the reply is stored) is the
 * signal the tests wait on.
 */
export const startForgetfulServer = async (
  disconnectGrace: Duration.Input,
  options: {
    readonly model?: Layer.Layer<LanguageModel.LanguageModel>
    readonly maxEventsPerTurn?: number
  } = {}
) => {
  const ended = new Map<string, (outcome: string) => void>()
  const endings = new Map<string, Promise<string>>()
  const turnEnded = (conversationId: string) => {
    let promise = endings.get(conversationId)
    if (promise === undefined) {
      promise = new Promise<string>((resolve) => ended.set(conversationId, resolve))
      endings.set(conversationId, promise)
    }
    return promise
  }
  const app = await ChatHttp.makeApp(
    Layer.mergeAll(
      Layer.succeed(
        ChatConfig.ChatConfig,
        ChatConfig.make({ disconnectGrace: Duration.fromInputUnsafe(disconnectGrace) })
      ),
      Layer.succeed(
        ChatHooks.ChatHooks,
        ChatHooks.combine({
          turnEnded: (event) =>
            Effect.sync(() => {
              void turnEnded(event.conversationId)
              ended.get(event.conversationId)?.(event.outcome)
            })
        })
      ),
      ConversationStore.layerMemory,
      options.model ?? EchoLanguageModel.layer({ delay: Duration.millis(2) }),
      Identity.layerAnonymous()
    ),
    { turnLog: TurnLog.layerMemory({ retention: Duration.zero, maxEventsPerTurn: options.maxEventsPerTurn }) }
  )
  const handler = NodeHandler.toNodeHandler(app)
  const http = createServer((request, response) => handler(request, response))
  // Upgraded sockets leave the HTTP server: they are tracked to be closed with it.
  const upgrade = NodeSocket.toUpgradeHandler(app)
  const sockets = new Set<Duplex>()
  http.on("upgrade", (request, socket: Duplex, head: Buffer) => {
    sockets.add(socket)
    void upgrade(request, socket, head).finally(() => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    turnEnded,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
      await app.dispose()
    }
  }
}
