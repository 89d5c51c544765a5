-- Shared prelude: library-level locals shared by every function of rediq's function library
-- (engine/lua.py builds the library at load time; in eval mode it is prepended to each script).
--
-- Per-task keys are built from ARGV[1], the queue's key base ("<prefix>:{<queue>}:"), so they
-- always hash to the same Cluster slot as the queue's fixed keys passed in KEYS. Task ids are
-- only known inside the script (ZPOPMIN), so this cannot be avoided for batch dequeue. The
-- helpers that build them (task_key, history_key, deps_key, ... stat_key) come before this file,
-- generated from engine/keys.py: a script never spells a key name itself.

local HISTORY_MAX = 50
local PRIORITY_SHIFT = 1099511627776 -- 2^40: score = priority * 2^40 + sequence

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n)
  return string.format('%.0f', n)
end


-- CPU seconds of the server so far (os.clock: Valkey, Redis >= 7.2), or nil where the sandbox
-- has no os library (Redis 7.0). Bulk scripts report the CPU time they took (cpu_us_since), by
-- which the caller sizes its next chunk; CPU time, so a busy host does not shrink chunks.
local function cpu_seconds()
  local ok, clock = pcall(function() return os.clock end)
  if ok and clock then return clock() end
  return nil
end

-- Microseconds of server CPU since start (a cpu_seconds() value), or -1 when not measurable.
local function cpu_us_since(start)
  if not start then return -1 end
  return math.floor((cpu_seconds() - start) * 1000000)
end

-- Fencing: every delivery of a task (a lease by dequeue, reserved or starting now, or a
-- hand-off by enqueue) bumps the hash's 'dlv' counter in the same HSET that leases it. The
-- holder's token is '<worker id>#<dlv>'; a call naming any other token (an earlier delivery's
-- holder that stalled past its lease, a copy of a call after the task moved on) is refused.
local function token_of(worker, dlv)
  if not worker or not dlv then return nil end
  return worker .. '#' .. dlv
end

-- entry: an encoded history entry, JSON [time_ms, state, note]
local function push_history(base, id, entry)
  local hk = history_key(base, id)
  -- trim only when the push went past the cap: same list, one command fewer per entry
  if redis.call('LPUSH', hk, entry) > HISTORY_MAX then
    redis.call('LTRIM', hk, 0, HISTORY_MAX - 1)
  end
end

local function history(base, id, now, state, note)
  push_history(base, id, cjson.encode({now, state, note or ''}))
end

-- Implied history entries (a hash with the 'entered' field, written by enqueue.lua): the
-- 'enqueued' entry is not in the list (readers build it from 'enq' and 'entered', the state
-- the task entered), nor is a completion by ack.lua while the task stays completed (readers
-- build it from 'finished'). A script that moves a completed task on first writes that entry
-- down, before it overwrites 'finished'. f_state, f_entered, f_finished: the hash's fields.
local function settle_completed(base, id, f_state, f_entered, f_finished)
  if f_state ~= 'completed' or not f_entered or not f_finished then return end
  -- unless the newest entry is a completion already (restore.lua writes its own)
  local newest = redis.call('LRANGE', history_key(base, id), 0, 0)[1] -- (ACLs grant LRANGE)
  if newest then
    local ok, entry = pcall(cjson.decode, newest) -- a junk entry must not stop the move
    if ok and type(entry) == 'table' and entry[2] == 'completed' then return end
  end
  push_history(base, id, cjson.encode({tonumber(f_finished), 'completed', ''}))
end

local function publish(channel, event, ids, now, extra)
  if channel == '' or #ids == 0 then return end
  local msg = {v = 1, e = event, ids = ids, t = now}
  if extra then for k, v in pairs(extra) do msg[k] = v end end
  redis.call('PUBLISH', channel, cjson.encode(msg))
end

-- Score in the pending set: strict priority, then FIFO by a per-queue sequence.
-- A priority as stored, made a valid score term: a hash written by a buggy client may hold
-- 'nan', 'inf' or text (a NaN score would fail ZADD after the task left its previous set).
local function priority_of(value)
  local prio = tonumber(value)
  if prio == nil or prio ~= prio or prio < 0 or prio > 100 then return 50 end
  return math.floor(prio)
end

local function pending_score(base, seq_key, id)
  local prio = priority_of(redis.call('HGET', task_key(base, id), 'priority'))
  local seq = redis.call('INCR', seq_key)
  return fmt(prio * PRIORITY_SHIFT + seq)
end

-- Drop the unique lock if this task still holds it.
local function release_unique(base, id)
  local uk = redis.call('HGET', task_key(base, id), 'unique')
  if uk and uk ~= '' then
    local ukey = unique_key(base, uk)
    if redis.call('GET', ukey) == id then redis.call('DEL', ukey) end
  end
end

-- Take the unique lock again for a task coming back to life (requeue, restore): its lock was
-- released when it finished. Returns nil when the task holds it now, or the reason it cannot
-- (another live task holds the key). The TTL is the default unique TTL (the task's own is
-- not stored).
local UNIQUE_RETAKE_TTL_MS = 86400000
local LIVE = {pending = true, scheduled = true, waiting = true, active = true, retry = true}
local function retake_unique(base, id)
  local uk = redis.call('HGET', task_key(base, id), 'unique')
  if not uk or uk == '' then return nil end
  local ukey = unique_key(base, uk)
  local holder = redis.call('GET', ukey)
  if holder and holder ~= id then
    local hstate = redis.call('HGET', task_key(base, holder), 'state')
    if hstate and LIVE[hstate] then
      return 'unique key ' .. uk .. ' is held by live task ' .. holder .. ' (' .. hstate .. ')'
    end
  end
  redis.call('SET', ukey, id, 'PX', UNIQUE_RETAKE_TTL_MS)
  return nil
