-- Start the hand-offs a worker took from its inbox, in the round trip that took them: the
-- worker pipelines `BLMOVE <inbox> <taken> LEFT RIGHT <s>` and this call, and Valkey runs a
-- blocked client's next command once its pop is served, so the attempt is charged before either
-- reply leaves the server (no start mark round trip between pop and run; start.lua's rule holds:
-- the handler runs only on this reply). The worker holds a free slot for the one task the
-- BLMOVE moves.
-- Lost replies: a record stays in the taken list, started, until the worker confirms it got it
-- (its id and token in a later call's ARGV). Until then every call returns it again with the attempt
-- it started as, so a reply lost in flight neither strands a charged task nor charges it twice.
-- '' in the list is a wake-up (the worker pushed it to end its own BLMOVE) and is dropped.
-- KEYS: 1 active, 2 dep outbox, 3 taken (this worker's, QueueKeys.taken)
-- ARGV: 1 base, 2 channel, 3 retention ms of expired tasks, 4 lease ms (the taken list's TTL:
--       a dead worker's goes with its leases), then pairs: id, token of each record the worker
--       received in the last reply it got
-- Returns: flat list {record, attempt, ...} for every record not yet confirmed: the record as
--          enqueue.lua pushed it, attempt as start.lua answers (0: refused or expired).
local base, channel, retention, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local items = redis.call('LRANGE', KEYS[3], 0, -1)
if #items == 0 then return {} end
local confirmed = {}
for i = 5, #ARGV, 2 do confirmed[ARGV[i]] = ARGV[i + 1] end
local now = now_ms()
local out, started, missed = {}, {}, {}
local drop, prefix = {}, 0
for _, item in ipairs(items) do
  -- (anything but a record, e.g. a wake-up, is dropped: it must not wedge every later call)
  local ok, record = pcall(cjson.decode, item)
  local token = ok and type(record) == 'table' and record[11] or nil
  if type(token) ~= 'string' or confirmed[record[1]] == token then
    drop[#drop + 1] = item
    if prefix == #drop - 1 and #out == 0 then prefix = #drop end
  else
    local id = record[1]
    local attempt, what = start_reserved(base, KEYS[1], KEYS[2], id, token, now, retention)
    if what == 'started' then table.insert(started, id) elseif what == 'expired' then table.insert(missed, id) end
    out[#out + 1], out[#out + 2] = item, attempt
  end
end
if #drop == #items then
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
publish(channel, 'active', started, now)
publish(channel, 'expired', missed, now)
return out
