#!/usr/bin/env python3
# Known answers for the unit tests of src/util/rng.rs, src/glue/sample.rs and src/data/batch.rs,
# from the algorithms as their doc comments state them (not from the code). Prints every value the tests pin.
# Independent reimplementation of the documented algorithms (src/glue/sample.rs doc comments):
# SplitMix64 (Vigna's reference constants), few_shot (partial Fisher-Yates with rejection
# sampling below 2^64 mod n, then sorted), epoch_order (SplitMix64(mix64(seed ^ "epochs") ^ e)).
M = (1 << 64) - 1
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
class SM:
    def __init__(s, seed): s.s = seed & M
    def next(s):
        s.s = (s.s + 0x9E3779B97F4A7C15) & M
        return mix64(s.s)
    def below(s, n):
        t = ((1 << 64) - n) % n
        while True:
            x = s.next()
            if x >= t: return x % n
    def shuffle(s, items, k):
        n = len(items)
        for i in range(min(k, n)):
            j = i + s.below(n - i)
            items[i], items[j] = items[j], items[i]
def few_shot(length, size, seed):
    rows = list(range(length))
    if size == 0 or size >= length: return rows
    SM(seed).shuffle(rows, size)
    return sorted(rows[:size])
def epoch_order(n, seed, e):
    o = list(range(n))
    SM(mix64(seed ^ int.from_bytes(b"epochs", "big")) ^ e).shuffle(o, n)
    return o
r = SM(1234567); print("sm 1234567", [r.next() for _ in range(5)])
r = SM(0); print("sm 0", [hex(r.next()) for _ in range(3)])
print("few_shot(10,4,42)", few_shot(10, 4, 42))
print("few_shot(3668,10,7)", few_shot(3668, 10, 7))
print("few_shot(3668,12,7)", few_shot(3668, 12, 7))
print("epoch_order(10,42,0)", epoch_order(10, 42, 0))
print("epoch_order(10,42,1)", epoch_order(10, 42, 1))
print("epoch_order(7,0,3)", epoch_order(7, 0, 3))
print(hex(int.from_bytes(b"epochs","big")))
import math
r = SM(99)
def normal(r):
    u1 = ((r.next() >> 11) + 1.0) / 2**53
    u2 = (r.next() >> 11) / 2**53
    return math.sqrt(-2*math.log(u1))*math.cos(2*math.pi*u2)
print("normal 99", [repr(normal(r)) for _ in range(4)])
# below with n not a power of two and a redraw: n = 3, threshold = 2^64 mod 3
print("below", [SM(5).below(3)], ((1<<64)-3)%3)
n = (1 << 63) + 1
t = ((1 << 64) - n) % n
for seed in range(100):
    r = SM(seed); first = r.next()
    if first < t:
        print("below big: seed", seed, "first", first, "rejected; result", SM(seed).below(n))
        break
print("few_shot(20,0,3)", few_shot(20, 0, 3), "few_shot(5,9,3)", few_shot(5, 9, 3))
print("few_shot(100,100,1)==all", few_shot(100,99,1)[:3])
print("epoch_order(20,5,0)", epoch_order(20, 5, 0))
print("epoch_order(20,5,39)", epoch_order(20, 5, 39))
print("few_shot(67349,100,42)", few_shot(67349, 100, 42))
rows = few_shot(67349, 100, 42)
print("sum", sum(rows), "weighted", sum(i * r for i, r in enumerate(rows)))
