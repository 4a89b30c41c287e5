"""Lua scripting (EVAL & co, SCRIPT, FUNCTION, FCALL) against a real redis-server 7.0.

Most tests send the same script to kvrepl and to redis-server and compare the reply bytes
(``wire``): conversions, error texts, sandbox violations, RESP3. Scripts are written so that
their sha1 (part of error messages) is the same on both sides.
"""

from __future__ import annotations

import re
import time

import pytest
import redis
import trio
from support import DEADLINE, RawClient, RedisServer, argv
from test_replication import _link_up, digest, eventually

import kvrepl
from kvrepl import persistence
from kvrepl.commands.core import Engine
from kvrepl.config import Config
from kvrepl.errors import ReplyError

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
    "redis.call('del', 'st') redis.call('xadd', 'st', '1-1', 'f', 'v')"
    " return redis.call('xrange', 'st', '-', '+')",
    "return redis.call('xread', 'block', 0, 'streams', 'st', '$')",  # may not block
    "return redis.call('xinfo', 'stream', 'st')",
    "redis.setresp(3) return redis.call('xread', 'streams', 'st', 0)",
    "return redis.pcall('incr', KEYS[1])",
    "return redis.pcall('incr', KEYS[1]).err",
    "return type(redis.pcall('incr', KEYS[1]))",
    "return redis.call('incr', KEYS[1])",
    "return redis.call('lpush', KEYS[1], 'x')",
    "local ok, err = pcall(redis.call, 'incr', KEYS[1]) return {tostring(ok), err}",
    "local ok, err = pcall(error, {err = 'X'}) return {tostring(ok), err}",
    "local ok, err = pcall(error, 'plain') return {tostring(ok), err}",
    "local co = coroutine.create(function() return redis.call('incr', KEYS[1]) end)"
    " local ok, err = coroutine.resume(co) return {tostring(ok), type(err), err.err}",
    "local co = coroutine.wrap(function(a) coroutine.yield(a + 1) return 'done' end)"
    " return {co(1), co()}",
    "return {xpcall(function() redis.call('incr', KEYS[1]) end,"
    " function(e) return type(e) .. ':' .. e.err end)}",
    "return {xpcall(function() error('plain') end, function(e) return e end)}",
    # the clock stands still while a script runs: a key with 1 ms to live is still there
    "redis.call('set', 'tmp', 'v', 'px', 1) for i = 1, 2e6 do end return redis.call('get', 'tmp')",
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
    # command names in any case (redis.call's fast lookup knows lower and upper case only)
    "return redis.call('INCR', KEYS[2])",
    "return redis.call('InCr', KEYS[2])",
    "return redis.call('GET')",
    "return redis.pcall('EVAL', 'return 1', 0)",
    "return redis.call('CONFIG', 'nosuch')",
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
    "local f, e = loadstring(string.dump(function() return 1 end)) return {tostring(f), e}",
    "local f, e = loadstring('\\27abc\\ndef') return {tostring(f), e}",
    "local f, e = loadstring('return +', 'mychunk') return {tostring(f), e}",
    "local f, e = loadstring('return +') return {tostring(f), e}",
    "local done = false local f = load(function() if done then return nil end done = true"
    " return 'return 7' end) return f()",
    "return _G.redis == redis",
    "return type(getfenv)",
    "return type(setfenv)",
    "local t = {} for k in pairs(_G) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(string) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(math) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(redis) do t[#t + 1] = k end table.sort(t) return t",
    "local t = {} for k in pairs(table) do t[#t + 1] = k end table.sort(t) return t",
    "return type(__redis__err__handler)",
    "return getmetatable(redis.call) == nil",
    "return type(getmetatable(_G))",
    "return type(getmetatable(_G).__index)",
    "return getmetatable(string) == nil",
    "return getmetatable(redis) == nil",
    "getmetatable(_G).__index = nil",
    "getmetatable(_G).__newindex = nil",
    "return getmetatable(cjson.encode) == nil",
    "return getmetatable('').__index == string",
    "getmetatable('').__index = {}",
    "getmetatable('').x = 1",
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
    "return redis.sha1hex(12.5)",
    "math.randomseed(42) return {math.random(), math.random(100), math.random(5, 10)}",
    "math.randomseed(7) local t = {} for i = 1, 20 do t[i] = math.random(1000) end return t",
    "return math.random(0)",
    "return math.random(5, 1)",
    "return math.random(1, 2, 3)",
    "return math.random('x')",
    "math.randomseed()",
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
    "return bit.band()",
    "return bit.band('x')",
    "return bit.tohex(65535, 4)",
    "return cjson.encode(function() end)",
    "return cjson.decode()",
    "return cjson.decode('{bad')",
    "return cjson.decode('[1, 2')",
    "return cjson.decode('{\"a\" 1}')",
    "return cjson.decode('[1] x')",
    "return cjson.decode('\"abc')",
    "return cjson.decode('\"\\\\q\"')",
    "return cjson.decode('\"\\\\u12\"')",
    "return cjson.decode('\"\\\\ud83d\\\\ude00\"')",
    "return cjson.decode('0x10')",
    "return cjson.decode('-Infinity') < 0",
    "return cjson.decode('[1e2, -0.5, 12]')",
    "return cjson.decode(string.rep('[', 1001))",
    "return cjson.decode(string.rep('[', 900) .. string.rep(']', 900))[1][1][1] ~= nil",
    "local t = {} local c = t for i = 1, 1001 do c[1] = {} c = c[1] end return cjson.encode(t)",
    "local t = {} local c = t for i = 1, 900 do c[1] = {} c = c[1] end"
    " return #cjson.encode(t)",
    "return cjson.decode('{\"a\": {\"b\": [1, {\"c\": null}]}, \"d\": \"e\"}').a.b[2].c"
    " == cjson.null",
    "return cjson.decode('tru')",
    "return cjson.decode('')",
    "return cjson.encode({[true] = 1})",
    "return cjson.encode({1, 2, [10] = 3})",
    "return cjson.encode({[20] = 3})",
    "return cjson.encode(1/0)",
    "return cjson.encode('\\127\\1')",
    "return {cjson.encode_sparse_array(), cjson.encode_max_depth(), cjson.decode_max_depth()}",
    "return {cjson.encode_number_precision(), cjson.encode_keep_buffer(),"
    " cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers()}",
    "return cjson.encode_number_precision(20)",
    "return cjson._VERSION",
    "return struct.pack('>I2', 258)",
    "return struct.pack('<i4h', -2, 7)",
    "return struct.pack('!4bi', 1, 2)",
    "return struct.pack('dfs', 1.5, 2.25, 'ab')",
    "return struct.pack('c3x', 'abcdef')",
    "return {struct.unpack('>I2', '\1\2')}",
    "return {struct.unpack('<i4h', struct.pack('<i4h', -2, 7))}",
    "return {struct.unpack('s', 'ab\0cd')}",
    "return {struct.unpack('bc0', '\3abc')}",
    "return {struct.unpack('d', struct.pack('d', 0.1))}",
    "return struct.size('!8bd')",
    "return struct.size('s')",
    "return struct.pack('q', 1)",
    "return struct.unpack('I4', 'ab')",
    "return struct.pack('c5', 'ab')",
    "return cmsgpack.pack(1, -1, 200, -200, 70000, -70000, 2^40, -2^40, 1.5, 0.1)",
    "return cmsgpack.pack('a', string.rep('b', 40), string.rep('c', 300), true, false)",
    "return cmsgpack.pack({1, 2, 3}, {a = 1}, {}, {[1] = 'x', [3] = 'y'})",
    "return cmsgpack.pack()",
    "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, {4}}, true))}",
    "local t = cmsgpack.unpack(cmsgpack.pack({a = {b = 'c'}})) return t.a.b",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}",
    "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 1)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}",
    "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2, 2)}",
    "return cmsgpack.unpack('\\xcd')",
    "return cmsgpack.unpack('\\xc1')",
    "return cmsgpack.unpack_one('abc', 10)",
    "return cmsgpack._VERSION",
    "local t = {} t.x = t return cmsgpack.pack(t)",
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
    wire("EVAL", b"\x1bLuaQ\x00\x01\x04", 0)  # bytecode is refused, as text it is an error
    wire("FUNCTION", "LOAD", b"#!lua name=bytecode\n\x1bLuaQ\x00")
    wire("SCRIPT", "FLUSH", "ASYNC")
    wire("SCRIPT", "EXISTS", sha[sha.index(b"\n") + 1:-2])
    wire("COMMAND", "GETKEYS", "EVAL", "return 1", 2, "a", "b", "c")
    wire("COMMAND", "GETKEYS", "FCALL", "f", 1, "a", "b")
    wire("COMMAND", "GETKEYS", "EVAL", "return 1", 0)
    wire("COMMAND", "INFO", "EVAL", "EVALSHA_RO", "FCALL", "FCALL_RO")


