/**
 * `@convoke/conformance`: the v0.3 wire contract as one vitest suite that
 * every Convoke binding runs (private to the workspace).
 *
 * @since 0.1.0
 */
export * as Conformance from "./Conformance.ts"
export { describeConformance } from "./Conformance.ts"
export * as ConformanceModel from "./ConformanceModel.ts"
export * as FaultyServer from "./FaultyServer.ts"
export * as SocketClient from "./SocketClient.ts"
export * as Sse from "./Sse.ts"
export * as StoreProbe from "./StoreProbe.ts"
export * as TurnObserver from "./TurnObserver.ts"
