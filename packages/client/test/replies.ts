/**
 * What the reply tests share: messages of many words, a quick resume policy,
 * a watcher that records a reply's states and deltas as the caller sees
 * them, and the stored reply of a conversation once it stopped streaming.
 */
import type { ChatReply, ChatReplyState, ConvokeClient } from "../src/index.ts"

/** `w0 w1 … w<count-1>`: the echo model answers `Echo #<n>: ` and these, one word a delta. */
export const words = (count: number) => Array.from({ length: count }, (_, index) => `w${index}`).join(" ")

/** Reconnections without the default waits. */
export const quick = { attempts: 5, baseDelayMs: 1, maxDelayMs: 20 }

/** Every state the reply goes through, and every delta, as the caller sees them. */
export const watch = (reply: ChatReply, onState: (state: ChatReplyState) => void = () => {}) => {
  const states: Array<ChatReplyState> = [reply.state]
  reply.onStateChange((state) => {
    states.push(state)
    onState(state)
  })
  const deltas: Array<string> = []
  const iterated = (async () => {
    for await (const delta of reply) deltas.push(delta)
  })()
  return { states, deltas, iterated }
}

/**
 * Reads a reply to its end, noting whether its conversation id resolved
 * before its first delta: `order` is `["id", "first delta"]` when it did.
 */
export const readInOrder = async (reply: ChatReply) => {
  const order: Array<string> = []
  reply.conversationId.then(() => order.push("id"))
  const deltas: Array<string> = []
  for await (const delta of reply) {
    if (deltas.length === 0) order.push("first delta")
    deltas.push(delta)
  }
  return { order, deltas }
}

/** The stored messages of a conversation once its reply is no longer streaming. */
export const storedReply = async (client: ConvokeClient, conversationId: string) => {
  let messages = (await client.conversations.get(conversationId)).messages
  // The stop is acknowledged before the reply is stored; read again until it is.
  while (messages.at(-1)?.status === "streaming" || messages.at(-1)?.role !== "assistant") {
    messages = (await client.conversations.get(conversationId)).messages
  }
  return messages.at(-1)!
}
