// Express 5 with the PostgreSQL store on embedded PGlite, as the package README shows it.

import type { AddressInfo } from "node:net"
import { ChatHttp, EchoLanguageModel, Identity } from "@convoke/core"
import { ExpressMiddleware } from "@convoke/express"
import { PgConversationStore } from "@convoke/store-pg"
import { Layer } from "effect"
import express from "express"
import { API_KEY, announce, stopOnSigterm } from "./lifecycle.js"

const convoke = await ChatHttp.makeApp(
  Layer.mergeAll(
    PgConversationStore.layerEmbedded({ dataDir: "memory://" }),
    EchoLanguageModel.layer(),
    Identity.layerApiKeys([{ key: API_KEY, userId: "alice" }])
  )
)
const app = express()
app.use(express.json())
app.get("/", (_request, response) => {
  response.send("my app")
})
app.use("/chat", ExpressMiddleware.make(convoke))
const server = app.listen(0, "127.0.0.1", () => {
  announce(`http://127.0.0.1:${(server.address() as AddressInfo).port}/chat`)
})
const detach = ExpressMiddleware.attachWebSocket(server, convoke, { prefix: "/chat" })
stopOnSigterm(async () => {
  detach()
  server.close()
  await convoke.shutdown()
  await convoke.dispose()
})
