-- Start reserved (prefetched or handed-off) tasks: only now does their delivery count as an
-- attempt. The handler runs only after this call's reply says the task started, so a worker
-- that dies at any point never runs an attempt Redis did not charge.
-- KEYS: 1 active (routes the call to the queue's slot), 2 dep outbox
-- ARGV: 1 base, 2 channel, 3 retention ms of expired tasks, then pairs: id, token (the
--       delivery's, see token_of in _lib.lua)
-- A reserved task whose 'exp' deadline passed (prefetched or handed off by enqueue.lua, then
-- held until a slot freed) is not started: it ends expired, refused (start_reserved in _lib.lua).
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
  local attempt, what = start_reserved(base, KEYS[1], KEYS[2], id, token, now, retention)
  if what == 'started' then table.insert(started, id) elseif what == 'expired' then table.insert(missed, id) end
  table.insert(out, id); table.insert(out, attempt)
end
publish(channel, 'active', started, now)
publish(channel, 'expired', missed, now)
return out
