-- Promote due scheduled/retry tasks, recover expired leases, then lease up to N pending tasks.
-- KEYS: 1 pending, 2 active, 3 scheduled, 4 retry, 5 paused, 6 dead, 7 seq, 8 dep outbox,
--       9 failures (fingerprint groups), 10 idle (hand-off registrations), 11 this worker's
--       receipt (see below), 12 cancelled, 13 rate limit (optional; see rate_allowance in _lib.lua),
--       14 concurrency group limits, 15 task types with a rate limit of their own (both optional;
--       see pick_eligible in _lib.lua), 16 batch sizes and delays per task type (optional; see
--       batch_pick in _lib.lua)
-- ARGV: 1 base, 2 channel, 3 max tasks, 4 lease_ms, 5 worker id, 6 maintenance batch limit
--       (0: no maintenance this call, see below),
--       7 dead retention ms, 8 how many of them start now (default: all),
--       9 hand-off registration ms (0 or absent: none), 10 request id (absent: no receipt),
--       11 retention ms of cancelled (and expired) tasks, 12 slots the worker holds for a hand-off
--       (its inbox loop's BLMOVE, see take.lua: not among ARGV[8], yet free for a hand-off),
--       13 '1' for an idle worker's poll (quiet: nothing running, reserved or reported in its
--       round; see register_idle), then pairs: id, token of each hand-off record the worker has
--       received from take.lua (the confirmations its next take sends)
-- Each lease is a new delivery: it bumps the task's 'dlv' counter (see token_of in _lib.lua)
-- in the HSET that leases it, and the reply carries the delivery's token, which every later
-- call about the task (start, ack, fail, extend, release, progress) must name.
-- Hand-off: a worker that drained the queue with slots to spare registers in KEYS[10] (free
-- slots less the tasks already in its inbox, a deadline, its lease), and enqueue.lua hands new
-- tasks straight to its inbox, reserved, saving the wake-up and this round trip. Every dequeue
-- renews or withdraws the registration, so a dead worker's lapses within ARGV[9] ms.
-- Tasks beyond the ones starting now are *reserved* (prefetched): leased but not charged an
-- attempt until start.lua starts them, so a worker that dies never charges tasks it did not run.
-- Receipts: a request whose reply was lost (a socket timeout while the server was frozen, a
-- dropped connection) is sent again with the same request id, and the first copy may already
-- have run. A dequeue that leased tasks leaves a receipt (the request id and the ids, one per
-- worker and queue, for one lease); a copy that finds its own request id there returns those
-- tasks again instead of leasing more and leaving the first copy's held by nobody for a lease.
-- Lease recovery ends a task whose cancellation was requested 'cancelled' (its worker died or
-- hung before it could act on the request); others go back to pending (a reserved one
-- uncharged) or, their attempts spent, to dead.
-- Expiry: a task whose 'exp' deadline passed before an attempt starts (the first or a retry)
-- is moved to expired (see to_expired in _lib.lua) instead of being promoted or leased; a
-- running attempt is never stopped by it. A reserved task is checked by start.lua.
-- Rate limit: a limited queue leases no more tasks than its bucket has tokens, all of them
-- starting now (a reserved task would start later, outside the token it took), and registers
-- no hand-offs (an enqueue would hand tasks out past the bucket). With pending tasks and no
-- token, the reply says when the next one comes, so the worker sleeps rather than polls.
-- Concurrency groups: with group limits, a pending task whose group holds its limit of live
-- leases is skipped (stays pending); every grouped task leased joins its group's lease set.
-- Task types with their own rate limit: a task whose type has no token is skipped likewise;
-- none is reserved, no hand-off registered, and when only such tasks wait, the reply says
-- when the first of their next tokens comes (as for the queue's limit).
-- Batching: with KEYS[16], the queue hands out one ready batch per call (batch_pick), every
-- task of it starting now whatever ARGV[3] asks (the worker calls one handler with the list);
-- none reserved, no hand-off registered, no rate limit or group limit applied. When no batch
-- is ready, the reply says when the oldest one is due: {{now, ms, 'batch'}}.
-- Maintenance (the promotion of due scheduled and retry tasks, lease recovery) scans up to
-- ARGV[6] entries of each set; a worker asks for it on a timer (engine.worker.driver), not on
-- every call of its hot path (three scans a call). When a scan filled its limit (more may be
-- due), the reply's head is 'more' instead of now, and the worker asks again at once.
-- Returns: {now, id1, type, payload, priority, max_retry, timeout_ms, attempts, meta, v,
--           reserved ('1'/'0'), token, id2, ...}; or {{now, ms until the next token}} when the
--           queue's rate limit held back pending tasks, {{now, ms, 1}} when its task types' did
local base, channel = ARGV[1], ARGV[2]
local max_n, lease_ms, worker = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local limit, dead_ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local n_start = tonumber(ARGV[8] or ARGV[3])
local handoff_ms = tonumber(ARGV[9] or '0')
local request = ARGV[10] or ''
local receipt_slot = KEYS[11]
local retention = tonumber(ARGV[11] or '86400000')
local held = tonumber(ARGV[12] or '0')
local quiet = ARGV[13] == '1'
local now = now_ms()

if request ~= '' then
  local receipt = redis.call('GET', receipt_slot)
  if receipt then
    receipt = cjson.decode(receipt)
    if receipt[1] == request then -- a copy of a request that already ran: same tasks again
      local out = {now}
      for i = 2, #receipt do
        local id = receipt[i]
        local f = redis.call('HMGET', task_key(base, id), 'type', 'payload', 'priority', 'max_retry',
          'timeout', 'attempts', 'meta', 'v', 'reserved', 'state', 'worker', 'lease', 'dlv')
        -- only what this worker still holds: a lease that ran out is another worker's to recover
        if f[10] == 'active' and f[11] == worker and (tonumber(f[12]) or 0) > now then
          add_entry(out, id, f, f[6] or '0', f[9] == '1' and '1' or '0', token_of(worker, f[13]))
        end
      end
      return out
    end
  end
end

-- read before anything below changes state: a script error (an ACL without LLEN) must not
-- strand tasks it already leased
local in_inbox = handoff_ms > 0 and redis.call('LLEN', inbox_key(base, worker)) or 0
-- The held slots are free only while the take waits. A take in flight beside this call may have
-- started hand-offs in them already (take.lua ran first; its reply had not reached the worker
-- when it sent this call): its records in the taken list that the worker has not received fill
-- held slots, which must not be offered to enqueues again (a task handed to a full worker waits
-- in its inbox until a slot frees, or its lease runs out).
-- What the worker received leaves the list here, rather than in its next take.lua: that runs on
-- the way from an enqueue to a start, this (with the ack after a task) off it. Only the records
-- before the first one not received go, as take.lua would drop them (a wake-up with them).
local function unseen_in_taken()
  local taken = taken_key(base, worker)
  local received, n, done = received_from(ARGV, 14), 0, 0
  for _, item in ipairs(redis.call('LRANGE', taken, 0, -1)) do
    if unreceived_handoff(item, received) then n = n + 1 elseif n == 0 then done = done + 1 end
  end
  if done > 0 then redis.call('LTRIM', taken, done, -1) end
  return math.min(n, held)
end
local in_taken = (handoff_ms > 0 and held > 0) and unseen_in_taken() or 0

-- An idle worker polls every half second or so; renewing its registration on each poll wrote
-- ~180 AOF bytes a poll for nothing. A quiet poll leaves it alone while it is the one this call
-- would write bar the deadline, with more than half of its time left: one read instead of two
-- writes, and still renewed a poll or more before it lapses. (Not read on a busy worker's calls:
-- its free slots change with every task, so the write is due anyway.)
local function unchanged_registration(free)
  local current = redis.call('HGET', KEYS[10], worker)
  if not current then return false end
  local f, deadline, lease = string.match(current, '^(%d+):(%d+):(%d+)$')
  return f ~= nil and tonumber(f) == free and tonumber(lease) == lease_ms
    and tonumber(deadline) - now > handoff_ms / 2 and tonumber(deadline) <= now + handoff_ms
end

local function register_idle(free)
  if handoff_ms <= 0 then return end
  free = free - in_inbox - in_taken
  if free > 0 then
    if quiet and unchanged_registration(free) then return end
    redis.call('HSET', KEYS[10], worker, free .. ':' .. (now + handoff_ms) .. ':' .. lease_ms)
    redis.call('PEXPIRE', KEYS[10], handoff_ms) -- outlives no registration
  else
    redis.call('HDEL', KEYS[10], worker)
  end
end

-- Maintenance, when asked for (limit > 0): due scheduled and retry tasks become pending (or
-- expired, their deadline passed), and leases that ran out are recovered. (Nothing of it is made
-- when not asked: most calls are not, and every table a script makes costs it.)
local missed = {}
local left_behind = false -- a scan filled its limit: more may be due
if limit > 0 then
  local promoted = {}
  for k, src in ipairs({KEYS[3], KEYS[4]}) do
    local due = redis.call('ZRANGEBYSCORE', src, '-inf', now, 'LIMIT', 0, limit)
    if #due >= limit then left_behind = true end
    for _, id in ipairs(due) do
      redis.call('ZREM', src, id)
      if past_deadline(redis.call('HGET', task_key(base, id), 'exp'), now) then
        to_expired(base, KEYS[8], id, now, k == 1 and 'scheduled' or 'retry', retention)
        table.insert(missed, id)
      elseif redis.call('EXISTS', task_key(base, id)) == 1 then
        redis.call('ZADD', KEYS[1], pending_score(base, KEYS[7], id), id)
        redis.call('HSET', task_key(base, id), 'state', 'pending')
        history(base, id, now, 'pending', 'due')
        table.insert(promoted, id)
      end
    end
  end
  publish(channel, 'pending', promoted, now)
  publish(channel, 'expired', missed, now)
  missed = {}

  -- leases that ran out: the worker died or hung. Each delivery counts as an attempt, so a task
  -- that kills its worker every time goes dead instead of crashing workers forever.
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  if #expired >= limit then left_behind = true end
  local recovered, buried, cancelled = {}, {}, {}
  for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[2], id)
    local tk = task_key(base, id)
    settle_active(base, id) -- before 'worker' goes
    local f = redis.call('HMGET', tk, 'attempts', 'max_retry', 'worker', 'type', 'reserved', 'cancel')
    if f[6] == '1' then -- cancel requested while it was held: its holder cannot act on it now
      cancel_held(base, KEYS[12], KEYS[8], id, now, 'lease of ' .. (f[3] or '?') .. ' expired', retention)
      table.insert(cancelled, id)
    elseif f[1] and f[5] == '1' then -- prefetched, never started: back to pending, not charged
      redis.call('HSET', tk, 'state', 'pending')
      redis.call('HDEL', tk, 'lease', 'reserved', 'worker')
      redis.call('ZADD', KEYS[1], pending_score(base, KEYS[7], id), id)
      history(base, id, now, 'pending', 'lease of ' .. (f[3] or '?') .. ' expired before it started')
      table.insert(recovered, id)
    elseif f[1] or redis.call('EXISTS', tk) == 1 then -- (a hash without 'attempts' too)
      local attempts, max_retry = tonumber(f[1]) or 0, tonumber(f[2]) or 0
      local note = 'worker died during attempt ' .. attempts .. ' (lease of ' .. (f[3] or '?') .. ' expired)'
      if attempts > max_retry then
        local ttype = f[4] or ''
        join_group(base, KEYS[9], id, 'worker died during attempt <n> (lease expired)', ttype, now)
        to_dead(base, KEYS[6], KEYS[8], id, now, note, dead_ttl)
        table.insert(buried, id)
      else
        redis.call('HSET', tk, 'state', 'pending', 'error', note)
        redis.call('HDEL', tk, 'lease')
        redis.call('ZADD', KEYS[1], pending_score(base, KEYS[7], id), id)
        history(base, id, now, 'pending', note)
        table.insert(recovered, id)
      end
    end
  end
  publish(channel, 'pending', recovered, now, {why = 'lease expired'})
  publish(channel, 'dead', buried, now)
  publish(channel, 'cancelled', cancelled, now, {why = 'lease expired'})
