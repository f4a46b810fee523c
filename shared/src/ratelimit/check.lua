-- Meterline's one script per metered request: revocation mark, per-key and per-org GCRA
-- limits, and the org's quota, checked and counted atomically. Mirrors gcra.rs and local.rs.
--
-- KEYS[1] revocation mark of the key   KEYS[2] the key's TAT   KEYS[3] the org's TAT
-- KEYS[4..] the org's quota counters for the period, one per meter used
-- ARGV: now_ms, key_rpm (0 = none), org_rpm, then per quota: limit, quantity, expire_at_ms
-- Returns {code, limit, remaining, reset_ms, retry_after_ms, quota_limit, quota_used}
-- (the quota reported is the first one, or the first without room)
-- code: 0 allowed, 1 revoked, 2 rate limited, 3 quota exceeded.
-- GCRA and time units: gcra.lua, which redis.rs puts in front of this script.
local key_rpm = tonumber(ARGV[2])
local org_rpm = tonumber(ARGV[3])

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, 0, 0, 0, 0, 0, 0}
end

local org, key, binding, refused = key_and_org(KEYS[2], KEYS[3], key_rpm, org_rpm)
if refused then return refused end

local quotas = {}
for i = 4, #KEYS do
  local base = 4 + (i - 4) * 3
  local limit, quantity = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + quantity > limit then
    return {3, binding.limit, binding.remaining, binding.reset, 0, limit, used}
  end
  quotas[#quotas + 1] = {key = KEYS[i], quantity = quantity, expire = tonumber(ARGV[base + 2]),
                         limit = limit, used = used + quantity}
end
for _, q in ipairs(quotas) do
  redis.call('INCRBY', q.key, q.quantity)
  redis.call('PEXPIREAT', q.key, q.expire)
end

commit(KEYS[3], org)
if key then commit(KEYS[2], key) end
local first = quotas[1] or {limit = 0, used = 0}
return {0, binding.limit, binding.remaining, binding.reset, 0, first.limit, first.used}
