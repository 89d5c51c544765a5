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

-- (these three here, not in the scripts that use them: a function defined inside a script's
-- body is a new closure on every call, and a script pays for every allocation)
local function add_field(fields, name, value)
  fields[#fields + 1], fields[#fields + 2] = name, value
end

-- one task of a dequeue reply (dequeue.lua); f: HMGET of type, payload, priority, max_retry,
-- timeout, attempts, meta, v (in this order, then whatever the caller needs)
local function add_entry(out, id, f, attempts, reserved, token)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, f[1], f[2], f[3], f[4]
  out[n + 6], out[n + 7], out[n + 8], out[n + 9] = f[5], attempts, f[7] or '', f[8] or '1'
  out[n + 10], out[n + 11] = reserved, token
end

-- The next number of a queue's sequence in a batch (enqueue.lua): the first task that needs one
-- reserves numbers for itself and every task after it (args from 'at' on, 'width' each), one
-- INCRBY.
local function next_number(key, last, nargs, at, width)
  if last == nil then
    local left = math.floor((nargs - at + 1) / width)
    last = redis.call('INCRBY', key, left) - left
  end
  return last + 1
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

-- Hand-off records (enqueue.lua pushes them, take.lua starts them; a worker's inbox and taken
-- lists): ``received`` maps each id the worker has received to its token (the pairs of a take's
-- confirmations, args[from..]); a record's id and token when the worker has not received it,
-- nil for one it has, a wake-up ('') or anything unreadable.
local function received_from(args, from)
  local received = {}
  for i = from, #args, 2 do received[args[i]] = args[i + 1] end
  return received
end

local function unreceived_handoff(item, received)
  local ok, record = pcall(cjson.decode, item)
  local token = ok and type(record) == 'table' and record[11] or nil
  if type(token) ~= 'string' or received[record[1]] == token then return nil, nil end
  return record[1], token
end

-- One variadic command for a batch's index writes instead of one per task (each call from
-- Lua costs several µs beyond its command's own time); in chunks, as unpack is bounded by the
-- Lua stack. args: score, member pairs (ZADD) or members (ZREM).
local VARIADIC_CHUNK = 4000

local function variadic(command, key, args)
  for from = 1, #args, VARIADIC_CHUNK do
    redis.call(command, key, unpack(args, from, math.min(#args, from + VARIADIC_CHUNK - 1)))
  end
end

local function zadd_pairs(key, pairs_flat) variadic('ZADD', key, pairs_flat) end
local function zrem_all(key, members) variadic('ZREM', key, members) end

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
-- Implied 'active' entry (a hash with 'entered'): the start of the current attempt is not in
-- the list either (dequeue.lua, start.lua): readers build it from 'started' and 'worker' unless
-- the list holds an 'active' entry at that time. A script that moves a started task on (or
-- drops its 'worker') first writes that entry down, so the list keeps its order.
local function settle_active(base, id)
  local f = redis.call('HMGET', task_key(base, id), 'entered', 'started', 'worker')
  local at = tonumber(f[2])
  if not f[1] or not at then return end
  for _, raw in ipairs(redis.call('LRANGE', history_key(base, id), 0, -1)) do
    local ok, e = pcall(cjson.decode, raw) -- a junk entry must not stop the move
    if ok and type(e) == 'table' and e[2] == 'active' and tonumber(e[1]) == at
      and (not f[3] or e[3] == f[3]) then return end
  end
  push_history(base, id, cjson.encode({at, 'active', f[3] or ''}))
end

local function settle_completed(base, id, f_state, f_entered, f_finished)
  settle_active(base, id)
  if f_state ~= 'completed' or not f_entered or not f_finished then return end
  -- unless the newest entry is a completion already (restore.lua writes its own)
  local newest = redis.call('LRANGE', history_key(base, id), 0, 0)[1] -- (ACLs grant LRANGE)
  if newest then
    local ok, entry = pcall(cjson.decode, newest) -- a junk entry must not stop the move
    if ok and type(entry) == 'table' and entry[2] == 'completed' then return end
  end
  push_history(base, id, cjson.encode({tonumber(f_finished), 'completed', ''}))
end

-- What may mean work (ARRIVAL_EVENTS) goes where workers listen; the rest (their own starts
-- and acks, mostly) only where observers do.
local function event_channel(channel, event)
  return ARRIVAL_EVENTS[event] and arrivals_channel(channel) or channel
end

local function publish(channel, event, ids, now, extra)
  if channel == '' or #ids == 0 then return end
  local msg = {v = 1, e = event, ids = ids, t = now}
  if extra then for k, v in pairs(extra) do msg[k] = v end end
  redis.call('PUBLISH', event_channel(channel, event), cjson.encode(msg))
end

-- Score in the pending set: strict priority, then FIFO by a per-queue sequence.
-- A priority as stored, made a valid score term: a hash written by a buggy client may hold
-- 'nan', 'inf' or text (a NaN score would fail ZADD after the task left its previous set).
local function priority_of(value)
  local prio = tonumber(value)
  if prio == nil or prio ~= prio or prio < 0 or prio > 100 then return 50 end
  return math.floor(prio)
end

-- Fair scheduling (engine/flow.py): start-time fair queueing inside the pending zset. On a
-- fair queue a task's low score part is its group's virtual tag instead of the sequence:
-- max(group's last tag, queue's clock) + FAIR_UNIT / weight; dequeue moves the clock to the
-- tag it leased (fair_leased). A big backlog's tags run far ahead, a newcomer's first task
-- lands at the clock: at the head within one round. Tasks without a group share group ''.
-- Returns nil when the queue is not fair. Tags stay integers far below 2^40 (the priority).
local FAIR_UNIT = 1024
local function fair_tag(base, seq_key, group)
  local fk = fair_key(base)
  local f = redis.call('HMGET', fk, 'on', 'clock', 't:' .. group, 'w:' .. group, 'w:*')
  if f[1] ~= '1' then return nil end
  -- first use: start at the sequence, behind the tasks queued before the queue turned fair
  local clock = tonumber(f[2]) or tonumber(redis.call('GET', seq_key)) or 0
  local w = tonumber(f[4]) or tonumber(f[5]) or 1
  if w < 1 then w = 1 end
  local tag = math.max(tonumber(f[3]) or 0, clock) + math.max(1, math.floor(FAIR_UNIT / w))
  redis.call('HSET', fk, 't:' .. group, fmt(tag), 'clock', fmt(clock))
  return tag
end

-- A task of a fair queue was leased at score: the clock moves up to its tag, and the group's
-- last tag goes when this was its last queued task (no entry for an emptied group).
local function fair_leased(base, group, score)
  local fk = fair_key(base)
  local tag = tonumber(score) % PRIORITY_SHIFT
  local f = redis.call('HMGET', fk, 'clock', 't:' .. (group or ''))
  if tag > (tonumber(f[1]) or 0) then redis.call('HSET', fk, 'clock', fmt(tag)) end
  if tonumber(f[2]) == tag then redis.call('HDEL', fk, 't:' .. (group or '')) end
end

-- Every re-entry into pending (retry, recovery, release, requeue, restore) takes a new place:
-- the queue's sequence, or on a fair queue its group's next tag (the back of its own line).
local function pending_score(base, seq_key, id)
  local f = redis.call('HMGET', task_key(base, id), 'priority', 'grp')
  local prio = priority_of(f[1])
  local tag = fair_tag(base, seq_key, f[2] or '')
  if tag then return fmt(prio * PRIORITY_SHIFT + tag) end
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
  history(base, id, now, 'dead', error) -- before the expiry: a list it creates gets the TTL
  expire_task(base, id, ttl_ms)
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

-- A held task (leased, out of the active index already) whose cancellation was requested ends
-- 'cancelled' when it is handed back (release.lua) or its lease runs out (dequeue.lua): its
-- holder cannot act on the request any more, and the next worker must not run it.
local function cancel_held(base, cancelled_key, outbox_key, id, now, note, retention)
  local tk = task_key(base, id)
  leave_group(base, id)
  redis.call('HSET', tk, 'state', 'cancelled', 'finished', now)
  redis.call('HDEL', tk, 'lease', 'cancel', 'reserved')
  redis.call('ZADD', cancelled_key, now, id)
  release_unique(base, id)
  notify_dependents(base, outbox_key, id, now)
  history(base, id, now, 'cancelled', note .. ' after a cancel was requested')
  expire_task(base, id, retention)
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
  settle_active(base, id) -- (before 'worker' goes)
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
  history(base, id, now, 'expired', reason)
  expire_task(base, id, ttl_ms)
end

-- Start one reserved delivery (prefetched, or handed off by enqueue.lua): only now is it
-- charged an attempt. Used by start.lua and take.lua. Returns the attempt it runs as and what
-- happened: 'started'; 'again' (this delivery already started: an earlier copy of the call ran,
-- its reply was lost; same attempt); 'expired' (its 'exp' deadline passed while it was held:
-- it ends expired, attempt 0); 'refused' (attempt 0: the token is not the task's current
-- delivery, or the task is still reserved but its lease ran out; the next dequeue recovers it
-- uncharged. Charged now, it would be recovered as "worker died during attempt n", dead with
-- max_retry 0, never run).
local function start_reserved(base, active_key, outbox_key, id, token, now, retention)
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'exp', 'lease',
    'entered')
  if f[1] ~= 'active' or token_of(f[4], f[5]) ~= token then return 0, 'refused' end
  local lease = tonumber(f[7])
  if f[3] ~= '1' then return tonumber(f[2]) or 0, 'again' end
  if past_deadline(f[6], now) then
    redis.call('ZREM', active_key, id)
    to_expired(base, outbox_key, id, now, 'reserved by ' .. f[4], retention)
    return 0, 'expired'
  end
  if lease ~= nil and lease <= now then return 0, 'refused' end
  local attempt = (tonumber(f[2]) or 0) + 1
  -- 'reserved' '0' rather than HDEL: one command; every reader tests for '1'
  redis.call('HSET', tk, 'attempts', attempt, 'started', now, 'reserved', '0')
  -- implied by 'started' and 'worker' for a hash with 'entered' (settle_active)
  if not f[8] then history(base, id, now, 'active', f[4]) end
  return attempt, 'started'
end

-- Rate limit of a queue (engine/flow.py; the hash QueueKeys.rate_limit): 'rate' tokens per
-- 'period' ms, at most 'burst' at once, as GCRA on the Redis clock: the bucket is one number,
-- 'tat' (the theoretical arrival time, ms), so every worker on every host draws from it in the
-- script that leases. 'until' (ms): a handler's RateLimited paused it for everyone till then.
-- Returns nil when the queue has no limit, else how many tokens may go now (at most want) and,
-- when none may, the ms until the next one.
local function rate_allowance(key, now, want)
  local f = redis.call('HMGET', key, 'rate', 'period', 'burst', 'tat', 'until')
  local hold = tonumber(f[5]) or 0
  if hold > now then return 0, hold - now end
  local rate, period = tonumber(f[1]), tonumber(f[2])
  if not rate or not period or rate <= 0 or period <= 0 then return nil, 0 end
  local interval = period / rate
  local burst = math.max(1, tonumber(f[3]) or 1)
  local tat = math.max(tonumber(f[4]) or now, now)
  -- (the small term absorbs the rounding of intervals such as 1000/3)
  local free = math.floor((now + burst * interval - tat) / interval + 1e-9)
  if free >= 1 then return math.min(free, want), 0 end
  return 0, math.max(1, math.ceil(tat + interval - burst * interval - now))
end

-- Take n tokens from the bucket rate_allowance allowed them from.
local function rate_charge(key, now, n)
  if n <= 0 then return end
  local f = redis.call('HMGET', key, 'rate', 'period', 'tat')
  local interval = tonumber(f[2]) / tonumber(f[1])
  local tat = math.max(tonumber(f[3]) or now, now)
  redis.call('HSET', key, 'tat', string.format('%.3f', tat + n * interval))
end

-- Concurrency groups (engine/flow.py): a task's 'grp' names its group; cgroup_key(base, group)
-- holds the ids of the group's tasks holding a lease, scored by the lease's expiry, so a dead
-- worker's slots return as its leases lapse, without any recovery step. The limits are the
-- queue's hash QueueKeys.cgroup_limits (group -> K; '*': any group without its own entry).
local GROUP_SCAN = 200

local function cgroup_hold(base, group, id, lease, lease_ms)
  local gk = cgroup_key(base, group)
  redis.call('ZADD', gk, lease, id)
  redis.call('PEXPIRE', gk, lease_ms) -- an entry a script left behind goes with its lease
end

local function cgroup_free(base, group, id)
  if group then redis.call('ZREM', cgroup_key(base, group), id) end
end

-- The pending tasks that may start now, in pending order, at most n: one whose group already
-- holds its limit of live leases (caps_key: the group limits) or whose task type's own rate
-- limit has no token (types_key: the types with one, each a bucket as rate_allowance reads it)
-- stays pending. At most n + GROUP_SCAN entries are looked at, so a long run of blocked tasks
-- at the head of the queue holds back the tasks behind them. The picked tasks' types are
-- charged their tokens. Returns the picked {id, score, ...} (taken out of pending), how many
-- were skipped, and the ms until the next token of a type that held tasks back (or nil).
local function pick_eligible(base, pending_key, caps_key, types_key, n, now)
  local window = redis.call('ZRANGE', pending_key, 0, n + GROUP_SCAN - 1, 'WITHSCORES')
  local default = caps_key and tonumber(redis.call('HGET', caps_key, '*'))
  local picked, skipped, held, tokens, used, wait = {}, 0, {}, {}, {}, nil
  for j = 1, #window, 2 do
    if #picked >= 2 * n then break end
    local id = window[j]
    local f = redis.call('HMGET', task_key(base, id), 'grp', 'type')
    local group, ttype = f[1], f[2]
    local cap = group and caps_key and (tonumber(redis.call('HGET', caps_key, group)) or default)
    local ok = true
    if cap then
      local gk = cgroup_key(base, group)
      if held[group] == nil then held[group] = redis.call('ZCOUNT', gk, '(' .. now, '+inf') end
      -- a pending task holds no lease: an entry of its own is a leftover of a lease that ran
      -- out (recovered before its score passed), and must not hold its group back
      local own = tonumber(redis.call('ZSCORE', gk, id))
      if own then
        redis.call('ZREM', gk, id)
        if own > now then held[group] = held[group] - 1 end
      end
      ok = held[group] < cap
    end
    if ok and ttype and types_key then
      if tokens[ttype] == nil then
        local allowed, next_ms = nil, 0
        if redis.call('HEXISTS', types_key, ttype) == 1 then
          allowed, next_ms = rate_allowance(type_rate_key(base, ttype), now, n)
        end
        tokens[ttype] = allowed or -1 -- -1: no limit of its own
        if allowed == 0 and next_ms > 0 and (wait == nil or next_ms < wait) then wait = next_ms end
      end
      ok = tokens[ttype] ~= 0
    end
    if ok then
      if cap then held[group] = held[group] + 1 end
      if ttype and tokens[ttype] and tokens[ttype] > 0 then
        tokens[ttype] = tokens[ttype] - 1
        used[ttype] = (used[ttype] or 0) + 1
      end
      picked[#picked + 1], picked[#picked + 2] = id, window[j + 1]
      redis.call('ZREM', pending_key, id)
    else
      skipped = skipped + 1
    end
  end
  for ttype, count in pairs(used) do rate_charge(type_rate_key(base, ttype), now, count) end
  return picked, skipped, wait
end

-- Batching (engine/batching.py): a queue with the hash QueueKeys.batches (task type ->
-- '<max_size>:<max_delay ms>') hands out its tasks in batches: the pending tasks of one type
-- and one group ('grp', none is a group too) go together, up to max_size, once max_size of
-- them wait or the oldest of them has waited max_delay (from its 'due' time: its enqueue, or
-- the time it was scheduled for) on the Redis clock. A type without an entry goes alone at
-- once. At most BATCH_SCAN pending entries are looked at (the head of the queue).
-- Returns the picked {id, score, ...} (taken out of pending), or {} and the ms until the
-- oldest waiting batch is due (nil when nothing waits).
local BATCH_SCAN = 2000

local function batch_pick(base, pending_key, batches_key, now)
  local window = redis.call('ZRANGE', pending_key, 0, BATCH_SCAN - 1, 'WITHSCORES')
  local specs, order, members, wait = {}, {}, {}, nil
  for j = 1, #window, 2 do
    local id = window[j]
    local f = redis.call('HMGET', task_key(base, id), 'type', 'grp', 'due')
    local ttype = f[1] or ''
    if specs[ttype] == nil then
      local raw = redis.call('HGET', batches_key, ttype)
      local size, delay = string.match(raw or '', '^(%d+):(%d+)$')
      specs[ttype] = raw and {tonumber(size) or 1, tonumber(delay) or 0} or {1, 0}
    end
    local spec = specs[ttype]
    local key = ttype .. '\n' .. (f[2] or '')
    local m = members[key]
    if m == nil then
      m = {due = (tonumber(f[3]) or now) + spec[2], size = spec[1]}
      members[key] = m
      order[#order + 1] = key
    end
    m[#m + 1], m[#m + 2] = id, window[j + 1]
    if #m >= m.size * 2 then break end -- a full batch: nothing further on can come first
  end
  for _, key in ipairs(order) do
    local m = members[key]
    if #m >= m.size * 2 or m.due <= now then
      for k = 1, #m, 2 do redis.call('ZREM', pending_key, m[k]) end
      return m, nil
    end
    local left = m.due - now
    if wait == nil or left < wait then wait = left end
  end
  return {}, wait
end
