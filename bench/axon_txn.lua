-- wrk script: POST /txn, a compare-and-swap over two keys (txn-a-N, txn-b-N): if a == "v" then put
-- a and b, else put a and b too, so every transaction writes two keys whatever the compare says.
-- etcd_kv.lua with BENCH_OP=txn sends the same transaction to etcd.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local headers = {["Content-Type"] = "application/json"}
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then headers["Authorization"] = "Bearer " .. token end
local bodies = {}
for i = 0, keys - 1 do
  local a, b = string.format("txn-a-%05d", i), string.format("txn-b-%05d", i)
  local puts = '[{"op":"put","key":"' .. a .. '","value":"v"},{"op":"put","key":"' .. b .. '","value":"v"}]'
  bodies[i] = '{"compare":[{"key":"' .. a .. '","value":"v"}],"success":' .. puts .. ',"failure":' .. puts .. '}'
end

request = function()
  return wrk.format("POST", "/txn", headers, bodies[math.random(0, keys - 1)])
end
