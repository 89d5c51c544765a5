-- Record, on a dependency's slot, that another task waits for it.
-- KEYS: 1 the dependency's task hash (routes the call to its Cluster slot)
-- ARGV: 1 base of the dependency's queue, 2 dependency id, 3 dependent ref ('queue|id')
-- Returns: the dependency's state, or false when it does not exist
local base, dep_id, ref = ARGV[1], ARGV[2], ARGV[3]
local state = redis.call('HGET', task_key(base, dep_id), 'state')
if not state then return false end
local dkey = dependents_key(base, dep_id)
redis.call('SADD', dkey, ref)
local ttl = redis.call('PTTL', task_key(base, dep_id))
if ttl > 0 then redis.call('PEXPIRE', dkey, ttl) end
return state
