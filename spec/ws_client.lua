-- A small WebSocket client (RFC 6455) for the specs, on luasocket through
-- spec.helpers' HTTP client: the opening handshake (with its
-- Sec-WebSocket-Accept checked), masked frames of any size (7-bit, 16-bit
-- and 64-bit lengths), pings, and the closing handshake from either side.
--
--   local ws_client = require "spec.ws_client"
--   local ws, res = ws_client.connect(port, { path = "/ws" })
--   ws:send_text("hi"); local kind, data = ws:receive()  --> "text", "hi"
--   ws:close(1000, "done")                               --> 1000, ""
local bit = require "bit"
local crypto = require "moongate.crypto"
local helpers = require "spec.helpers"

local band, bor, bxor, rshift = bit.band, bit.bor, bit.bxor, bit.rshift
local byte, char = string.byte, string.char

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local OPCODES = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
local KINDS = {}
for k, v in pairs(OPCODES) do
    KINDS[v] = k
end

local ws_client = {}

local Ws = {}
Ws.__index = Ws

--- The Sec-WebSocket-Accept value for a key.
function ws_client.accept_for(key)
    return crypto.base64_encode(crypto.sha1(key .. GUID))
end

-- XOR payload with the 4-byte mask, a few KiB at a time.
local function mask_payload(mask, payload)
    local m = { byte(mask, 1, 4) }
    local out = {}
    local step = 4096
    for i = 1, #payload, step do
        local piece = { byte(payload, i, math.min(i + step - 1, #payload)) }
        for j = 1, #piece do
            piece[j] = bxor(piece[j], m[(i + j - 2) % 4 + 1])
        end
        out[#out + 1] = char(unpack(piece))
    end
    return table.concat(out)
end

--- The bytes of one masked client frame. opcode: a number or a name;
-- fin defaults to true.
function ws_client.frame(opcode, payload, fin)
    payload = payload or ""
    opcode = OPCODES[opcode] or opcode
    local n = #payload
    local head
    local b0 = bor(fin == false and 0 or 0x80, opcode)
    if n < 126 then
        head = char(b0, bor(0x80, n))
    elseif n <= 0xffff then
        head = char(b0, 0x80 + 126, rshift(n, 8), band(n, 0xff))
    else
        local bytes = {}
        local v = n
        for i = 8, 1, -1 do
            bytes[i] = v % 256
            v = math.floor(v / 256)
        end
        head = char(b0, 0x80 + 127) .. char(unpack(bytes))
    end
    local mask = crypto.random_bytes(4)
    return head .. mask .. mask_payload(mask, payload)
end

--- n bytes of every byte value in turn (0, 1, ..., 255, 0, ...): a binary
-- payload whose corruption anywhere shows.
function ws_client.binary_string(n)
    local bytes = {}
    for i = 1, 256 do
        bytes[i] = string.char(i - 1)
    end
    return table.concat(bytes):rep(math.ceil(n / 256)):sub(1, n)
end

--- Open a WebSocket through `port`. opts: path ("/ws"), host, headers
-- (added to the handshake's), early (bytes sent in the same write as the
-- request, e.g. a first frame), timeout (seconds per socket operation).
-- Returns ws, res (the 101 response); or nil, err, res when the answer is
-- not a valid 101 (res is the answer, when one was read).
function ws_client.connect(port, opts)
    opts = opts or {}
    local c, err = helpers.connect(port, { timeout = opts.timeout or 10 })
    if not c then
        return nil, err
    end
    local key = crypto.base64_encode(crypto.random_bytes(16))
    local headers = {
        { "Upgrade", "websocket" },
        { "Connection", "Upgrade" },
        { "Sec-WebSocket-Key", key },
        { "Sec-WebSocket-Version", "13" },
    }
    for name, value in pairs(opts.headers or {}) do
        headers[#headers + 1] = { name, value }
    end
    local ok, serr = c:send(helpers.request_head {
        path = opts.path or "/ws", host = opts.host, headers = headers,
    } .. (opts.early or ""))
    if not ok then
        c:close()
        return nil, "sending the handshake: " .. tostring(serr)
    end
    local res, rerr = c:read_response()
    if not res then
        c:close()
        return nil, rerr
    end
    if res.status ~= 101 then
        return nil, "status " .. res.status, res, c
    end
    local accept = res.headers["sec-websocket-accept"]
    if accept ~= ws_client.accept_for(key) then
        c:close()
        return nil, "bad Sec-WebSocket-Accept " .. tostring(accept), res
    end
    return setmetatable({ client = c, sock = c.sock }, Ws), res
end

--- Send raw bytes. Returns true or nil, err.
function Ws:send_raw(bytes)
    return self.client:send(bytes)
end

function Ws:send_frame(opcode, payload, fin)
    return self:send_raw(ws_client.frame(opcode, payload, fin))
end

function Ws:send_text(s)
    return self:send_frame("text", s)
end

function Ws:send_binary(s)
    return self:send_frame("binary", s)
end

function Ws:ping(data)
    return self:send_frame("ping", data or "")
end

-- Read exactly n bytes.
function Ws:read(n)
    if n == 0 then
        return ""
    end
    local data, err, partial = self.sock:receive(n)
    if not data then
        return nil, err, partial
    end
    return data
end

--- Read one frame: kind ("text", "binary", "ping", "pong", "close",
-- "continuation"), payload, fin; or nil, err. Server frames must not be
-- masked.
function Ws:receive_frame()
    local h, err = self:read(2)
    if not h then
        return nil, err
    end
    local b0, b1 = byte(h, 1, 2)
    if band(b1, 0x80) ~= 0 then
        return nil, "masked frame from the server"
    end
    local n = band(b1, 0x7f)
    if n == 126 then
        local e = self:read(2)
        if not e then
            return nil, "closed in a frame header"
        end
        local x, y = byte(e, 1, 2)
        n = x * 256 + y
    elseif n == 127 then
        local e = self:read(8)
        if not e then
            return nil, "closed in a frame header"
        end
        n = 0
        for i = 1, 8 do
            n = n * 256 + byte(e, i)
        end
    end
    local payload, perr = self:read(n)
    if not payload then
        return nil, "closed in a frame payload: " .. tostring(perr)
    end
    return KINDS[band(b0, 0x0f)] or band(b0, 0x0f), payload, band(b0, 0x80) ~= 0
end

--- Read one message (fragments joined): kind, payload; or nil, err.
function Ws:receive()
    local kind, payload, fin = self:receive_frame()
    if not kind or fin or kind == "close" or kind == "ping" or kind == "pong" then
        return kind, payload
    end
    local parts = { payload }
    repeat
        local k, p, f = self:receive_frame()
        if not k then
            return nil, p
        end
        parts[#parts + 1] = p
        fin = f
    until fin
    return kind, table.concat(parts)
end

-- The status code and reason of a close frame's payload.
local function close_payload(payload)
    if #payload < 2 then
        return nil, ""
    end
    local x, y = byte(payload, 1, 2)
    return x * 256 + y, payload:sub(3)
end
ws_client.close_payload = close_payload

--- Start the closing handshake: send a close frame (code, reason), read
-- until the server's close frame, wait for the server to close the
-- connection, then close it too. Returns the server's code and reason, or
-- nil, err.
function Ws:close(code, reason)
    local payload = ""
    if code then
        payload = char(rshift(code, 8), band(code, 0xff)) .. (reason or "")
    end
    local ok, err = self:send_frame("close", payload)
    if not ok then
        return nil, err
    end
    while true do
        local kind, data = self:receive_frame()
        if not kind then
            return nil, data
        end
        if kind == "close" then
            local rcode, rreason = close_payload(data)
            local closed = self:closed(5)
            self.client:close()
            if not closed then
                return nil, "the server did not close the connection"
            end
            return rcode, rreason
        end
    end
end

--- Whether the server closes the connection within `timeout` seconds.
function Ws:closed(timeout)
    return self.client:closed(timeout)
end

--- Close the socket (no closing handshake).
function Ws:abort()
    self.client:close()
end

return ws_client
