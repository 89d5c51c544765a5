-- Bring quarantined tasks back: finished ones to where they were; a waiting one to waiting
-- (the caller then re-registers its dependencies, so those already finished resolve); a
-- scheduled or retrying one to scheduled at its due time (pending if that has passed); the
-- others (pending, active, reserved) to pending, with no worker or lease. A live task with a
-- unique key takes its lock again; when another live task holds that key it stays
-- quarantined and is reported as refused.
-- KEYS: 1 quarantine, 2 pending, 3 seq, 4 dead, 5 completed, 6 cancelled, 7 waiting, 8 scheduled
-- ARGV: 1 base, 2 channel, 3 dead retention ms, 4 retention ms, then ids
-- Returns: {ids restored, flat {id, reason} of tasks refused, ids restored to waiting,
--          server CPU us taken (-1: unknown)}
local started = cpu_seconds()
local base, channel, dead_ttl, retention = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local finished = {dead = {KEYS[4], dead_ttl}, completed = {KEYS[5], retention}, cancelled = {KEYS[6], retention},
  expired = {expired_key(base), retention}}
local restored, refused, waiting = {}, {}, {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'qfrom', 'due', 'deps')
  local was = f[2] or ''
  local back = finished[was]
  local why = nil
  if f[1] == 'quarantined' and not back then why = retake_unique(base, id) end
  if why then
    refused[#refused + 1] = id; refused[#refused + 1] = why
  elseif f[1] == 'quarantined' then
    redis.call('ZREM', KEYS[1], id)
    if back then
      redis.call('HSET', tk, 'state', was)
      redis.call('ZADD', back[1], now, id)
      redis.call('PEXPIRE', tk, back[2]); redis.call('PEXPIRE', history_key(base, id), back[2])
      redis.call('PEXPIRE', log_key(base, id), back[2])
      history(base, id, now, was, 'restored from quarantine')
    else
      redis.call('PERSIST', tk); redis.call('PERSIST', history_key(base, id))
      redis.call('PERSIST', log_key(base, id))
      redis.call('PERSIST', dependents_key(base, id))
      redis.call('HSET', tk, 'attempts', 0)
      -- out of active for good: no worker holds it any more (a prefetched one was reserved)
      redis.call('HDEL', tk, 'finished', 'worker', 'reserved', 'lease', 'cancel')
      local due = tonumber(f[3]) or 0
      local deps = {}
      if was == 'waiting' and f[4] and f[4] ~= '' then deps = cjson.decode(f[4]) end
      local state
      if #deps > 0 then
        state = 'waiting'
        for _, ref in ipairs(deps) do redis.call('SADD', deps_key(base, id), ref) end
        redis.call('ZADD', KEYS[7], now, id)
        waiting[#waiting + 1] = id
      elseif (was == 'scheduled' or was == 'retry' or was == 'waiting') and due > now then
        state = 'scheduled'
        redis.call('ZADD', KEYS[8], fmt(due), id)
      else
        state = 'pending'
        redis.call('ZADD', KEYS[2], pending_score(base, KEYS[3], id), id)
      end
      redis.call('HSET', tk, 'state', state)
      history(base, id, now, state, 'restored from quarantine (was ' .. (was ~= '' and was or '?') .. ')')
    end
    redis.call('HDEL', tk, 'qfrom')
    table.insert(restored, id)
  end
end
publish(channel, 'restored', restored, now)
return {restored, refused, waiting, cpu_us_since(started)}
