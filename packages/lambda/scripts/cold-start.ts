/**
 * Cold and warm starts of the SAM example's streaming handler under AWS's
 * Runtime Interface Client, on this machine: each run starts a new client
 * process (a new execution environment) against the loopback Runtime API
 * and measures
 *
 * - init: from spawning the process to its first `GET …/invocation/next`
 *   (Node starts, the client loads, the handler module is imported and the
 *   app's build begins);
 * - cold TTFE: from handing it the first invocation to the metadata event
 *   (the app's build finishes: the PostgreSQL pool connects, migrations are
 *   checked);
 * - warm TTFE: the same for the next invocation of the same process.
 *
 * Run: `node packages/lambda/scripts/cold-start.ts [runs] [module]` after
 * `packages/lambda/scripts/install-ric.sh`, with PostgreSQL on 127.0.0.1:5432.
 * Lambda's own part of a cold start (creating the environment, fetching the
 * code) is not included, and Lambda gives a 512 MB function a fraction of a
 * core: the figures are a floor, not a forecast.
 */
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { StoreProbe } from "@convoke/conformance"
import { ChatHttp } from "@convoke/core"
import * as RuntimeApi from "../test/RuntimeApi.ts"

const runs = Number(process.argv[2] ?? 10)
// The handler's module: the example's source, or a bundle of it (`sam build`'s `streaming.mjs`).
const handlerModule = resolve(
  process.argv[3] ?? fileURLToPath(new URL("../examples/sam/streaming.ts", import.meta.url))
)
const clientDir = RuntimeApi.locateClient()
if (clientDir === undefined) {
  console.error("aws-lambda-ric is not installed: run packages/lambda/scripts/install-ric.sh")
  process.exit(1)
}
const KEY = "example-key-0123456789-abcdefghijklmnopqrstuvwxyz"
const event = {
  version: "2.0",
  rawPath: ChatHttp.CHAT_PATH,
  rawQueryString: "",
  headers: { "content-type": "application/json", host: "abc.lambda-url.eu-west-1.on.aws", "x-api-key": KEY },
  requestContext: { http: { method: "POST", sourceIp: "203.0.113.9" } },
  body: JSON.stringify({ message: "Hello", stream: true }),
  isBase64Encoded: false
}

/** Milliseconds from invoking to the metadata event; the rest of the stream is drained. */
const ttfe = async (api: RuntimeApi.RuntimeApi) => {
  const start = performance.now()
  const invocation = api.invoke(event)
  let seen = ""
  let at: number | undefined
  for (let chunk = await invocation.nextChunk(); chunk !== undefined; chunk = await invocation.nextChunk()) {
    seen += chunk.toString("utf8")
    if (at === undefined && seen.includes('"type":"metadata"')) at = performance.now() - start
  }
  if (at === undefined) throw new Error(`no metadata event: ${seen.slice(0, 300)}`)
  return at
}

const store = await StoreProbe.postgres()
const samples = { init: [] as Array<number>, cold: [] as Array<number>, warm: [] as Array<number> }
try {
  for (let run = 0; run < runs; run++) {
    const api = await RuntimeApi.start()
    const spawned = performance.now()
    const client = RuntimeApi.runClient({
      clientDir,
      api,
      handler: "streaming.handler",
      modules: { streaming: handlerModule },
      env: { DATABASE_URL: store.url, CONVOKE_API_KEYS: `${KEY}:alice` }
    })
    try {
      const gone = client.exited.then((code) =>
        Promise.reject(
          new Error(
            `the runtime client exited (${code}) before asking for an invocation:\n${client.stderr()}`
          )
        )
      )
      gone.catch(() => {}) // it matters only while racing the first poll
      await Promise.race([api.polled(1), gone])
      samples.init.push(performance.now() - spawned)
      samples.cold.push(await ttfe(api))
      await api.polled(2)
      samples.warm.push(await ttfe(api))
    } finally {
      await client.stop()
      await api.close()
    }
  }
} finally {
  await store.drop()
}

const at = (values: Array<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}
console.log(`${runs} runs, Node ${process.version}, ${process.platform} ${process.arch}`)
console.log("| phase | p50 ms | max ms |\n|---|---:|---:|")
for (const [name, values] of Object.entries(samples))
  console.log(`| ${name} | ${at(values, 0.5).toFixed(0)} | ${Math.max(...values).toFixed(0)} |`)
