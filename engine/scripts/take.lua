-- Start the hand-offs a worker took from its inbox, in the round trip that took them: the
-- worker pipelines `BLMOVE <inbox> <taken> LEFT RIGHT <s>` and this call, and Valkey runs a
-- blocked client's next command once its pop is served, so the attempt is charged before either
-- reply leaves the server (no start mark round trip between pop and run; start.lua's rule holds:
-- the handler runs only on this reply). The worker holds `room` free slots for the take: while
-- there is room, more records move from the inbox here (a burst in one round trip).
-- Lost replies: a record stays in the taken list, started, until the worker confirms it got it
-- (its id and token in a later call's ARGV). Until then every call returns it again with the
-- attempt it started as, so a reply lost in flight neither strands a charged task nor charges it
-- twice (the worker's next take holds the same slots for it).
-- '' in the list is a wake-up (the worker pushed it to end its own BLMOVE) and is dropped.
-- KEYS: 1 active, 2 dep outbox, 3 taken (this worker's, QueueKeys.taken), 4 inbox (its)
-- ARGV: 1 base, 2 channel, 3 retention ms of expired tasks, 4 lease ms (the taken list's TTL:
--       a dead worker's goes with its leases), 5 room, then pairs: id, token of each record the
--       worker received in the last reply it got
-- Returns: {left in the inbox, record, attempt, ...} for every record not yet confirmed: the
--          record as enqueue.lua pushed it, attempt as start.lua answers (0: refused or
--          expired); {} when there was nothing.
local base, channel, retention, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local room = tonumber(ARGV[5])
local confirmed = received_from(ARGV, 6)
local items = redis.call('LRANGE', KEYS[3], 0, -1)
-- (anything but a record, e.g. a wake-up, is dropped: it must not wedge every later call)
local keep, drop, prefix = {}, {}, 0
for _, item in ipairs(items) do
  local id, token = unreceived_handoff(item, confirmed)
  if id then
    keep[#keep + 1] = {item, id, token}
  else
    drop[#drop + 1] = item
    if prefix == #drop - 1 and #keep == 0 then prefix = #drop end
  end
end
-- more hand-offs, while the slots held for this take last
local emptied = false
while #keep < room and not emptied do
  local item = redis.call('LMOVE', KEYS[4], KEYS[3], 'LEFT', 'RIGHT')
  if not item then
    emptied = true
  else
    local id, token = unreceived_handoff(item, confirmed)
    if id then keep[#keep + 1] = {item, id, token} else redis.call('LREM', KEYS[3], -1, item) end
  end
end
if #items == 0 and #keep == 0 then return {} end
-- what waits in the inbox beyond the room (the worker's next take holds room for it)
local left = emptied and 0 or redis.call('LLEN', KEYS[4])
if #keep == 0 then
  redis.call('DEL', KEYS[3])
else
  -- what is dropped is a prefix (each call returns everything it leaves), bar a lost reply
  if prefix == #drop then
    if prefix > 0 then redis.call('LTRIM', KEYS[3], prefix, -1) end
  else
    for _, item in ipairs(drop) do redis.call('LREM', KEYS[3], 1, item) end
  end
  redis.call('PEXPIRE', KEYS[3], lease_ms)
end
local now = now_ms()
local out, started, missed = {left}, {}, nil -- (missed: made when a first one is)
for _, k in ipairs(keep) do
  local attempt, what = start_reserved(base, KEYS[1], KEYS[2], k[2], k[3], now, retention)
  if what == 'started' then
    started[#started + 1] = k[2]
  elseif what == 'expired' then
    missed = missed or {}
    missed[#missed + 1] = k[2]
  end
  out[#out + 1], out[#out + 2] = k[1], attempt
end
publish(channel, 'active', started, now)
if missed then publish(channel, 'expired', missed, now) end
return out
