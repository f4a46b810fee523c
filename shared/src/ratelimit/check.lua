-- Meterline's one script per metered request: revocation mark, per-key and per-org GCRA
-- limits, and the org's quota, checked and counted atomically. Mirrors gcra.rs and local.rs.
--
-- KEYS[1] revocation mark of the key   KEYS[2] the key's TAT   KEYS[3] the org's TAT
-- KEYS[4] the org's quota counter for the period
-- ARGV: now_ms, key_rpm (0 = none), org_rpm, quota_limit (-1 = none), quantity, quota_expire_at_ms
-- Returns {code, limit, remaining, reset_ms, retry_after_ms, quota_limit, quota_used}
-- code: 0 allowed, 1 revoked, 2 rate limited, 3 quota exceeded.
local now = tonumber(ARGV[1])
local key_rpm = tonumber(ARGV[2])
local org_rpm = tonumber(ARGV[3])
local quota_limit = tonumber(ARGV[4])
local quantity = tonumber(ARGV[5])
local quota_expire_at = tonumber(ARGV[6])
local period = 60000

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, 0, 0, 0, 0, 0, 0}
end

local function test(tat_key, rpm)
  local interval = math.floor(period / rpm)
  local tat = tonumber(redis.call('GET', tat_key) or '0')
  local start = math.max(tat, now)
  local new_tat = start + interval
  local allowed = (new_tat - now) <= interval * rpm
  local horizon = allowed and new_tat or start
  local remaining = math.max(math.floor((interval * rpm - (horizon - now)) / interval), 0)
  local retry = 0
  if not allowed then retry = math.max(new_tat - now - interval * rpm, 1) end
  return {allowed = allowed, new_tat = new_tat, limit = rpm, remaining = remaining,
          reset = math.max(horizon - now, 0), retry = retry}
end

local org = test(KEYS[3], org_rpm)
local binding = org
local key = nil
if key_rpm > 0 then
  key = test(KEYS[2], key_rpm)
  if (not key.allowed and org.allowed) or (key.allowed == org.allowed and key.remaining < org.remaining) then
    binding = key
  end
end
if not org.allowed or (key and not key.allowed) then
  local retry = org.retry
  if key and key.retry > retry then retry = key.retry end
  return {2, binding.limit, binding.remaining, binding.reset, retry, 0, 0}
end

local used = 0
if quota_limit >= 0 then
  used = tonumber(redis.call('GET', KEYS[4]) or '0')
  if used + quantity > quota_limit then
    return {3, binding.limit, binding.remaining, binding.reset, 0, quota_limit, used}
  end
  used = redis.call('INCRBY', KEYS[4], quantity)
  redis.call('PEXPIREAT', KEYS[4], quota_expire_at)
end

redis.call('SET', KEYS[3], org.new_tat, 'PX', math.max(org.new_tat - now, 1))
if key then
  redis.call('SET', KEYS[2], key.new_tat, 'PX', math.max(key.new_tat - now, 1))
end
return {0, binding.limit, binding.remaining, binding.reset, 0, math.max(quota_limit, 0), used}
