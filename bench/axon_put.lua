-- wrk script: PUT /kv/bench-NNNNNNNN with a JSON value; key space and value size from the environment.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local body = '{"value":"' .. string.rep("x", tonumber(os.getenv("BENCH_VALUE_SIZE") or "100")) .. '"}'
local headers = {["Content-Type"] = "application/json"}

request = function()
  return wrk.format("PUT", string.format("/kv/bench-%08d", math.random(0, keys - 1)), headers, body)
end