def test_scripts_in_transactions(wire):
    batch = [("MULTI",), ("EVAL", "return redis.call('incr', KEYS[1])", 1, "c"),
             ("EVAL", "return redis.call('nosuch')", 0), ("EVAL", "error('x')", 0),
             ("EVALSHA", "0" * 40, 0), ("GET", "c"), ("EXEC",)]
    wire(batch=batch)
    wire(batch=[("WATCH", "c"), ("EVAL", "return redis.call('incr', 'c')", 0), ("MULTI",),
                ("GET", "c"), ("EXEC",)])  # the script touched the watched key: nil
    wire(batch=[("MULTI",), ("EVAL", "return 1", "notanumber"), ("EXEC",)])
    wire(batch=[("MULTI",), ("FCALL", "nosuch", 0), ("EXEC",)])


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
    "#!lua name=slow\nwhile true do end",  # stopped after 500 ms: FUNCTION LOAD timeout
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


# -- functions in RDB files ---------------------------------------------------------------------

def test_saved_functions_load_in_redis_server_and_back(tmp_path):
    engine = Engine(Config(dir=str(tmp_path), save=(), enable_debug_command="local"))
    session = engine.new_session()

    def run(*args):
        reply = engine.execute(session, argv(*args))
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    run("FUNCTION", "LOAD", LIBRARY)
    run("SET", "k", "v")
    run("SAVE")
    real = RedisServer("--dir", str(tmp_path), "--dbfilename", "dump.rdb")
    try:
        client = real.client()
        assert client.fcall("echo", 1, "k", "a") == [b"k", b"a"]
        assert client.execute_command("FUNCTION", "DUMP") == run("FUNCTION", "DUMP")
        # and back: what redis-server saves, kvrepl loads (its libraries replace ours)
        client.function_delete("mylib")
        client.function_load("#!lua name=fromredis\n"
                             "redis.register_function('hello', function() return 'hi' end)")
        client.save()
        persistence.debug_reload(engine, [b"NOSAVE"])
        assert run("FCALL", "hello", 0) == b"hi"
        assert isinstance(engine.execute(session, argv("FCALL", "echo", 0)), ReplyError)
        assert run("GET", "k") == b"v"
    finally:
        real.stop()


