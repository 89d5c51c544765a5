-- Hand leased tasks back to pending without counting the attempt (graceful shutdown, prefetched
-- tasks never started).
-- KEYS: 1 active, 2 pending, 3 seq
-- ARGV: 1 base, 2 channel, 3 note, then pairs: id, token (the delivery's, see token_of in _lib.lua)
-- Returns: the ids refused (not this delivery's any more); the others were released
local base, channel, note = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local released, refused = {}, {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'grp')
  if f[1] == 'active' and token_of(f[4], f[5]) == token then
    redis.call('ZREM', KEYS[1], id)
    cgroup_free(base, f[6], id)
    -- a started attempt is refunded; a reserved task was never charged
    local attempts = tonumber(f[2]) or 0
    if f[3] ~= '1' and attempts > 0 then attempts = attempts - 1 end
    redis.call('HSET', tk, 'state', 'pending', 'attempts', attempts)
    redis.call('HDEL', tk, 'lease', 'worker', 'reserved')
    redis.call('ZADD', KEYS[2], pending_score(base, KEYS[3], id), id)
    history(base, id, now, 'pending', note)
    table.insert(released, id)
  else
    table.insert(refused, id)
  end
end
publish(channel, 'pending', released, now, {why = note})
return refused
