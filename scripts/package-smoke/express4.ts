// Express 4 with @types/express 4, in a project of its own.

import type { AddressInfo } from "node:net"
import { ChatHttp, ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import { ExpressMiddleware } from "@convoke/express"
import { Layer } from "effect"
import express from "express"
import { API_KEY, announce, stopOnSigterm } from "./lifecycle.js"

const convoke = await ChatHttp.makeApp(
  Layer.mergeAll(
    ConversationStore.layerMemory,
    EchoLanguageModel.layer(),
    Identity.layerApiKeys([{ key: API_KEY, userId: "alice" }])
  )
)
const app = express()
app.use(express.json())
app.use("/chat", ExpressMiddleware.make(convoke))
const server = app.listen(0, "127.0.0.1", () => {
  announce(`http://127.0.0.1:${(server.address() as AddressInfo).port}/chat`)
})
stopOnSigterm(async () => {
  server.close()
  await convoke.shutdown()
  await convoke.dispose()
})
