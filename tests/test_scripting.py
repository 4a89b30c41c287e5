"""Lua scripting (EVAL & co, SCRIPT, FUNCTION, FCALL) against a real redis-server 7.0.

Most tests send the same script to kvrepl and to redis-server and compare the reply bytes
(``wire``): conversions, error texts, sandbox violations, RESP3. Scripts are written so that
their sha1 (part of error messages) is the same on both sides.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.redis_server

# Scripts whose reply (or error) must be byte-identical, run with KEYS={"k1","k2"} and
# ARGV={"a1","5"} after SET k1 v1 / RPUSH l x y / HSET h f v.
SCRIPTS = [
    # Lua -> reply conversions
    "return 1",
    "return 3.99",
    "return -3.99",
    "return 'hello'",
    "return true",
    "return false",
    "return nil",
    "return {1, 2, 3}",
    "return {1, 2, nil, 3}",
    "return {1, 'a', {2, {3, false}}, true}",
    "return {a = 1}",
    "return {}",
    "return {ok = 'FINE'}",
    "return {ok = 'line\\r\\nbreak'}",
    "return {err = 'CUSTOM my error'}",
    "return {err = 'noprefix'}",
    "return redis.status_reply('DONE')",
    "return redis.error_reply('MYERR oops')",
    "return redis.error_reply('-MYERR oops')",
    "return redis.error_reply('oops')",
    "return redis.error_reply()",
    "return redis.status_reply(1)",
    "return {double = 3.5}",
    "return {big_number = '1234567890123456789012'}",
    "return {map = {a = 1}}",
    "return {set = {a = true}}",
    "return {verbatim_string = {format = 'txt', string = 'hi'}}",
    "return KEYS",
    "return ARGV",
    "return {KEYS[1], ARGV[2] + 1}",
    "return tonumber(ARGV[2]) * 1.5",
    "return 2^53 + 1",
    "return 1e300",
    # reply -> Lua conversions
    "return redis.call('get', KEYS[1])",
    "return redis.call('get', 'missing')",
    "return redis.call('get', 'missing') == false",
    "return type(redis.call('get', 'missing'))",
    "return redis.call('set', 'x', 1)",
    "return redis.call('set', 'x', 1).ok",
    "return redis.call('incrby', 'n', 2.5)",
    "return redis.call('incr', 'n')",
    "return redis.call('lrange', 'l', 0, -1)",
    "return redis.call('hgetall', 'h')",
    "return redis.call('ping')",
    "return redis.call('exists', KEYS[1], KEYS[2])",
    "return redis.call('zadd', 'z', 1.5, 'm')",
    "return redis.call('zscore', 'z', 'm')",
    "return redis.call('set', 'f', 0.1) and redis.call('get', 'f')",
    "return redis.call('mget', 'k1', 'nope')",
    "return redis.pcall('incr', KEYS[1])",
    "return redis.pcall('incr', KEYS[1]).err",
    "return type(redis.pcall('incr', KEYS[1]))",
    "return redis.call('incr', KEYS[1])",
    "return redis.call('lpush', KEYS[1], 'x')",
    "local ok, err = pcall(redis.call, 'incr', KEYS[1]) return {tostring(ok), err}",
    "local ok, err = pcall(error, {err = 'X'}) return {tostring(ok), err}",
    "local ok, err = pcall(error, 'plain') return {tostring(ok), err}",
    # RESP3 inside scripts
    "redis.setresp(3) return redis.call('hgetall', 'h')",
    "redis.setresp(3) return redis.call('get', 'missing')",
    "redis.setresp(3) return type(redis.call('get', 'missing'))",
    "redis.setresp(3) return redis.call('zscore', 'z', 'm')",
    "redis.setresp(3) return redis.call('smembers', 'emptyset')",
    "redis.setresp(3) local r = redis.call('hgetall', 'h') return r.map.f",
    "redis.setresp(3) return true",
    "redis.setresp(3) return false",
    "redis.setresp(4)",
    "redis.setresp()",
    # errors and their texts
    "return redis.call('nosuchcommand')",
    "return redis.call('get')",
    "return redis.call('get', 'a', 'b')",
    "return redis.call()",
    "return redis.call('get', {})",
    "return redis.call('get', nil)",
    "return redis.call('get', true)",
    "return redis.pcall('nosuchcommand')",
    "return redis.pcall()",
    "return redis.call('eval', 'return 1', 0)",
    "return redis.call('multi')",
    "return redis.call('subscribe', 'ch')",
    "return redis.call('blpop', 'l', 0)",
    "return redis.call('config', 'nosuch')",
    "return redis.call('script', 'load', 'return 1')",
    "error('boom')",
    "error('boom', 0)",
    "error({err = 'MY custom'})",
    "error({err = 'MY custom', extra = 1})",
    "local t = nil; return t.x",
    "return 1 + {}",
    "return #nil",
    "local function f() error('deep') end\nlocal x = 1\nf()",
    "\n\nerror('line three')",
    "return syntax error(",
    "return 'unfinished",
    "redis.log()",
    "redis.log('x', 'y')",
    "redis.log(99, 'y')",
    "return redis.sha1hex()",
    "redis.set_repl(99)",
    "redis.set_repl()",
    # sandbox
    "x = 5",
    "return x",
    "return os",
    "return io",
    "return loadfile",
    "return dofile",
    "return require",
    "return print",
    "return debug",
    "return package",
    "return module",
    "string.x = 1",
    "redis.call = nil",
    "math.random = nil",
    "table.insert = nil",
    "cjson.x = 1",
    "_G.y = 1",
    "setmetatable(_G, nil)",
    "rawset(_G, 'z', 1)",
    "local t = {} setmetatable(t, {}) return 'ok'",
    "local f = loadstring('return 1 + 1') return f()",
    "local f = loadstring('q = 1') f()",
    "return _G.redis == redis",
    "return type(getfenv)",
    "return type(setfenv)",
    # (kvrepl has no cmsgpack and struct libraries)
    "local t = {} for k in pairs(_G) do if k ~= 'cmsgpack' and k ~= 'struct' then t[#t + 1] = k"
    " end end table.sort(t) return t",
    "local t = {} for k in pairs(string) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(math) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(redis) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(table) do t[#t + 1] = k end table.sort(t) return t",
    "return type(__redis__err__handler)",
    "return string.format('%d-%s', 5, 'x')",
    "return string.rep('ab', 3)",
    "return table.concat({1, 2, 3}, ',')",
    "local t = {3, 1, 2} table.sort(t) return t",
    "return math.floor(3.7)",
    "return math.huge > 0",
    "return select('#', 1, 2, 3)",
    "return unpack({1, 2, 3})",
    "return {unpack({1, 2, 3})}",
    "return tostring(nil)",
    "return tonumber('0x10')",
    "return _VERSION",
    "return type(coroutine.create)",
    "return type(newproxy)",
    "return type(gcinfo())",
    "local n = 0 for k, v in pairs(redis) do n = n + 1 end return n > 10",
    # the redis API
    "return redis.sha1hex('')",
    "return redis.sha1hex('abc')",
    "return redis.REDIS_VERSION",
    "return redis.REDIS_VERSION_NUM",
    "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
    "return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA,"
    " redis.REPL_ALL}",
    "return redis.replicate_commands()",
    "return redis.breakpoint()",
    "return redis.debug('x')",
    "redis.log(redis.LOG_DEBUG, 'from a script') return 1",
    "redis.set_repl(redis.REPL_ALL) return 1",
    "return redis.setresp(2)",
    # libraries
    "return cjson.encode({1, 2, 3})",
    "return cjson.encode({a = 'b'})",
    "return cjson.encode({})",
    "return cjson.encode('a/b\"c\\n')",
    "return cjson.encode({1.5, -2, 1e20, true, false})",
    "return cjson.encode({[1] = 'a', [2] = 'b', [4] = 'd'})",
    "return cjson.encode(cjson.null)",
    "return cjson.decode('[1, 2, \"x\"]')",
    "return cjson.decode('{\"a\": [1, {\"b\": 2}]}').a[2].b",
    "return cjson.decode('\"\\\\u00e9\"')",
    "return cjson.decode('3.25') * 4",
    "return cjson.decode('[null]')[1] == cjson.null",
    "return type(cjson.decode('{}'))",
    "return bit.band(0xff, 0x0f)",
    "return bit.bor(1, 2, 4)",
    "return bit.bxor(5, 3)",
    "return bit.bnot(0)",
    "return bit.lshift(1, 31)",
    "return bit.rshift(-1, 28)",
    "return bit.arshift(-256, 4)",
    "return bit.rol(0x12345678, 8)",
    "return bit.ror(0x12345678, 8)",
    "return bit.tohex(255)",
    "return bit.tohex(-1, -4)",
    "return bit.tobit(2^32 + 5)",
    "return bit.bswap(0x12345678)",
]


@pytest.fixture
def scripted(wire, r, real):
    for client in (r, real):
        client.set("k1", "v1")
        client.rpush("l", "x", "y")
        client.hset("h", "f", "v")
        client.zadd("z", {"m": 1.5})
    return wire


@pytest.mark.parametrize("protocol", [2, 3])
def test_scripts_reply_like_redis(scripted, protocol):
    for script in SCRIPTS:
        scripted("EVAL", script, 2, "k1", "k2", "a1", "5", protocol=protocol)


def test_evalsha_and_script_commands(wire):
    sha = wire("SCRIPT", "LOAD", "return {KEYS[1], ARGV[1]}")
    wire("EVALSHA", sha[sha.index(b"\n") + 1:-2], 1, "k", "a")
    wire("EVALSHA", sha[sha.index(b"\n") + 1:-2].upper(), 1, "k", "a")
    wire("EVALSHA", "0" * 40, 0)
    wire("EVALSHA", "short", 0)
    wire("EVALSHA_RO", sha[sha.index(b"\n") + 1:-2], 1, "k", "a")
    wire("SCRIPT", "EXISTS", sha[sha.index(b"\n") + 1:-2], "0" * 40)
    wire("SCRIPT", "LOAD", "return syntax error(")
    wire("SCRIPT", "FLUSH", "NOW")
    wire("SCRIPT", "HELP")
    wire("SCRIPT", "KILL")
    wire("SCRIPT", "NOSUCH")
    wire("EVAL", "return 1", "x")
    wire("EVAL", "return 1", -1)
    wire("EVAL", "return 1", 3, "a")
    wire("EVAL", "return 1")
    wire("SCRIPT", "FLUSH", "ASYNC")
    wire("SCRIPT", "EXISTS", sha[sha.index(b"\n") + 1:-2])


def test_read_only_scripts_and_shebang_flags(wire):
    wire("EVAL_RO", "return redis.call('set', 'a', 1)", 1, "a")
    wire("EVAL_RO", "return redis.call('get', 'a')", 1, "a")
    wire("EVAL_RO", "return redis.pcall('set', 'a', 1)", 1, "a")
    wire("EVAL", "#!lua flags=no-writes\nreturn redis.call('set', 'a', 1)", 1, "a")
    wire("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'a')", 1, "a")
    wire("EVAL", "#!lua\nreturn redis.call('set', 'a', 1)", 1, "a")
    wire("EVAL_RO", "#!lua\nreturn 1", 0)
    wire("EVAL", "#!lua flags=bogus\nreturn 1", 0)
    wire("EVAL", "#!lua flags=\nreturn 1", 0)
    wire("EVAL", "#!lua name=x\nreturn 1", 0)
    wire("EVAL", "#!python\nreturn 1", 0)
    wire("EVAL", "#!lua", 0)
    wire("EVAL", "#!lua flags=no-writes,allow-stale\nerror('at line 2')", 0)


LIBRARY = """#!lua name=mylib
local function echo(keys, args)
    return {keys[1], args[1]}
