-- wrk script for etcd's v3 JSON gateway on bench-NNNNNNNN (keys and values base64 encoded):
-- BENCH_OP=put writes, BENCH_OP=range reads (linearizable; serializable when BENCH_STALE=1),
-- BENCH_OP=txn the two-key compare-and-swap of axon_txn.lua (txn-a-N, txn-b-N: if a == "v" then
-- put a and b, else put a and b, so every transaction writes two keys).
local op = os.getenv("BENCH_OP") or "put"
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local size = tonumber(os.getenv("BENCH_VALUE_SIZE") or "100")
local serializable = (os.getenv("BENCH_STALE") == "1") and ',"serializable":true' or ""
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

local paths = {put = "/v3/kv/put", range = "/v3/kv/range", txn = "/v3/kv/txn"}
local path = paths[op]
local value = base64(string.rep("x", size))

local function txn_body(i)
  local a, b, v = base64(string.format("txn-a-%05d", i)), base64(string.format("txn-b-%05d", i)), base64("v")
  local puts = '[{"request_put":{"key":"' .. a .. '","value":"' .. v .. '"}},' ..
               '{"request_put":{"key":"' .. b .. '","value":"' .. v .. '"}}]'
  return '{"compare":[{"key":"' .. a .. '","result":"EQUAL","target":"VALUE","value":"' .. v .. '"}],' ..
         '"success":' .. puts .. ',"failure":' .. puts .. '}'
end

local bodies = {}
for i = 0, keys - 1 do
  local key = '{"key":"' .. base64(string.format("bench-%08d", i)) .. '"'
  if op == "put" then
    bodies[i] = key .. ',"value":"' .. value .. '"}'
  elseif op == "txn" then
    bodies[i] = txn_body(i)
  else
    bodies[i] = key .. serializable .. '}'
  end
end
local headers = {["Content-Type"] = "application/json"}

request = function()
  return wrk.format("POST", path, headers, bodies[math.random(0, keys - 1)])
end
