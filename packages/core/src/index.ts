/**
 * Convoke core: the v0.3 streaming chat contract, the metadata-first stream,
 * and the services it is composed of.
 *
 * @since 0.1.0
 */
export * as AuditLog from "./AuditLog.ts"
export * as ChatConfig from "./ChatConfig.ts"
export * as ChatError from "./ChatError.ts"
export * as ChatEvent from "./ChatEvent.ts"
export * as ChatExtension from "./ChatExtension.ts"
export * as ChatHooks from "./ChatHooks.ts"
export * as ChatHttp from "./ChatHttp.ts"
export * as ChatLog from "./ChatLog.ts"
export * as ChatMetrics from "./ChatMetrics.ts"
export * as ChatRateLimit from "./ChatRateLimit.ts"
export * as ChatRequest from "./ChatRequest.ts"
export * as ChatService from "./ChatService.ts"
export * as ClientAddress from "./ClientAddress.ts"
export * as ClientKind from "./ClientKind.ts"
export * as ConversationCleanup from "./ConversationCleanup.ts"
export * as ConversationHttp from "./ConversationHttp.ts"
export * as ConversationOutbox from "./ConversationOutbox.ts"
export * as ConversationResolver from "./ConversationResolver.ts"
export * as ConversationStatistics from "./ConversationStatistics.ts"
export * as ConversationStore from "./ConversationStore.ts"
export * as Deadline from "./Deadline.ts"
export * as EchoLanguageModel from "./EchoLanguageModel.ts"
export * as HttpError from "./HttpError.ts"
export * as HttpSecurity from "./HttpSecurity.ts"
export * as Identity from "./Identity.ts"
export * as IdGenerator from "./IdGenerator.ts"
export * as LanguageModel from "./LanguageModel.ts"
export * as RequestBody from "./RequestBody.ts"
