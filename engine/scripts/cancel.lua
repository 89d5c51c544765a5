-- Cancel tasks: those not yet running leave their queue at once; running ones get a cancel
-- flag that the worker's heartbeat picks up. A task leased to a worker but not started
-- (reserved: prefetched, or handed to its inbox) is not running: it ends at once too, and the
-- worker's start of it is refused (start_reserved), so it never runs. (Before, it got the flag,
-- started anyway, and its handler ran; whether it then ended completed or cancelled depended on
-- which reached Redis first, the worker's outcome or its heartbeat's news of the cancel.)
-- KEYS: 1 pending, 2 scheduled, 3 waiting, 4 retry, 5 cancelled, 6 dep outbox, 7 active
-- ARGV: 1 base, 2 channel, 3 retention ms, 4 reason, then ids
-- Returns: flat list {id, outcome} with outcome 'cancelled', 'requested', 'final:<state>',
--          or 'missing'
local base, channel, retention, reason = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local from = {pending = KEYS[1], scheduled = KEYS[2], waiting = KEYS[3], retry = KEYS[4]}
local out, cancelled, requested = {}, {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'reserved', 'grp')
  local state = f[1]
  local outcome
  local reserved = state == 'active' and f[2] == '1'
  if not state then
    outcome = 'missing'
  elseif from[state] or reserved then
    redis.call('ZREM', from[state] or KEYS[7], id)
    leave_group(base, id)
    redis.call('HSET', tk, 'state', 'cancelled', 'finished', now, 'reason', reason)
    if reserved then
      cgroup_free(base, f[3], id)
      redis.call('HDEL', tk, 'lease', 'reserved', 'cancel')
    end
    redis.call('ZADD', KEYS[5], now, id)
    release_unique(base, id)
    notify_dependents(base, KEYS[6], id, now)
    -- (before the expiry: a list it creates gets the TTL)
    history(base, id, now, 'cancelled', reserved and reason .. ' (before it started)' or reason)
    expire_task(base, id, retention)
    table.insert(cancelled, id)
    outcome = 'cancelled'
  elseif state == 'active' then
    redis.call('HSET', tk, 'cancel', '1', 'reason', reason)
    settle_active(base, id) -- the start comes before the request in the list
    history(base, id, now, 'active', 'cancel requested: ' .. reason)
    table.insert(requested, id)
    outcome = 'requested'
  else
    outcome = 'final:' .. state
  end
  table.insert(out, id); table.insert(out, outcome)
end
if #cancelled > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - retention)
end
publish(channel, 'cancelled', cancelled, now, {why = reason})
publish(channel, 'cancel_requested', requested, now)
return out
