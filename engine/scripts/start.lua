-- Start reserved (prefetched) tasks: only now does their delivery count as an attempt.
-- KEYS: 1 active (routes the call to the queue's slot)
-- ARGV: 1 base, 2 channel, 3 worker id, then pairs: id, attempt (the uncharged count)
-- Returns: flat list {id, new attempt} for started tasks; 0 when the lease was lost meanwhile.
-- A call sent again gets the same answer: a task it finds already started by this worker at
-- the next attempt counts as started.
local base, channel, worker = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local out, started = {}, {}
for i = 4, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'attempts', 'reserved', 'worker')
  local new_attempt = 0
  if f[1] == 'active' and f[2] == attempt and f[3] == '1' and f[4] == worker then
    new_attempt = tonumber(attempt) + 1
    redis.call('HSET', tk, 'attempts', new_attempt, 'started', now)
    redis.call('HDEL', tk, 'reserved')
    history(base, id, now, 'active', worker)
    table.insert(started, id)
  elseif f[1] == 'active' and f[3] ~= '1' and f[4] == worker and f[2] == tostring(tonumber(attempt) + 1) then
    -- started by an earlier copy of this same call (sent again after its reply was lost): the
    -- task is this worker's to run, as that copy's reply would have said
    new_attempt = tonumber(attempt) + 1
  end
  table.insert(out, id); table.insert(out, new_attempt)
end
publish(channel, 'active', started, now)
return out
