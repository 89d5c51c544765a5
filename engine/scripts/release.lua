-- Hand leased tasks back to pending without counting the attempt (graceful shutdown, prefetched
-- tasks never started).
-- KEYS: 1 active, 2 pending, 3 seq
-- ARGV: 1 base, 2 channel, 3 note, then pairs: id, attempt
-- Returns: number of tasks released
local base, channel, note = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local released = {}
for i = 4, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved')
  if f[1] == 'active' and f[2] == attempt then
    redis.call('ZREM', KEYS[1], id)
    -- a started attempt is refunded; a reserved task was never charged
    local attempts = tonumber(attempt)
    if f[3] ~= '1' then attempts = attempts - 1 end
    redis.call('HSET', tk, 'state', 'pending', 'attempts', attempts)
    redis.call('HDEL', tk, 'lease', 'worker', 'reserved')
    redis.call('ZADD', KEYS[2], pending_score(base, KEYS[3], id), id)
    history(base, id, now, 'pending', note)
    table.insert(released, id)
  end
end
publish(channel, 'pending', released, now, {why = note})
return #released
