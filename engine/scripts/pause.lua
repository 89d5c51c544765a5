-- Pause or resume a queue. A paused queue keeps accepting tasks and hands out none.
-- KEYS: 1 paused flag
-- ARGV: 1 channel, 2 '1' to pause, '0' to resume (published on the arrivals channel)
-- Returns: 1 if the flag changed
local now = now_ms()
local changed
if ARGV[2] == '1' then
  changed = redis.call('SET', KEYS[1], now, 'NX') and 1 or 0
else
  changed = redis.call('DEL', KEYS[1])
end
if changed == 1 and ARGV[1] ~= '' then
  local event = ARGV[2] == '1' and 'paused' or 'resumed'
  redis.call('PUBLISH', event_channel(ARGV[1], event), cjson.encode({v = 1, e = event, ids = {}, t = now}))
end
return changed
