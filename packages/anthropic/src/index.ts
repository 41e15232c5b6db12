/**
 * Claude as the language model of Convoke, on the official `@anthropic-ai/sdk`.
 *
 * @since 0.1.0
 */
export * as AnthropicError from "./AnthropicError.ts"
export * as AnthropicHistory from "./AnthropicHistory.ts"
export * as AnthropicLanguageModel from "./AnthropicLanguageModel.ts"
export * as AnthropicModels from "./AnthropicModels.ts"
