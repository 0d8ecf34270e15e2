-- add-header.lua: a trivial edge function (Lambda@Edge's contract). At a
-- response trigger it adds a header to the response; at a request trigger
-- to the request. The value comes from the function's "env".
function handler(event, context)
    local cf = event.Records[1].cf
    local message = cf.response or cf.request
    message.headers["x-edge-function"] = {{key = "X-Edge-Function", value = os.getenv("HEADER_VALUE") or "add-header"}}
    return message
end
