-- Adding to a table whose values are a single value or, once a key repeats,
-- a list of values in arrival order (headers, query arguments).
return function(t, key, value)
    local old = t[key]
    if old == nil then
        t[key] = value
    elseif type(old) == "table" then
        old[#old + 1] = value
    else
        t[key] = { old, value }
    end
end
