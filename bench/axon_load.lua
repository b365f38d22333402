-- wrk script: write keys key-00000000 .. key-(BENCH_KEYS-1) exactly once, split between threads;
-- each thread stops when its share is acknowledged, so wrk ends when the load is done.
local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local body = '{"value":"' .. string.rep("v", tonumber(os.getenv("BENCH_VALUE_SIZE") or "100")) .. '"}'
local headers = {["Content-Type"] = "application/json"}
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
  local share = math.ceil(keys / nthreads)
  lo = (id - 1) * share
  hi = math.min(keys, id * share)
  next_key = lo
  acked = 0
  failed = 0
end

request = function()
  local k = next_key
  if k >= hi then k = hi - 1 end   -- in-flight slack after the share is sent: rewrite the last key
  next_key = next_key + 1
  return wrk.format("PUT", string.format("/kv/key-%08d", k), headers, body)
end

response = function(status, headers, body)
  if status == 200 then acked = acked + 1 else failed = failed + 1 end
  if acked + failed >= hi - lo then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local failures = 0
  for _, t in ipairs(threads) do failures = failures + (t:get("failed") or 0) end
  io.write(string.format("load-failures: %d\n", failures))
end
