#!/usr/bin/env python3
"""A Zipf-distributed workload for the hot-key tests: real redis-py pipelines against a real
redis-server. Writes what it sent as JSON: the exact calls per key (for every key touched) and
per key pattern, so the test can compute the true top lists.

usage: zipf_workload.py PORT COMMANDS KEYS EXPONENT SEED OUT.json
"""
import bisect
import json
import random
import sys

import redis

port, total, nkeys, s, seed, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                    float(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
rng = random.Random(seed)

# Ranks are shuffled over key ids so the hottest keys are not simply the smallest numbers.
ids = list(range(nkeys))
rng.shuffle(ids)
cdf = []
acc = 0.0
for k in range(1, nkeys + 1):
    acc += 1.0 / k ** s
    cdf.append(acc)

# Five key shapes (patterns), assigned by key id.
SHAPES = [
    (lambda i: f"user:{i}:profile", "user:{}:profile"),
    (lambda i: f"order:{i}", "order:{}"),
    (lambda i: f"session:{i * 2654435761 % 2**48:012x}a1", "session:{}"),
    (lambda i: f"item:{i}:stock", "item:{}:stock"),
    (lambda i: f"cache/v2/{i}", "cache/v2/{}"),
]


def key_of(i):
    return SHAPES[i % len(SHAPES)][0](i)


def pattern_of(i):
    return SHAPES[i % len(SHAPES)][1]


def draw():
    u = rng.random() * acc
    return ids[min(bisect.bisect_left(cdf, u), nkeys - 1)]


r = redis.Redis(port=port)
calls = {}
patterns = {}


def touch(i):
    k = key_of(i)
    calls[k] = calls.get(k, 0) + 1
    p = pattern_of(i)
    patterns[p] = patterns.get(p, 0) + 1


sent = 0
batch = 200
while sent < total:
    p = r.pipeline(transaction=False)
    for _ in range(min(batch, total - sent)):
        x = rng.random()
        if x < 0.70:
            i = draw()
            p.get(key_of(i))
            touch(i)
        elif x < 0.90:
            i = draw()
            p.set(key_of(i), "v" * (i % 50))
            touch(i)
        else:
            a, b = draw(), draw()
            p.mget(key_of(a), key_of(b))
            touch(a)
            touch(b)
        sent += 1
    p.execute()

with open(out, "w") as f:
    json.dump({"commands": sent, "calls": calls, "patterns": patterns}, f)
