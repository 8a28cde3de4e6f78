-- luacheck configuration: LuaJIT everywhere, busted's globals in specs.
std = "luajit"
max_line_length = 120
exclude_files = { "build/", "build-asan/" }

files["spec/"] = {
    std = "+busted",
}
