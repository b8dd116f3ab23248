-- Runs one Argo CD resource-customization script the way Argo CD does: the object as the
-- global `obj`, the chunk's return value as the answer, and only the libraries Argo CD's
-- sandbox offers. Prints the answer as JSON.
--   lua5.1 harness.lua INPUT.lua SCRIPT.lua     (INPUT.lua returns the object as a table)
local input_path, script_path = arg[1], arg[2]
local obj = dofile(input_path)
local chunk = assert(loadfile(script_path))
setfenv(chunk, {
  obj = obj,
  pairs = pairs, ipairs = ipairs, next = next, type = type, select = select,
  tostring = tostring, tonumber = tonumber, error = error, pcall = pcall, unpack = unpack,
  table = table, string = string, math = math,
  os = { time = os.time, date = os.date, clock = os.clock },
})

local encode
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end
function encode(v)
  local t = type(v)
  if t == "nil" then
    return "null"
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%d", v)
    end
    return string.format("%.17g", v)
  elseif t == "string" then
    return encode_string(v)
  elseif t == "table" then
    local count = 0
    for _ in pairs(v) do
      count = count + 1
    end
    local parts = {}
    if count > 0 and #v == count then
      for _, item in ipairs(v) do
        parts[#parts + 1] = encode(item)
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = encode_string(k) .. ":" .. encode(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. t)
end

io.write(encode(chunk()))
