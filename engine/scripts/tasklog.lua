-- Append log lines a handler wrote for its task (ctx.log, engine/tasklog.py), keeping the last
-- ARGV[1]. A live task's log has no TTL; expire_task (_lib.lua) gives it the task's when the
-- task finishes, and delete.lua deletes it with the task.
-- KEYS: 1 task hash, 2 the task's log list
-- The task hash gets the field 'log' (ack.lua skips the log's PEXPIRE for tasks without it).
-- ARGV: 1 max lines kept, then lines (JSON [at_ms, level, attempt, message])
-- Lines for a task that is gone (deleted, expired) are dropped; for one that finished while
-- they were buffered, the log takes the task hash's TTL.
-- Returns: lines in the log (0: dropped)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'log', '1') -- expire_task then expires the log with the task
local n = 0
for i = 2, #ARGV do n = redis.call('RPUSH', KEYS[2], ARGV[i]) end
local max = tonumber(ARGV[1])
if n > max then
  redis.call('LTRIM', KEYS[2], -max, -1)
  n = max
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return n
