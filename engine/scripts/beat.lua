-- A worker's registry entry, refreshed on its heartbeat (engine/worker/protocol.py
-- beat_registry): only the fields that changed since its last beat are written (an idle
-- worker's beat wrote its ~300-byte entry whole every two seconds), the whole entry when the
-- hash is gone (it expired while the worker stalled, or an operator or a failover lost it), so
-- a reader never finds an entry with fields missing.
-- KEYS: 1 the worker's hash
-- ARGV: 1 heartbeat (server time ms), 2 TTL ms, 3 how many of the field pairs after it changed
--       since the worker's last beat that got a reply; then those pairs, then the others
-- Returns: how many fields were written
local changed = tonumber(ARGV[3])
local last = #ARGV
if redis.call('EXISTS', KEYS[1]) == 1 then last = 3 + 2 * changed end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[1], unpack(ARGV, 4, last))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1 + (last - 3) / 2
