#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/{api,cache}/ (seed-*).

The byte layouts follow the decoders in fuzz_api.c (LLVMFuzzerTestOneInput) and
fuzz_cache.c; each seed is one call the fuzzer starts from. The corpus folders also
hold bug-* inputs: fuzzer finds kept as regression tests (see their commits).

    python3 tests/fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- fuzz_api ------------------------------------------------------------------------

FWD, BWD, CHAIN, RERUN, MISC, TUNE = 1, 2, 4, 8, 16, 32


def api(flags=FWD, ctx_mode=0, env=0, tune_env=0, m=8, k=16, n=12, groups=2, dtype=0,
        math=0, engine=None, eps=0, clamp=0, ldx=0, ldw=0, ldy=0, ldh=0, opt=0, fnull=0,
        sy=0, fwd_ldh=0, lddy=0, bldh=0, lddx=0, lddw=0, grads=31, bopt=0, bnull=0,
        values=1, extra=b"", calls=b"\x00\x01\x05", data=16):
    """One fuzz_api input. Sizes and enums given as the raw selector bytes the decoder
    reads (a size < 208 is the size itself, up to 48; a groups byte < 200 picks N's
    divisor of that index); engine, when given, is forced; `extra` goes after the clamp
    byte, where special lo / hi read theirs; `calls`
    are the bytes the calls read (plan flags, workspace mode, offset, ...); then `data`
    bytes of input values."""
    head = bytes([flags, ctx_mode, env, tune_env, m, k, n, groups, dtype, math])
    head += bytes([0]) if engine is None else bytes([192, engine])  # forced engine
    head += bytes([eps, clamp])
    head += extra
    head += bytes([ldx, ldw, ldy, ldh, opt, fnull, sy, fwd_ldh, lddy, bldh, lddx, lddw,
                   grads, bopt, bnull, values])
    return head + calls + bytes((i * 29 + 7) & 0xFF for i in range(data))


PAD3 = 112 + 3  # a leading dimension of the row + 3
TOO_SMALL = 200  # row - 1
SPECIAL = 216  # lead(): 216 + i is special_i64(i)
INT64_MAX, INT64_MIN = 3, 2  # special_i64 indices

API_SEEDS = {
    # valid float32 forward with mean, rstd and h, then its backward from them
    "seed-f32-forward": api(opt=5),
    "seed-f32-chain": api(flags=FWD | BWD | CHAIN | RERUN, opt=5, bopt=9),
    "seed-bf16-padded": api(flags=FWD | BWD | RERUN, dtype=1, ldx=PAD3, ldw=PAD3, ldy=PAD3,
                            lddy=PAD3, lddx=PAD3, lddw=PAD3, opt=5, bopt=4),
    "seed-fp16-backward-subset": api(flags=BWD, dtype=2, m=5, k=7, n=9, groups=1, grads=0x19,
                                     bopt=5, values=3),
    "seed-3xtf32-groups-of-one": api(flags=FWD | BWD, math=3, n=6, groups=3, opt=1),
    "seed-accurate": api(flags=FWD | BWD, math=4),  # LGH_MATH_ACCURATE (fp32 on the CPU)
    "seed-tune": api(flags=FWD | TUNE, calls=b"\x00\x00\x00\x03"),
    "seed-misc": api(flags=FWD | MISC, calls=b"\x01\x00\x01" + b"cpu\x00" * 4),
    # refusals
    "seed-zero-m": api(m=0),
    "seed-negative-k": api(k=208 + 1),  # special_i64(1) = -1
    "seed-groups-mismatch": api(n=10, groups=210),  # 210 % 49 = 14 groups for N = 10
    "seed-huge-m": api(m=208 + INT64_MAX),
    "seed-ldx-overflow": api(m=4, ldx=SPECIAL + 19),  # ldx = 2^62
    "seed-ldy-too-small": api(ldy=TOO_SMALL),
    "seed-eps-nan": api(eps=192 + 2),
    "seed-clamp-reversed": api(clamp=160, extra=bytes([14, 12])),  # lo = 1, hi = -1e-5
    "seed-null-bias": api(fnull=200),  # 200 % 6 = 2: bias
    "seed-mean-without-rstd": api(opt=251),
    "seed-dtype-out-of-range": api(dtype=232),  # dtype 3
    "seed-no-gradient": api(flags=BWD, grads=128),
    "seed-engine-cublaslt": api(engine=2),
    "seed-engine-cpu": api(flags=FWD | BWD, engine=1),
    "seed-env-engine-sm90": api(env=214),  # LGH_ENGINE=sm90 (214 % 6 = 4)
    "seed-env-engine-bogus": api(env=250),
    "seed-short-workspace": api(calls=b"\x00\x02\x00"),
    "seed-null-context": api(ctx_mode=255),
    "seed-null-args": api(ctx_mode=254),
}

