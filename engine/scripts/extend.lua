-- Heartbeat: extend the leases of tasks a worker holds.
-- KEYS: 1 active
-- ARGV: 1 base, 2 lease ms, then pairs: id, token (the delivery's, see token_of in _lib.lua)
-- Returns: {refused ids (not this delivery's any more: lost), ids whose cancellation was requested}
-- A reserved task is extended like a started one: the token, not the attempt count, names the
-- lease, so a start whose reply was lost does not make the next heartbeat drop the task.
local base, lease_ms = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'worker', 'dlv', 'cancel', 'grp')
  if f[1] == 'active' and token_of(f[2], f[3]) == token then
    redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, id)
    redis.call('HSET', tk, 'lease', now + lease_ms)
    -- its concurrency group's count follows the lease (XX: a lapsed entry is not revived)
    if f[5] then redis.call('ZADD', cgroup_key(base, f[5]), 'XX', now + lease_ms, id) end
    if f[4] == '1' then table.insert(cancel, id) end
  else
    table.insert(lost, id)
  end
end
return {lost, cancel}
