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
  counter = (tid or 0) * 4999
end

function request()
  counter = counter + 1
  local i = counter % n
  local body = string.format('{"data":{"username":"user%05d","age":%d}}', i, 18 + (counter % 70))
  return wrk.format(nil, string.format("%s/u%05d", path, i), nil, body)
end
