#!/usr/bin/env python3
"""Traffic scenarios for the end-to-end suites, driven by real clients: redis-py (RESP2 and
RESP3) and raw sockets where the exact bytes matter. Each scenario talks only to the server
given on the command line (loopback or a test namespace).

usage: scenarios.py NAME HOST PORT [PASSWORD]
"""
import socket
import sys
import threading
import time

import redis

HOST, PORT = sys.argv[2], int(sys.argv[3])
PASSWORD = sys.argv[4] if len(sys.argv) > 4 else None


def raw(timeout=5.0):
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until(s, pred, limit=5.0):
    """Reads until pred(buffer) or the peer closes or the time limit passes."""
    buf = b""
    end = time.time() + limit
    while time.time() < end and not pred(buf):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def client(**kw):
    return redis.Redis(host=HOST, port=PORT, password=PASSWORD, **kw)


def inline():
    s = raw()
    s.sendall(b"PING\r\nSET inl \"hello world\"\r\nGET inl\r\nSET 'a b' \"x\\ty\\x41\"\r\n\r\n"
              b"EXISTS inl 'a b'\nECHO \"unbalanced\r\nPING\r\n")
    # Five replies, then the protocol error and the close; the last PING never runs.
    out = read_until(s, lambda b: b.count(b"\r\n") >= 7 and b"Protocol error" in b)
    assert b"Protocol error" in out, out
    s.close()


def pubsub():
    subs = [client(), client()]
    ps = [c.pubsub() for c in subs]
    ps[0].subscribe("news", "sport")
    ps[1].psubscribe("n*")
    for p in ps:  # the confirmations
        while p.get_message(timeout=1.0) is not None:
            pass
    pub = client()
    for i in range(3):
        pub.publish("news", f"item {i}")
    pub.publish("sport", "goal")
    got = [0, 0]
    end = time.time() + 3
    while time.time() < end and got != [4, 3]:
        for i, p in enumerate(ps):
            m = p.get_message(timeout=0.05)
            if m and m["type"] in ("message", "pmessage"):
                got[i] += 1
    assert got == [4, 3], got
    ps[0].ping()  # PING in subscribed mode: ["pong", ""]
    ps[0].unsubscribe()  # argless: one confirmation per channel
    ps[1].punsubscribe("n*")
    time.sleep(0.2)
    for p in ps:
        while p.get_message(timeout=0.2) is not None:
            pass
        p.close()


def multi():
    r = client()
    r.delete("m:str", "m:n", "m:w")
    p = r.pipeline(transaction=True)
    p.set("m:str", "text").incr("m:n").incr("m:str").get("m:n")
    res = p.execute(raise_on_error=False)
    assert isinstance(res[2], redis.ResponseError), res
    # EXECABORT: an unknown command at queue time.
    s = raw()
    s.sendall(b"MULTI\r\nSET m:a 1\r\nNOSUCHCMD x\r\nINCR m:n\r\nEXEC\r\n")
    out = read_until(s, lambda b: b"EXECABORT" in b)
    assert b"EXECABORT" in out, out
    # WATCH abort: another client changes the key between WATCH and EXEC.
    s.sendall(b"WATCH m:w\r\n")
    read_until(s, lambda b: b"+OK" in b)
    client().set("m:w", "changed")
    s.sendall(b"MULTI\r\nSET m:w mine\r\nEXEC\r\n")
    out = read_until(s, lambda b: b"*-1\r\n" in b)
    assert out.endswith(b"*-1\r\n"), out
    # DISCARD.
    s.sendall(b"MULTI\r\nINCR m:n\r\nDISCARD\r\nGET m:n\r\n")
    read_until(s, lambda b: b.count(b"\r\n") >= 5)
    s.close()


def client_reply():
    s = raw()
    s.sendall(b"CLIENT REPLY OFF\r\nSET cr:a 1\r\nSET cr:b 2\r\nCLIENT REPLY ON\r\n"
              b"GET cr:a\r\nCLIENT REPLY SKIP\r\nSET cr:c 3\r\nGET cr:c\r\n"
              b"CLIENT REPLY SKIP\r\n\r\nGET cr:b\r\n")
    out = read_until(s, lambda b: b.count(b"\r\n") >= 6)
    # +OK (REPLY ON), $1 1, $1 3 -- and GET cr:b: the empty line consumed the SKIP.
    assert out.startswith(b"+OK\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n2\r\n"), out
    s.close()


