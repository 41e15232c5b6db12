/**
 * An embedded PostgreSQL database: PGlite, in process, served on a loopback
 * port by `@electric-sql/pglite-socket`, and reached through `@effect/sql-pg`
 * over the real wire protocol. The store therefore runs the same SQL and the
 * same migrations as against a PostgreSQL server.
 *
 * The socket server accepts a single connection, so the client pool holds
 * exactly one; concurrent queries wait their turn on it.
 *
 * @since 0.1.0
 */
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { isSea } from "node:sea"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import type { ChatError } from "@convoke/core"
import { ConversationStore } from "@convoke/core"
import { PgClient } from "@effect/sql-pg"
import type { PGlite } from "@electric-sql/pglite"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as SqlClient from "effect/sql/SqlClient"

/** Where the embedded database lives when no `dataDir` is given. */
export const defaultDataDir = "./.convoke/data"

/** Options of the embedded database. */
export interface Options {
  /**
   * The directory of the database files, created if missing (default
   * `./.convoke/data`). `memory://` keeps the database in memory only.
   */
  readonly dataDir?: string | undefined
}

/** A running embedded database. */
export interface Server {
  /** The loopback address it listens on. */
  readonly host: string
  /** The port it listens on, chosen by the operating system. */
  readonly port: number
  /** The directory of its files, or `memory://`. */
  readonly dataDir: string
}

const HOST = "127.0.0.1"

const isMemory = (dataDir: string): boolean => dataDir.startsWith("memory://")

/**
 * PostgreSQL's shared buffer cache inside PGlite. PostgreSQL's default
 * (128 MB) lives in PGlite's WebAssembly memory, which never shrinks; 16 MB
 * keeps a small database's pages cached and lets a larger one read through
 * the operating system's file cache instead, a little slower.
 */
export const SHARED_BUFFERS = "16MB"

/** PGlite's default start parameters (see its `defaultStartParams`) plus the memory settings above. */
const startParams = (defaults: ReadonlyArray<string>): Array<string> => [
  ...defaults,
  "-c",
  `shared_buffers=${SHARED_BUFFERS}`
]

/** Whether the process was started with its own WebAssembly flags: then they are left alone. */
const wasmFlagsGiven = (): boolean =>
  [...process.execArgv, process.env.NODE_OPTIONS ?? ""].some((argument) => argument.includes("wasm"))

/** V8's flags for the baseline WebAssembly compiler only (see `withBaselineWasm`). */
const BASELINE_WASM_FLAGS = ["--no-wasm-dynamic-tiering", "--no-wasm-tier-up"]

/**
 * Compiles PGlite's WebAssembly with V8's baseline compiler only (Liftoff),
 * then restores V8's defaults for any module compiled later. With the
 * default tiering V8 recompiles PostgreSQL's hot functions with its
 * optimising compiler in the background, which held 300-400 MB more resident
 * memory after a few thousand queries and took CPU from the requests on a
 * small machine; Liftoff's code runs CPU-heavy queries slower, which the
 * small queries of a chat store do not notice.
 */
const withBaselineWasm = async <A>(compile: () => Promise<A>): Promise<A> => {
  if (wasmFlagsGiven()) return compile()
  for (const flag of BASELINE_WASM_FLAGS) setFlagsFromString(flag)
  try {
    return await compile()
  } finally {
    setFlagsFromString("--wasm-dynamic-tiering")
    setFlagsFromString("--wasm-tier-up")
  }
}

/**
 * Collects the garbage PGlite leaves when it creates a new database in this
 * process (in memory, or where no child can run: `canCreateInChild`): its
 * initdb runs in a WebAssembly instance of its own, some 350 MB that V8 would
 * free only at its next full collection, which an idle or lightly loaded
 * server may not reach for a long time. A first start would stay at twice
 * its size. Measured: a collection once PGlite's start has settled does not
 * free the instance yet, a second one a turn later does.
 *
 * The `gc` function comes from a context created while `--expose-gc` is set,
 * and the flag is unset at once: nothing else sees it.
 */
const collectGarbage = async (): Promise<void> => {
  let gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    setFlagsFromString("--expose-gc")
    try {
      gc = runInNewContext("gc") as () => void
    } finally {
      setFlagsFromString("--no-expose-gc")
    }
  }
  for (let collection = 0; collection < 2; collection++) {
    await new Promise((resolve) => setImmediate(resolve))
    gc()
  }
}

/** Run by the child process of `createInChildProcess`, with its arguments as JSON. */
const CREATE_DATABASE = `
const [pglite, dataDir, startParams] = JSON.parse(process.argv[1])
const { PGlite } = await import(pglite)
const database = new PGlite(dataDir, { startParams })
await database.waitReady
await database.close()
`

/** How much of a failed child's standard error to keep for the error message. */
const STDERR_KEPT = 4096