# -- redis-py's users of scripts -------------------------------------------------------------------

def test_redis_py_lock_and_register_script(r):
    lock = r.lock("resource", timeout=100)
    assert lock.acquire(blocking=False)
    other = r.lock("resource", timeout=100)
    assert not other.acquire(blocking=False)
    assert lock.extend(50)
    assert 100_000 < r.pttl("resource") <= 150_000
    assert lock.reacquire()
    assert 50_000 < r.pttl("resource") <= 100_000
    lock.release()
    assert r.get("resource") is None
    assert other.acquire(blocking=False)
    r.set("resource", "someone else's token")
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        other.release()  # the release script saw another token and deleted nothing
    assert r.get("resource") == b"someone else's token"
    third = r.lock("other-resource", timeout=100)
    assert third.acquire(blocking=False)
    r.set("other-resource", "stolen")
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        third.extend(10)

    incr_by = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert incr_by(keys=["counter"], args=[5]) == 5
    r.script_flush()  # EVALSHA answers NOSCRIPT: redis-py loads the script again
    assert incr_by(keys=["counter"], args=[2]) == 7
    pipe = r.pipeline()
    incr_by(keys=["counter"], args=[1], client=pipe)
    incr_by(keys=["counter"], args=[1], client=pipe)
    assert pipe.execute() == [8, 9]


