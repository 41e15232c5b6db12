/**
 * The outbox's entries in an append-only file, `<directory>/journal`, so the
 * writes a process queued while the store was down survive its crash: at
 * the next start the journal is replayed and its entries are queued again,
 * in order. For one process; instances that share entries use `OutboxRedis`.
 *
 * Records. One line each: `<length> <crc32> <json>\n`, the JSON's byte
 * length and its CRC-32 in hex before it. `{"add":n,"entry":…}` queues
 * entry `n`; `{"done":n}` records that it was written (a tombstone), so a
 * replay skips it. A line whose length or checksum does not match — a write
 * torn by a crash, bytes damaged on disk — is skipped, counted and logged;
 * the lines after it are read as usual.
 *
 * Durability. `append` succeeds once its line is written and fdatasync'd.
 * Appends that arrive while a write is under way wait for the next one and
 * share its sync (group commit), so concurrent streams do not queue up one
 * sync each. Tombstones are written without a sync of their own: one lost in
 * a crash only makes an entry that was written be written again, which is
 * harmless since every write is idempotent.
 *
 * Compaction. Once nothing is live (the outbox drained) the file is
 * truncated; when drained records outnumber live ones and exceed
 * `compactAfter`, the live lines are written to a new file, synced and
 * renamed over the journal. A replay ends the same way, so new records never
 * follow a torn tail.
 *
 * A lock file (`<directory>/lock`, holding the process id) keeps a second
 * process, or a second outbox in this one, off the journal; a lock left by a
 * process that is gone is taken over.
 *
 * @since 0.3.0
 */
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readFile, rename, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Latch from "effect/Latch"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Entry } from "./ConversationOutbox.ts"
import {
  type Changes,
  decode,
  encode,
  isEntry,
  OutboxPersistence,
  OutboxPersistenceError,
  type Service,
  type Stored
} from "./OutboxPersistence.ts"

/** Options of `make` and `layer`. */
export interface Options {
  /** The journal's own directory (created if missing), e.g. `<data dir>/outbox`. */
  readonly directory: string
  /** Drained records kept before the file is rewritten without them (default 1,000). */
  readonly compactAfter?: number | undefined
}

/** What the replay at start found. */
export interface Replay {
  /** Entries still waiting, queued again. */
  readonly entries: number
  /** Records that could not be read, skipped. */
  readonly skipped: number
  /** Bytes of the records skipped. */
  readonly skippedBytes: number
}

/** A journal: the persistence, with what it found at start and how often it synced. */
export interface OutboxJournal extends Service {
  /** The journal file. */
  readonly path: string
  readonly replay: Replay
  /** fdatasyncs since it opened: with group commit, fewer than the appends that ran concurrently. */
  readonly syncs: () => number
}

const NEWLINE = 0x0a
const SPACE = 0x20

/** What a line holds: an entry queued, or a tombstone saying entry `done` was written. */
type JournalRecord = { readonly add: number; readonly entry: Entry } | { readonly done: number }

/** A record as one framed line. */
const frame = (record: JournalRecord) => {
  const json = Buffer.from(encode(record))
  const header = `${json.length} ${crc32(json).toString(16).padStart(8, "0")} `
  return Buffer.concat([Buffer.from(header, "latin1"), json, Buffer.of(NEWLINE)])
}

/** The record on a line (without its newline), or `undefined` when the line is damaged. */
const unframe = (line: Buffer): JournalRecord | undefined => {
  const lengthEnd = line.indexOf(SPACE)
  const checksumEnd = lengthEnd + 9
  if (lengthEnd <= 0 || line[checksumEnd] !== SPACE) return undefined
  const length = line.subarray(0, lengthEnd).toString("latin1")
  const checksum = line.subarray(lengthEnd + 1, checksumEnd).toString("latin1")
  const json = line.subarray(checksumEnd + 1)
  if (!/^\d+$/.test(length) || Number(length) !== json.length) return undefined
  if (!/^[0-9a-f]{8}$/.test(checksum) || Number.parseInt(checksum, 16) !== crc32(json)) return undefined
  const value = decode(json.toString("utf8")) as Partial<{ add: unknown; entry: unknown; done: unknown }>
  if (typeof value !== "object" || value === null) return undefined
  if (Number.isSafeInteger(value.add) && isEntry(value.entry)) return value as JournalRecord
  if (Number.isSafeInteger(value.done)) return value as JournalRecord
  return undefined
}

interface Parsed {
  /** Live entries by sequence, with their lines. */
  readonly live: Map<number, { readonly entry: Entry; readonly line: Buffer }>
  readonly skipped: number
  readonly skippedBytes: number
  /** Where the first damaged record starts. */
  readonly firstSkippedAt: number | undefined
  readonly lastSequence: number
}

