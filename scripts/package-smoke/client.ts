// The published client against a running server: `node client.js <baseUrl> <key>`.
// It runs on the lowest Node the client's `engines` claims.
import { ConvokeClient, ConvokeHttpError } from "@convoke/client"
import { API_KEY } from "./lifecycle.js"

const baseUrl = process.argv[2]
if (baseUrl === undefined) throw new Error("usage: node client.js <baseUrl> <key>")

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
  console.log(`ok ${process.version} ${baseUrl}: conversation ${conversationId}, ${text.length} characters`)
} finally {
  client.close()
}