def resp3():
    r = client(protocol=3)
    r.delete("h", "s", "z", "tk")
    r.hset("h", mapping={"a": "1", "b": "2"})
    assert r.hgetall("h")  # map
    r.sadd("s", "x", "y")
    r.smembers("s")  # set
    r.zadd("z", {"m": 1.5})
    r.zscore("z", "m")  # double
    r.incrbyfloat("f", 0.25)
    # Client tracking: an invalidation push lands between pipelined replies.
    s = raw()
    s.sendall(b"HELLO 3\r\n")
    read_until(s, lambda b: b"proto" in b and b.endswith(b"\r\n"), 1.0)
    s.sendall(b"CLIENT TRACKING ON\r\nGET tk\r\n")
    read_until(s, lambda b: b"_\r\n" in b)
    client().set("tk", "1")
    time.sleep(0.05)
    s.sendall(b"GET tk\r\nGET tk\r\nPING\r\n")
    out = read_until(s, lambda b: b"+PONG" in b)
    assert b">2\r\n$10\r\ninvalidate" in out, out
    # Subscribed mode in RESP3 allows normal commands; messages are pushes.
    s.sendall(b"SUBSCRIBE r3chan\r\n")
    read_until(s, lambda b: b"r3chan" in b)
    client().publish("r3chan", "hi")
    s.sendall(b"GET tk\r\nPING\r\nUNSUBSCRIBE r3chan\r\nPING\r\n")
    read_until(s, lambda b: b.count(b"PONG") >= 2)
    s.close()


def auth():
    r = redis.Redis(host=HOST, port=PORT)
    try:
        r.get("x")  # NOAUTH
    except redis.AuthenticationError:
        pass
    except redis.ResponseError:
        pass
    try:
        redis.Redis(host=HOST, port=PORT, password="wrong-S3cret-guess").ping()
    except redis.AuthenticationError:
        pass
    r = client()
    r.set("after-auth", "1")
    r.config_set("masterauth", "Master-S3cret-pass")
    r.config_get("masterauth")
    r.config_get("*pass*")
    r.execute_command("ACL", "SETUSER", "bob", "on", ">Bob-S3cret-pass", "~*", "+@all")
    r.execute_command("ACL", "GETUSER", "bob")
    r.execute_command("ACL", "LIST")
    r3 = client(protocol=3)  # HELLO 3 AUTH default <password>
    r3.ping()
    s = raw()
    s.sendall(b"AUTH bob Bob-S3cret-pass\r\nPING\r\n")
    read_until(s, lambda b: b"PONG" in b)
    s.close()


