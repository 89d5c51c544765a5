-- Delete tasks in any state, with their history and dependency sets. A deleted task with
-- dependents goes to the outbox, its dependents set kept a day, so the caller (or the next
-- outbox replay) tells them their dependency is gone.
-- KEYS: 1 pending, 2 active, 3 scheduled, 4 retry, 5 waiting, 6 dead, 7 completed, 8 cancelled,
--       9 quarantined, 10 dep outbox
-- ARGV: 1 base, 2 channel, then ids
-- Returns: {ids deleted, server CPU us taken (-1: unknown)}
local DEPENDENTS_KEPT_MS = 86400000
local started = cpu_seconds()
local base, channel = ARGV[1], ARGV[2]
local now = now_ms()
local deleted = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local existed = redis.call('EXISTS', tk) == 1
  if existed then
    release_unique(base, id); leave_group(base, id)
    cgroup_free(base, redis.call('HGET', tk, 'grp'), id) -- its concurrency group's slot
  end
  local removed = 0
  for k = 1, 9 do removed = removed + redis.call('ZREM', KEYS[k], id) end
  removed = removed + redis.call('ZREM', expired_key(base), id)
  redis.call('ZREM', expiries_key(base), id)
  redis.call('DEL', tk, history_key(base, id), deps_key(base, id), log_key(base, id))
  if notify_dependents(base, KEYS[10], id, now) then
    redis.call('PEXPIRE', dependents_key(base, id), DEPENDENTS_KEPT_MS)
  end
  if existed or removed > 0 then table.insert(deleted, id) end
end
publish(channel, 'deleted', deleted, now)
return {deleted, cpu_us_since(started)}
