-- Store a running task's progress (monotonic within an attempt) and publish it.
-- KEYS: 1 the task hash (routes the call to the right Cluster slot)
-- ARGV: 1 base, 2 channel, 3 id, 4 attempt, 5 percent (0..100), 6 message
-- Returns: the stored percent, or false when this attempt no longer owns the task
local base, channel, id, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local percent, message = tonumber(ARGV[5]), ARGV[6]
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'attempts', 'progress')
if f[1] ~= 'active' or f[2] ~= attempt then return false end
local current = tonumber(f[3])
if current and percent < current then percent = current end
redis.call('HSET', tk, 'progress', tostring(percent), 'pmsg', message)
local now = now_ms()
publish(channel, 'progress', {id}, now, {p = percent, m = message})
return tostring(percent)
