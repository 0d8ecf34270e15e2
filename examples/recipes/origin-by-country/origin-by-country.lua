-- origin-by-country.lua (origin-request): viewers in the European Union get
-- the EU origin, everyone else the behavior's own, by the
-- CloudFront-Viewer-Country header verge adds before the cache (the Lambda@Edge
-- recipe "content based on country"). The behavior keys its cache on the
-- country, so each country's objects come from the right origin. Where the EU
-- origin is comes from the function's env.
local EU = {}
for code in string.gmatch("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK", "%u%u") do
    EU[code] = true
end

function handler(event, context)
    local request = event.Records[1].cf.request
    local country = request.headers["cloudfront-viewer-country"]
    if country ~= nil and EU[country[1].value] then
        -- Host follows the chosen origin unless the function sets it.
        request.origin.custom.domainName = os.getenv("EU_ORIGIN_HOST")
        request.origin.custom.port = tonumber(os.getenv("EU_ORIGIN_PORT"))
    end
    return request
end
