-- A worker took a task of a type it has no handler for (a rolling deploy: a newer producer, an
-- older worker). Hand it back uncharged, due again after a delay so that a worker that knows
-- the type can take it (and this one does not spin on it); bury it only once it has waited
-- that way for longer than the limit.
-- KEYS: 1 active, 2 scheduled, 3 dead, 4 dep outbox
-- ARGV: 1 base, 2 channel, 3 id, 4 token (the delivery's, see token_of in _lib.lua), 5 delay ms,
--       6 limit ms (bury once unknown this long), 7 note, 8 error when buried, 9 dead retention ms
-- Returns: 'deferred', 'dead', or 'stale' (this delivery no longer owns the task)
local base, channel, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local delay, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local note, error, dead_ttl = ARGV[7], ARGV[8], tonumber(ARGV[9])
local now = now_ms()
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'unknown', 'worker', 'dlv', 'grp')
if f[1] ~= 'active' or token_of(f[5], f[6]) ~= token then return 'stale' end
settle_active(base, id) -- before 'worker' goes
redis.call('ZREM', KEYS[1], id)
cgroup_free(base, f[7], id)
-- a started attempt is refunded (its handler never ran); a reserved task was never charged
local attempts = tonumber(f[2]) or 0
if f[3] ~= '1' then attempts = attempts - 1 end
-- 'unknown' is "<first deferral ms>:<attempts then>": a task that ran meanwhile (attempts
-- changed) starts a new wait
local since = now
if f[4] then
  local s, a = string.match(f[4], '^(%d+):(%d+)$')
  if s and tonumber(a) == attempts then since = tonumber(s) end
end
redis.call('HSET', tk, 'attempts', attempts, 'unknown', since .. ':' .. attempts)
redis.call('HDEL', tk, 'lease', 'worker', 'reserved')
if now - since >= limit then
  to_dead(base, KEYS[3], KEYS[4], id, now, error, dead_ttl)
  publish(channel, 'dead', {id}, now)
  return 'dead'
end
redis.call('HSET', tk, 'state', 'scheduled', 'due', now + delay)
redis.call('ZADD', KEYS[2], now + delay, id)
history(base, id, now, 'scheduled', note)
publish(channel, 'scheduled', {id}, now)
return 'deferred'
