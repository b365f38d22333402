-- wrk script: PUT /kv/bench-NNNNNNNN with a JSON value; key space and value size from the environment.
-- BENCH_TOKEN, when set, goes on every request as "Authorization: Bearer <token>" (auth on).
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local body = '{"value":"' .. string.rep("x", tonumber(os.getenv("BENCH_VALUE_SIZE") or "100")) .. '"}'
local headers = {["Content-Type"] = "application/json"}
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then headers["Authorization"] = "Bearer " .. token end

request = function()
  return wrk.format("PUT", string.format("/kv/bench-%08d", math.random(0, keys - 1)), headers, body)
end
