-- Gives back what an allowed batch.lua spent when the request could not be served (the sink
-- refused its events): one GCRA interval on each rate limit, the new events' quota units, and
-- their remembered ids, so a retry spends once and counts as new.
--
-- KEYS[1] the key's TAT   KEYS[2] the org's TAT   KEYS[3 .. 2+nq] quota counters
-- KEYS[3+nq ..] id marks to delete
-- ARGV: key_rpm (0 = none), org_rpm, nq, then per quota: units to give back
local key_rpm = tonumber(ARGV[1])
local org_rpm = tonumber(ARGV[2])
local nq = tonumber(ARGV[3])
local period = 60000000

local function give_back(tat_key, rpm)
  if rpm > 0 and redis.call('EXISTS', tat_key) == 1 then
    redis.call('DECRBY', tat_key, math.floor(period / rpm))
  end
end
give_back(KEYS[1], key_rpm)
give_back(KEYS[2], org_rpm)
for q = 1, nq do
  local amount = ARGV[3 + q]
  if amount ~= '0' and redis.call('EXISTS', KEYS[2 + q]) == 1 then
    local used = tonumber(redis.call('GET', KEYS[2 + q]))
    if used < tonumber(amount) then
      redis.call('SET', KEYS[2 + q], 0, 'KEEPTTL')
    else
      redis.call('DECRBY', KEYS[2 + q], amount)
    end
  end
end
for i = 3 + nq, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 0
