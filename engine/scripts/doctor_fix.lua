-- Doctor repairs of one key each, every one re-checking its condition at repair time (the
-- doctor's findings come from a snapshot that live workers may have overtaken).
-- KEYS: 1 the key to repair
-- ARGV: 1 kind, then per kind:
--   'unique', base: drop the unique lock KEYS[1] when its holder is finished or gone
--   'group', base, fp, ids...: drop from failure group KEYS[1] the ids whose 'fp' is not fp
--   'counter', ttl s: give the per-minute counter KEYS[1] a TTL when it has none
--   'seq', base, ids...: raise the sequence KEYS[1] to the largest 'seq' of those tasks
--   'worker', cutoff ms, worker id: drop it from the registry KEYS[1] if it has not beaten
--             since the cutoff
--   'worker_hash', cutoff ms: delete the worker hash KEYS[1] if it has not beaten since
-- Returns: how many things it changed (0: the condition no longer holds)
local kind = ARGV[1]
if kind == 'unique' then
  local holder = redis.call('GET', KEYS[1])
  if not holder then return 0 end
  local state = redis.call('HGET', task_key(ARGV[2], holder), 'state')
  if state == 'pending' or state == 'scheduled' or state == 'waiting' or state == 'active'
      or state == 'retry' then
    return 0
  end
  redis.call('DEL', KEYS[1])
  return 1
elseif kind == 'group' then
  local n = 0
  for i = 4, #ARGV do
    if redis.call('HGET', task_key(ARGV[2], ARGV[i]), 'fp') ~= ARGV[3] then
      n = n + redis.call('ZREM', KEYS[1], ARGV[i])
    end
  end
  return n
elseif kind == 'counter' then
  if redis.call('TTL', KEYS[1]) ~= -1 then return 0 end
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
elseif kind == 'seq' then
  local top = 0
  for i = 3, #ARGV do
    top = math.max(top, tonumber(redis.call('HGET', task_key(ARGV[2], ARGV[i]), 'seq')) or 0)
  end
  if (tonumber(redis.call('GET', KEYS[1])) or 0) >= top then return 0 end
  redis.call('SET', KEYS[1], fmt(top))
  return 1
elseif kind == 'worker' then
  local beat = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[3]))
  if not beat or beat > tonumber(ARGV[2]) then return 0 end
  return redis.call('ZREM', KEYS[1], ARGV[3])
elseif kind == 'worker_hash' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  local beat = tonumber(redis.call('HGET', KEYS[1], 'heartbeat'))
  if beat and beat > tonumber(ARGV[2]) then return 0 end
  return redis.call('DEL', KEYS[1])
end
return redis.error_reply('doctor_fix: unknown kind ' .. tostring(kind))
