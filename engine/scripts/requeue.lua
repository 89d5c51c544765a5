-- Put finished or parked tasks back into pending with a fresh attempt count. A task with a
-- unique key takes its lock again; when another live task holds that key, it is refused.
-- KEYS: 1 pending, 2 seq, 3 dead, 4 retry, 5 scheduled, 6 cancelled, 7 completed, 8 waiting
-- ARGV: 1 base, 2 channel, 3 note, then ids
-- A requeued task loses its 'expires' deadline (it would expire again at once).
-- Returns: {ids requeued, flat {id, reason} of tasks refused, server CPU us taken (-1: unknown)}
--          (ids active, pending or gone are skipped silently)
local started = cpu_seconds()
local base, channel, note = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local from = {dead = KEYS[3], retry = KEYS[4], scheduled = KEYS[5], cancelled = KEYS[6],
  completed = KEYS[7], waiting = KEYS[8], expired = expired_key(base)}
local moved, refused = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'entered', 'finished')
  local state = f[1]
  local why = nil
  if state and from[state] then why = retake_unique(base, id) end
  if why then
    refused[#refused + 1] = id; refused[#refused + 1] = why
  elseif state and from[state] then
    redis.call('ZREM', from[state], id)
    settle_completed(base, id, state, f[2], f[3])
    leave_group(base, id)
    redis.call('PERSIST', tk)
    redis.call('PERSIST', history_key(base, id))
    redis.call('PERSIST', log_key(base, id))
    redis.call('PERSIST', dependents_key(base, id))
    redis.call('DEL', deps_key(base, id))
    redis.call('HSET', tk, 'state', 'pending', 'attempts', 0, 'due', now)
    redis.call('HDEL', tk, 'finished', 'lease', 'cancel', 'reason', 'result', 'progress', 'pmsg',
      'reserved', 'worker', 'exp')
    redis.call('ZREM', expiries_key(base), id)
    redis.call('HINCRBY', tk, 'requeues', 1)
    redis.call('ZADD', KEYS[1], pending_score(base, KEYS[2], id), id)
    history(base, id, now, 'pending', note .. ' (was ' .. state .. ')')
    table.insert(moved, id)
  end
end
publish(channel, 'pending', moved, now, {why = note})
return {moved, refused, cpu_us_since(started)}
