// Two Convoke instances behind one PostgreSQL and one Redis: a reply started on
// the first keeps going when its client's connection drops, the client resumes
// it on the second with the last event id it saw, and a stop sent to either
// instance ends a turn the other runs.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//   REDIS_URL=redis://127.0.0.1:6379 \
//   node_modules/.bin/node examples/two-instances/run.mjs   (after `npm test` or `npm start` installed it)
//
// Each instance is the reference server (`apps/server`), started as a load
// balancer would see it: its own process and port, the same database and Redis.
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../../apps/server/src/bin.ts", import.meta.url))
const KEY = "two-instances-demo-key-0123456789-abcdefghijklmnopqrstuvwxyz"
const env = {
  ...process.env,
  DATABASE_URL: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  CONVOKE_API_KEYS: `${KEY}:demo-user`,
  // The echo model, slowed down so the reply is still running when the connection drops.
  CONVOKE_ECHO_DELAY_MS: "150",
  CONVOKE_LOG_FORMAT: "off",
  PORT: "0"
}

/** Starts one instance and resolves with its URL once it listens. */
const instance = (name) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin], { env, stdio: ["ignore", "pipe", "inherit"] })
    let output = ""
    child.stdout.on("data", (chunk) => {
      output += chunk
      const listening = /listening\s+(http:\/\/\S+)/.exec(output)
      if (listening) resolve({ name, url: listening[1], stop: () => child.kill("SIGTERM") })
    })
    child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before listening:\n${output}`)))
  })

const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" }

/** Reads SSE frames from a response body, calling `onFrame(id, data)` until it returns true or the body ends. */
const readFrames = async (response, onFrame) => {
  const decoder = new TextDecoder()
  let buffered = ""
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk, { stream: true })
    for (let end = buffered.indexOf("\n\n"); end !== -1; end = buffered.indexOf("\n\n")) {
      const frame = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const id = /^id: (.*)$/m.exec(frame)?.[1]
      const data = /^data: (.*)$/m.exec(frame)?.[1]
      if (data !== undefined && onFrame(id, data)) return
    }
  }
}

const [a, b] = await Promise.all([instance("A"), instance("B")])
try {
  console.log(`A: ${a.url}\nB: ${b.url}\n`)

  // 1. A reply streams from A; the connection drops after three words.
  const dropped = new AbortController()
  const first = await fetch(`${a.url}/api/v0.3/chat`, {
    method: "POST",
    headers,
    body: JSON.stringify({ message: "tell me everything about resumable streams", stream: true }),
    signal: dropped.signal
  })
  let metadata
  let lastId
  let text = ""
  let words = 0
  await readFrames(first, (id, data) => {
    if (metadata === undefined) {
      metadata = JSON.parse(data)
      console.log(`A → conversation ${metadata.conversation_id}, turn ${metadata.turn_id}`)
      return false
    }
    lastId = id
    text += JSON.parse(data).delta.content
    return ++words === 3
  })
  dropped.abort()
  console.log(`A → "${text}" … connection dropped after event ${lastId}\n`)

  // 2. The client resumes on B with the last event id it saw: exactly the rest, then [DONE].
  const resumed = await fetch(`${b.url}/api/v0.3/conversations/${metadata.conversation_id}/stream`, {
    headers: { ...headers, "last-event-id": lastId }
  })
  console.log(`B ← GET …/stream, Last-Event-ID: ${lastId} → ${resumed.status}`)
  let rest = ""
  await readFrames(resumed, (_id, data) => {
    if (data === "[DONE]") return true
    const event = JSON.parse(data)
    if (event.type === "content") rest += event.delta.content
    return false
  })
  console.log(`B → "${rest}" [DONE]`)
  const whole = `${text}${rest}`
  if (whole !== "Echo #1: tell me everything about resumable streams")
    throw new Error(`unexpected reply: ${whole}`)

  // 3. A stop sent to B ends a turn that runs on A.
  const running = await fetch(`${a.url}/api/v0.3/chat`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      message: "a long answer, please",
      stream: true,
      conversation_id: metadata.conversation_id
    })
  })
  const ending = readFrames(running, (_id, data) => {
    if (data.includes('"type":"error"')) console.log(`A → ${data}`)
    return data === "[DONE]"
  })
  const stop = await fetch(`${b.url}/api/v0.3/conversations/${metadata.conversation_id}/stop`, {
    method: "POST",
    headers
  })
  console.log(`\nB ← POST …/stop → ${stop.status} ${await stop.text()}`)
  await ending
  const shown = await (
    await fetch(`${b.url}/api/v0.3/conversations/${metadata.conversation_id}`, { headers })
  ).json()
  console.log(`stored: ${shown.messages.map((message) => `${message.role}/${message.status}`).join(", ")}`)
} finally {
  a.stop()
  b.stop()
}
