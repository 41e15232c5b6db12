/**
 * Node.js bindings of the Convoke handler (`@convoke/core/node`).
 *
 * @since 0.1.0
 */
export * as NodeHandler from "./NodeHandler.ts"
