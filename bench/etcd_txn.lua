-- wrk script for etcd's v3 JSON gateway: the same two-key compare-and-swap as axon_txn.lua
-- (if a == "v" then put a and b, else put a and b), keys and values base64 encoded.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64 + 1
      chars[#chars + 1] = b64:sub(k, k)
    end
    if not b then chars[3] = "=" end
    if not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

local v = base64("v")
local bodies = {}
for i = 0, keys - 1 do
  local a, b = base64(string.format("txn-a-%05d", i)), base64(string.format("txn-b-%05d", i))
  local puts = '[{"request_put":{"key":"' .. a .. '","value":"' .. v .. '"}},' ..
               '{"request_put":{"key":"' .. b .. '","value":"' .. v .. '"}}]'
  bodies[i] = '{"compare":[{"key":"' .. a .. '","result":"EQUAL","target":"VALUE","value":"' .. v .. '"}],' ..
              '"success":' .. puts .. ',"failure":' .. puts .. '}'
end
local headers = {["Content-Type"] = "application/json"}

request = function()
  return wrk.format("POST", "/v3/kv/txn", headers, bodies[math.random(0, keys - 1)])
end