# ---- fuzz_cache ----------------------------------------------------------------------

RIGHT_HEADER, MAGIC_ONLY, RAW, NO_FILE, ROUND_TRIP = 0, 1, 2, 4, 8


def cache(body, mode=RIGHT_HEADER, tune=0):
    return bytes([mode, tune]) + body


LINES = (b"8 16 12 2 float32 tf32 16 cpu 0.5\n"
         b"64 64 64 4 bfloat16 tf32 16 sm90:3 0.0123\n"
         b"5 7 9 3 float16 tf32 2 cublaslt 1.5e-05\n"
         b"1 1 1 1 float32 3xtf32 4 sm80:0 1e+07\n")

CACHE_SEEDS = {
    "seed-empty": cache(b""),
    "seed-entries": cache(LINES),
    "seed-round-trip": cache(LINES, mode=ROUND_TRIP),
    "seed-duplicate-key": cache(b"8 16 12 2 float32 tf32 16 cpu 0.5\n"
                                b"8 16 12 2 float32 tf32 16 sm90 0.25\n"),
    "seed-key-line": cache(b"key another GPU|sm_90|driver 1|lgh 0.1.0\n" + LINES,
                           mode=MAGIC_ONLY),
    "seed-raw": cache(b"lgh-tune-cache 2\nkey x\n" + LINES, mode=RAW),
    "seed-no-file": cache(b"", mode=NO_FILE),
    "seed-truncated": cache(LINES[:-1]),
    "seed-crlf": cache(LINES.replace(b"\n", b"\r\n")),
    "seed-bad-fields": cache(b"8 16 12 2 float32 default 16 cpu 0.5\n"
                             b"08 16 12 2 float32 tf32 16 cpu 0.5\n"
                             b"8 16 12 5 float32 tf32 16 cpu 0.5\n"
                             b"8 16 12 2 float32 tf32 016 auto 0.5\n"
                             b"8 16 12 2 float32 tf32 16 cpu:01 nan\n"),
    "seed-256-entries": cache(b"".join(b"%d 8 8 1 float32 tf32 16 cpu 0.5\n" % (i + 1)
                                       for i in range(256)), mode=ROUND_TRIP),
    "seed-accurate": cache(b"8 16 12 2 float32 accurate 16 sm90:2 0.5\n"
                           b"8 16 12 2 float32 fp32 16 cublaslt 0.75\n", mode=ROUND_TRIP),
    "seed-accurate-16-bit": cache(b"8 16 12 2 bfloat16 accurate 16 cpu 0.5\n"),
    "seed-full-table": cache(b"".join(b"%d 8 8 1 float32 tf32 16 cpu 0.5\n" % (i + 1)
                                      for i in range(257)), mode=ROUND_TRIP),
}


def write(folder, seeds):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("api", API_SEEDS)
    write("cache", CACHE_SEEDS)
    print(f"{len(API_SEEDS)} api seeds, {len(CACHE_SEEDS)} cache seeds")
