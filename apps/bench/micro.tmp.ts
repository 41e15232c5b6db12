// In-process: memory store, echo model without delay, anonymous; N sequential requests through the web handler or node http.
import { createServer } from "node:http"
import {
  AuditLog,
  ChatHttp,
  ChatRateLimit,
  ConversationStore,
  EchoLanguageModel,
  Identity
} from "@convoke/core"
import { NodeHandler } from "@convoke/core/node"
import { Effect, Layer, References } from "effect"
import * as Load from "./src/Load.ts"

const app = await ChatHttp.makeApp(
  Layer.mergeAll(
    ConversationStore.layerMemory,
    EchoLanguageModel.layer({ delay: 0 }),
    Identity.layerAnonymous(),
    ChatRateLimit.layerUnlimited,
    Layer.succeed(References.MinimumLogLevel, "Warn"),
    Layer.succeed(AuditLog.AuditLog, { record: () => Effect.void } as any)
  )
)
const body = JSON.stringify({ message: "hello benchmark world of streams", stream: true })
const mode = process.argv[2] ?? "web"
const N = Number(process.argv[3] ?? 3000)
const one = async () => {
  const response = await app.handler(
    new Request("http://127.0.0.1/api/v0.3/chat", {
      method: "POST",
      body,
      headers: { "content-type": "application/json" }
    }),
    { remoteAddress: "127.0.0.1" }
  )
  const text = await response.text()
  if (!text.endsWith("data: [DONE]\n\n")) throw new Error(text)
}
if (mode === "web") {
  for (let i = 0; i < 500; i++) await one()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = 0; i < N / 8; i++) await one()
    })
  )
  const c = process.cpuUsage(c0)
  console.log(
    `web: ${((c.user + c.system) / 1000 / N).toFixed(3)} ms CPU/req, ${(N / ((performance.now() - t0) / 1000)).toFixed(0)} req/s`
  )
} else {
  const server = createServer(NodeHandler.toNodeHandler(app))
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
  console.log(`listening http://127.0.0.1:${(server.address() as any).port}`)
}
if (mode === "web") process.exit(0)
process.once("SIGTERM", () => process.exit(0))
