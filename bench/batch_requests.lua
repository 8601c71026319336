-- wrk script: cycle through pre-built requests read from a file (batched CRM deliveries), count answers.
-- Usage: wrk ... -s bench/batch_requests.lua URL -- <requests file> <threads>
-- File lines: path TAB headers TAB body, headers as "Name: value" joined by "\031" (unit separator);
-- the body holds no newline. Thread k sends lines k, k+T, k+2T, ... A 2xx answer counts as accepted.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local file, total = args[1], tonumber(args[2])
  prepared = {}
  local line_number = 0
  for line in io.lines(file) do
    if line_number % total == index then
      local path, header_text, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      for pair in string.gmatch(header_text, "[^\031]+") do
        local name, value = pair:match("^([^:]*): (.*)$")
        headers[name] = value
      end
      table.insert(prepared, wrk.format("POST", path, headers, body))
    end
    line_number = line_number + 1
  end
  cursor = 0
  wrapped = 0
  accepted, duplicate, other = 0, 0, 0
end

function request()
  cursor = cursor + 1
  if cursor > #prepared then
    cursor = 1
    wrapped = wrapped + 1
  end
  return prepared[cursor]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    accepted = accepted + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, d, o, w = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("accepted")
    d = d + thread:get("duplicate")
    o = o + thread:get("other")
    w = w + thread:get("wrapped")
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d accepted=%d duplicate=%d other=%d"
      .. " socket_errors=%d wrapped=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    a, d, o, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    w))
end
