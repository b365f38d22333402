-- wrk script: GET /kv/bench-NNNNNNNN (linearizable), or ?stale=true when BENCH_STALE=1.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local suffix = (os.getenv("BENCH_STALE") == "1") and "?stale=true" or ""

request = function()
  return wrk.format("GET", string.format("/kv/bench-%08d", math.random(0, keys - 1)) .. suffix)
end
