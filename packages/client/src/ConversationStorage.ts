/**
 * Where a client remembers the current conversation id per key, so a page
 * reload or an app restart continues the same conversation. Pass one to
 * `new ConvokeClient({ storage })`; `memory()` lasts as long as the client,
 * `localStorage()` survives reloads in browsers. Any object with `get`, `set`
 * and `delete` (sync or async) works, e.g. one over IndexedDB or a file.
 */

/** A key → conversation id store; methods may return promises. */
export interface ConversationStorage {
  readonly get: (key: string) => string | null | undefined | Promise<string | null | undefined>
  readonly set: (key: string, conversationId: string) => void | Promise<void>
  readonly delete: (key: string) => void | Promise<void>
}

/** Keeps ids in a `Map`: per client instance, gone when the process or page ends. */
export const memory = (): ConversationStorage => {
  const ids = new Map<string, string>()
  return {
    get: (key) => ids.get(key),
    set: (key, conversationId) => {
      ids.set(key, conversationId)
    },
    delete: (key) => {
      ids.delete(key)
    }
  }
}

/** The part of the Web Storage API this module uses. */
export interface WebStorage {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

/** Options of `localStorage`. */
export interface LocalStorageOptions {
  /** Prefix of the keys written (default `"convoke:conversation:"`). */
  readonly prefix?: string
  /** The storage to use (default `globalThis.localStorage`; `sessionStorage` works too). */
  readonly storage?: WebStorage
}

/**
 * Keeps ids in the browser's `localStorage` under `prefix + key`. The storage
 * is looked up on first use, so creating this in a worker or in Node is safe;
 * using it there without a `storage` option throws a clear error.
 */
export const localStorage = (options: LocalStorageOptions = {}): ConversationStorage => {
  const prefix = options.prefix ?? "convoke:conversation:"
  const storage = (): WebStorage => {
    const found = options.storage ?? (globalThis as { localStorage?: WebStorage }).localStorage
    if (found === undefined) {
      throw new Error(
        "localStorage is not available here; pass { storage } or use ConversationStorage.memory()"
      )
    }
    return found
  }
  return {
    get: (key) => storage().getItem(prefix + key),
    set: (key, conversationId) => storage().setItem(prefix + key, conversationId),
    delete: (key) => storage().removeItem(prefix + key)
  }
}