/**
 * Creates a new database in `dataDir` in a child process, which exits once
 * the database is written. Run in the server's own process, PGlite's initdb
 * left about 120 MB of native heap resident for good: freed, but kept by the
 * C allocator, so a server's first start held some 100 MB more than any
 * restart. A first start takes no longer for it (3.0-3.6 s to listening on
 * a small machine, either way): the child's work replaces the in-process
 * creation.
 */
const createInChildProcess = (dataDir: string, params: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    const pglite = import.meta.resolve("@electric-sql/pglite")
    const child = spawn(
      process.execPath,
      [
        ...BASELINE_WASM_FLAGS,
        "--input-type=module",
        "--eval",
        CREATE_DATABASE,
        JSON.stringify([pglite, dataDir, params])
      ],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
    let stderr = ""
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_KEPT)
    })
    child.once("error", (error) =>
      reject(
        new Error(`Creating the embedded database in ${dataDir} failed: ${error.message}`, { cause: error })
      )
    )
    child.once("close", (code, signal) => {
      if (code === 0) return resolve()
      const exit = signal === null ? `exit code ${code}` : `signal ${signal}`
      reject(
        new Error(
          `Creating the embedded database in ${dataDir} failed (${exit}): ${stderr.trim() || "no output"}`
        )
      )
    })
  })

/**
 * Whether this process may run `process.execPath` as Node with a script of
 * its own. The binary of a single-executable application or of Electron runs
 * its own application instead, and the permission model (`node --permission`)
 * forbids child processes unless allowed: there the database is created in
 * process.
 */
const canCreateInChild = (): boolean =>
  !isSea() &&
  process.versions.electron === undefined &&
  (process.permission === undefined || process.permission.has("child"))

const openDatabase = (dataDir: string): Effect.Effect<PGlite, ChatError.StoreUnavailable, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        if (!isMemory(dataDir)) await mkdir(dataDir, { recursive: true })
        // Whether PGlite would create the database (an empty directory, or memory).
        const isNew = isMemory(dataDir) || !existsSync(join(dataDir, "PG_VERSION"))
        // Loaded here, not at the top: a server on PostgreSQL imports this package
        // but never starts PGlite, and should not hold its code in memory.
        const { PGlite } = await import("@electric-sql/pglite")
        const params = startParams(PGlite.defaultStartParams)
        // In a directory, where Node can run a child, it is created apart.
        const createdApart = isNew && !isMemory(dataDir) && canCreateInChild()
        if (createdApart) await createInChildProcess(dataDir, params)
        return withBaselineWasm(async () => {
          const database = new PGlite(dataDir, { startParams: params })
          try {
            await database.waitReady
          } catch (error) {
            await database.close().catch(() => undefined)
            throw error
          }
          // Once PGlite's start has settled: until then its initdb instance is still referenced.
          if (isNew && !createdApart) await collectGarbage()
          return database
        })
      },
      catch: ConversationStore.unavailable
    }),
    (database) => Effect.ignore(Effect.tryPromise(() => database.close()))
  )

const listen = (
  database: PGlite
): Effect.Effect<{ readonly host: string; readonly port: number }, ChatError.StoreUnavailable, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const { PGLiteSocketServer } = await import("@electric-sql/pglite-socket")
        const server = new PGLiteSocketServer({ db: database, host: HOST, port: 0 })
        await server.start()
        return server
      },
      catch: ConversationStore.unavailable
    }),
    (server) => Effect.ignore(Effect.tryPromise(() => server.stop()))
  ).pipe(
    Effect.map((server) => {
      const address = server.getServerConn()
      return { host: HOST, port: Number(address.slice(address.lastIndexOf(":") + 1)) }
    })
  )

/**
 * Starts PGlite and its socket server; both stop when the scope closes. Use it
 * to point another PostgreSQL client (or `psql`) at the embedded database.
 */
export const start = (
  options: Options = {}
): Effect.Effect<Server, ChatError.StoreUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = options.dataDir ?? defaultDataDir
    const database = yield* openDatabase(dataDir)
    const { host, port } = yield* listen(database)
    return { host, port, dataDir }
  })

/** The client's connections: PGlite serves one, and its socket server admits one. */
export const CONNECTIONS = 1

/**
 * A `PgClient` / `SqlClient` on a freshly started embedded database, with the
 * single connection the socket server allows. Closing the layer closes the
 * client, then the socket server, then PGlite.
 */
export const layer = (
  options: Options = {}
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, ChatError.StoreUnavailable> =>
  PgClient.layerFrom(
    Effect.gen(function* () {
      const server = yield* start(options)
      return yield* PgClient.make({
        host: server.host,
        port: server.port,
        username: "postgres",
        database: "postgres",
        applicationName: "convoke",
        maxConnections: CONNECTIONS,
        // Reconnecting could race the server releasing its only slot: keep the connection.
        idleTimeout: Duration.infinity
      }).pipe(Effect.mapError(ConversationStore.unavailable))
    })
  )
