-- Move tasks to quarantine instead of deleting them: restorable until the quarantine TTL ends.
-- KEYS: 1 quarantine, 2 pending, 3 active, 4 scheduled, 5 retry, 6 waiting, 7 dead, 8 completed,
--       9 cancelled, 10 dep outbox
-- A quarantined task counts as failed for its dependents: it goes to the outbox, and the
-- caller tells them (under their stored dependency policy).
-- ARGV: 1 base, 2 channel, 3 quarantine ttl ms, 4 note, then ids
-- Returns: {ids quarantined, server CPU us taken (-1: unknown)}
local started = cpu_seconds()
local base, channel, ttl, note = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local from = {pending = KEYS[2], active = KEYS[3], scheduled = KEYS[4], retry = KEYS[5],
  waiting = KEYS[6], dead = KEYS[7], completed = KEYS[8], cancelled = KEYS[9],
  expired = expired_key(base)}
local moved = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'entered', 'finished')
  local state = f[1]
  if state and from[state] then
    redis.call('ZREM', from[state], id)
    if state == 'active' then cgroup_free(base, redis.call('HGET', tk, 'grp'), id) end
    settle_completed(base, id, state, f[2], f[3])
    redis.call('ZREM', expiries_key(base), id)
    leave_group(base, id)
    release_unique(base, id)
    redis.call('HSET', tk, 'state', 'quarantined', 'qfrom', state, 'finished', now)
    -- out of active: no worker holds it any more (a prefetched one was reserved to one)
    redis.call('HDEL', tk, 'lease', 'cancel', 'reserved', 'worker')
    notify_dependents(base, KEYS[10], id, now)
    redis.call('ZADD', KEYS[1], now, id)
    history(base, id, now, 'quarantined', note .. ' (was ' .. state .. ')')
    expire_task(base, id, ttl) -- after the push: a list it creates gets the TTL
    table.insert(moved, id)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
publish(channel, 'quarantined', moved, now)
return {moved, cpu_us_since(started)}
