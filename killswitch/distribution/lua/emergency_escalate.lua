-- Raises one scope in Redis without the database (escalation only, never lowers),
-- queues the request for the audit log and announces the levels at the current
-- version. Loaded by killswitch/distribution/scripts.py (severity filled in).
-- KEYS: trading_switch, state hash, channel, pending list, log list
-- ARGV: scope, level, pending JSON, log JSON
local sev = {{SEVERITY}}
local current = redis.call('HGET', KEYS[2], ARGV[1]) or 'running'
local applied = current
if sev[ARGV[2]] > (sev[current] or -1) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  applied = ARGV[2]
end
if ARGV[1] == 'global' then
  local switch = redis.call('GET', KEYS[1])
  if switch == false or sev[ARGV[2]] > (sev[switch] or -1) then
    redis.call('SET', KEYS[1], ARGV[2])
  end
end
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[4])
local flat = redis.call('HGETALL', KEYS[2])
local levels = {}
for i = 1, #flat, 2 do
  if flat[i] ~= 'version' and flat[i] ~= 'updated_at' then levels[flat[i]] = flat[i + 1] end
end
local version = tonumber(redis.call('HGET', KEYS[2], 'version') or '0') or 0
redis.call('PUBLISH', KEYS[3], cjson.encode({type='state', version=version, levels=levels,
                                             event=cjson.decode(ARGV[4])}))
return applied
