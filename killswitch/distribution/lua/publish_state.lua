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
-- trading_switch differing from the global level we last published, and more severe
-- than the one we publish now, is an out-of-band escalation (redis-cli SET) that the
-- reconciler has not audited yet: never undo it here; the reconciler applies it.
local switch = redis.call('GET', KEYS[1])
local published = redis.call('HGET', KEYS[2], 'global')
local keep = switch and published and switch ~= published
             and (sev[switch] or -1) > (sev[ARGV[2]] or -1)
-- A publish that leaves the global level as it was published (a republish of the same
-- version, a change of another scope) decides nothing about trading_switch, so any other
-- level in it (as the seed reads it: trimmed, lower case) is an out-of-band write not
-- judged yet (a resume after the cooldown is one): it stays for the reconciler to judge
-- and audit, unless it is the very value the caller judged and now reverts. Another
-- spelling of the published level is only put right. A publish that changes the global
-- level is a person's (or a breaker's) newer decision and overwrites it.
if not keep and switch and published == ARGV[2] and ARGV[7] ~= '1' and switch ~= ARGV[8] then
  local seen = string.lower(switch):match('^%s*(.-)%s*$')
  keep = sev[seen] ~= nil and seen ~= published
end
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
