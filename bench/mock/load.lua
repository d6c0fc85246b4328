-- wrk: POST to one of 100 endpoints with a fresh nonce, timestamp and token in the body and a header.
math.randomseed(os.time())
local counter = 0
request = function()
  counter = counter + 1
  local ep = counter % 100
  local nonce = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local body = string.format('{"account":"acct-%d","currency":"EUR","id":%d,"nonce":"%s","ts":"%s","token":"%08x%08x%08x%08x"}',
    ep, counter % 100, nonce, os.date("!%Y-%m-%dT%H:%M:%SZ"), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  return wrk.format("POST", "/v1/e" .. ep .. "/items", {["Content-Type"] = "application/json", ["X-Request-Nonce"] = nonce, ["Host"] = "api.bench.local"}, body)
end
