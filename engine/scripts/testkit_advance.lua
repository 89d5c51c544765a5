-- Test kit only (engine.testing): scheduled and retrying tasks due within ARGV[2] ms come due
-- now, as if the clock had moved on; the next dequeue promotes them as usual.
-- KEYS: 1 scheduled, 2 retry
-- ARGV: 1 base, 2 horizon ms
-- Returns: how many tasks came due
local base, horizon = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local moved = 0
for _, key in ipairs({KEYS[1], KEYS[2]}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. now, now + horizon)) do
    redis.call('ZADD', key, 'XX', now, id)
    redis.call('HSET', task_key(base, id), 'due', now)
    moved = moved + 1
  end
end
return moved
