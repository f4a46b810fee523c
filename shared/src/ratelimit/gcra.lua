-- The GCRA every limiter script shares; redis.rs puts it in front of each script, which stays
-- one EVALSHA. Mirrors gcra.rs. ARGV[1] is always now_ms. Time runs in microseconds inside
-- (exact costs up to 1,000,000/min); TTLs and replies in ms.
local now = tonumber(ARGV[1]) * 1000
local period = 60000000

-- One bucket at `now`, tested without counting.
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

-- Counts a tested bucket: its new TAT, kept only as long as it matters.
local function commit(tat_key, tested)
  redis.call('SET', tat_key, string.format('%.0f', tested.new_tat), 'PX',
             math.max(math.ceil((tested.new_tat - now) / 1000), 1))
end

-- A metered request's per-key (0 = none) and per-org limits, tested together: the buckets, the
-- binding one (the refusing one, else the one with less room), and the refusal reply if any.
local function key_and_org(key_tat, org_tat, key_rpm, org_rpm)
  local org = test(org_tat, org_rpm)
  local binding = org
  local key = nil
  if key_rpm > 0 then
    key = test(key_tat, key_rpm)
    if (not key.allowed and org.allowed) or (key.allowed == org.allowed and key.remaining < org.remaining) then
      binding = key
    end
  end
  if not org.allowed or (key and not key.allowed) then
    local retry = org.retry
    if key and key.retry > retry then retry = key.retry end
    return org, key, binding, {2, binding.limit, binding.remaining, binding.reset, retry, 0, 0}
  end
  return org, key, binding, nil
end

