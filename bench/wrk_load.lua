-- The bench's HTTP load through wrk (bench/wrk_load.py writes the inputs and reads the output).
--
-- Arguments (after wrk's `--`): the requests file, "1" to check GraphQL bodies, wrk's thread
-- count. The output file is named by RAGQL_WRK_OUT (`done` runs outside the threads' states).
-- The requests file holds whole HTTP requests, each as "<byte length>\n<bytes>"; each thread
-- cycles through all of them from its own offset. wrk counts socket errors and times every
-- response; what it cannot see, a 200 whose body carries GraphQL `errors` (top level, or in a
-- mutation's payload), is counted here. The output is a small JSON document: wrk's counters,
-- these errors with their first reasons, and the latency histogram (microseconds, count).

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function read_requests(path)
  local fh = assert(io.open(path, "rb"))
  local data = fh:read("*a")
  fh:close()
  local out, pos = {}, 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    table.insert(out, data:sub(nl + 1, nl + len))
    pos = nl + 1 + len
  end
  return out
end

function init(args)
  reqs = read_requests(args[1])
  check = args[2] == "1"
  -- Threads start at spread-out offsets, so they do not all send the same request at once.
  nth = (id * math.floor(#reqs / math.max(1, tonumber(args[3]) or 1))) % #reqs
  failed = 0
  reason = ""
end

function request()
  nth = nth % #reqs + 1
  return reqs[nth]
end

local function body_failure(body)
  -- Empty lists and nulls are not errors; a JSON string never holds an unescaped `"errors"`.
  local rest = body:gsub('"errors":%s*%[%s*%]', ""):gsub('"errors":%s*null', "")
  if rest:find('"errors"', 1, true) then
    return "graphql: " .. body:sub(1, 160)
  end
  return nil
end

function response(status, headers, body)
  local why = nil
  if status ~= 200 then
    why = "HTTP " .. status .. ": " .. (body or ""):sub(1, 160)
  elseif check then
    why = body_failure(body or "")
  end
  if why then
    failed = failed + 1
    if reason == "" then
      reason = why
    end
  end
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local failures, reasons = 0, {}
  for _, t in ipairs(threads) do
    failures = failures + t:get("failed")
    local r = t:get("reason")
    if r ~= "" then
      table.insert(reasons, quote(r))
    end
  end
  local hist = {}
  for i = 1, #latency do
    local value, count = latency(i)
    table.insert(hist, string.format("[%d,%d]", value, count))
  end
  local e = summary.errors
  local fh = assert(io.open(os.getenv("RAGQL_WRK_OUT"), "w"))
  fh:write(string.format(
    '{"duration_us":%d,"requests":%d,"failed":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,',
    summary.duration, summary.requests, failures, e.connect, e.read, e.write, e.status, e.timeout))
  fh:write('"reasons":[' .. table.concat(reasons, ",") .. '],"latency_us":[' .. table.concat(hist, ",") .. "]}\n")
  fh:close()
end
