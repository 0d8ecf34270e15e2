-- ab-testing.lua (viewer-request): sends each viewer to /experiment-a or
-- /experiment-b by its "experiment" cookie; a viewer without one is assigned
-- a group at random (and the origin sees the group in X-Experiment, so it can
-- set the cookie on its answer).
local function cookie_value(headers, name)
    for _, header in ipairs(headers["cookie"] or {}) do
        for pair in string.gmatch(header.value, "[^;]+") do
            local key, value = string.match(pair, "^%s*([^=]+)=(.*)$")
            if key == name then
                return value
            end
        end
    end
    return nil
end

function handler(event, context)
    local request = event.Records[1].cf.request
    if string.sub(request.uri, 1, 12) == "/experiment/" then
        local group = cookie_value(request.headers, "experiment")
        if group ~= "a" and group ~= "b" then
            group = math.random() < 0.5 and "a" or "b"
        end
        request.uri = "/experiment-" .. group .. string.sub(request.uri, 12)
        request.headers["x-experiment"] = {{key = "X-Experiment", value = group}}
    end
    return request
end