# -- replication of scripts' effects ---------------------------------------------------------------

EFFECTS = """
redis.call('set', KEYS[1], ARGV[1])
redis.call('incrby', KEYS[2], 5)
redis.call('sadd', 'pool', 'a', 'b', 'c', 'd')
local popped = redis.call('spop', 'pool')
redis.call('rpush', 'popped', popped)
redis.call('select', 3)
redis.call('set', 'in-db-3', 'x')
return popped
"""


def test_eval_propagates_its_effects_in_multi_exec(engine, session, propagated):
    engine.execute(session, argv("EVAL", "return redis.call('set', 'a', 1)", 0))
    assert propagated == [[b"set", b"a", b"1"]]  # one write: no MULTI around it
    propagated.clear()
    engine.execute(session, argv("EVAL", "redis.call('set', 'a', 1) redis.call('del', 'b')"
                                 " redis.call('incr', 'a') return 1", 0))
    assert propagated == [[b"MULTI"], [b"set", b"a", b"1"], [b"incr", b"a"], [b"EXEC"]]
    propagated.clear()
    engine.execute(session, argv("EVAL", "redis.call('get', 'a') return 1", 0))
    engine.execute(session, argv("SCRIPT", "LOAD", "return 1"))
    assert propagated == []  # no write, no EVAL; scripts are not replicated in 7.0
    engine.execute(session, argv("EVAL", "redis.set_repl(redis.REPL_NONE)"
                                 " redis.call('set', 'hidden', 1) redis.set_repl(redis.REPL_ALL)"
                                 " redis.call('set', 'shown', 1)", 0))
    assert propagated == [[b"set", b"shown", b"1"]]
    propagated.clear()
    # an expired key a script's command deletes is propagated even with REPL_NONE
    engine.execute(session, argv("SET", "old", "v", "PX", 1))
    engine.keyspace.clock = lambda: time.time() + 10
    propagated.clear()
    engine.execute(session, argv("EVAL", "redis.set_repl(redis.REPL_NONE)"
                                 " redis.call('get', 'old') redis.call('set', 'hidden', 2)", 0))
    assert propagated == [[b"DEL", b"old"]]
    propagated.clear()
    for command in (("MULTI",), ("EVAL", "return redis.call('set', 'a', 2)", 0), ("SET", "b", 3),
                    ("EVAL", "return 1", 0), ("EXEC",)):
        engine.execute(session, argv(*command))
    assert propagated == [[b"MULTI"], [b"set", b"a", b"2"], [b"SET", b"b", b"3"], [b"EXEC"]]


async def test_redis_server_replica_follows_scripts_of_kvrepl_master():
    async with kvrepl.Master(port=0) as master:
        master.execute_command("FUNCTION", "LOAD", LIBRARY)  # in the RDB of the full sync
        redis_replica = RedisServer("--replicaof", "127.0.0.1", str(master.port),
                                    "--enable-debug-command", "yes")
        try:
            client = redis_replica.client()
            await eventually(lambda: _link_up(client), "the redis replica is up")
            for i in range(5):
                master.execute_command("EVAL", EFFECTS, 2, f"k{i}", "n", i)
            master.execute_command("FCALL", "setter", 1, "f", "v")
            master.execute_command("FUNCTION", "LOAD", "#!lua name=later\n"
                                   "redis.register_function('later', function() return 1 end)")
            offset = master.replication.master_repl_offset
            await eventually(lambda: client.info("replication")["slave_repl_offset"] >= offset,
                             "redis applied the stream")
            assert await trio.to_thread.run_sync(digest, client) == digest(master)
            libraries = await trio.to_thread.run_sync(client.function_list)
            assert sorted(lib[lib.index(b"library_name") + 1] for lib in libraries) == [
                b"later", b"mylib"]
            assert await trio.to_thread.run_sync(
                lambda: client.fcall_ro("reader", 1, "f")) == b"v"
        finally:
            redis_replica.stop()


