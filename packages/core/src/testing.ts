/**
 * Test support for Convoke and the code built on it (`@convoke/core/testing`):
 * a recording model, store and observer of chat turns that signal what
 * happened instead of making tests wait for time to pass, an SSE reader that
 * splits frames the way clients do, and the rule for tests that need a real
 * service.
 *
 * @since 0.2.0
 */

export * as CutProxy from "./testing/CutProxy.ts"
export {
  deleteKeys,
  isRedisReachable,
  keysMatching,
  REDIS_URL,
  silentRedis
} from "./testing/RequiredRedis.ts"
export {
  isCi,
  type Options as RequiredServiceOptions,
  type RegisterTest,
  requireService
} from "./testing/RequiredService.ts"
export * as SocketClient from "./testing/SocketClient.ts"
export * as Sse from "./testing/Sse.ts"
export * as TestModel from "./testing/TestModel.ts"
export * as TestObserver from "./testing/TestObserver.ts"
export * as TestStore from "./testing/TestStore.ts"
