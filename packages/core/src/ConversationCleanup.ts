/**
 * Removes abandoned conversations — created, but never answered with any
 * reply text — once they are old enough, and measures how many there are.
 *
 * Pre-creating conversations (so the id can be the first event) means some
 * are never used: the client went away before the first token. The job
 * deletes them in small batches, each its own short statement that skips
 * rows other writers hold, so the chat path never waits on it. Every deletion
 * is audited with the cause `cleanup`.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { AuditLog } from "./AuditLog.ts"
import { ConversationStore } from "./ConversationStore.ts"

/** Options of the cleanup job. */
export interface Options {
  /** How often the job runs (default every 10 minutes). */
  readonly interval?: Duration.Input | undefined
  /** How old an abandoned conversation must be before it goes (default 24 hours). */
  readonly abandonedAfter?: Duration.Input | undefined
  /** Conversations deleted per statement (default 500). */
  readonly batchSize?: number | undefined
  /** Most batches per run, so one run stays short (default 20). */
  readonly maxBatches?: number | undefined
  /** Window over which the abandonment ratio is computed (default 24 hours, ending at the age cut-off). */
  readonly ratioWindow?: Duration.Input | undefined
}

/** What one run did and saw. */
export interface Report {
  readonly deleted: number
  /** Conversations created in the window before the cut-off. */
  readonly created: number
  /** Of those, how many were abandoned (counted before deleting). */
  readonly abandoned: number
  /** `abandoned / created`, or 0 when nothing was created. */
  readonly abandonmentRatio: number
  readonly ranAt: Date
}

/** The cleanup job's operations. */
export interface Service {
  /** Runs once now. */
  readonly run: Effect.Effect<Report>
  /** The report of the latest run, if any. */
  readonly latest: () => Report | undefined
}

/** The cleanup job service. */
export class ConversationCleanup extends Context.Service<ConversationCleanup, Service>()(
  "@convoke/core/ConversationCleanup"
) {}

/** Builds the job without scheduling it. */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const store = yield* ConversationStore
  const audit = yield* AuditLog
  const abandonedAfter = Duration.toMillis(
    Duration.fromInputUnsafe(options.abandonedAfter ?? Duration.hours(24))
  )
  const ratioWindow = Duration.toMillis(Duration.fromInputUnsafe(options.ratioWindow ?? Duration.hours(24)))
  const batchSize = options.batchSize ?? 500
  const maxBatches = options.maxBatches ?? 20
  let latest: Report | undefined

  const run = Effect.gen(function* () {
    const nowMillis = yield* Clock.currentTimeMillis
    const cutoff = new Date(nowMillis - abandonedAfter)
    const { created, abandoned } = yield* store.abandonment({
      createdFrom: new Date(cutoff.getTime() - ratioWindow),
      createdBefore: cutoff
    })
    let deleted = 0
    for (let batch = 0; batch < maxBatches; batch++) {
      const removed = yield* store.deleteAbandoned({ createdBefore: cutoff, limit: batchSize })
      deleted += removed.length
      if (removed.length > 0) {
        const at = new Date(yield* Clock.currentTimeMillis)
        yield* audit.record(
          removed.map(({ id, userId }) => ({
            action: "conversation.deleted" as const,
            cause: "cleanup" as const,
            userId,
            conversationId: id,
            at
          }))
        )
      }
      if (removed.length < batchSize) break
    }
    const report: Report = {
      deleted,
      created,
      abandoned,
      abandonmentRatio: created === 0 ? 0 : abandoned / created,
      ranAt: new Date(nowMillis)
    }
    latest = report
    yield* Effect.logInfo("Abandoned conversations cleaned up").pipe(
      Effect.annotateLogs({ deleted, created, abandoned, abandonmentRatio: report.abandonmentRatio })
    )
    return report
  }).pipe(
    Effect.catch((error) =>
      Effect.logWarning("Cleanup of abandoned conversations failed; it runs again later", error).pipe(
        Effect.as<Report>({ deleted: 0, created: 0, abandoned: 0, abandonmentRatio: 0, ranAt: new Date(0) })
      )
    )
  )

  return ConversationCleanup.of({ run, latest: () => latest })
})

/** The job as a layer, running every `interval` for the layer's lifetime (first run after one interval). */
export const layer = (options: Options = {}): Layer.Layer<ConversationCleanup, never, ConversationStore> =>
  Layer.effect(
    ConversationCleanup,
    Effect.gen(function* () {
      const job = yield* make(options)
      const interval = Duration.fromInputUnsafe(options.interval ?? Duration.minutes(10))
      yield* Effect.forkScoped(
        Effect.andThen(Effect.sleep(interval), Effect.repeat(job.run, Schedule.spaced(interval)))
      )
      return job
    })
  )
