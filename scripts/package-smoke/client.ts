// The published client against a running server:
// `node client.js <baseUrl> [--websocket] <key>`, on the lowest Node the
// client's `engines` claims. With --websocket, a second reply goes over the
// WebSocket transport, with `ws` (Node 20 has no global WebSocket).
import { ConvokeClient, ConvokeHttpError } from "@convoke/client"
import WebSocket from "ws"
import { API_KEY } from "./lifecycle.js"

const baseUrl = process.argv[2]
if (baseUrl === undefined) throw new Error("usage: node client.js <baseUrl> [--websocket] <key>")

const fail = (message: string): never => {
  throw new Error(`${baseUrl}: ${message}`)
}

const client = new ConvokeClient({ baseUrl, apiKey: API_KEY })
try {
  const reply = client.chat({ message: "Hello from the package check" })
  const conversationId = await reply.conversationId
  if (conversationId.length === 0) fail("empty conversation id")
  let text = ""
  for await (const delta of reply) text += delta
  if (!text.includes("Hello from the package check"))
    fail(`the echo model's reply is ${JSON.stringify(text)}`)

  const page = await client.conversations.list()
  if (!page.data.some((conversation) => conversation.id === conversationId))
    fail(`conversation ${conversationId} is not listed`)

  const anonymous = new ConvokeClient({ baseUrl })
  const refused = await anonymous.conversations.list().then(
    () => undefined,
    (error: unknown) => error
  )
  if (!(refused instanceof ConvokeHttpError) || refused.status !== 401)
    fail(`a request without a key was not refused with 401: ${String(refused)}`)

  const health = await fetch(`${baseUrl}/health`)
  if (health.status !== 200) fail(`/health answered ${health.status}`)

  if (process.argv.includes("--websocket")) {
    const socketClient = new ConvokeClient({ baseUrl, apiKey: API_KEY, transport: "websocket", WebSocket })
    try {
      const next = socketClient.chat({ message: "And over a WebSocket", conversationId })
      if ((await next.conversationId) !== conversationId)
        fail("the WebSocket reply is in another conversation")
      if (!(await next.text).includes("And over a WebSocket")) fail("the WebSocket reply lacks the echo")
    } finally {
      socketClient.close()
    }
  }
  const transports = process.argv.includes("--websocket") ? "SSE and WebSocket" : "SSE"
  console.log(`ok ${process.version} ${baseUrl} over ${transports}: conversation ${conversationId}`)
} finally {
  client.close()
}
