-- Delete tasks in any state, with their history and dependency sets.
-- KEYS: 1 pending, 2 active, 3 scheduled, 4 retry, 5 waiting, 6 dead, 7 completed, 8 cancelled,
--       9 quarantined
-- ARGV: 1 base, 2 channel, then ids
-- Returns: ids deleted
local base, channel = ARGV[1], ARGV[2]
local now = now_ms()
local deleted = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local existed = redis.call('EXISTS', tk) == 1
  if existed then release_unique(base, id); leave_group(base, id) end
  local removed = 0
  for k = 1, 9 do removed = removed + redis.call('ZREM', KEYS[k], id) end
  redis.call('DEL', tk, base .. 'h:' .. id, base .. 'deps:' .. id, base .. 'dependents:' .. id)
  if existed or removed > 0 then table.insert(deleted, id) end
end
publish(channel, 'deleted', deleted, now)
return deleted
