-- Tell a waiting task that one of its dependencies finished. Idempotent: telling twice is a
-- no-op, so a crashed worker's outbox can simply be replayed.
-- KEYS: 1 waiting, 2 pending, 3 scheduled, 4 cancelled, 5 seq, 6 dep outbox
-- ARGV: 1 base, 2 channel, 3 dependent id, 4 dependency ref ('queue|id'), 5 outcome
--       ('completed', 'dead', 'cancelled'), 6 policy on failure ('cancel' or 'hold'),
--       7 retention ms
-- Returns: 'released', 'cancelled', 'held', 'waiting' or 'noop'
local base, channel, id, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local outcome, policy, retention = ARGV[5], ARGV[6], tonumber(ARGV[7])
local now = now_ms()
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'due')
if f[1] ~= 'waiting' then return 'noop' end
local deps_key = base .. 'deps:' .. id
if outcome == 'completed' then
  if redis.call('SREM', deps_key, ref) == 0 then return 'noop' end
  if redis.call('SCARD', deps_key) > 0 then
    history(base, id, now, 'waiting', 'dependency ' .. ref .. ' completed')
    return 'waiting'
  end
  redis.call('ZREM', KEYS[1], id)
  local due = tonumber(f[2]) or now
  if due > now then
    redis.call('HSET', tk, 'state', 'scheduled')
    redis.call('ZADD', KEYS[3], due, id)
    history(base, id, now, 'scheduled', 'dependencies completed')
    publish(channel, 'scheduled', {id}, now)
  else
    redis.call('HSET', tk, 'state', 'pending')
    redis.call('ZADD', KEYS[2], pending_score(base, KEYS[5], id), id)
    history(base, id, now, 'pending', 'dependencies completed')
    publish(channel, 'pending', {id}, now)
  end
  return 'released'
end
local reason = 'dependency ' .. ref .. ' ' .. outcome
if policy == 'hold' then
  if redis.call('HGET', tk, 'reason') == reason then return 'noop' end
  redis.call('HSET', tk, 'reason', reason .. '; requeue it to continue')
  history(base, id, now, 'waiting', reason)
  return 'held'
end
redis.call('ZREM', KEYS[1], id)
redis.call('HSET', tk, 'state', 'cancelled', 'finished', now, 'reason', reason)
redis.call('ZADD', KEYS[4], now, id)
release_unique(base, id)
notify_dependents(base, KEYS[6], id, now)
expire_task(base, id, retention)
history(base, id, now, 'cancelled', reason)
publish(channel, 'cancelled', {id}, now, {why = reason})
return 'cancelled'
