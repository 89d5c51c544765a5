-- A handler reported that the remote side rate-limits it (RateLimited(retry_after)): the task
-- goes back to pending uncharged (its attempt is refunded: it did not fail, so no retry is
-- burnt) and a bucket is paused for every worker until now + retry_after (see rate_allowance in
-- _lib.lua): its task type's, when the type has a rate limit of its own in the queue (the
-- remote side limits that kind of call; dequeue.lua skips the type's tasks, the others flow),
-- else the queue's (dequeue.lua leases nothing from the queue before then). A pause of the
-- queue's bucket withdraws the queue's hand-off registrations too (as engine.flow.write_limit
-- does): a worker that registered before it would otherwise be handed new tasks by enqueue.lua
-- during the pause: leases the paused bucket allows none of (a dequeue registers none meanwhile).
-- KEYS: 1 active, 2 pending, 3 seq, 4 rate limit, 5 task types with a rate limit of their own
--       (optional), 6 idle (hand-off registrations; optional)
-- ARGV: 1 base, 2 channel, 3 id, 4 token (the delivery's, see token_of in _lib.lua),
--       5 retry after ms (> 0), 6 note
-- Returns: 'throttled', or 'stale' (this delivery no longer owns the task; nothing changed)
local base, channel, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pause_ms, note = tonumber(ARGV[5]), ARGV[6]
local now = now_ms()
local tk = task_key(base, id)
local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'grp', 'type')
if f[1] ~= 'active' or token_of(f[4], f[5]) ~= token then return 'stale' end
settle_active(base, id) -- before 'worker' goes
redis.call('ZREM', KEYS[1], id)
cgroup_free(base, f[6], id)
local attempts = tonumber(f[2]) or 0
if f[3] ~= '1' and attempts > 0 then attempts = attempts - 1 end
redis.call('HSET', tk, 'state', 'pending', 'attempts', attempts)
redis.call('HDEL', tk, 'lease', 'worker', 'reserved')
redis.call('ZADD', KEYS[2], pending_score(base, KEYS[3], id), id)
history(base, id, now, 'pending', note)
-- a pause only ever grows: a shorter retry_after reported later does not cut a longer one short
local bucket = KEYS[4]
if KEYS[5] and f[7] and redis.call('HEXISTS', KEYS[5], f[7]) == 1 then
  bucket = type_rate_key(base, f[7])
end
local hold = tonumber(redis.call('HGET', bucket, 'until')) or 0
if now + pause_ms > hold then redis.call('HSET', bucket, 'until', now + pause_ms) end
if bucket == KEYS[4] and KEYS[6] then redis.call('DEL', KEYS[6]) end
publish(channel, 'pending', {id}, now, {why = note})
return 'throttled'
