"""What gloo.py and mpi.py share: the run file bench/compare.ts writes, the data patterns and expected
results (the same numbers as bench/values.ts), the timing method of bench/measure.ts (check once,
warm up for --warmup seconds in rounds that rank 0 ends, time back-to-back iterations for --budget
seconds, keep each iteration's slowest rank, report median/mean/p99/min/CV), and the CASE/ROW lines
that bench/row.ts parses. Each library script supplies a Comm (a few helper collectives) and a
prepare(case) that returns a Prepared or raises Unsupported.
"""
import json
import math
import sys
import time

import numpy as np

PERIOD = 100
PREMUL_FACTOR = 0.5
FLOATS = ('f32', 'f64', 'f16', 'bf16')
TOLERANCE = {'f64': 1e-12, 'f32': 1e-6, 'f16': 2e-3, 'bf16': 1.6e-2}
NUMPY = {'f32': np.float32, 'f64': np.float64, 'i32': np.int32, 'i64': np.int64,
         'u8': np.uint8, 'i8': np.int8, 'u32': np.uint32, 'f16': np.float16}


class Unsupported(Exception):
    """The library cannot run this row (the reason is reported in the row)."""


def _period(f, g0):
    """f over the PERIOD global indices g0..g0+PERIOD: the pattern repeats with that period."""
    return f(np.arange(PERIOD, dtype=np.int64) + g0)


def move(src, g0):
    """One period of rank src's data from global element g0 (bench/values.ts moveValue)."""
    return _period(lambda g: ((src * 37 + (g % PERIOD) * 11) % PERIOD) + 1, g0)


def reduce_in(redop, src, g0):
    """One period of rank src's contribution to a reduction (bench/values.ts reduceInput)."""
    return _period(lambda g: ((src + g) % 2) + 1 if redop == 'prod' else ((src + g) % 4) + 1, g0)


def reduce_out(redop, dtype, n, g0):
    """One period of the expected result of redop over n ranks, as values the dtype holds."""
    acc = reduce_in(redop, 0, g0)
    for r in range(1, n):
        v = reduce_in(redop, r, g0)
        if redop == 'prod':
            acc = acc * v
        elif redop == 'min':
            acc = np.minimum(acc, v)
        elif redop == 'max':
            acc = np.maximum(acc, v)
        elif redop == 'band':
            acc = acc & v
        elif redop == 'bor':
            acc = acc | v
        elif redop == 'bxor':
            acc = acc ^ v
        else:
            acc = acc + v
    if redop == 'avg':
        acc = acc / n if dtype in FLOATS else np.trunc(acc / n)
    if redop == 'premul_sum':
        acc = acc * PREMUL_FACTOR
    return cast(acc, dtype)


ZERO = np.zeros(PERIOD)


def cast(values, dtype):
    """values as dtype stores them (integers wrap, floats round), back as float64."""
    if dtype in FLOATS:
        return np.asarray(values, dtype=np.float64).astype(NUMPY[dtype]).astype(np.float64)
    return np.asarray(values, dtype=np.int64).astype(NUMPY[dtype]).astype(np.float64)


def tile(period, length, dtype):
    """A numpy array of length elements of dtype repeating period."""
    return np.resize(cast(period, dtype).astype(NUMPY[dtype]), length)


CHUNK = PERIOD * 10000  # elements compared at a time (a multiple of the period keeps the phase)


def count_wrong(got, period, dtype):
    """Elements of got that differ from the repeated period (floats within the dtype's tolerance),
    compared a chunk at a time so that 1 GiB rows need no 1 GiB temporaries."""
    got = np.asarray(got).reshape(-1)
    k = len(got)
    exp = np.resize(np.asarray(period, dtype=np.float64), min(k, CHUNK))
    tol = TOLERANCE.get(dtype, 0.0)
    wrong = 0
    for a in range(0, k, CHUNK):
        g = got[a:a + CHUNK].astype(np.float64)
        e = exp[:len(g)]
        ok = np.abs(g - e) <= tol * np.maximum(1.0, np.abs(e))
        wrong += len(ok) - int(np.count_nonzero(ok))
    return wrong


