-- redirect-map.lua (origin-request): answers moved paths with a 301 from a
-- table kept next to the code; other requests go on to the origin. At
-- origin-request the redirect is cached, so the function runs once per path.
local redirects = require("redirects")

function handler(event, context)
    local request = event.Records[1].cf.request
    local target = redirects[request.uri]
    if target == nil then
        return request
    end
    return {
        status = "301",
        statusDescription = "Moved Permanently",
        headers = {
            location = {{key = "Location", value = target}},
            ["cache-control"] = {{key = "Cache-Control", value = "max-age=3600"}},
        },
    }
end
