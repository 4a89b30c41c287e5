-- kvrepl's Lua side of Redis 7.0 scripting (script_lua.c, eval.c): the `redis` API, the
-- sandboxed globals and the runner with its error handler. Loaded once per Lua state, with
-- the Python callbacks as arguments. Stock Lua 5.1 has no read-only tables (Redis patches its
-- Lua for them), so every table a script can reach from its globals is an empty proxy whose
-- metatable forwards reads and refuses writes.
local py = ...
local real_error, real_type, real_setmetatable, real_getmetatable = error, type, setmetatable, getmetatable
local real_rawset, real_rawget, real_next, real_select = rawset, rawget, next, select
local real_setfenv, real_loadstring = setfenv, loadstring
local real_xpcall, real_pcall, real_tostring, real_unpack = xpcall, pcall, tostring, unpack
local dbg = debug
local _G = _G

local READONLY = "Attempt to modify a readonly table"
local real_of = real_setmetatable({}, {__mode = "k"})   -- proxy -> protected table

local function refuse()
    real_error(READONLY, 2)
end

local function protect(t, index)
    local proxy = {}
    real_of[proxy] = t
    real_setmetatable(proxy, {__index = index or t, __newindex = refuse, __metatable = false})
    return proxy
end

local function unwrap(t)
    return real_of[t] or t
end

-- The redis table ------------------------------------------------------------------------
local redis = {}
-- redis.call and redis.pcall are the Python callbacks themselves: as C functions they keep
-- the script's frame on the stack in a tail call (`return redis.call(...)`), so errors
-- tell the script's line as Redis's do. redis.call raises its error table wrapped in a
-- Python exception; error_of unwraps it.
redis.call, redis.pcall = py.call, py.pcall
local error_of = py.error_of

local function unwrap_error(err)
    if real_type(err) == "userdata" then
        local inner = error_of(err)
        if inner ~= nil then return inner end
    end
    return err
end

-- The debugging session in progress (SCRIPT DEBUG): the Python debugger's callbacks, or nil.
local ldb = nil

local function error_table(text)
    -- luaPushErrorBuff: "-CODE msg" keeps CODE, anything else gets "ERR"; a debugging
    -- session that steps logs it
    if ldb then ldb.error(text) end
    local code, msg = "ERR", text
    if text:sub(1, 1) == "-" then
        local space = text:find(" ", 1, true)
        if space then
            code, msg = text:sub(2, space - 1), text:sub(space + 1)
        else
            msg = text:sub(2)
        end
    end
    msg = msg:gsub("^[\r\n]+", ""):gsub("[\r\n]+$", "")
    return {err = code .. " " .. msg}
end
py.set_error_table(error_table)

function redis.error_reply(...)
    local n, err = real_select("#", ...), ...
    if n ~= 1 or real_type(err) ~= "string" then return error_table("wrong number or type of arguments") end
    if err:sub(1, 1) ~= "-" then err = "-" .. err end
    return error_table(err)
end
function redis.status_reply(...)
    local n, status = real_select("#", ...), ...
    if n ~= 1 or real_type(status) ~= "string" then return error_table("wrong number or type of arguments") end
    return {ok = status}
end
-- These raise errors from Python, as C functions: a tail call keeps the script's frame.
redis.sha1hex, redis.log, redis.setresp, redis.set_repl = py.sha1hex, py.log, py.setresp, py.set_repl
function redis.replicate_commands() return true end
function redis.breakpoint()
    if ldb then return ldb.breakpoint() end
    return false
end
function redis.debug(...)
    if ldb then ldb.debug(real_select("#", ...), ...) end
end
redis.acl_check_cmd = py.acl_check_cmd
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = py.version, py.version_num

-- math.random / randomseed: Redis's own lrand48, the same sequence on every platform
local math_lib = {}
for k, v in real_next, math do math_lib[k] = v end
math_lib.random, math_lib.randomseed = py.random, py.randomseed