def payload(src, g0, k):
    """The k bytes an object collective carries for rank `src` (pattern from element g0)."""
    return tile(move(src, g0), k, 'u8').tobytes()


def wrong_bytes(v, src, g0, k):
    """How many bytes of the received object `v` differ from `payload(src, g0, k)`."""
    if not isinstance(v, (bytes, bytearray)) or len(v) != k:
        return k
    return count_wrong(np.frombuffer(v, dtype=np.uint8), move(src, g0), 'u8')


def summarize(per_ms):
    """The row's statistics from per-iteration times in ms (bench/stats.ts summarize)."""
    s = np.sort(np.asarray(per_ms, dtype=np.float64))
    k = len(s)
    med = s[(k - 1) // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2
    mean = float(s.mean())
    return {'timeUs': float(med) * 1000, 'meanUs': mean * 1000,
            'p99Us': float(s[min(k - 1, math.ceil(0.99 * k) - 1)]) * 1000,
            'minUs': float(s[0]) * 1000, 'cvPct': float(s.std() / mean * 100) if mean > 0 else 0.0,
            'iters': k}


class Prepared:
    """One row on one rank. run() is the timed call; fill() writes the check pattern; verify()
    counts wrong elements of the results now held; loop_state() sets what the timed loop runs on
    (default: the pattern stays); loop_verify() checks it after the loop (default: verify())."""

    def __init__(self, run, fill, verify, loop_state=None, loop_verify=None):
        self.run = run
        self.fill = fill
        self.verify = verify
        self.loop_state = loop_state or (lambda: None)
        self.loop_verify = loop_verify or verify


def measure(comm, p, cfg):
    """Times one prepared row on every rank (bench/measure.ts)."""
    pc = time.perf_counter
    p.fill()
    p.run()
    wrong = p.verify()
    p.loop_state()
    plan = np.zeros(2, dtype=np.float64)
    batch = 5
    start = pc()
    while True:
        t0 = pc()
        for _ in range(batch):
            p.run()
        now = pc()
        plan[0] = max((now - t0) / batch * 1000, 1e-6)
        plan[1] = 1.0 if (now - start) * 1000 < cfg['warmupS'] * 1000 else 0.0
        comm.bcast(plan)
        if plan[1] == 0:
            break
        batch = max(1, min(100000, round(20 / plan[0])))
    iters = int(min(cfg['maxIters'], max(cfg['minIters'], round(cfg['budgetS'] * 1000 / plan[0]))))
    comm.barrier()
    times = np.empty(iters, dtype=np.float64)
    for k in range(iters):
        a = pc()
        p.run()
        times[k] = pc() - a
    wrong += p.loop_verify()
    per = comm.allgather_times(times).max(axis=0) * 1000
    res = summarize(per)
    res['wrong'] = int(comm.sum(wrong))
    return res


def say(line):
    print(line, flush=True)


def run_all(comm, prepare, run_file, transport):
    """Measures every case of the run file; rank 0 prints the CASE and ROW lines."""
    with open(run_file) as fh:
        spec = json.load(fh)
    cfg = spec['run']
    lead = comm.rank == 0
    for c in spec['cases']:
        if lead:
            say('CASE %d' % c['index'])
        try:
            p = prepare(c)
        except Unsupported as e:
            if lead:
                say('ROW ' + json.dumps({'index': c['index'], 'unsupported': str(e)}))
            continue
        res = measure(comm, p, cfg)
        res.update({'index': c['index'], 'transport': transport})
        if lead:
            say('ROW ' + json.dumps(res))
        del p
    comm.barrier()


def fail(msg):
    print(msg, file=sys.stderr, flush=True)
    sys.exit(2)