/** Replays a journal's bytes. */
const parse = (data: Buffer): Parsed => {
  const live = new Map<number, { readonly entry: Entry; readonly line: Buffer }>()
  let skipped = 0
  let skippedBytes = 0
  let firstSkippedAt: number | undefined
  let lastSequence = 0
  let offset = 0
  while (offset < data.length) {
    const newline = data.indexOf(NEWLINE, offset)
    const end = newline === -1 ? data.length : newline
    // A line without its newline was cut short by a crash, whatever it looks like.
    const record = newline === -1 ? undefined : unframe(data.subarray(offset, end))
    // Blank lines separate new records from a write that failed half-way.
    if (end > offset) {
      if (record === undefined) {
        skipped++
        skippedBytes += end - offset
        firstSkippedAt ??= offset
      } else if ("add" in record) {
        live.set(record.add, { entry: record.entry, line: Buffer.from(data.subarray(offset, end + 1)) })
        lastSequence = Math.max(lastSequence, record.add)
      } else {
        live.delete(record.done)
        lastSequence = Math.max(lastSequence, record.done)
      }
    }
    offset = end + 1
  }
  return { live, skipped, skippedBytes, firstSkippedAt, lastSequence }
}

const failure = (message: string) => (cause: unknown) => new OutboxPersistenceError({ message, cause })

// Lock files this process holds: a second outbox here must not share a journal either.
const heldLocks = new Set<string>()

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const takeLock = async (path: string): Promise<void> => {
  if (heldLocks.has(path)) throw new Error(`${path} is held by another outbox of this process`)
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: "wx" })
      heldLocks.add(path)
      return
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    }
    const owner = Number((await readFile(path, "utf8").catch(() => "")).trim())
    // Our own pid in a lock we do not hold: left by an earlier life of this pid (a restarted container).
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new Error(`${path} is held by process ${owner}: another server uses this data directory`)
    }
    await unlink(path).catch(() => {})
  }
  throw new Error(`${path} could not be taken`)
}

const lock = (path: string) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => takeLock(path),
      catch: failure(`The outbox journal is locked (${path})`)
    }),
    () =>
      Effect.promise(async () => {
        heldLocks.delete(path)
        await unlink(path).catch(() => {})
      })
  )

