/**
 * `@convoke/client`: the TypeScript client of Convoke's v0.3 API for
 * browsers, Node ≥ 20 and workers.
 *
 * @example
 * import { ConvokeClient } from "@convoke/client"
 * const reply = new ConvokeClient({ baseUrl: "http://127.0.0.1:3000" }).chat({ message: "Hello" })
 * console.log(await reply.conversationId)
 * for await (const delta of reply) console.log(delta)
 */
export * as ChatEvent from "./ChatEvent.ts"
export { type ChatMetadata, ChatReply, type ChatReplyState } from "./ChatReply.ts"
export * as ConversationStorage from "./ConversationStorage.ts"
export {
  type Conversation,
  type ConversationMessage,
  type ConversationPage,
  type ConversationSummary,
  Conversations,
  type ListOptions,
  type RunningTurn
} from "./Conversations.ts"
export {
  CHAT_PATH,
  type ChatOptions,
  type ClientOptions,
  ConvokeClient,
  type ResumeOptions,
  type ResumeTurnOptions,
  type RetryOptions
} from "./ConvokeClient.ts"
export {
  ConvokeAbortError,
  ConvokeError,
  ConvokeHttpError,
  ConvokeNetworkError,
  ConvokeProtocolError,
  ConvokeStreamError,
  type ErrorBody
} from "./ConvokeError.ts"
export { VERSION } from "./version.ts"