async def test_kvrepl_replica_follows_scripts_of_redis_server_master():
    redis_master = RedisServer("--repl-diskless-sync-delay", "0", "--enable-debug-command",
                               "yes")
    try:
        client = redis_master.client()
        client.function_load(LIBRARY)  # reaches the replica in the RDB
        async with kvrepl.Replica(follow=("127.0.0.1", redis_master.port)) as replica:
            await replica.wait_synced()

            def write() -> int:
                for i in range(5):
                    client.eval(EFFECTS, 2, f"k{i}", "n", i)
                client.fcall("setter", 1, "f", "v")
                client.function_load("#!lua name=later\n"
                                     "redis.register_function('later', function() return 1 end)")
                return client.info("replication")["master_repl_offset"]

            offset = await trio.to_thread.run_sync(write)
            await replica.following.wait_offset(offset)
            assert digest(replica) == await trio.to_thread.run_sync(digest, client)
            assert replica.execute_command("FCALL_RO", "reader", 1, "f") == b"v"
            # a function or script that may write does not run on a read-only replica
            for command in (("FCALL", "later", 0), ("FCALL_RO", "later", 0),
                            ("EVAL", "#!lua\nreturn 1", 0), ("EVAL_RO", "#!lua\nreturn 1", 0)):
                with pytest.raises(ReplyError, match="^READONLY You can't write against"):
                    replica.execute_command(*command)
            assert replica.execute_command("EVAL", "#!lua flags=no-writes\nreturn 1", 0) == 1
            assert replica.execute_command("FCALL", "reader", 1, "f") == b"v"
            with pytest.raises(ReplyError, match="^READONLY You can't write"):
                replica.execute_command("EVAL", "return redis.call('set', 'x', 1)", 0)
            assert replica.execute_command("EVAL", "return redis.call('get', 'f')", 0) == b"v"
    finally:
        redis_master.stop()


# -- scripts past busy-reply-threshold -----------------------------------------------------------

# A script body busy for one second by the server's own clock (TIME), then done: long past
# busy-reply-threshold, and over on a loaded host too (a loop of a fixed count, 5e7, took
# 2 s of a quiet host and outlasted a client's 10 s socket timeout on a loaded one).
BUSY_FOR_A_SECOND = ("local function now() local t = redis.call('TIME') "
                     "return tonumber(t[1]) + tonumber(t[2]) / 1e6 end "
                     "local stop = now() + 1 repeat until now() >= stop return 'ended'")


