-- basic-auth.lua (viewer-request): lets a request through only with the
-- configured credentials; anything else gets a 401 asking for them. The
-- credentials are the function's env CREDENTIALS: base64 of "user:password".
function handler(event, context)
    local request = event.Records[1].cf.request
    local expected = "Basic " .. (os.getenv("CREDENTIALS") or "")
    local given = request.headers["authorization"]
    if given ~= nil and given[1].value == expected then
        return request
    end
    return {
        status = "401",
        statusDescription = "Unauthorized",
        headers = {
            ["www-authenticate"] = {{key = "WWW-Authenticate", value = 'Basic realm="' .. (os.getenv("REALM") or "verge") .. '"'}},
        },
        body = "Unauthorized",
    }
end
