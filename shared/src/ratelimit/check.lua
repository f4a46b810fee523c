-- Meterline's one script per metered request: revocation mark, per-key and per-org GCRA
-- limits, and the org's quota, checked and counted atomically. Mirrors gcra.rs and local.rs.
--
-- KEYS[1] revocation mark of the key   KEYS[2] the key's TAT   KEYS[3] the org's TAT
-- KEYS[4..] the org's quota counters for the period, one per meter used
-- ARGV: now_ms, key_rpm (0 = none), org_rpm, then per quota: limit, quantity, expire_at_ms
-- Returns {code, limit, remaining, reset_ms, retry_after_ms, quota_limit, quota_used}
-- (the quota reported is the first one, or the first without room)
-- code: 0 allowed, 1 revoked, 2 rate limited, 3 quota exceeded.
-- Time runs in microseconds inside (exact costs up to 1,000,000/min); TTLs and replies in ms.
local now = tonumber(ARGV[1]) * 1000
local key_rpm = tonumber(ARGV[2])
local org_rpm = tonumber(ARGV[3])
local period = 60000000

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
  if not allowed then retry = math.ceil(math.max(new_tat - now - interval * rpm, 1) / 1000) end
  return {allowed = allowed, new_tat = new_tat, limit = rpm, remaining = remaining,
          reset = math.ceil(math.max(horizon - now, 0) / 1000), retry = retry}
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

redis.call('SET', KEYS[3], string.format('%.0f', org.new_tat), 'PX', math.max(math.ceil((org.new_tat - now) / 1000), 1))
if key then
  redis.call('SET', KEYS[2], string.format('%.0f', key.new_tat), 'PX', math.max(math.ceil((key.new_tat - now) / 1000), 1))
end
local first = quotas[1] or {limit = 0, used = 0}
return {0, binding.limit, binding.remaining, binding.reset, 0, first.limit, first.used}
