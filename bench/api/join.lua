-- wrk script for bench:api: POST /api/voice/join as one account, cycling through the channels.
local token = os.getenv("HEARTH_TOKEN")
local channels = tonumber(os.getenv("HEARTH_CHANNELS") or "100")
local counter = 0

request = function()
  counter = counter + 1
  local body = '{"channel":"bench-' .. (counter % channels) .. '"}'
  return wrk.format("POST", "/api/voice/join", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
