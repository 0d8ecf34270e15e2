-- add-header.lua: a trivial edge function (Lambda@Edge's contract, see
-- docs/functions.md). At a response trigger it adds a header to the response;
-- at a request trigger to the request (which the origin then gets). The value
-- comes from the function's "env". (Not X-Edge-*: those names are reserved.)
function handler(event, context)
    local cf = event.Records[1].cf
    local message = cf.response or cf.request
    message.headers["x-added-by"] = {{key = "X-Added-By", value = os.getenv("HEADER_VALUE") or "add-header"}}
    return message
end
