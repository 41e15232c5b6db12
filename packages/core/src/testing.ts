/**
 * Test support for Convoke and the code built on it (`@convoke/core/testing`):
 * a recording model and store that signal what happened instead of making
 * tests wait for time to pass, and an SSE reader that splits frames the way
 * clients do.
 *
 * @since 0.2.0
 */
export * as Sse from "./testing/Sse.ts"
export * as TestModel from "./testing/TestModel.ts"
export * as TestStore from "./testing/TestStore.ts"
