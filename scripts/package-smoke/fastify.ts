// Fastify 5, the plugin building the app from a layer.

import type { AddressInfo } from "node:net"
import { ConversationStore, EchoLanguageModel, Identity } from "@convoke/core"
import { FastifyPlugin } from "@convoke/fastify"
import { Layer } from "effect"
import Fastify from "fastify"
import { API_KEY, announce, stopOnSigterm } from "./lifecycle.js"

const fastify = Fastify()
fastify.get("/", async () => "my app")
await fastify.register(FastifyPlugin.plugin, {
  prefix: "/chat",
  layer: Layer.mergeAll(
    ConversationStore.layerMemory,
    EchoLanguageModel.layer(),
    Identity.layerApiKeys([{ key: API_KEY, userId: "alice" }])
  )
})
await fastify.listen({ port: 0, host: "127.0.0.1" })
announce(`http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}/chat`)
stopOnSigterm(() => fastify.close())
