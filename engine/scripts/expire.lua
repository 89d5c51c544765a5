-- The expiry sweep: tasks whose 'exp' deadline passed while pending, scheduled, retrying or
-- waiting end 'expired' (to_expired in _lib.lua), so the counts are true on a queue no worker
-- dequeues (paused, unserved, busy). dequeue.lua and start.lua apply the same deadline where an
-- attempt would start; this catches the rest. The deadline holds for every attempt's start, so
-- a task running past it stays indexed, looked at again ARGV[5] ms later (it may come back to
-- retry); one finished otherwise or gone leaves the index.
-- KEYS: 1 expiries (id -> deadline ms), 2 pending, 3 scheduled, 4 retry, 5 waiting, 6 dep outbox
-- ARGV: 1 base, 2 channel, 3 retention ms of expired tasks, 4 batch limit, 5 re-check ms
-- Returns: ids expired
local base, channel = ARGV[1], ARGV[2]
local retention, limit, recheck = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local set_of = {pending = KEYS[2], scheduled = KEYS[3], retry = KEYS[4], waiting = KEYS[5]}
local missed = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  local f = redis.call('HMGET', task_key(base, id), 'state', 'exp')
  local state = f[1]
  if state and set_of[state] and past_deadline(f[2], now) then
    redis.call('ZREM', set_of[state], id)
    to_expired(base, KEYS[6], id, now, state, retention)
    table.insert(missed, id)
  elseif state == 'active' then
    -- running (a reserved one is decided by start.lua): it may fail and come back to retry
    redis.call('ZADD', KEYS[1], fmt(now + recheck), id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
publish(channel, 'expired', missed, now)
return missed
