-- security-headers.lua (viewer-response): adds the usual security headers to
-- every response, as in the Lambda@Edge recipe. Origins that set one keep theirs.
local added = {
    {"Strict-Transport-Security", "max-age=63072000; includeSubDomains; preload"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "same-origin"},
    {"Content-Security-Policy", "default-src 'self'"},
}

function handler(event, context)
    local response = event.Records[1].cf.response
    for _, header in ipairs(added) do
        local name = string.lower(header[1])
        if response.headers[name] == nil then
            response.headers[name] = {{key = header[1], value = header[2]}}
        end
    end
    return response
end