-- The sandbox's globals ------------------------------------------------------------------
local env = {}
local env_proxy
for _, name in real_next, py.builtins do env[name] = _G[name] end
local string_proxy = protect(string)
env.string = string_proxy
env.table = protect(table)
env.math = protect(math_lib)
-- errors raised from Python reach Lua code as the Lua values Redis raises
local coroutine_lib = {}
for k, v in real_next, coroutine do coroutine_lib[k] = v end
local real_resume = coroutine.resume
function coroutine_lib.resume(co, ...)
    local result = {real_resume(co, ...)}
    if not result[1] then result[2] = unwrap_error(result[2]) end
    return real_unpack(result, 1, table.maxn(result))
end
env.coroutine = protect(coroutine_lib)
env.redis = protect(redis)
for name, lib in real_next, py.libraries do env[name] = protect(lib) end

-- Redis replaces pcall so that the error tables of redis.call reach the caller as their
-- message (luaRedisPcall); functions that would reach around the proxies are wrapped.
env.pcall = function(f, ...)
    local result = {real_pcall(f, ...)}
    if not result[1] then result[2] = unwrap_error(result[2]) end
    if not result[1] and real_type(result[2]) == "table" then
        local msg = real_rawget(result[2], "err")
        if real_type(msg) == "string" then result[2] = msg end
    end
    return real_unpack(result, 1, table.maxn(result))
end
env.xpcall = function(f, on_error)
    return real_xpcall(f, function(err) return on_error(unwrap_error(err)) end)
end
env.rawset = function(t, k, v)
    if real_of[t] then real_error(READONLY, 0) end
    return real_rawset(t, k, v)
end
env.rawget = function(t, k) return real_rawget(unwrap(t), k) end
env.next = function(t, k) return real_next(unwrap(t), k) end
env.pairs = function(t) return real_next, unwrap(t), nil end
env.ipairs = function(t)
    local inner = unwrap(t)
    return function(_, i)
        i = i + 1
        local v = inner[i]
        if v ~= nil then return i, v end
    end, t, 0
end
env.unpack = function(t, ...) return real_unpack(unwrap(t), ...) end
local string_meta = protect({__index = string_proxy})
local globals_meta
env.getmetatable = function(v)
    local kind = real_type(v)
    if kind == "string" then return string_meta end
    -- the Python callables stand for C functions, which have no metatable (and lupa's
    -- metatable for Python objects is a plain table a script could change)
    if kind == "userdata" then return nil end
    if real_of[v] then
        -- the globals have Redis's error metatable (read-only), the libraries none
        if v == env_proxy then return globals_meta end
        return nil
    end
    return real_getmetatable(v)
end
env.setmetatable = function(t, mt)
    if real_of[t] then real_error(READONLY, 0) end
    return real_setmetatable(t, mt)
end
-- Redis's Lua refuses precompiled chunks (a way out of any sandbox): their first byte, ESC,
-- is then a syntax error, as the lexer reports it.
local function chunkid(name)
    local first = name:sub(1, 1)
    if first == "=" or first == "@" then return name:sub(2, 60) end
    local source = name:match("^[^%z]*")
    local len = #source:match("^[^\n\r]*")
    if len > 45 then len = 45 end
    if len < #source then return '[string "' .. source:sub(1, len) .. '..."]' end
    return '[string "' .. source .. '"]'
end

local function load_text(s, name)
    if real_type(s) == "string" and s:byte(1) == 27 then
        return nil, chunkid(name or s) .. ":1: unexpected symbol near 'char(27)'"
    end
    local f, err = real_loadstring(s, name)
    if f then real_setfenv(f, env_proxy) end
    return f, err
end

env.loadstring = function(s, name)
    return load_text(s, name)
