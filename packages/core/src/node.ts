/**
 * Node.js bindings of the Convoke handler (`@convoke/core/node`), and the
 * services that need Node's file system (the outbox journal).
 *
 * @since 0.1.0
 */
export * as NodeHandler from "./NodeHandler.ts"
export * as NodeSocket from "./NodeSocket.ts"
export * as OutboxJournal from "./OutboxJournal.ts"
