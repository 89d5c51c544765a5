-- Heartbeat: extend the leases of tasks a worker holds.
-- KEYS: 1 active
-- ARGV: 1 base, 2 lease ms, then pairs: id, attempt
-- Returns: {lost ids, ids whose cancellation was requested}
local base, lease_ms = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'cancel')
  if f[1] == 'active' and f[2] == attempt then
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, id)
    redis.call('HSET', tk, 'lease', now + lease_ms)
    if f[3] == '1' then table.insert(cancel, id) end
  else
    table.insert(lost, id)
  end
end
return {lost, cancel}
