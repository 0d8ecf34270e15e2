-- The redirect table of redirect-map.lua: old path -> new location.
return {
    ["/old"] = "/new",
    ["/blog/2019/hello"] = "/posts/hello",
    ["/docs"] = "https://docs.example.com/",
}
