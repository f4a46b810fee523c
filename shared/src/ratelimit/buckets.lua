-- Independent GCRA buckets checked together: each bucket is its own limit, keyed only by what
-- it limits (an email address, a client IP), so no bucket is filed under another. Nothing is
-- counted unless every bucket allows. Mirrors `LocalLimiter::check_buckets` and gcra.rs.
--
-- KEYS[i] the TAT of bucket i        ARGV[1] now_ms, ARGV[1 + i] bucket i's limit per minute
-- Returns {code, limit, remaining, reset_ms, retry_after_ms} of the binding bucket
-- code: 0 allowed, 2 rate limited. Time runs in microseconds inside, replies in ms.
local tested = {}
local binding = nil
local refused = false
local retry = 0
for i = 1, #KEYS do
  local t = test(KEYS[i], math.max(tonumber(ARGV[i + 1]), 1))
  tested[i] = t
  if not t.allowed then
    refused = true
    if t.retry > retry then retry = t.retry end
  end
  if binding == nil or (not t.allowed and binding.allowed)
      or (t.allowed == binding.allowed and t.remaining < binding.remaining) then
    binding = t
  end
end
if binding == nil then
  return {0, 0, 0, 0, 0}
end
if refused then
  return {2, binding.limit, binding.remaining, binding.reset, retry}
end
for i = 1, #KEYS do
  commit(KEYS[i], tested[i])
end
return {0, binding.limit, binding.remaining, binding.reset, 0}
