-- Start reserved (prefetched or handed-off) tasks: only now does their delivery count as an
-- attempt. The handler runs only after this call's reply says the task started, so a worker
-- that dies at any point never runs an attempt Redis did not charge.
-- KEYS: 1 active (routes the call to the queue's slot), 2 dep outbox
-- ARGV: 1 base, 2 channel, 3 retention ms of expired tasks, then pairs: id, token (the
--       delivery's, see token_of in _lib.lua)
-- A reserved task whose 'exp' deadline passed (prefetched or handed off by enqueue.lua, then
-- held until a slot freed) is not started: it ends expired (to_expired in _lib.lua), refused.
-- Returns: flat list {id, attempt} for started tasks; attempt 0 when refused (the token is not
--          the task's current delivery: its lease ran out and it went on, or it was cancelled,
--          deleted, requeued meanwhile; or the task is still reserved but its lease ran out).
-- A call sent again gets the same answer: a task this delivery already started (an earlier
-- copy of the call ran, its reply was lost) answers with the attempt it started as.
local base, channel, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out, started, missed = {}, {}, {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker', 'dlv', 'exp', 'lease',
    'entered')
  local attempt = 0
  -- a reserved task whose lease ran out is not started: the next dequeue (often the one in
  -- this very batch, from a worker waking from a stall) recovers it uncharged. Charged now, it
  -- would be recovered as "worker died during attempt n", dead with max_retry 0, never run.
  local lease = tonumber(f[7])
  local lapsed = f[3] == '1' and lease ~= nil and lease <= now
  if f[1] == 'active' and f[3] == '1' and f[6] and token_of(f[4], f[5]) == token
    and past_deadline(f[6], now) then
    redis.call('ZREM', KEYS[1], id)
    to_expired(base, KEYS[2], id, now, 'reserved by ' .. f[4], retention)
    table.insert(missed, id)
  elseif f[1] == 'active' and token_of(f[4], f[5]) == token and not lapsed then
    attempt = tonumber(f[2]) or 0
    if f[3] == '1' then
      attempt = attempt + 1
      -- 'reserved' '0' rather than HDEL: one command; every reader tests for '1'
      redis.call('HSET', tk, 'attempts', attempt, 'started', now, 'reserved', '0')
      -- implied by 'started' and 'worker' for a hash with 'entered' (settle_active in _lib.lua)
      if not f[8] then history(base, id, now, 'active', f[4]) end
      table.insert(started, id)
    end
  end
  table.insert(out, id); table.insert(out, attempt)
end
publish(channel, 'active', started, now)
publish(channel, 'expired', missed, now)
return out