def _until_busy(client: RawClient) -> bytes:
    """PING until the server answers -BUSY (the script started and ran past the threshold;
    a PING served before the script started answers PONG)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        reply = client.call("PING")
        if reply.startswith(b"-BUSY"):
            return reply
        assert reply == b"+PONG\r\n", reply
        assert time.monotonic() < deadline, "the script never became busy"


def _busy_session(port: int) -> list[bytes]:
    """What a second client sees around a script that loops until SCRIPT KILL, and one
    that wrote before looping (unkillable, it ends by itself)."""
    seen = []
    watcher, runner = RawClient(port), RawClient(port)
    try:
        watcher.call("PING")  # connected (and idle) before the script starts
        runner.send("EVAL", "local i = 0 while true do i = i + 1 end", 0)
        seen.append(_until_busy(watcher))
        seen.append(watcher.call("GET", "k"))
        seen.append(watcher.call("FUNCTION", "KILL"))
        seen.append(watcher.call("FUNCTION", "STATS"))
        seen.append(watcher.call("SHUTDOWN"))
        seen.append(watcher.call("MULTI"))
        seen.append(watcher.call("SET", "k", "v"))
        seen.append(watcher.call("DISCARD"))
        seen.append(watcher.call("SCRIPT", "KILL"))
        seen.append(runner.read())  # the killed script's error
        # the next script runs to its end (the kill's line hook is gone)
        seen.append(runner.call("EVAL", "local i = 0 while i < 1000 do i = i + 1 end "
                                "return i", 0))
        seen.append(watcher.call("PING"))
        seen.append(watcher.call("SCRIPT", "KILL"))
        runner.send("EVAL", "redis.call('set', 'written', 1) " + BUSY_FOR_A_SECOND, 0)
        seen.append(_until_busy(watcher))
        seen.append(watcher.call("SCRIPT", "KILL"))
        seen.append(runner.read())  # it ran to its end
        runner.call("FUNCTION", "LOAD", "REPLACE", "#!lua name=spin\nredis.register_function("
                    "'spin', function() local i = 0 while true do i = i + 1 end end)")
        runner.send("FCALL", "spin", 0)
        seen.append(_until_busy(watcher))
        seen.append(watcher.call("SCRIPT", "KILL"))
        stats = watcher.call("FUNCTION", "STATS")
        assert b"spin" in stats and b"duration_ms" in stats
        seen.append(watcher.call("FUNCTION", "KILL"))
        seen.append(runner.read())
        seen.append(runner.call("FUNCTION", "DELETE", "spin"))
    finally:
        watcher.close()
        runner.close()
    return seen


def test_busy_script_and_script_kill_like_redis(kvrepl_server, redis_server, configure, r,
                                                real):
    configure("lua-time-limit", 20)
    ours = _busy_session(kvrepl_server.port)
    theirs = _busy_session(redis_server.port)
    assert ours == theirs
    assert r.get("written") == b"1"


def _connected_while_busy(port: int) -> list[object]:
    """What clients that connect while a script is busy get (Redis accepts and answers them
    from inside the script, processEventsWhileBlocked): -BUSY, and SCRIPT KILL works."""
    seen: list[object] = []
    watcher, runner = RawClient(port), RawClient(port)
    try:
        watcher.call("PING")
        runner.send("EVAL", "local i = 0 while true do i = i + 1 end", 0)
        _until_busy(watcher)
        fresh = redis.Redis(port=port, single_connection_client=True, socket_timeout=10)
        with pytest.raises(redis.ResponseError, match="^BUSY ") as busy:
            fresh.ping()
        seen.append(str(busy.value))
        with pytest.raises(redis.ResponseError, match="^BUSY "):
            fresh.get("k")
        raw = RawClient(port)  # and one whose requests come in pieces
        raw.sock.sendall(b"*1\r\n$4\r\nPI")
        raw.sock.sendall(b"NG\r\n")
        seen.append(raw.read())
        seen.append(raw.call("SCRIPT", "KILL"))
        seen.append(runner.read())
        seen.append(raw.call("PING"))  # its own task serves it now
        seen.append(fresh.ping())
        fresh.close()
        raw.close()
    finally:
        watcher.call("SCRIPT", "KILL")  # whatever failed, the script must not outlive the test
        watcher.close()
        runner.close()
    return seen


def test_clients_connecting_while_a_script_is_busy(kvrepl_server, redis_server, configure):
    configure("lua-time-limit", 20)
    assert _connected_while_busy(kvrepl_server.port) == _connected_while_busy(redis_server.port)


def test_script_errors_are_counted_like_redis(r, real):
    def stats(client):
        client.config_resetstat()
        client.set("str", "x")
        for script in ("return redis.call('incr', 'str')", "return redis.pcall('incr', 'str')",
                       "error('mine')", "return {err = 'OWN error'}", "return redis.call('nosuch')",
                       "return redis.pcall('nosuch')", "return {redis.pcall('incr', 'str')}",
                       "return redis.call('get', 'str')"):
            try:
                client.eval(script, 0)
            except redis.ResponseError:
                pass
        errors = client.info("errorstats")
        commands = client.info("commandstats")
        return errors, {name: (info["calls"], info["failed_calls"], info["rejected_calls"])
                        for name, info in commands.items()
                        if name in ("cmdstat_eval", "cmdstat_incr", "cmdstat_get")}

    assert stats(r) == stats(real)


def _monitored(port: int) -> list[bytes]:
    monitor, client = RawClient(port), RawClient(port)
    try:
        assert monitor.call("MONITOR") == b"+OK\r\n"
        client.call("EVAL", "redis.call('set', KEYS[1], 'v') redis.call('select', 2)"
                    " return redis.call('get', KEYS[1])", 1, "mk")
        client.call("FUNCTION", "LOAD", "REPLACE", "#!lua name=mon\nredis.register_function("
                    "'mon', function(keys) return redis.call('del', keys[1]) end)")
        client.call("FCALL", "mon", 1, "mk")
        lines = monitor.read(7)
    finally:
        monitor.close()
        client.close()
    # the time and the client's address differ
    return [re.sub(rb"^\+\d+\.\d+ \[(\d) [^\]]+\]", rb"+T [\1 ADDR]", line) if b" lua]" not in line
            else re.sub(rb"^\+\d+\.\d+", b"+T", line) for line in lines.split(b"\r\n")]


def test_monitor_shows_scripts_then_their_commands(kvrepl_server, redis_server, r, real):
    assert _monitored(kvrepl_server.port) == _monitored(redis_server.port)


def test_scripts_when_memory_is_full_like_redis(wire, configure):
    wire("SET", "k", "v")
    wire("FUNCTION", "LOAD", "REPLACE", "#!lua name=oom\n"
         "redis.register_function('w', function() return redis.call('set', 'k', 'w') end)\n"
         "redis.register_function{function_name='r', flags={'no-writes'},"
         " callback=function() return redis.call('get', 'k') end}\n"
         "redis.register_function{function_name='o', flags={'allow-oom'},"
         " callback=function() return redis.call('set', 'k', 'o') end}")
    configure("maxmemory-policy", "noeviction")
    configure("maxmemory", 1)  # always full
    wire("EVAL", "return redis.call('set', 'k', 'x')", 0)
    wire("EVAL", "return redis.pcall('set', 'k', 'x')", 0)
    wire("EVAL", "return redis.call('get', 'k')", 0)
    wire("EVAL", "redis.call('del', 'nothing') return redis.call('set', 'k', 'x')", 0)
    wire("EVAL", "#!lua\nreturn redis.call('get', 'k')", 0)
    wire("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'k')", 0)
    wire("EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', 'k', 'y')", 0)
    wire("FCALL", "w", 0)
    wire("FCALL", "r", 0)
    wire("FCALL", "o", 0)
    wire("FUNCTION", "LOAD", "#!lua name=more\nredis.register_function('m', function() end)")
    configure("maxmemory", 0)
    wire("FUNCTION", "DELETE", "oom")


async def test_redis_py_scripts_in_process():
    """node.redis(): redis-py's Lock and register_script run in the node's own task."""
    async with kvrepl.Master() as master:
        client = master.redis()
        lock = client.lock("resource", timeout=10)
        assert lock.acquire(blocking=False) and lock.extend(5) and lock.locked()
        lock.release()
        assert client.get("resource") is None
        script = client.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
        assert script(keys=["n"], args=[3]) == 3
        client.script_flush()
        assert script(keys=["n"], args=[4]) == 7


@pytest.mark.parametrize("count", [0, 3, 32, 33, 5000])
def test_keys_and_argv_of_any_size(r, real, count):
    """A few keys and arguments reach Lua as plain call arguments, many as tables; any
    split of them between KEYS and ARGV (none, one or all of them keys)."""
    script = ("return {#KEYS, #ARGV, KEYS[1], ARGV[#ARGV], cjson.encode(KEYS), "
              "cjson.encode(ARGV)}")
    args = [f"a{i}" for i in range(count)]
    for numkeys in sorted({0, min(1, count), count}):
        assert r.eval(script, numkeys, *args) == real.eval(script, numkeys, *args), numkeys
