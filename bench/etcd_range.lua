-- wrk script: etcd v3 JSON gateway range (linearizable), serializable when BENCH_STALE=1.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
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

local bodies = {}
for i = 0, keys - 1 do
  bodies[i] = '{"key":"' .. base64(string.format("bench-%08d", i)) .. '"' .. serializable .. '}'
end
local headers = {["Content-Type"] = "application/json"}

request = function()
  return wrk.format("POST", "/v3/kv/range", headers, bodies[math.random(0, keys - 1)])
end
