-- Record a failed attempt: schedule a retry, or bury the task when retries are spent or the
-- error is permanent; or end a running task whose cancellation was requested.
-- KEYS: 1 active, 2 retry, 3 dead, 4 dep outbox, 5 cancelled, 6 failures (fingerprint groups)
-- ARGV: 1 base, 2 channel, 3 id, 4 token (the delivery's, see token_of in _lib.lua),
--       5 error, 6 traceback, 7 retry delay ms,
--       8 mode ('retry', 'permanent' or 'cancel'), 9 dead retention ms, 10 retention ms,
--       11 normalised error: with the task type it names the failure group
-- Returns: 'retry', 'dead', 'cancelled' or 'stale' (refused: this delivery no longer owns the
--          task, or never started it). A copy of a call that already ran (sent again after its
--          reply was lost) answers what the first copy did ('ftok' records the failing token).
-- A failure of a task whose cancellation was requested ends it 'cancelled' whatever the mode
-- (the handler raised before its worker heard of the cancel): retried, it would run again
-- after the cancel its caller was told was under way.
local base, channel, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local error, tb, delay = ARGV[5], ARGV[6], tonumber(ARGV[7])
local mode, dead_ttl, retention = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local sample = ARGV[11]
local now = now_ms()
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'attempts', 'max_retry', 'type', 'worker', 'dlv', 'reserved', 'ftok',
  'grp', 'cancel')
if f[1] ~= 'active' or token_of(f[5], f[6]) ~= token or f[7] == '1' then
  if f[8] == token then -- this delivery's failure was recorded by an earlier copy of this call
    if f[1] == 'dead' or f[1] == 'cancelled' then return f[1] end
    return 'retry'
  end
  return 'stale'
end
settle_active(base, id)
redis.call('ZREM', KEYS[1], id)
cgroup_free(base, f[9], id)
if mode == 'cancel' or f[10] == '1' then
  leave_group(base, id)
  redis.call('HSET', tk, 'state', 'cancelled', 'finished', now, 'ftok', token)
  if mode ~= 'cancel' then
    redis.call('HSET', tk, 'error', error, 'tb', tb)
    error = 'cancel requested; the handler failed meanwhile: ' .. error
  end
  redis.call('HDEL', tk, 'lease', 'cancel')
  redis.call('ZADD', KEYS[5], now, id)
  release_unique(base, id)
  notify_dependents(base, KEYS[4], id, now)
  history(base, id, now, 'cancelled', error) -- before the expiry: a list it creates gets the TTL
  expire_task(base, id, retention)
  publish(channel, 'cancelled', {id}, now)
  return 'cancelled'
end
redis.call('HSET', tk, 'error', error, 'tb', tb, 'ftok', token)
bump_stat(base, 'f', now, 1)
join_group(base, KEYS[6], id, sample, f[4] or '', now)
-- a max_retry a buggy client left unreadable counts as 0 (as dequeue reads it): comparing nil
-- would raise after the ZREM above and leave the task in no state set at all
if mode == 'permanent' or (tonumber(f[2]) or 0) > (tonumber(f[3]) or 0) then
  to_dead(base, KEYS[3], KEYS[4], id, now, error, dead_ttl)
  publish(channel, 'dead', {id}, now)
  return 'dead'
end
redis.call('HSET', tk, 'state', 'retry', 'due', now + delay)
redis.call('HDEL', tk, 'lease', 'cancel', 'progress', 'pmsg') -- progress belongs to an attempt
redis.call('ZADD', KEYS[2], now + delay, id)
history(base, id, now, 'retry', error)
publish(channel, 'retry', {id}, now)
return 'retry'
