/**
 * Convoke behind each adapter, as one child process per server: the same app
 * (`ChatHttp.makeApp` with the PostgreSQL store, the echo model and anonymous
 * access) served by the plain Node handler, by Express 5, by Fastify 5, or by
 * the Lambda handler behind the loopback Function URL stand-in the Lambda
 * package tests with. Comparing them shows what each adapter adds.
 *
 * Run: `node src/Adapters.ts <node|express|fastify|lambda>` with
 * `DATABASE_URL` and `ECHO_DELAY_MS`; it prints `listening <url>` when ready.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { ChatHttp, ChatRateLimit, EchoLanguageModel, Identity } from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import { ExpressMiddleware } from "@convoke/express"
import { FastifyPlugin } from "@convoke/fastify"
import { LambdaHandler } from "@convoke/lambda"
import { LambdaHarness } from "@convoke/lambda/testing"
import { PgConversationStore } from "@convoke/store-pg"
import * as Layer from "effect/Layer"
import express from "express"
import Fastify from "fastify"

/** The adapters the benchmark compares. */
export const KINDS = ["node", "express", "fastify", "lambda"] as const
export type Kind = (typeof KINDS)[number]

/** The layer every adapter serves: the same store, model and identity as the reference server. */
const layerOf = (databaseUrl: string, echoDelayMs: number) =>
  Layer.mergeAll(
    PgConversationStore.layerUrl(databaseUrl),
    EchoLanguageModel.layer({ delay: echoDelayMs }),
    Identity.layerAnonymous(),
    // As the reference server in the suite (`CONVOKE_RATE_LIMIT_*=0`): the load comes from one address.
    ChatRateLimit.layerUnlimited
  )

const listening = (server: ReturnType<typeof createServer>): Promise<string> =>
  new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  )

/** Starts Convoke behind `kind`; resolves with its URL. */
export const serve = async (kind: Kind, databaseUrl: string, echoDelayMs: number): Promise<string> => {
  const layer = layerOf(databaseUrl, echoDelayMs)
  switch (kind) {
    case "node": {
      const app = await ChatHttp.makeApp(layer)
      const server = createServer(NodeHandler.toNodeHandler(app))
      server.keepAliveTimeout = 60_000
      return listening(server)
    }
    case "express": {
      const app = await ChatHttp.makeApp(layer)
      const expressApp = express()
      expressApp.use(ExpressMiddleware.make(app))
      const server = createServer(expressApp)
      server.keepAliveTimeout = 60_000
      return listening(server)
    }
    case "fastify": {
      const fastify = Fastify({ keepAliveTimeout: 60_000 })
      await fastify.register(FastifyPlugin.plugin, { layer })
      return fastify.listen({ port: 0, host: "127.0.0.1" })
    }
    case "lambda": {
      LambdaHarness.install()
      const served = await LambdaHarness.serve(LambdaHandler.streaming(layer) as never)
      return served.url
    }
  }
}

if (import.meta.main) {
  const kind = process.argv[2] as Kind
  if (!KINDS.includes(kind)) {
    console.error(`usage: Adapters.ts <${KINDS.join("|")}>`)
    process.exit(2)
  }
  const url = await serve(
    kind,
    process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
    Number(process.env.ECHO_DELAY_MS ?? 20)
  )
  console.log(`listening ${url}`)
}
