-- Doctor repair: make each task's place match its hash, re-checked here, at repair time. The
-- doctor's findings come from a snapshot read over many round trips, during which workers
-- move tasks; a task that moved legitimately is consistent by now and is left alone.
--   hash gone              -> its entries in live sets go (finished indexes trim themselves)
--   hash names a state     -> it leaves every other set and joins that state's set if absent:
--                             pending by priority, ahead of newer tasks; active with the lease
--                             its hash holds (an expired or missing one is recovered by the
--                             doctor's lease pass right after, in the same run); scheduled and
--                             retry at their due time; finished sets at their finish time
--   unknown state          -> dead, with an error naming it
-- KEYS: 1 pending, 2 active, 3 scheduled, 4 waiting, 5 retry, 6 completed, 7 dead,
--       8 cancelled, 9 quarantined, 10 expired
-- ARGV: 1 base, then ids
-- Returns: flat {id, what} for each task it changed; what is 'removed', 'placed:<state>' or
--          'buried'
local base = ARGV[1]
local now = now_ms()
local order = {'pending', 'active', 'scheduled', 'waiting', 'retry', 'completed', 'dead', 'cancelled',
  'quarantined', 'expired'}
local set_of, live = {}, {pending = true, active = true, scheduled = true, waiting = true, retry = true}
for k, state in ipairs(order) do set_of[state] = KEYS[k] end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'priority', 'due', 'finished', 'lease')
  local state = f[1]
  local changed = nil
  if not state then
    if redis.call('EXISTS', tk) == 0 then
      for _, s in ipairs(order) do
        if live[s] and redis.call('ZREM', set_of[s], id) == 1 then changed = 'removed' end
      end
    end
  elseif not set_of[state] then
    for _, s in ipairs(order) do redis.call('ZREM', set_of[s], id) end
    settle_active(base, id)
    redis.call('HSET', tk, 'state', 'dead', 'finished', now, 'error', 'doctor: unknown state ' .. state)
    redis.call('ZADD', KEYS[7], now, id)
    history(base, id, now, 'dead', 'doctor: unknown state ' .. state)
    changed = 'buried'
  else
    for _, s in ipairs(order) do
      if s ~= state and redis.call('ZREM', set_of[s], id) == 1 then changed = 'placed:' .. state end
    end
    if not redis.call('ZSCORE', set_of[state], id) then
      local score
      if state == 'pending' then
        score = fmt(priority_of(f[2]) * PRIORITY_SHIFT)
      elseif state == 'active' then
        score = fmt(tonumber(f[5]) or 0)
      elseif state == 'scheduled' or state == 'retry' then
        score = fmt(tonumber(f[3]) or now)
      elseif state == 'waiting' then
        score = fmt(now)
      else
        score = fmt(tonumber(f[4]) or now)
      end
      redis.call('ZADD', set_of[state], score, id)
      changed = 'placed:' .. state
    end
  end
  if changed then out[#out + 1] = id; out[#out + 1] = changed end
end
return out
