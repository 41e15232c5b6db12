/**
 * The WebSocket load generator: `concurrency` sockets, each sending its next
 * `chat.send` as soon as the previous turn's `done` arrives (closed-loop, as
 * `Load.run` is over HTTP), timing each turn to its metadata frame (TTFE)
 * and to `done`. The sockets are opened before the clock starts, as a game
 * client's socket is open before it chats.
 *
 * `frames` counts the frames of long replies on both transports, for the
 * frames-per-second comparison.
 */
import { Agent, request as httpRequest } from "node:http"
import { performance } from "node:perf_hooks"
import WebSocket from "ws"
import type * as Load from "./Load.ts"

const socketUrl = (base: string) => `${base.replace(/^http/, "ws")}/api/v0.3/ws`

const opened = (url: string) =>
  new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(socketUrl(url), { perMessageDeflate: false })
    socket.once("open", () => resolve(socket))
    socket.once("error", reject)
  })

/** Runs turns over `concurrency` sockets, closed-loop, until `requests` have been sent or `seconds` have passed. */
export const run = async (options: Load.RunOptions): Promise<Load.Result> => {
  const limit = options.requests ?? Number.POSITIVE_INFINITY
  const sockets = await Promise.all(Array.from({ length: options.concurrency }, () => opened(options.url)))
  const samples: Array<Load.Sample> = []
  const errorMessages: Array<string> = []
  let errors = 0
  let sent = 0
  const started = performance.now()
  const stopAt = options.seconds === undefined ? Number.POSITIVE_INFINITY : started + options.seconds * 1000
  const client = (socket: WebSocket) =>
    new Promise<void>((resolve) => {
      let turnStarted = 0
      let ttfe = -1
      let temporary = false
      let index = 0
      const next = () => {
        if (sent >= limit || performance.now() >= stopAt) return resolve()
        index = sent++
        ttfe = -1
        turnStarted = performance.now()
        socket.send(
          JSON.stringify({ type: "chat.send", request_id: String(index), message: options.message })
        )
      }
      socket.on("message", (data) => {
        const text = String(data)
        if (ttfe < 0) {
          ttfe = performance.now() - turnStarted
          if (!text.startsWith('{"type":"metadata"')) {
            errors++
            if (errorMessages.length < 5)
              errorMessages.push(`first frame is not the metadata event: ${text.slice(0, 120)}`)
            return next()
          }
          temporary = text.includes('"temporary":true')
        }
        if (text.startsWith('{"type":"done"')) {
          samples.push({ ttfe, done: performance.now() - turnStarted, temporary, index })
          next()
        }
      })
      socket.on("close", () => resolve())
      next()
    })
  await Promise.all(sockets.map(client))
  const seconds = (performance.now() - started) / 1000
  for (const socket of sockets) socket.close()
  return { samples, errors, errorMessages, seconds }
}

/** Frames a transport delivered, and in how long. */
export interface FramesResult {
  readonly frames: number
  readonly seconds: number
}

/** Streams `count` long replies at once over SSE (one connection each) and counts their frames. */
export const framesSse = async (url: string, message: string, count: number): Promise<FramesResult> => {
  const agent = new Agent({ keepAlive: false })
  let frames = 0
  const started = performance.now()
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          const body = JSON.stringify({ message, stream: true })
          const request = httpRequest(new URL("/api/v0.3/chat", url), {
            method: "POST",
            agent,
            headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
          })
          request.on("error", reject)
          request.on("response", (response) => {
            response.setEncoding("utf8")
            let tail = ""
            response.on("data", (chunk: string) => {
              const text = tail + chunk
              let at = text.indexOf("\n\n")
              let last = 0
              while (at !== -1) {
                frames++
                last = at + 2
                at = text.indexOf("\n\n", last)
              }
              tail = text.slice(last)
            })
            response.on("end", () => resolve())
          })
          request.end(body)
        })
    )
  )
  agent.destroy()
  return { frames, seconds: (performance.now() - started) / 1000 }
}

/** Streams `count` long replies at once over one socket and counts their frames. */
export const framesSocket = async (url: string, message: string, count: number): Promise<FramesResult> => {
  const socket = await opened(url)
  let frames = 0
  let done = 0
  const started = performance.now()
  await new Promise<void>((resolve) => {
    socket.on("message", (data) => {
      frames++
      if (String(data).startsWith('{"type":"done"') && ++done === count) resolve()
    })
    for (let index = 0; index < count; index++) {
      socket.send(JSON.stringify({ type: "chat.send", request_id: String(index), message }))
    }
  })
  const seconds = (performance.now() - started) / 1000
  socket.close()
  return { frames, seconds }
}
