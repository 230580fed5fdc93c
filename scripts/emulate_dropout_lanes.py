#!/usr/bin/env python3
"""Emulates flash_attention.cu's fa_keep_bits_rows / fa_keep_bits_cols lane exchanges for one warp and
compares every lane's keep bits with the direct per-element definition (AttentionDropout.keeps), with
Philox-4x32-10 as neural.cuh computes it. No GPU needed: a check of the shuffles' indexing.

    python3 scripts/emulate_dropout_lanes.py      # prints True when every lane matches
"""
M32 = 0xFFFFFFFF
def philox(c, k):
    c = list(c); k = list(k)
    for _ in range(10):
        p0 = 0xD2511F53 * c[0]; p1 = 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k[0]) & M32, p1 & M32, ((p0 >> 32) ^ c[3] ^ k[1]) & M32, p0 & M32]
        k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
    return c
def block(seed, offset, b):
    return philox((b & M32, b >> 32, offset & M32, offset >> 32), (seed & M32, seed >> 32))
def keep(bits, p):
    return (bits >> 8) * (1.0 / 16777216.0) >= p
def keeps(seed, offset, p, index):
    return keep(block(seed, offset, index >> 2)[index & 3], p)

seed, offset, p = 0x123456789AB, 7, 0.3
def rows_exchange(head_rows, t, rows, col0):   # rows[lane] = this lane's first row
    r = {}
    for lane in range(32):
        tq = lane & 3; odd = tq & 1
        index = (head_rows + rows[lane] + (8 if odd else 0)) * t + col0 + (tq >> 1) * 4
        r[lane] = block(seed, offset, index >> 2)
    out = {}
    for lane in range(32):
        tq = lane & 3; odd = tq & 1; x = r[lane]; partner = r[lane ^ 1]
        # partner sends (odd? r.x : r.z) from the partner's perspective
        podd = (lane ^ 1) & 3 & 1
        got0 = partner[0] if podd else partner[2]
        got1 = partner[1] if podd else partner[3]
        w = [got0, got1, x[2], x[3]] if odd else [x[0], x[1], got0, got1]
        out[lane] = [keep(v, p) for v in w]
    return out
def rows_direct(head_rows, t, rows, col0):
    return {lane: [keeps(seed, offset, p, (head_rows + rows[lane] + (e >> 1) * 8) * t + col0 + (lane & 3) * 2 + (e & 1))
                   for e in range(4)] for lane in range(32)}
def cols_exchange(head_rows, t, keys, col0):  # keys[lane] = this lane's first key
    r = {}
    for lane in range(32):
        tq = lane & 3; x = (lane >> 2) & 3
        index = (head_rows + col0 + tq * 2 + (x & 1)) * t + keys[lane] - x + (x >> 1) * 8
        r[lane] = block(seed, offset, index >> 2)
    out = {}
    for lane in range(32):
        x = (lane >> 2) & 3; bits = [None] * 4
        for rnd in range(4):
            src = lane ^ (rnd << 2); sx = (src >> 2) & 3
            word = r[src][sx ^ rnd]
            bits[x ^ rnd] = keep(word, p)
        out[lane] = bits
    return out
def cols_direct(head_rows, t, keys, col0):
    return {lane: [keeps(seed, offset, p, (head_rows + col0 + (lane & 3) * 2 + (e & 1)) * t + keys[lane] + (e >> 1) * 8)
                   for e in range(4)] for lane in range(32)}
ok = True
for t in (64, 128, 1024):
    for head_rows in (0, 3 * t, 5 * t + 0):
        for warp, mt, q0, col0 in [(0, 0, 0, 0), (1, 1, 64, 32), (3, 0, 128, 56)]:
            rows = {lane: q0 + warp * 32 + (lane >> 2) + mt * 16 for lane in range(32)}
            ok &= rows_exchange(head_rows, t, rows, col0) == rows_direct(head_rows, t, rows, col0)
            keys = {lane: 64 * warp + (lane >> 2) + mt * 16 for lane in range(32)}
            ok &= cols_exchange(head_rows, t, keys, col0) == cols_direct(head_rows, t, keys, col0)
print("lane exchanges match the direct mask:", ok)
