-- Start reserved (prefetched or handed-off) tasks: only now does their delivery count as an
-- attempt. The handler runs only after this call's reply says the task started, so a worker
-- that dies at any point never runs an attempt Redis did not charge.
-- KEYS: 1 active (routes the call to the queue's slot)
-- ARGV: 1 base, 2 channel, then pairs: id, token (the delivery's, see token_of in _lib.lua)
-- Returns: flat list {id, attempt} for started tasks; attempt 0 when refused (the token is not
--          the task's current delivery: its lease ran out and it went on, or it was cancelled,
--          deleted, requeued meanwhile; or the task is still reserved but its lease ran out).
-- A call sent again gets the same answer: a task this delivery already started (an earlier
-- copy of the call ran, its reply was lost) answers with the attempt it started as.
local base, channel = ARGV[1], ARGV[2]
local now = now_ms()
local out, started = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'lease')
  local attempt = 0
  -- a reserved task whose lease ran out is not started: the next dequeue (often the one in
  -- this very batch, from a worker waking from a stall) recovers it uncharged. Charged now, it
  -- would be recovered as "worker died during attempt n", dead with max_retry 0, never run.
  local lease = tonumber(f[6])
  local lapsed = f[3] == '1' and lease ~= nil and lease <= now
  if f[1] == 'active' and token_of(f[4], f[5]) == token and not lapsed then
    attempt = tonumber(f[2]) or 0
    if f[3] == '1' then
      attempt = attempt + 1
      redis.call('HSET', tk, 'attempts', attempt, 'started', now)
      redis.call('HDEL', tk, 'reserved')
      history(base, id, now, 'active', f[4])
      table.insert(started, id)
    end
  end
  table.insert(out, id); table.insert(out, attempt)
end
publish(channel, 'active', started, now)
return out
