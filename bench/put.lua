-- wrk script for the "single-record PUT" line.
-- Each request replaces one of the seeded records (ids u00000..u<N-1>), so the
-- data set keeps its size and both servers do the same work: an update of an
-- existing record. Ids walk the range with a per-thread offset so threads
-- don't hammer the same row.
--
-- Environment (read with os.getenv, set by bench/run.sh):
--   BENCH_AUTH     value of the Authorization header ("Basic ...")
--   BENCH_RECORDS  how many records were seeded
--   BENCH_PATH     records path, e.g. /v1/buckets/bench/collections/users/records
--   BENCH_OFFSET   where in the id range this wrk starts (default 0; bench/server_pg.sh
--                  runs two wrk at once and starts the second half-way)

local threads = {}
local counter = 0

function setup(thread)
  -- setup() runs in the main Lua state: give every thread its own number.
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = tonumber(os.getenv("BENCH_RECORDS") or "10000")
  path = os.getenv("BENCH_PATH") or "/v1/buckets/bench/collections/users/records"
  wrk.method = "PUT"
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
  wrk.headers["Content-Type"] = "application/json"
  -- Threads start at different points of the id range.
  counter = tonumber(os.getenv("BENCH_OFFSET") or "0") + (tid or 0) * 4999
end

function request()
  counter = counter + 1
  local i = counter % n
  local body = string.format('{"data":{"username":"user%05d","age":%d}}', i, 18 + (counter % 70))
  return wrk.format(nil, string.format("%s/u%05d", path, i), nil, body)
end

-- With BENCH_STATUS set (bench/server_pg.sh), count the answers that are not 2xx by
-- status and print "status 409: N" lines after wrk's summary. Off by default: a
-- response() callback makes wrk hand every answer to Lua, which costs wrk time.
if os.getenv("BENCH_STATUS") then
  statuses = {}
  function response(status, headers, body)
    if status < 200 or status > 299 then
      statuses[status] = (statuses[status] or 0) + 1
    end
  end

  function done(summary, latency, requests)
    local total = {}
    for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
        total[status] = (total[status] or 0) + n
      end
    end
    for status, n in pairs(total) do
      io.write(string.format("status %d: %d\n", status, n))
    end
  end
end
