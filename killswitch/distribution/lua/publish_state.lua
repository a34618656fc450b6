-- Writes the whole state atomically and announces it, unless Redis already holds a
-- newer version (two publishers after two commits can run in either order; the newer
-- one wins). Loaded by killswitch/distribution/scripts.py, which fills in the severity placeholder
-- with the severity table of killswitch.domain.
-- KEYS: trading_switch, state hash, scopes hash, channel
-- ARGV: version, global level, levels JSON, details JSON, message JSON, updated_at, force,
--       judged (the trading_switch value the caller has judged and reverts, or '')
-- a version that is not a number (written by hand) counts as none
local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '-1') or -1
local version = tonumber(ARGV[1])
if current > version and ARGV[7] ~= '1' then
  return 0
end
local sev = {{SEVERITY}}
local switch = redis.call('GET', KEYS[1])
local published = redis.call('HGET', KEYS[2], 'global')
-- trading_switch as the seed reads it (trimmed, lower case), when that names a level
local seen = switch and string.lower(switch):match('^%s*(.-)%s*$')
if seen and sev[seen] == nil then seen = nil end
-- A level there other than the one we last published is an out-of-band write (redis-cli
-- SET) the reconciler has not judged yet. It stays, for the reconciler to judge and audit:
-- - when it is more severe than the level published now (never undo a stop here);
-- - when this publish leaves the global level as it was published (a republish of the
--   same version, a change of another scope: it decides nothing about trading_switch;
--   a resume after the cooldown is such a write), unless forced or it is the very value
--   the caller judged and now reverts (ARGV[8]).
-- A publish that changes the global level otherwise is a newer decision and overwrites
-- it; another spelling of the published level is only put right.
local keep = seen and published and seen ~= published
             and (sev[seen] > (sev[ARGV[2]] or -1)
                  or (published == ARGV[2] and ARGV[7] ~= '1' and switch ~= ARGV[8]))
if not keep then
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'version', ARGV[1], 'updated_at', ARGV[6])
-- one field at a time: unpack() of thousands of scopes exceeds Lua's stack
for scope, level in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', KEYS[2], scope, level)
end
for scope, detail in pairs(cjson.decode(ARGV[4])) do
  redis.call('HSET', KEYS[3], scope, detail)
end
local message = cjson.decode(ARGV[5])
message['trading_switch'] = redis.call('GET', KEYS[1])
redis.call('PUBLISH', KEYS[4], cjson.encode(message))
return 1
