-- Enqueue a batch of tasks into one queue. Idempotent by task id.
-- KEYS: 1 pending, 2 scheduled, 3 waiting, 4 seq, 5 paused, 6 active, 7 idle (hand-off)
-- ARGV: 1 base, 2 channel, 3 per-task field count (8), 4 schema_version, then per task:
--       id, type, payload, priority, max_retry, timeout_ms, due_in_ms, extras
--       extras: '' for a plain task (most of them: nothing to decode), else a JSON object with
--       any of u (unique key), ut (unique ttl ms), d (JSON text of the dependency refs),
--       m (JSON text of the metadata), p (dependency-failure policy, stored as 'dpol'),
--       k (keep_result ms, stored as 'keep': ack.lua's TTL of the completed task; 0 = no result)
--       x (expires: ms from now to the deadline to start by, stored as 'exp', absolute, and
--       indexed in '<base>expiries' for the sweep, expire.lua), g (concurrency group, stored as
--       'grp'; a grouped task is never handed off: dequeue.lua checks its group's limit)
-- A new task that would be pending goes straight to a waiting worker when one registered in
-- KEYS[7] (see dequeue.lua): leased to it, reserved (its attempt is charged when it starts),
-- pushed to its inbox with its delivery token (dlv 1, see token_of in _lib.lua). Its state is
-- then 'active'. Not while the pending set holds a task that runs before it (a lower score: a
-- higher priority enqueued while the queue was paused or the takers were full), or the new
-- task would jump ahead of it.
-- History: the 'enqueued' entry is implied, not pushed: the hash's 'entered' field names the
-- state the task entered (a handed-off task entered 'pending'), 'enq' when (see
-- settle_completed in _lib.lua).
-- Returns: flat list {status, id, state, ...}; status is 'new', 'exists' (same id already
--          stored) or 'duplicate' (unique key held: id is the holder's id).
local base, channel, width, schema = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local out = {}
local n = 0
local by_state = {} -- state -> the ids that entered it (made when the first one does)
-- the queue's sequence: the first task that needs a number reserves numbers for every task
-- left in the batch, one INCRBY (instead of a GET and a SET); those of tasks that turn out
-- 'exists', 'duplicate' or handed off are skipped, which keeps the order. A task handed off
-- while nothing is pending takes none: the number only orders the pending set, and nothing
-- there can run before it (it gets one when it re-enters, see pending_score). added: the new
-- tasks.
local seq, added = nil, 0
-- Whether the queue is fair and its lowest pending score (the task that runs next): each read
-- once per call, when first needed. A queue with waiting workers is most often not paused, not
-- fair and has nothing pending, and then one EXISTS of the three keys answers all three instead
-- of three reads (load_takers): this is on the way from an enqueue to a waiting worker's start,
-- where each call from Lua costs several µs, more when calls come a few ms apart.
local fair_queue, min_pending = nil, nil
-- waiting workers (read once, when the first pending task could go to one)
local takers, taker_i = nil, 1
local function load_takers()
  if takers ~= nil then return end
  takers = {}
  local flat = redis.call('HGETALL', KEYS[7])
  if #flat == 0 then return end
  if redis.call('EXISTS', KEYS[5], fair_key(base), KEYS[1]) == 0 then
    fair_queue, min_pending = false, math.huge
  elseif redis.call('EXISTS', KEYS[5]) == 1 then
    return -- paused: no hand-off
  end
  for j = 1, #flat, 2 do
    local free, deadline, lease_ms = string.match(flat[j + 1], '^(%d+):(%d+):(%d+)$')
    if free and tonumber(deadline) > now then
      takers[#takers + 1] = {worker = flat[j], free = tonumber(free), deadline = deadline,
        lease_ms = tonumber(lease_ms)}
    else
      redis.call('HDEL', KEYS[7], flat[j]) -- lapsed: its worker stopped renewing
    end
  end
end
local function next_taker()
  load_takers()
  while takers[taker_i] and takers[taker_i].free <= 0 do taker_i = taker_i + 1 end
  return takers[taker_i]
end
local handed = nil -- worker -> its taker entry, once a task went to one
local function runs_before_pending(score)
  if min_pending == nil then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    min_pending = first[2] and tonumber(first[2]) or math.huge
  end
  return score < min_pending
end
-- (not once per task: most queues are not fair, and a batch of 1,000 paid 1,000 reads of the
-- fair hash)
local function is_fair()
  if fair_queue == nil then fair_queue = redis.call('HGET', fair_key(base), 'on') == '1' end
  return fair_queue
end
local i = 5
while i + width - 1 <= #ARGV do
  local id, ttype, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local priority, max_retry, timeout_ms = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local due_in = tonumber(ARGV[i + 6])
  local extras = ARGV[i + 7]
  i = i + width
  local unique, unique_ttl, deps_json, meta_json, x_policy = '', 0, '', '', 'cancel'
  local keep, expires_in, group = nil, nil, nil
  if extras ~= '' then
    local x = cjson.decode(extras)
    unique, unique_ttl = x.u or '', x.ut or 0
    deps_json, meta_json = x.d or '', x.m or ''
    x_policy = x.p or 'cancel'
    keep = x.k
    expires_in = x.x
    group = x.g
  end
  local tk = task_key(base, id)
  local holder = nil
  if redis.call('EXISTS', tk) == 1 then
    out[n + 1], out[n + 2], out[n + 3] = 'exists', id, redis.call('HGET', tk, 'state') or ''
    n = n + 3
  else
    if unique ~= '' then
      local ukey = unique_key(base, unique)
      holder = redis.call('GET', ukey)
      if holder then
        local hstate = redis.call('HGET', task_key(base, holder), 'state')
        if hstate == false or hstate == 'completed' or hstate == 'dead' or hstate == 'cancelled'
          or hstate == 'expired' then
          holder = nil -- stale lock left by a finished task: take it over
        end
      end
      if not holder then redis.call('SET', ukey, id, 'PX', fmt(unique_ttl)) end
    end
    if holder then
      out[n + 1], out[n + 2] = 'duplicate', holder
      out[n + 3] = redis.call('HGET', task_key(base, holder), 'state') or ''
      n = n + 3
    else
      added = added + 1
      local state = 'pending'
      local deps = {}
      if deps_json ~= '' then deps = cjson.decode(deps_json) end
      if #deps > 0 then state = 'waiting' elseif due_in > 0 then state = 'scheduled' end
      local taker, task_seq, tag = nil, nil, nil
      if state == 'pending' and not group then load_takers() end -- (before is_fair: see above)
      local fair = state == 'pending' and is_fair()
      -- a fair queue's order is its tags: a hand-off would skip the clock
      if state == 'pending' and not group and not fair then taker = next_taker() end
      -- a hand-off while pending is known empty takes no number (see seq above)
      if not taker or min_pending ~= math.huge then
        seq = next_number(KEYS[4], seq, #ARGV, i - width, width)
        task_seq = seq
      end
      if fair then tag = fair_tag(base, KEYS[4], group or '') end -- (a first tag starts at seq)
      if taker and task_seq and not runs_before_pending(tonumber(priority) * PRIORITY_SHIFT + task_seq) then
        taker = nil
      end
      -- (nil for a task handed off without a number: only a pending task's score is used)
      local score = (tag or task_seq) and tonumber(priority) * PRIORITY_SHIFT + (tag or task_seq)
      -- the task's hash in one HSET (each call from Lua costs several µs beyond its command's)
      local fields = {'id', id, 'type', ttype, 'payload', payload, 'priority', priority,
        'max_retry', max_retry, 'timeout', timeout_ms, 'enq', now, 'due', now + due_in,
        'state', taker and 'active' or state, 'attempts', 0, 'v', schema, 'entered', state}
      if task_seq then add_field(fields, 'seq', task_seq) end
      if unique ~= '' then add_field(fields, 'unique', unique) end
      if meta_json ~= '' then add_field(fields, 'meta', meta_json) end
      if group then add_field(fields, 'grp', group) end
      if keep then add_field(fields, 'keep', fmt(keep)) end
      if expires_in then add_field(fields, 'exp', fmt(now + expires_in)) end
      if state == 'waiting' then add_field(fields, 'deps', deps_json); add_field(fields, 'dpol', x_policy) end
      local lease = taker and now + taker.lease_ms
      if taker then
        add_field(fields, 'reserved', '1'); add_field(fields, 'worker', taker.worker)
        add_field(fields, 'lease', lease); add_field(fields, 'dlv', 1)
      end
      redis.call('HSET', tk, unpack(fields))
      if expires_in then redis.call('ZADD', expiries_key(base), fmt(now + expires_in), id) end
      if state == 'waiting' then
        for _, ref in ipairs(deps) do redis.call('SADD', deps_key(base, id), ref) end
        redis.call('ZADD', KEYS[3], now, id)
      elseif state == 'scheduled' then
        redis.call('ZADD', KEYS[2], now + due_in, id)
      elseif taker then
        redis.call('ZADD', KEYS[6], lease, id)
        local inbox = inbox_key(base, taker.worker)
        -- the fields of one task of a dequeue reply, in its order: attempts 0, reserved, token
        redis.call('RPUSH', inbox, cjson.encode({id, ttype, payload, priority, max_retry, timeout_ms,
          0, meta_json, schema, '1', taker.worker .. '#1'}))
        -- a dead worker's inbox goes when the leases in it run out (recovery takes the tasks)
        redis.call('PEXPIRE', inbox, taker.lease_ms)
        taker.free = taker.free - 1
        handed = handed or {}
        handed[taker.worker] = taker
      else
        redis.call('ZADD', KEYS[1], fmt(score), id)
        if min_pending ~= nil and score < min_pending then min_pending = score end
      end
      if taker then
        state = 'active'
      else
        local ids = by_state[state]
        if ids == nil then
          ids = {}
          by_state[state] = ids
        end
        ids[#ids + 1] = id
      end
      out[n + 1], out[n + 2], out[n + 3] = 'new', id, state
      n = n + 3
    end
  end
end
if added > 0 then
  bump_stat(base, 'e', now, added) -- arrivals per minute, for the backlog forecast
end
if handed then
  for worker, taker in pairs(handed) do
    if taker.free > 0 then
      redis.call('HSET', KEYS[7], worker, taker.free .. ':' .. taker.deadline .. ':' .. taker.lease_ms)
    else
      redis.call('HDEL', KEYS[7], worker)
    end
  end
end
for state, ids in pairs(by_state) do publish(channel, state, ids, now) end
return out
