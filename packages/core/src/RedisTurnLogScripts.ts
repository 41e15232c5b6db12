/**
 * The Redis layout of `RedisTurnLog`: the Lua scripts that change a turn's
 * keys atomically (write a batch, renew leases, open, stop, read the current
 * turn, claim lapsed turns) and the decoding of what they return. The keys
 * are described in `RedisTurnLog`.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Redis from "effect/persistence/Redis"
import type * as TurnLog from "./TurnLog.ts"

// Every script starts with the key prefix (ARGV[1]) and these helpers.
const prelude = `
local prefix = ARGV[1]
local function key(turnId, suffix) return prefix .. turnId .. ":" .. suffix end
local function conversationKey(conversationId) return prefix .. "conversation:" .. conversationId end
local function now()
  local time = redis.call("TIME")
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- The conversation's pointer lives as long as its turn, while it still points at it.
local function expire(turnId, conversationId, ttl)
  redis.call("PEXPIRE", key(turnId, "events"), ttl)
  redis.call("PEXPIRE", key(turnId, "info"), ttl)
  local conversation = conversationKey(conversationId)
  if redis.call("GET", conversation) == turnId then redis.call("PEXPIRE", conversation, ttl) end
end
local function finish(turnId, conversationId, retention)
  redis.call("HSET", key(turnId, "info"), "state", "ended")
  redis.call("ZREM", prefix .. "leases", turnId)
  redis.call("DEL", key(turnId, "stop"))
  expire(turnId, conversationId, retention)
end
`

type Args = ReadonlyArray<string | number>

const script = <Result>(lua: string) =>
  Redis.script((args: Args) => args, { numberOfKeys: 0, lua: prelude + lua }).withReturnType<Result>()

// ARGV: prefix, lease, retention, maxEventsPerTurn, then for each turn: its
// id, its info JSON (until the info is written, "" after), its conversation
// id, whether it ended (1/0), its entry count, then each entry's seq and
// event JSON. Returns the turns that another instance claimed, whose log is
// closed, and the turns whose keys are missing, so the writer sends their
// info again.
export const writeScript = script<readonly [taken: ReadonlyArray<string>, missing: ReadonlyArray<string>]>(`
local lease, retention, maxLength = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local time = now()
local taken, missing = {}, {}
local i = 5
while i <= #ARGV do
  local turnId, turn, conversationId, ended, count =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == "1", tonumber(ARGV[i + 4])
  local info, events = key(turnId, "info"), key(turnId, "events")
  local state = redis.call("HGET", info, "state")
  if state == "ended" then
    taken[#taken + 1] = turnId
  elseif not state and turn == "" then
    -- Its keys expired while it ran (Redis was away for that long).
    missing[#missing + 1] = turnId
  else
    if not state then
      redis.call("HSET", info, "turn", turn, "conversation", conversationId, "state", "running", "last", 0)
      redis.call("SET", conversationKey(conversationId), turnId)
      redis.call("ZADD", prefix .. "leases", time + lease, turnId)
    end
    local last = tonumber(redis.call("HGET", info, "last"))
    for j = i + 5, i + 3 + 2 * count, 2 do
      -- A retried round can carry entries that the round whose reply was lost had already written.
      if tonumber(ARGV[j]) > last then
        redis.call("XADD", events, ARGV[j] .. "-0", "event", ARGV[j + 1])
        last = tonumber(ARGV[j])
      end
    end
    if count > 0 then
      redis.call("XTRIM", events, "MAXLEN", maxLength)
      redis.call("HSET", info, "last", last)
    end
    if ended then finish(turnId, conversationId, retention) else expire(turnId, conversationId, retention + lease) end
  end
  i = i + 5 + 2 * count
end
return { taken, missing }
`)

// ARGV: prefix, lease, retention, the number of local running turns, their
// ids, then a token and a turn id for each reader following from here.
// Renews the leases and the readers' presence. Returns the turns asked to
// stop, and the turns claimed by another instance.
export const heartbeatScript = script<readonly [ReadonlyArray<string>, ReadonlyArray<string>]>(`
local lease, retention, count = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local time = now()
local stops, taken = {}, {}
for i = 5, 4 + count do
  local turnId = ARGV[i]
  local state, conversationId = unpack(redis.call("HMGET", key(turnId, "info"), "state", "conversation"))
  if state == "ended" then
    taken[#taken + 1] = turnId
  elseif state then
    redis.call("ZADD", prefix .. "leases", time + lease, turnId)
    expire(turnId, conversationId, retention + lease)
    if redis.call("EXISTS", key(turnId, "stop")) == 1 then stops[#stops + 1] = turnId end
  end
end
for i = 5 + count, #ARGV, 2 do
  local readers = key(ARGV[i + 1], "readers")
  redis.call("ZADD", readers, time + lease, ARGV[i])
  redis.call("PEXPIRE", readers, lease)
end
return { stops, taken }
`)

// ARGV: prefix, turn id, reader token, presence. Registers the reader and
// returns the turn's state, or nil if the turn is gone.
export const openScript = script<"running" | "ended" | null>(`
local state = redis.call("HGET", key(ARGV[2], "info"), "state")
if not state then return false end
local readers = key(ARGV[2], "readers")
redis.call("ZADD", readers, now() + tonumber(ARGV[4]), ARGV[3])
redis.call("PEXPIRE", readers, ARGV[4])
return state
`)

// ARGV: prefix, turn id. Returns how many readers on other instances are present.
export const readersScript = script<number>(`
local readers = key(ARGV[2], "readers")
redis.call("ZREMRANGEBYSCORE", readers, "-inf", now())
return redis.call("ZCARD", readers)
`)

// ARGV: prefix, turn id, stop key ttl. Returns 1 if the turn was running.
export const stopScript = script<number>(`
if redis.call("HGET", key(ARGV[2], "info"), "state") ~= "running" then return 0 end
redis.call("SET", key(ARGV[2], "stop"), "1", "PX", ARGV[3])
redis.call("PUBLISH", prefix .. "stop", ARGV[2])
return 1
`)

export type StreamEntry = readonly [id: string, fields: ReadonlyArray<string>]

// XREAD answers with a map from stream to entries. RESP2 sends it as an array
// of pairs, but node-redis hands it over as a plain object, and other clients
// may use a Map. Only one stream is read here.
export type StreamsReply =
  | ReadonlyArray<readonly [string, ReadonlyArray<StreamEntry>]>
  | ReadonlyMap<string, ReadonlyArray<StreamEntry>>
  | Readonly<Record<string, ReadonlyArray<StreamEntry>>>

export const onlyStream = (reply: StreamsReply): ReadonlyArray<StreamEntry> =>
  (Array.isArray(reply)
    ? reply[0]?.[1]
    : reply instanceof Map
      ? reply.values().next().value
      : Object.values(reply)[0]) ?? []

// ARGV: prefix, conversation id. Returns the current turn's info JSON, state and entries, or nil.
export const currentScript = script<readonly [string, string, ReadonlyArray<StreamEntry>] | null>(`
local turnId = redis.call("GET", conversationKey(ARGV[2]))
if not turnId then return false end
local info = redis.call("HMGET", key(turnId, "info"), "turn", "state")
if not info[1] then return false end
return { info[1], info[2], redis.call("XRANGE", key(turnId, "events"), "-", "+") }
`)

// ARGV: prefix, retention, maxEventsPerTurn, the interrupted event's JSON,
// the done event's JSON, then the ids of the caller's own turns, which are
// alive whatever their lease says. Each lapsed lease is claimed by the one
// caller whose ZREM removes it. Returns the info JSON and the entries of each
// turn claimed.
export const claimScript = script<ReadonlyArray<readonly [string, ReadonlyArray<StreamEntry>]>>(`
local retention, maxLength = tonumber(ARGV[2]), ARGV[3]
local own = {}
for i = 6, #ARGV do own[ARGV[i]] = true end
local claimed = {}
for _, turnId in ipairs(redis.call("ZRANGEBYSCORE", prefix .. "leases", "-inf", now(), "LIMIT", 0, 100)) do
  if not own[turnId] and redis.call("ZREM", prefix .. "leases", turnId) == 1 then
    local info, events = key(turnId, "info"), key(turnId, "events")
    local turn, state, conversationId, last =
      unpack(redis.call("HMGET", info, "turn", "state", "conversation", "last"))
    if turn and state ~= "ended" then
      local tail = redis.call("XREVRANGE", events, "+", "-", "COUNT", 1)[1]
      if not tail or cjson.decode(tail[2][2]).type ~= "done" then
        last = tonumber(last)
        redis.call("XADD", events, (last + 1) .. "-0", "event", ARGV[4])
        redis.call("XADD", events, (last + 2) .. "-0", "event", ARGV[5])
        redis.call("XTRIM", events, "MAXLEN", maxLength)
        redis.call("HSET", info, "last", last + 2)
      end
      finish(turnId, conversationId, retention)
      claimed[#claimed + 1] = { turn, redis.call("XRANGE", events, "-", "+") }
    end
  end
end
return claimed
`)

// Parsing can fail only on data that this module did not write. Such data is treated like a Redis failure.
export const decodeEntries = (raw: ReadonlyArray<StreamEntry>) =>
  Effect.try({
    try: () =>
      raw.map(
        ([id, fields]): TurnLog.Entry => ({
          seq: Number.parseInt(id, 10),
          event: JSON.parse(fields[1]!) as TurnLog.TurnEvent
        })
      ),
    catch: (cause) => new Redis.RedisError({ cause })
  })

export const decodeTurn = (json: string) =>
  Effect.try({
    try: () => JSON.parse(json) as TurnLog.TurnInfo,
    catch: (cause) => new Redis.RedisError({ cause })
  })
