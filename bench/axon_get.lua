-- wrk script: GET /kv/bench-NNNNNNNN (linearizable), or ?stale=true when BENCH_STALE=1.
-- BENCH_TOKEN, when set, goes on every request as "Authorization: Bearer <token>" (auth on).
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local suffix = (os.getenv("BENCH_STALE") == "1") and "?stale=true" or ""
local token = os.getenv("BENCH_TOKEN") or ""
local headers = nil   -- nil: wrk's default headers
if token ~= "" then headers = {["Authorization"] = "Bearer " .. token} end

request = function()
  return wrk.format("GET", string.format("/kv/bench-%08d", math.random(0, keys - 1)) .. suffix, headers)
end
