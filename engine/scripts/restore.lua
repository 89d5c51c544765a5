-- Bring quarantined tasks back: finished ones to where they were, the others to pending.
-- KEYS: 1 quarantine, 2 pending, 3 seq, 4 dead, 5 completed, 6 cancelled
-- ARGV: 1 base, 2 channel, 3 dead retention ms, 4 retention ms, then ids
-- Returns: ids restored
local base, channel, dead_ttl, retention = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local finished = {dead = {KEYS[4], dead_ttl}, completed = {KEYS[5], retention}, cancelled = {KEYS[6], retention}}
local restored = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'qfrom')
  if f[1] == 'quarantined' then
    redis.call('ZREM', KEYS[1], id)
    local back = finished[f[2] or '']
    if back then
      redis.call('HSET', tk, 'state', f[2])
      redis.call('ZADD', back[1], now, id)
      redis.call('PEXPIRE', tk, back[2]); redis.call('PEXPIRE', base .. 'h:' .. id, back[2])
      history(base, id, now, f[2], 'restored from quarantine')
    else
      redis.call('PERSIST', tk); redis.call('PERSIST', base .. 'h:' .. id)
      redis.call('HSET', tk, 'state', 'pending', 'attempts', 0)
      redis.call('HDEL', tk, 'finished', 'worker')
      redis.call('ZADD', KEYS[2], pending_score(base, KEYS[3], id), id)
      history(base, id, now, 'pending', 'restored from quarantine (was ' .. (f[2] or '?') .. ')')
    end
    redis.call('HDEL', tk, 'qfrom')
    table.insert(restored, id)
  end
end
publish(channel, 'restored', restored, now)
return restored