end

-- A finished task (completed/dead/cancelled) with dependents goes to the outbox; a worker
-- then tells each dependent (on its own slot) and removes the entry. Crash-safe: the outbox
-- entry stays until every dependent was told, and telling is idempotent.
local function notify_dependents(base, outbox_key, id, now)
  if redis.call('EXISTS', dependents_key(base, id)) == 1 then
    redis.call('ZADD', outbox_key, now, id)
    return true
  end
  return false
end

-- has_dependents / has_deps / has_log: false when the caller knows that key cannot exist
-- (skips a command on the hot path); nil when unknown. The log (ctx.log lines, tasklog.lua)
-- exists only for a task whose hash has the 'log' field.
local function expire_task(base, id, ttl_ms, has_dependents, has_deps, has_log)
  if ttl_ms > 0 then
    redis.call('PEXPIRE', task_key(base, id), ttl_ms)
    redis.call('PEXPIRE', history_key(base, id), ttl_ms)
    if has_log ~= false then redis.call('PEXPIRE', log_key(base, id), ttl_ms) end
    if has_dependents ~= false then redis.call('PEXPIRE', dependents_key(base, id), ttl_ms) end
  end
  if has_deps ~= false then redis.call('DEL', deps_key(base, id)) end
end

local function bump_stat(base, kind, now, n)
  local key = stat_key(base, kind, math.floor(now / 60000))
  -- the TTL is set once, by the call that made the counter (it then holds exactly n)
  if redis.call('INCRBY', key, n) == n then redis.call('EXPIRE', key, 90000) end
end

-- Move a task (already removed from its previous structure) to dead.
local function to_dead(base, dead_key, outbox_key, id, now, error, ttl_ms)
  local tk = task_key(base, id)
  redis.call('HSET', tk, 'state', 'dead', 'finished', now, 'error', error)
  redis.call('HDEL', tk, 'lease', 'cancel')
  redis.call('ZADD', dead_key, now, id)
  -- dead hashes expire by TTL; trim the index of them in the same breath (as ack does for
  -- completed), or the ids of long-expired dead tasks pile up forever
  if ttl_ms > 0 then
    redis.call('ZREMRANGEBYSCORE', dead_key, '-inf', now - ttl_ms)
    -- likewise the task's failure group: members that joined (failed) longer ago than the dead
    -- retention are dead tasks whose hashes are gone (a retrying member rejoins at each failure)
    local fp = redis.call('HGET', tk, 'fp')
    if fp and fp ~= '' then redis.call('ZREMRANGEBYSCORE', fingerprint_key(base, fp), '-inf', now - ttl_ms) end
  end
  release_unique(base, id)
  notify_dependents(base, outbox_key, id, now)
  expire_task(base, id, ttl_ms)
  history(base, id, now, 'dead', error)
end

-- Error fingerprint groups: unresolved failures (retrying or dead) grouped by task type plus
-- normalised error, kept up to date at fail time so the console never scans the dead set.
-- failures hash: fp -> JSON {type, sample, first, last, total}; members: fingerprint_key zset.
local function leave_group(base, id, fp)
  if fp == nil then fp = redis.call('HGET', task_key(base, id), 'fp') end
  if fp and fp ~= '' then
    redis.call('ZREM', fingerprint_key(base, fp), id)
    redis.call('HDEL', task_key(base, id), 'fp')
  end
end

local function join_group(base, failures_key, id, sample, ttype, now)
  local fp = string.sub(redis.sha1hex(ttype .. '\n' .. sample), 1, 16)
  leave_group(base, id)
  redis.call('HSET', task_key(base, id), 'fp', fp)
  redis.call('ZADD', fingerprint_key(base, fp), now, id)
  local raw = redis.call('HGET', failures_key, fp)
  local g
  if raw then g = cjson.decode(raw) else g = {type = ttype, sample = sample, first = now, total = 0} end
  g.last = now
  g.total = (g.total or 0) + 1
  redis.call('HSET', failures_key, fp, cjson.encode(g))
end

-- Expiry (Task.expires): a task not started by its deadline (hash field 'exp', ms) ends
-- 'expired' and never runs. Checked where a task would start (dequeue.lua, start.lua) and by
-- the sweep (expire.lua) for tasks nobody dequeues. Keys built from the queue's base, as
-- engine/keys.py builds them (QueueKeys.expired, QueueKeys.expiries).

local function past_deadline(exp, now)
  local deadline = tonumber(exp)
  return deadline ~= nil and deadline > 0 and deadline <= now
end

-- Move a task (already removed from its previous state set) to expired: its unique lock goes,
-- its dependents are told (as for a failed dependency), it is kept for ttl_ms.
local function to_expired(base, outbox_key, id, now, was, ttl_ms)
  local tk = task_key(base, id)
  local exp = tonumber(redis.call('HGET', tk, 'exp')) or now
  local reason = 'not started by its deadline (' .. fmt((now - exp) / 1000) ..
    ' s past it, while ' .. was .. ')'
  leave_group(base, id)
  redis.call('HSET', tk, 'state', 'expired', 'finished', now, 'reason', reason)
  redis.call('HDEL', tk, 'lease', 'reserved', 'cancel', 'worker')
  local set = expired_key(base)
  redis.call('ZADD', set, now, id)
  if ttl_ms > 0 then redis.call('ZREMRANGEBYSCORE', set, '-inf', now - ttl_ms) end
  redis.call('ZREM', expiries_key(base), id)
  release_unique(base, id)
  notify_dependents(base, outbox_key, id, now)
  expire_task(base, id, ttl_ms)
  history(base, id, now, 'expired', reason)
end