end
redis.register_function('echo', echo)
redis.register_function{function_name = 'setter', description = 'sets a key',
    callback = function(keys, args) return redis.call('set', keys[1], args[1]) end}
redis.register_function{function_name = 'reader', flags = {'no-writes'},
    callback = function(keys) return redis.call('get', keys[1]) end}
redis.register_function{function_name = 'tryset', flags = {'no-writes', 'allow-stale'},
    callback = function(keys) return redis.call('set', keys[1], 'x') end}
redis.register_function('fails', function() error('boom') end)
redis.register_function('globals', function() return KEYS end)
redis.register_function('level', function() redis.setresp(3) return redis.call('hgetall', 'h') end)
"""

BAD_LIBRARIES = [
    "return 1",
    "#!lua",
    "#!lua name=bad",
    "#!lua name=bad\n",
    "#!lua name=bad\nerror('x')",
    "#!lua name=bad\nredis.register_function('f')",
    "#!lua name=bad\nredis.register_function('f', 1)",
    "#!lua name=bad\nredis.register_function(1, 2, 3)",
    "#!lua name=bad\nredis.register_function{function_name = 'f'}",
    "#!lua name=bad\nredis.register_function{callback = function() end}",
    "#!lua name=bad\nredis.register_function{function_name = 'f', callback = function() end,"
    " flags = {'bogus'}}",
    "#!lua name=bad\nredis.register_function{function_name = 'f', callback = function() end,"
    " other = 1}",
    "#!lua name=bad\nredis.register_function('bad-name', function() end)",
    "#!lua name=bad\nredis.register_function('f', function() end)"
    " redis.register_function('f', function() end)",
    "#!lua name=bad\nreturn string",
    "#!lua name=bad\nredis.call('ping')",
    "#!lua name=bad\nx = 1",
    "#!lua name=bad\nlocal a =",
    "#!lua name=bad\nredis.log(redis.LOG_WARNING, 'loading') return redis.REDIS_VERSION",
    "#!lua name=bad-name\nredis.register_function('f', function() end)",
    "#!lua name=a name=b\n",
    "#!lua foo=bar\n",
    "#!js name=bad\n",
    "#!lua name=mylib\nredis.register_function('other', function() end)",
    "#!lua name=otherlib\nredis.register_function('echo', function() end)",
]


def sorted_functions(libraries: list) -> list:
    out = []
    for library in libraries:
        fields = library if isinstance(library, dict) else dict(
            zip(library[::2], library[1::2], strict=True))
        key = next(k for k in fields if k in ("functions", b"functions"))
        fields[key] = sorted(fields[key], key=repr)
        out.append(fields)
    return out


def test_functions_like_redis(wire, r, real):
    wire("FUNCTION", "FLUSH")
    wire("FUNCTION", "LOAD", LIBRARY)
    for code in BAD_LIBRARIES:
        wire("FUNCTION", "LOAD", code)
    for protocol in (2, 3):
        wire("FCALL", "echo", 1, "k", "a", protocol=protocol)
        wire("FCALL", "setter", 1, "k", "v", protocol=protocol)
        wire("FCALL", "reader", 1, "k", protocol=protocol)
        wire("FCALL_RO", "reader", 1, "k", protocol=protocol)
        wire("FCALL_RO", "setter", 1, "k", "v", protocol=protocol)
        wire("FCALL", "tryset", 1, "k", protocol=protocol)
        wire("FCALL", "fails", 0, protocol=protocol)
        wire("FCALL", "globals", 0, protocol=protocol)
        wire("FCALL", "level", 0, protocol=protocol)
        wire("FCALL", "nosuch", 0, protocol=protocol)
        wire("FCALL", "echo", "x", protocol=protocol)
        wire("FCALL", "echo", -1, protocol=protocol)
        wire("FCALL", "echo", 5, "a", protocol=protocol)
        wire("FUNCTION", "LIST", "LIBRARYNAME", "nomatch*", protocol=protocol)
        wire("FUNCTION", "STATS", protocol=protocol)
    # (Redis lists functions in its hash table's order: compared sorted)
    listed = [sorted_functions(client.execute_command("FUNCTION", "LIST", "WITHCODE"))
              for client in (r, real)]
    assert listed[0] == listed[1]
    wire("FUNCTION", "LIST", "LIBRARYNAME")
    wire("FUNCTION", "LIST", "BOGUS")
    wire("FUNCTION", "LOAD", "REPLACE", LIBRARY)
    wire("FUNCTION", "LOAD", "BOGUS", LIBRARY)
    wire("FUNCTION", "LOAD", "REPLACE")
    wire("FUNCTION", "KILL")
    wire("FUNCTION", "HELP")
    wire("FUNCTION", "FLUSH", "BOGUS")
    wire("FUNCTION", "FLUSH", "SYNC", "X")
    dump = wire("FUNCTION", "DUMP")
    payload = dump[dump.index(b"\n") + 1:-2]
    wire("FUNCTION", "RESTORE", payload)
    wire("FUNCTION", "RESTORE", payload, "BOGUS")
    wire("FUNCTION", "RESTORE", payload, "REPLACE")
    wire("FUNCTION", "RESTORE", payload[:-1] + b"x")
    wire("FUNCTION", "DELETE", "mylib")
    wire("FUNCTION", "DELETE", "mylib")
    wire("FCALL", "echo", 0)
    wire("FUNCTION", "RESTORE", payload, "FLUSH")
    wire("FCALL", "echo", 1, "k", "a")
    wire("FUNCTION", "RESTORE", payload, "APPEND")
    wire("FUNCTION", "FLUSH", "ASYNC")
    wire("FUNCTION", "LIST")
    single = "#!lua name=one\nredis.register_function{function_name='f', flags={'allow-oom'}," \
        " description='d', callback=function() return 1 end}"
    wire("FUNCTION", "LOAD", single)
    for protocol in (2, 3):
        wire("FUNCTION", "LIST", protocol=protocol)
        wire("FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "O*", protocol=protocol)
        wire("FUNCTION", "STATS", protocol=protocol)
    wire("FUNCTION", "DUMP")
