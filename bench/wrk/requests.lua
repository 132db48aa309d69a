-- wrk script for bench/api.py: replays a file of prepared requests, one per line, tab-separated:
--   METHOD  PATH  BEARER-TOKEN-or-empty  IDEMPOTENCY-KEY-or-empty  JSON-BODY-or-empty
-- Usage: wrk -t T -c C -d D -s requests.lua URL -- FILE cycle|once T
-- Thread t takes lines t, t+T, t+2T...: no two requests share an Idempotency-Key. "cycle" starts over at
-- the end (reads); "once" stops the thread (creates: a replayed key would be an idempotent replay).
-- done() prints one line "WRKJSON {...}" with counts by status and latency percentiles in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local file, mode, nthreads = args[1], args[2], tonumber(args[3])
  cycle = mode == "cycle"
  statuses = {}
  reqs = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == tid then
      local method, path, token, key, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      if token ~= "" then headers["Authorization"] = "Bearer " .. token end
      if key ~= "" then headers["Idempotency-Key"] = key end
      if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
      reqs[#reqs + 1] = wrk.format(method, path, headers, body)
    end
    n = n + 1
  end
  i = 1
  exhausted = 0
end

function request()
  if i > #reqs then
    if cycle then
      i = 1
    else
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
  end
  local r = reqs[i]
  i = i + 1
  return r
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg, parts, exhausted_threads = {}, {}, 0
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses")) do
      agg[code] = (agg[code] or 0) + count
    end
    exhausted_threads = exhausted_threads + t:get("exhausted")
  end
  for code, count in pairs(agg) do
    parts[#parts + 1] = string.format('"%d":%d', code, count)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"exhausted_threads":%d,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d},"by_status":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, exhausted_threads,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    table.concat(parts, ",")))
end