def bigvalues():
    r = client()
    one = b"v" * (1 << 20)
    five = bytes(range(256)) * (5 * (1 << 20) // 256)
    r.set("big1", one)
    assert r.get("big1") == one
    r.set("big5", five)
    assert r.get("big5") == five
    r.delete("big1", "big5")


def killed():
    a = raw()
    a.sendall(b"CLIENT ID\r\n")
    cid = int(read_until(a, lambda b: b.endswith(b"\r\n"))[1:].strip())
    # The pipeline blocks at BLPOP; the INCRs after it never run.
    a.sendall(b"SET k:1 1\r\nBLPOP k:nolist 5\r\n" + b"INCR k:n\r\n" * 10)
    time.sleep(0.3)
    client().client_kill_filter(_id=cid)
    read_until(a, lambda b: False, 1.0)
    a.close()


def errors():
    r = client()
    r.delete("e:list")
    r.set("e:str", "x")
    for args in (("LPUSH", "e:str", "a"), ("NOSUCHCOMMAND", "a"), ("GET",), ("CONFIG", "NOSUCHSUB"),
                 ("INCR", "e:str"), ("XADD", "e:s", "bad-id", "f", "v")):
        try:
            r.execute_command(*args)
        except redis.ResponseError:
            pass
    t = time.time()
    r.blpop(["e:list"], timeout=0.3)
    dt = time.time() - t
    assert 0.25 < dt < 0.6, dt
    r.rpush("e:list", "x")
    r.blpop(["e:list"], timeout=1)
    r.config_get("maxmemory")
    r.client_setname("tester")
    r.object("encoding", "e:str")
    r.xadd("e:s", {"f": "v"})
    r.xread({"e:s": "0"}, count=1)


# Commands newer servers added (with the version that added them), sent to every server: an older
# one answers `ERR unknown command` / `ERR unknown subcommand`, which the client ignores.
NEW_COMMANDS = [
    ("CLIENT", "SETINFO", "LIB-NAME", "observer-test"),  # Redis 7.2, Valkey 7.2
    ("CLIENT", "NO-TOUCH", "ON"),  # 7.2
    ("CLIENT", "NO-TOUCH", "OFF"),
    ("WAITAOF", "0", "0", "0"),  # 7.2
    ("HSET", "v:h", "f", "1", "g", "2", "d", "3"),
    ("HEXPIRE", "v:h", "100", "FIELDS", "1", "f"),  # Redis 7.4, Valkey 9.0
    ("HPEXPIRE", "v:h", "100000", "FIELDS", "1", "g"),
    ("HTTL", "v:h", "FIELDS", "1", "f"),
    ("HPTTL", "v:h", "FIELDS", "1", "g"),
    ("HEXPIRETIME", "v:h", "FIELDS", "1", "f"),
    ("HPERSIST", "v:h", "FIELDS", "1", "f"),
    ("HSETEX", "v:h", "EX", "100", "FIELDS", "1", "e", "5"),  # Redis 8.0, Valkey 9.0
    ("HGETEX", "v:h", "PERSIST", "FIELDS", "1", "e"),
    ("HGETDEL", "v:h", "FIELDS", "1", "d"),  # Redis 8.0
    ("SET", "v:k", "a"),
    ("SET", "v:k", "b", "IFEQ", "a"),  # Valkey 8.1 (a syntax error elsewhere)
    ("XADD", "v:s", "1-1", "f", "v"),
    ("XGROUP", "CREATE", "v:s", "g", "0"),
    ("XDELEX", "v:s", "IDS", "1", "1-1"),  # Redis 8.2
    ("XACKDEL", "v:s", "g", "IDS", "1", "1-1"),  # Redis 8.2
    ("VADD", "v:vs", "VALUES", "3", "0.1", "0.2", "0.3", "e1"),  # Redis 8.0 vector sets
    ("VSIM", "v:vs", "VALUES", "3", "0.1", "0.2", "0.3"),
    ("VCARD", "v:vs"),
    ("CLIENT", "CAPA", "redirect"),  # Valkey 8.0
    ("COMMANDLOG", "GET", "10", "slow"),  # Valkey 8.1
    ("COMMANDLOG", "LEN", "slow"),
    # Modules: Redis Stack 7.4 loads JSON, search, time series and Bloom; Redis 8.2 vector sets.
    ("JSON.SET", "v:j", "$", '{"a":1,"b":"x"}'),
    ("JSON.GET", "v:j", "$.a"),
    ("JSON.NUMINCRBY", "v:j", "$.a", "2"),
    ("FT.CREATE", "v:idx", "ON", "JSON", "PREFIX", "1", "v:j", "SCHEMA", "$.a", "AS", "a", "NUMERIC"),
    ("FT.SEARCH", "v:idx", "*"),
    ("TS.ADD", "v:ts", "1", "1.5"),
    ("TS.RANGE", "v:ts", "-", "+"),
    ("BF.ADD", "v:bf", "x"),
    ("BF.EXISTS", "v:bf", "x"),
    ("CF.ADD", "v:cf", "x"),
    ("NOSUCHCMD", "x"),  # unknown to every server
    ("CLIENT", "NOSUCHSUB"),
]


def versions():
    """redis-py over RESP2 and RESP3 (each connection sends CLIENT SETINFO, RESP3 HELLO 3 first):
    every new command one by one, then pipelined, then inside MULTI/EXEC (which an older server
    aborts at EXEC: an unknown command was queued)."""
    for proto in (2, 3):
        r = client(protocol=proto)
        r.delete("v:h", "v:k", "v:s", "v:vs", "v:t", "v:j", "v:ts", "v:bf", "v:cf")
        for args in NEW_COMMANDS:
            try:
                r.execute_command(*args)
            except redis.ResponseError:
                pass
        p = r.pipeline(transaction=False)
        for args in NEW_COMMANDS:
            p.execute_command(*args)
        p.execute(raise_on_error=False)
        p = r.pipeline(transaction=True)
        p.execute_command("SET", "v:t", "1")
        p.execute_command("HGETEX", "v:h", "FIELDS", "1", "g")
        try:
            p.execute(raise_on_error=False)
        except redis.ResponseError:
            pass  # EXECABORT
        r.close()


SCENARIOS = {f.__name__: f for f in (inline, pubsub, multi, client_reply, resp3, auth, bigvalues, killed, errors,
                                     versions)}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
