-- wrk script for etcd's v3 JSON gateway on bench-NNNNNNNN (keys and values base64 encoded):
-- BENCH_OP=put writes, BENCH_OP=range reads (linearizable; serializable when BENCH_STALE=1).
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

local path = (op == "put") and "/v3/kv/put" or "/v3/kv/range"
local value = base64(string.rep("x", size))
local bodies = {}
for i = 0, keys - 1 do
  local key = '{"key":"' .. base64(string.format("bench-%08d", i)) .. '"'
  if op == "put" then
    bodies[i] = key .. ',"value":"' .. value .. '"}'
  else
    bodies[i] = key .. serializable .. '}'
  end
end
local headers = {["Content-Type"] = "application/json"}

request = function()
  return wrk.format("POST", path, headers, bodies[math.random(0, keys - 1)])
end
