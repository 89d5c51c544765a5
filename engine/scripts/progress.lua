-- Store a running task's progress (monotonic within an attempt) and publish it.
-- KEYS: 1 the task hash (routes the call to the right Cluster slot)
-- ARGV: 1 base, 2 channel, 3 id, 4 token (the delivery's, see token_of in _lib.lua),
--       5 percent (0..100), 6 message
-- Returns: the stored percent, or false when refused (the token is not the task's current
--          delivery)
local base, channel, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local percent, message = tonumber(ARGV[5]), ARGV[6]
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'worker', 'dlv', 'progress')
if f[1] ~= 'active' or token_of(f[2], f[3]) ~= token then return false end
local current = tonumber(f[4])
if current and percent < current then percent = current end
redis.call('HSET', tk, 'progress', tostring(percent), 'pmsg', message)
local now = now_ms()
publish(channel, 'progress', {id}, now, {p = percent, m = message})
return tostring(percent)
