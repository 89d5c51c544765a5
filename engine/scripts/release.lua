-- Hand leased tasks back to pending without counting the attempt (graceful shutdown, prefetched
-- tasks never started). A task whose cancellation was requested ends 'cancelled' instead (back
-- in pending, the next worker would run it after its caller was told it was being cancelled).
-- KEYS: 1 active, 2 pending, 3 seq, 4 cancelled, 5 dep outbox
-- ARGV: 1 base, 2 channel, 3 note, 4 retention ms of cancelled tasks, then pairs: id, token
--       (the delivery's, see token_of in _lib.lua)
-- Returns: the ids refused (not this delivery's any more); the others were released
local base, channel, note, retention = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local released, refused, cancelled = {}, {}, {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'grp', 'cancel')
  if f[1] == 'active' and token_of(f[4], f[5]) == token then settle_active(base, id) end
  if f[1] == 'active' and token_of(f[4], f[5]) == token and f[7] == '1' then
    redis.call('ZREM', KEYS[1], id)
    cgroup_free(base, f[6], id)
    cancel_held(base, KEYS[4], KEYS[5], id, now, note, retention)
    table.insert(cancelled, id)
  elseif f[1] == 'active' and token_of(f[4], f[5]) == token then
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
publish(channel, 'cancelled', cancelled, now, {why = note})
return refused