end

-- The queue's optional settings (paused, fair, limits, batches) are keys of their own: one
-- EXISTS of them all answers for the common queue that has none, instead of a read each (each
-- call from Lua costs several µs beyond its command's own time).
local settings_keys = {KEYS[5], fair_key(base)}
for k = 13, 16 do if KEYS[k] then settings_keys[#settings_keys + 1] = KEYS[k] end end
local any_setting = redis.call('EXISTS', unpack(settings_keys)) > 0
local function has(key)
  return any_setting and key ~= nil and redis.call('EXISTS', key) == 1
end

local out = {left_behind and 'more' or now}
if max_n <= 0 or has(KEYS[5]) then
  register_idle(0)
  return out
end

local batched = has(KEYS[16])
local limited = nil
if not batched and has(KEYS[13]) then
  local wait
  limited, wait = rate_allowance(KEYS[13], now, n_start)
  if limited == 0 then
    register_idle(0)
    if wait > 0 and redis.call('ZCARD', KEYS[1]) > 0 then return {{now, wait}} end
    return out
  end
  if limited then max_n, n_start = limited, limited end
end

local leased = {}
local popped, skipped, type_wait = nil, 0, nil
local caps = has(KEYS[14]) and KEYS[14] or nil
local typed = has(KEYS[15]) and KEYS[15] or nil
if typed then max_n = n_start end
if max_n <= 0 then
  register_idle(0)
  return out
end
if batched then
  local due_in
  if n_start <= 0 then -- no free slot: a batch starts whole, never reserved
    register_idle(0)
    return out
  end
  popped, due_in = batch_pick(base, KEYS[1], KEYS[16], now)
  if #popped == 0 then
    register_idle(0)
    if due_in then return {{now, math.max(1, due_in), 'batch'}} end
    return out
  end
  max_n, n_start, caps, typed = #popped / 2, #popped / 2, nil, nil
elseif caps or typed then
  popped, skipped, type_wait = pick_eligible(base, KEYS[1], caps, typed, max_n, now)
  if #popped == 0 and type_wait then
    register_idle(0)
    return {{now, type_wait, 1}}
  end
else
  popped = redis.call('ZPOPMIN', KEYS[1], max_n)
end
local lease = now + lease_ms
local fair = #popped > 0 and any_setting and redis.call('HGET', fair_key(base), 'on') == '1'
local indexed = {} -- score, id pairs for the active set: one ZADD for the batch
for j = 1, #popped, 2 do
  local id = popped[j]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'type', 'payload', 'priority', 'max_retry', 'timeout',
    'attempts', 'meta', 'v', 'progress', 'dlv', 'exp', 'grp', 'entered')
  -- a pending entry whose hash is gone is dropped (doctor reports such entries); a hash without
  -- a type (a buggy client wrote it) is still leased, so that the worker buries it as dead with
  -- 'unknown task type' instead of leaving it in no state set at all
  if f[11] and past_deadline(f[11], now) then
    to_expired(base, KEYS[8], id, now, 'pending', retention)
    table.insert(missed, id)
  elseif f[1] or redis.call('EXISTS', tk) == 1 then
    local attempts = tonumber(f[6]) or 0
    local reserved = '1'
    local dlv = (tonumber(f[10]) or 0) + 1
    if #leased < n_start then -- starts now: this delivery is an attempt
      attempts = attempts + 1
      reserved = '0'
      redis.call('HSET', tk, 'state', 'active', 'attempts', attempts, 'started', now,
        'worker', worker, 'lease', lease, 'dlv', dlv)
      -- implied by 'started' and 'worker' for a hash with 'entered' (settle_active in _lib.lua)
      if not f[13] then history(base, id, now, 'active', worker) end
      table.insert(leased, id)
    else
      redis.call('HSET', tk, 'state', 'active', 'reserved', '1', 'worker', worker, 'lease', lease,
        'dlv', dlv)
    end
    if f[9] then redis.call('HDEL', tk, 'progress', 'pmsg') end -- progress.lua sets both
    indexed[#indexed + 1], indexed[#indexed + 2] = lease, id
    if f[12] then cgroup_hold(base, f[12], id, lease, lease_ms) end
    if fair then fair_leased(base, f[12], popped[j + 1]) end
    add_entry(out, id, f, attempts, reserved, token_of(worker, dlv))
  end
end
zadd_pairs(KEYS[2], indexed)
publish(channel, 'active', leased, now)
publish(channel, 'expired', missed, now)
if request ~= '' and #out > 1 then
  local receipt = {request}
  for j = 2, #out, 11 do table.insert(receipt, out[j]) end -- the ids: every 11th entry
  redis.call('SET', receipt_slot, cjson.encode(receipt), 'PX', lease_ms)
end
if limited then rate_charge(KEYS[13], now, (#out - 1) / 11) end
-- drained with slots to spare: wait for hand-offs; otherwise (more pending) withdraw
if #popped < 2 * max_n and skipped == 0 and not limited and not typed and not batched then register_idle(n_start - #leased + held) else register_idle(0) end
return out
