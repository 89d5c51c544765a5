-- Complete a batch of active tasks of one queue.
-- KEYS: 1 active, 2 completed, 3 dep outbox
-- ARGV: 1 base, 2 channel, 3 retention ms, then triples: id, token (the delivery's, see
--       token_of in _lib.lua), result_json ('' none)
-- A task stored with 'keep' (keep_result ms, see enqueue.lua) expires that long after it
-- completes instead of after the retention (at least the retention when others depend on it:
-- their release and dependency_results read it); 'keep' 0 stores no result.
-- Returns: {refused ids, ids with dependents to notify}; refused ids were not acknowledged
--          because this delivery no longer owns the task (its lease expired and it was handed
--          out again, or it was cancelled, deleted, requeued) or never started it.
local base, channel, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local done, stale, notified = {}, {}, {}
local indexed = {} -- score, id pairs for the completed set (done: the ids to leave active)
for i = 4, #ARGV, 3 do
  local id, token, result = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local tk = task_key(base, id)
  local f = redis.call('HMGET', tk, 'state', 'reserved', 'fp', 'unique', 'deps', 'worker', 'dlv', 'keep',
    'log', 'grp', 'entered', 'cancel')
  local keep = tonumber(f[8])
  local owned = token_of(f[6], f[7]) == token
  if f[1] == 'active' and owned and f[2] ~= '1' then
    if f[3] then leave_group(base, id, f[3]) end
    cgroup_free(base, f[10], id)
    if result ~= '' and keep ~= 0 then
      redis.call('HSET', tk, 'state', 'completed', 'finished', now, 'result', result)
    else
      redis.call('HSET', tk, 'state', 'completed', 'finished', now)
    end
    -- 'lease' stays (a command and ~100 AOF bytes fewer per task): it means something only
    -- while the task is active, and every reader tests the state first; 'reserved' is not '1'
    if f[12] then redis.call('HDEL', tk, 'cancel') end
    indexed[#indexed + 1], indexed[#indexed + 2] = now, id
    if f[4] and f[4] ~= '' then release_unique(base, id) end
    local has_dependents = notify_dependents(base, KEYS[3], id, now)
    if has_dependents then table.insert(notified, id) end
    -- the deps set exists only for tasks enqueued with dependencies ('deps' field)
    local ttl = retention
    if keep and keep > 0 then ttl = has_dependents and math.max(keep, retention) or keep end
    expire_task(base, id, ttl, has_dependents, f[5] ~= false and f[5] ~= '', f[9] ~= false)
    -- the 'completed' entry is implied by 'finished' for a hash written with 'entered'
    -- (settle_completed in _lib.lua); an older hash gets it pushed as before
    if not f[11] then history(base, id, now, 'completed', '') end
    table.insert(done, id)
  elseif f[1] ~= 'completed' or not owned then
    table.insert(stale, id)
  end -- (completed by this delivery already: a copy of this call sent again after a lost reply)
end
if #done > 0 then
  -- the batch's index moves in one command each
  zrem_all(KEYS[1], done)
  zadd_pairs(KEYS[2], indexed)
  bump_stat(base, 'p', now, #done)
  -- (the completed index loses the ids whose hashes expired in the workers' maintenance pass,
  -- ops.trim_finished_indexes, every few seconds: not a call per ack)
  publish(channel, 'completed', done, now)
end
return {stale, notified}
