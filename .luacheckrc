-- luacheck configuration: LuaJIT everywhere, busted's globals in specs.
std = "luajit"
max_line_length = 120
exclude_files = { "build/", "build-asan/" }

files["spec/"] = {
    std = "+busted",
}

-- `not (x >= y)` is how the PDK refuses NaN along with numbers out of
-- range; the suggested `x < y` would let NaN through.
ignore = { "581" }
