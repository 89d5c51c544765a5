-- Tell a waiting task that one of its dependencies finished. Idempotent: telling twice is a
-- no-op, so a crashed worker's outbox can simply be replayed.
-- KEYS: 1 waiting, 2 pending, 3 scheduled, 4 cancelled, 5 seq, 6 dep outbox
-- ARGV: 1 base, 2 channel, 3 dependent id, 4 dependency ref ('queue|id'), 5 outcome
--       ('completed', or a failure: 'dead', 'cancelled', 'quarantined' (deleted recoverably),
--       'gone' (deleted or expired)), 6 fallback policy on failure ('cancel' or 'hold'), used
--       only for a task stored without one, 7 retention ms
-- The policy applied is the one stored with the dependent at enqueue ('dpol'), so every
-- process that resolves it decides the same way.
-- Returns: 'released', 'cancelled', 'held', 'waiting' or 'noop'
local base, channel, id, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local outcome, policy, retention = ARGV[5], ARGV[6], tonumber(ARGV[7])
local now = now_ms()
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'due', 'dpol')
if f[1] ~= 'waiting' then return 'noop' end
local dkey = deps_key(base, id)
if outcome == 'completed' then
  if redis.call('SREM', dkey, ref) == 0 then return 'noop' end
  if redis.call('SCARD', dkey) > 0 then
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
-- a failure of a dependency this task no longer waits for (told twice, or requeued) is a no-op
if redis.call('SISMEMBER', dkey, ref) == 0 then return 'noop' end
local reason = 'dependency ' .. ref .. ' ' .. outcome
if f[3] == 'cancel' or f[3] == 'hold' then policy = f[3] end
if policy == 'hold' then
  local held = reason .. '; requeue it to continue'
  if redis.call('HGET', tk, 'reason') == held then return 'noop' end
  redis.call('HSET', tk, 'reason', held)
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