/** Makes a rename or a new file in `directory` durable. */
const syncDirectory = async (directory: string) => {
  const handle = await open(directory, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Writes `lines` to a new file and renames it over `path`: the journal is then exactly `lines`. */
const rewrite = async (directory: string, path: string, lines: ReadonlyArray<Buffer>) => {
  const next = join(directory, "journal.compact")
  const handle = await open(next, "w")
  try {
    await writeAll(handle, Buffer.concat(lines))
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(next, path)
  await syncDirectory(directory)
}

const writeAll = async (handle: FileHandle, bytes: Buffer) => {
  let written = 0
  while (written < bytes.length) {
    written += (await handle.write(bytes, written, bytes.length - written)).bytesWritten
  }
}

/** A line waiting for the writer. */
interface Pending {
  readonly record: JournalRecord
  readonly line: Buffer
  readonly done: Deferred.Deferred<void, OutboxPersistenceError>
}

/**
 * Opens (or creates) the journal in `options.directory`, takes its lock and
 * replays it; the file is closed and the lock released with the scope.
 */
export const make = Effect.fnUntraced(function* (
  options: Options
): Effect.fn.Return<OutboxJournal, OutboxPersistenceError, Scope.Scope> {
  const { directory } = options
  const compactAfter = options.compactAfter ?? 1000
  const path = join(directory, "journal")
  yield* Effect.tryPromise({
    try: () => mkdir(directory, { recursive: true }),
    catch: failure(`Could not create the outbox journal's directory ${directory}`)
  })
  yield* lock(join(directory, "lock"))

  const parsed = yield* Effect.tryPromise({
    try: () =>
      readFile(path).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return Buffer.alloc(0)
        throw error
      }),
    catch: failure(`Could not read the outbox journal ${path}`)
  }).pipe(Effect.map(parse))
  // Lines of the live entries in the file: what a compaction keeps.
  const lines = new Map([...parsed.live].map(([sequence, { line }]) => [sequence, line]))
  // The replayed file is rewritten with its live lines only: no tombstones, no torn tail to append after.
  yield* Effect.tryPromise({
    try: () => rewrite(directory, path, [...lines.values()]),
    catch: failure(`Could not rewrite the outbox journal ${path}`)
  })
  if (parsed.skipped > 0) {
    yield* Effect.logWarning("The outbox journal had damaged records; they were skipped").pipe(
      Effect.annotateLogs({
        path,
        skipped: parsed.skipped,
        skippedBytes: parsed.skippedBytes,
        firstSkippedAt: parsed.firstSkippedAt
      })
    )
  }

  // Reopened by a compaction that renames a new file over the journal.
  let handle: FileHandle = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => open(path, "a"),
      catch: failure(`Could not open the outbox journal ${path}`)
    }),
    () => Effect.promise(() => handle.close())
  )
  let size = [...lines.values()].reduce((total, line) => total + line.length, 0)
  // Records in the file that no longer count: drained entries and their tombstones.
  let dead = 0
  // A write failed part-way: the next one starts on a new line, so the torn one stays alone.
  let torn = false
  let sequence = parsed.lastSequence
  let syncs = 0
  const pending: Array<Pending> = []
  const wake = Latch.makeUnsafe(false)

  const writeBatch = (batch: ReadonlyArray<Pending>) =>
    Effect.tryPromise({
      try: async () => {
        const bytes = Buffer.concat([
          ...(torn ? [Buffer.of(NEWLINE)] : []),
          ...batch.map((item) => item.line)
        ])
        try {
          await writeAll(handle, bytes)
          if (batch.some((item) => "add" in item.record)) {
            await handle.datasync()
            syncs++
          }
        } catch (error) {
          torn = true
          throw error
        }
        torn = false
        size += bytes.length
        for (const { record, line } of batch) {
          if ("add" in record) lines.set(record.add, line)
          else if (lines.delete(record.done)) dead += 2
        }
      },
      catch: failure(`Could not write to the outbox journal ${path}`)
    })

  const compact = Effect.tryPromise({
    try: async () => {
      if (lines.size === 0) {
        await handle.truncate(0)
        await handle.datasync()
        size = 0
      } else {
        const kept = [...lines.values()]
        await rewrite(directory, path, kept)
        await handle.close()
        handle = await open(path, "a")
        size = kept.reduce((total, line) => total + line.length, 0)
      }
      dead = 0
    },
    catch: failure(`Could not compact the outbox journal ${path}`)
  }).pipe(
    Effect.catch((error) =>
      Effect.logWarning("The outbox journal could not be compacted; it is tried again later", error)
    )
  )

  // One writer: each turn takes every line that arrived during the previous
  // write and syncs them once. A turn, once it has taken its lines, runs to
  // the end, so no caller is left waiting on a line that was taken.
  const turn = Effect.suspend(() => {
    const batch = pending.splice(0)
    if (batch.length === 0) return Effect.void
    return Effect.flatMap(Effect.exit(writeBatch(batch)), (exit) => {
      const due = lines.size === 0 ? size > 0 : dead >= compactAfter && dead >= lines.size
      // Compacted before the callers go on, so the tombstone that emptied the journal leaves it empty.
      return Effect.andThen(
        Exit.isSuccess(exit) && due ? compact : Effect.void,
        Effect.sync(() => {
          for (const item of batch) Deferred.doneUnsafe(item.done, exit)
        })
      )
    })
  }).pipe(Effect.uninterruptible)
  const writer = Effect.forever(
    Effect.andThen(
      wake.await,
      Effect.suspend(() => {
        wake.closeUnsafe()
        return turn
      })
    )
  )
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      const closed = Effect.fail(new OutboxPersistenceError({ message: "The outbox journal is closed" }))
      for (const item of pending.splice(0)) Deferred.doneUnsafe(item.done, closed)
    })
  )
  yield* Effect.forkScoped(writer)

  const submit = (record: JournalRecord) =>
    Effect.suspend(() => {
      const done = Deferred.makeUnsafe<void, OutboxPersistenceError>()
      pending.push({ record, line: frame(record), done })
      wake.openUnsafe()
      return Deferred.await(done)
    })

  let replayed: Changes | undefined = {
    added: [...parsed.live].map(([sequence, { entry }]): Stored => ({ sequence, entry })),
    doneBelow: 0,
    skipped: parsed.skipped
  }

  return {
    name: "journal",
    durable: true,
    pollInterval: undefined,
    path,
    replay: { entries: parsed.live.size, skipped: parsed.skipped, skippedBytes: parsed.skippedBytes },
    syncs: () => syncs,
    poll: Effect.sync(() => {
      const changes = replayed ?? { added: [], doneBelow: 0, skipped: 0 }
      replayed = undefined
      return changes
    }),
    append: (entry) =>
      Effect.suspend(() => {
        const added = ++sequence
        return Effect.as(submit({ add: added, entry }), added)
      }),
    next: (oldest) => Effect.succeed(oldest),
    complete: (done) => submit({ done }),
    release: Effect.void
  }
})

/**
 * The outbox's entries in a journal under `options.directory`. Fails to
 * build when the directory cannot be written or another process holds it.
 */
export const layer = (options: Options) => Layer.effect(OutboxPersistence, make(options))
