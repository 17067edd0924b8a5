-- wrk script: sends pre-signed NotMeta deliveries, each one a distinct event id.
--
-- The requests come from a file written by the load tool:
--
--   cargo run --release -p notmeta-tools --bin load -- wrk-requests /tmp/signed.req 120000
--   wrk -t2 -c16 -d3s --latency -s tools/wrk/signed.lua \
--       http://127.0.0.1:PORT/webhooks -- /tmp/signed.req 2
--
-- Arguments after `--`: the file, and the number of wrk threads (`-t`). Each thread
-- takes its own contiguous slice of the file, so no two threads send the same id,
-- and cycles through it: a slice must last longer than the receiver's dedup window
-- at the rate reached, or repeated ids are answered as duplicates (`load serve`
-- remembers ids for 0.5 s; `load wrk-compare` checks this after each run).
--
-- The file: a first line `notmeta-wrk-requests <record length> <count>`, then
-- <count> records of exactly <record length> bytes: each an HTTP/1.1 request's
-- headers after `Host` (Content-Type, X-NotMeta-Signature, Content-Length), the
-- blank line and the body. The request line and `Host` come from the URL given to
-- wrk, so the requests are prepared once, here in `init`, before the run, and
-- `request()` only picks the next one.
--
-- `done` prints one line for the load tool to read:
--   WRK requests=… duration_us=… status=… connect=… read=… write=… timeout=… p50_us=… p99_us=…
-- where `status` counts the answers wrk sees as errors (status 400 and above).

local next_thread = 0

function setup(thread)
   thread:set("thread_index", next_thread)
   next_thread = next_thread + 1
end

local requests = {}
local count = 0
local position = 0

function init(args)
   local path, threads = args[1], tonumber(args[2] or "1")
   if path == nil or threads == nil or threads < 1 then
      error("usage: wrk ... -s signed.lua URL -- FILE THREADS")
   end
   local file = assert(io.open(path, "rb"))
   local header = file:read("*l")
   local magic, length, total = header:match("^(%S+) (%d+) (%d+)$")
   if magic ~= "notmeta-wrk-requests" then
      error(path .. " is not a file of `load wrk-requests`")
   end
   length, total = tonumber(length), tonumber(total)
   local per_thread = math.floor(total / threads)
   if per_thread < 1 then
      error("fewer requests than threads in " .. path)
   end
   local index = thread_index % threads
   file:seek("cur", index * per_thread * length)
   local slice = file:read(per_thread * length)
   file:close()
   if slice == nil or #slice ~= per_thread * length then
      error(path .. " is shorter than its first line says")
   end
   local prefix = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n"
   for i = 0, per_thread - 1 do
      requests[i + 1] = prefix .. slice:sub(i * length + 1, (i + 1) * length)
   end
   count = per_thread
end

function request()
   position = position + 1
   if position > count then
      position = 1
   end
   return requests[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