end
env.load = function(reader, name)
    local parts = {}
    while true do
        local piece = reader()
        if piece == nil or piece == "" then break end
        if real_type(piece) ~= "string" then
            return nil, "reader function must return a string"
        end
        parts[#parts + 1] = piece
    end
    return load_text(table.concat(parts), name or "=(load)")
end

local function strict(t)
    -- luaSetErrorMetatable: reading a missing name is an error
    return function(_, name)
        local v = t[name]
        if v == nil then
            real_error("Script attempted to access nonexistent global variable '" .. real_tostring(name) .. "'", 2)
        end
        return v
    end
end

-- While FUNCTION LOAD runs a library's code, its globals are only a small `redis` table
-- (function_lua.c's library API); afterwards the functions see the whole API.
local load_env = {}
if py.register_function then
    local lib_redis = {register_function = py.register_function, log = py.log,
                       LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
                       REDIS_VERSION = py.version, REDIS_VERSION_NUM = py.version_num}
    load_env.redis = protect(lib_redis, strict(lib_redis))
end
-- A script's globals are read through the proxy from env itself (a table: no Lua call per
-- name found), then from env's own __index, which raises for a missing name; while a
-- library loads, from load_env through strict.
real_setmetatable(env, {__index = strict({})})
local env_proxy_meta = {__index = env, __newindex = refuse, __metatable = false}
env_proxy = real_setmetatable({}, env_proxy_meta)
real_of[env_proxy] = env
local loading_index = strict(load_env)
local function set_loading(on)
    env_proxy_meta.__index = on and loading_index or env
end
env._G = env_proxy
globals_meta = protect({__index = function(_, name) return env_proxy[name] end})

-- The runner -----------------------------------------------------------------------------
-- __redis__err__handler: the error as a table, with where the script raised it (the first
-- frame that is Lua code of the script, as Redis skips the C function that raised it).
local function handler(err)
    -- A message raised by a Python function (as luaL_error in a C function) is prefixed
    -- with where the script called it.
    local raised_by_python = real_type(err) == "userdata"
    err = unwrap_error(err)
    local level = 2
    local info = dbg.getinfo(level, "nSl")
    while info and (info.what == "C" or info.source == "=kvrepl") do
        level = level + 1
        info = dbg.getinfo(level, "nSl")
    end
    if real_type(err) ~= "table" then
        if raised_by_python and info and real_type(err) == "string" then
            err = info.short_src .. ":" .. info.currentline .. ": " .. err
        end
        err = {err = "ERR " .. real_tostring(err)}
    end
    if info then
        err.source = info.source
        err.line = info.currentline
    end
    return err
end

env.__redis__err__handler = handler

local hook_every = 100000
local interrupt = py.interrupt
local function killed()
    -- (only in the script's own code: not in the error handler nor in the runner)
    local info = dbg.getinfo(2, "S")
    if info and info.source ~= "=kvrepl" then
        real_error(error_table("Script killed by user with SCRIPT KILL..."))
    end
end
-- luaMaskCountHook: every 100000 instructions, past busy-reply-threshold the server serves
-- the other clients; once SCRIPT KILL came, the error is raised on every line after, so
-- that no pcall can keep the script alive.
-- The hook in place: "count" stays installed from one script to the next (installing and
-- removing it around every script costs more than the hook itself); any other is removed
-- when its script ends.
local hook = nil
local function count_hook()
    if interrupt() then
        hook = "killed"
        dbg.sethook(killed, "l")
        real_error(error_table("Script killed by user with SCRIPT KILL..."))
    end
end

-- The debugger (eval.c's luaLdbLineHook): each new line of the script goes to the Python
-- debugger, which may stop there and talk with the client; a message back is an error to
-- raise in the script (abort).
local function ldb_hook(event, line)
    local info = dbg.getinfo(2, "S")
    if not info or not info.short_src:find("user_script", 1, true) then return end
    local message = ldb.line(event == "count", dbg.getinfo(2, "l").currentline)
    if message then real_error(error_table(message)) end
end

-- What the debugger inspects, called from Python inside ldb.line: level 1 is the helper,
-- 2 the Python callback, 3 the hook, 4 the script's frame where it stopped.
local ldb_helpers = {}
function ldb_helpers.frames()
    local frames = {}
    local level = 4
    while true do
        local info = dbg.getinfo(level, "Snl")
        if not info or info.source == "=kvrepl" then break end
        local vars = {}
        local i = 1
        while true do
            local name, value = dbg.getlocal(level, i)
            if name == nil then break end
            vars[i] = {name, value}
            i = i + 1
        end
        frames[#frames + 1] = {src = info.short_src, name = info.name,
                               line = info.currentline, vars = vars}
        level = level + 1
    end
    return frames
end
function ldb_helpers.eval(code)
    -- ldbEval: an expression first, else a statement
    local f, err = load_text("return " .. code, "@ldb_eval")
    if not f then
        f, err = load_text(code, "@ldb_eval")
        if not f then return false, err end
    end
    local ok, result = real_pcall(f)
    if not ok then
        result = unwrap_error(result)
        if real_type(result) ~= "string" then result = nil end
    end
    return ok, result
end
function ldb_helpers.redis(...)
    real_pcall(redis.call, ...)
end
function ldb_helpers.global(name) return real_rawget(env, name) end
function ldb_helpers.address(value) return real_tostring(value) end

local function set_ldb(callbacks) ldb = callbacks end

-- How the next runs go (set from Python only when it changes, one argument less per run):
-- under the count hook (busy-reply-threshold), under the debugger's line hook.
local hooked, debugging = false, false
local function configure(count_hook_on, ldb_on)
    hooked, debugging = count_hook_on, ldb_on
end

-- The hook a run starts with, and the one it leaves: "count" stays installed from one
-- script to the next; any other is removed when its script ends.
local function hook_before()
    if debugging then
        hook = "ldb"
        dbg.sethook(ldb_hook, "l", hook_every)
    elseif hooked then
        if hook ~= "count" then
            hook = "count"
            dbg.sethook(count_hook, "", hook_every)
        end
    elseif hook then
        hook = nil
        dbg.sethook()
    end
end

local function hook_after()
    if hook and hook ~= "count" then
        hook = nil
        dbg.sethook()
    end
end

-- KEYS and ARGV come as the two tables, or (cheaper for a few) as the number of keys
-- followed by the keys and the arguments.
local function keys_and_args(nkeys, ...)
    if real_type(nkeys) == "table" then
        return nkeys, ...
    end
    local n = real_select("#", ...)
    if n == nkeys then
        return {...}, {}
    elseif nkeys == 0 then
        return {}, {...}
    end
    local keys, args = {...}, {real_select(nkeys + 1, ...)}
    for i = n, nkeys + 1, -1 do keys[i] = nil end
    return keys, args
end

-- An EVAL script: KEYS and ARGV are globals. The value alone when it ran (one value less
-- for lupa to convert), else false and the error.
local function run(f, nkeys, ...)
    env.KEYS, env.ARGV = keys_and_args(nkeys, ...)
    if hook ~= "count" or not hooked or debugging then hook_before() end
    local ok, result = real_xpcall(f, handler)
    if hook and hook ~= "count" then hook_after() end
    if ok then return result end
    return false, result
end

-- A function of a library: KEYS and ARGV are its arguments.
local function run_function(f, nkeys, ...)
    local keys, args = keys_and_args(nkeys, ...)
    hook_before()
    local ok, result = real_xpcall(function() return f(keys, args) end, handler)
    hook_after()
    if ok then return result end
    return false, result
end

local function compile(body, chunkname)
    local f, err = load_text(body, chunkname)
    if not f then return nil, err end
    return f, false
end

-- FUNCTION LOAD: run a library's code so that it registers its functions (luaEngineCreate).
local function load_library(body, timeout_check)
    local f, err = load_text(body, "@user_function")
    if not f then return false, err, true end
    set_loading(true)
    dbg.sethook(function()
        if timeout_check() then
            -- luaEngineLoadHook: from then on the error is raised on every line of the
            -- library's code (not of this runner's)
            dbg.sethook(function()
                local info = dbg.getinfo(2, "S")
                if info and info.source ~= "=kvrepl" then
                    real_error(error_table("FUNCTION LOAD timeout"))
                end
            end, "l")
            real_error(error_table("FUNCTION LOAD timeout"))
        end
    end, "", hook_every)
    local ok, result = real_pcall(f)
    hook = nil
    dbg.sethook()
    set_loading(false)
    if not ok then return false, unwrap_error(result), false end
    return true, nil, false
end

return {load_library = load_library, run = run, run_function = run_function,
        configure = configure, compile = compile, set_ldb = set_ldb, ldb_helpers = ldb_helpers}
