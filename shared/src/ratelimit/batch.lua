-- One metered request with its events (`Limiter::check_batch`), checked and counted atomically:
-- revocation mark, per-key and per-org GCRA limits (as check.lua), the org's meter cap, and
-- the quotas of the events whose ids were not counted within the dedup window. The ids of the
-- counted events are remembered in the same step, so dedup and spend cannot disagree.
--
-- KEYS[1] revocation mark   KEYS[2] the key's TAT   KEYS[3] the org's TAT   KEYS[4] the org's meters
-- KEYS[5 .. 4+nq] quota counters; then, when dedup_ttl > 0, one id mark per event
-- ARGV: now_ms, key_rpm (0 = none), org_rpm, nq, dedup_ttl_ms (0 = ids not remembered),
--       max_meters (0 = no cap), nm, then nm meter names, then per quota: limit, expire_at_ms,
--       then per event: quota index (1-based, 0 = none), quantity
-- Returns {code, limit, remaining, reset_ms, retry_after_ms, quota_limit, quota_used, dup...}
-- code: 0 allowed, 1 revoked, 2 rate limited, 3 quota exceeded, 4 too many meters (quota_limit
-- is then the cap); dup: one 0/1 per event, 1 = seen within the dedup window (not counted).
local key_rpm = tonumber(ARGV[2])
local org_rpm = tonumber(ARGV[3])
local nq = tonumber(ARGV[4])
local dedup_ttl = tonumber(ARGV[5])
local max_meters = tonumber(ARGV[6])
local nm = tonumber(ARGV[7])

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, 0, 0, 0, 0, 0, 0}
end

local org, key, binding, refused = key_and_org(KEYS[2], KEYS[3], key_rpm, org_rpm)
if refused then return refused end

if max_meters > 0 then
  local fresh = 0
  for m = 1, nm do
    if redis.call('SISMEMBER', KEYS[4], ARGV[7 + m]) == 0 then fresh = fresh + 1 end
  end
  if fresh > 0 and redis.call('SCARD', KEYS[4]) + fresh > max_meters then
    return {4, binding.limit, binding.remaining, binding.reset, 0, max_meters, 0}
  end
end

local quota_base = 8 + nm
local event_base = quota_base + nq * 2
local ne = (#ARGV - event_base + 1) / 2
local adding = {}
for q = 1, nq do adding[q] = 0 end
local dups = {}
for e = 1, ne do
  local seen = 0
  if dedup_ttl > 0 and redis.call('EXISTS', KEYS[4 + nq + e]) == 1 then seen = 1 end
  dups[e] = seen
  local q = tonumber(ARGV[event_base + (e - 1) * 2])
  if seen == 0 and q > 0 then
    adding[q] = adding[q] + tonumber(ARGV[event_base + (e - 1) * 2 + 1])
  end
end

local first_limit, first_used = 0, 0
for q = 1, nq do
  local limit = tonumber(ARGV[quota_base + (q - 1) * 2])
  local used = tonumber(redis.call('GET', KEYS[4 + q]) or '0')
  if used + adding[q] > limit then
    local reply = {3, binding.limit, binding.remaining, binding.reset, 0, limit, used}
    for e = 1, ne do reply[#reply + 1] = dups[e] end
    return reply
  end
  if q == 1 then first_limit, first_used = limit, used + adding[q] end
end

-- Everything allows: count the new events (exact integers from ARGV), remember their ids.
for e = 1, ne do
  if dups[e] == 0 then
    local q = tonumber(ARGV[event_base + (e - 1) * 2])
    if q > 0 then
      redis.call('INCRBY', KEYS[4 + q], ARGV[event_base + (e - 1) * 2 + 1])
    end
    if dedup_ttl > 0 then
      redis.call('SET', KEYS[4 + nq + e], 1, 'PX', dedup_ttl)
    end
  end
end
for q = 1, nq do
  if redis.call('EXISTS', KEYS[4 + q]) == 1 then
    redis.call('PEXPIREAT', KEYS[4 + q], ARGV[quota_base + (q - 1) * 2 + 1])
  end
end
if max_meters > 0 and nm > 0 then
  local meters = {}
  for m = 1, nm do meters[m] = ARGV[7 + m] end
  redis.call('SADD', KEYS[4], unpack(meters))
end

commit(KEYS[3], org)
if key then commit(KEYS[2], key) end
local reply = {0, binding.limit, binding.remaining, binding.reset, 0, first_limit, first_used}
for e = 1, ne do reply[#reply + 1] = dups[e] end
return reply
