"""What gloo.py and mpi.py share: the run file bench/compare.ts writes, the data and expected results
(the same numbers as bench/values.ts), the timing method of bench/measure.ts, and the CASE/ROW lines
that bench/row.ts parses. Each library script supplies a Comm (a few helper collectives) and a
prepare(case) that returns a Prepared or raises Unsupported.

Data: every checked call gets its own. A seed per row and checked call is hashed with each element's
global index, so values differ per rank, per element (no short period: a right value in the wrong
place is caught) and per checked call (a call that did nothing leaves the last check's values, which
are wrong now). Ops that move data carry 1..100; reductions take 1..4 (1..2 for products), so every
dtype holds every partial result exactly; each rank's reduction inputs are independent (its own bits of
the hash), so no result is the same at every element. Outputs hold -1 (as the dtype stores it) before a
checked call: no input or result does.

Method: check one call on seed 0; warm up for --warmup seconds in rounds that rank 0 ends; time
back-to-back iterations for --budget seconds, of which one at a seeded position in every 8 and the
last are checked: armed with their seed before the call and verified after it, both untimed and
fenced by barriers (the call itself is timed). Per iteration the slowest rank's time counts; the row
reports median/mean/p99/min/CV and the wrong elements of all checks on all ranks.
"""
import json
import math
import sys
import time

import numpy as np

M32 = 0xffffffff
GOLDEN = 0x9e3779b9
PREMUL_FACTOR = 0.5
FLOATS = ('f32', 'f64', 'f16', 'bf16')
TOLERANCE = {'f64': 1e-12, 'f32': 1e-6, 'f16': 2e-3, 'bf16': 1.6e-2}
NUMPY = {'f32': np.float32, 'f64': np.float64, 'i32': np.int32, 'i64': np.int64,
         'u8': np.uint8, 'i8': np.int8, 'u32': np.uint32, 'f16': np.float16}
CHUNK = 1 << 20  # elements written or compared at a time: 1 GiB rows need no 1 GiB temporaries


class Unsupported(Exception):
    """The library cannot run this row (the reason is reported in the row)."""


def mix32(x):
    """The 32-bit integer finalizer of bench/values.ts: x a Python int or a numpy uint32 array."""
    x = x ^ (x >> 16)
    x = (x * 0x7feb352d) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846ca68b) & M32
    return x ^ (x >> 16)


def seed_of(row, k):
    """The seed of checked call k of row `row` (0: the first check, then 1 + the timed iteration)."""
    return mix32((((row + 1) * GOLDEN) & M32) ^ (k + 1))


def checked(row, k, iters):
    """Whether timed iteration k of iters is checked: one at a seeded place in every 8, and the last."""
    return k == iters - 1 or k % 8 == mix32((((row + 1) * GOLDEN) + k // 8) & M32) % 8


def hash_at(seed, g0, k):
    """hash_at(seed, g) of the k global indices g = g0..g0+k-1, as a uint32 array."""
    return mix32(np.arange(k, dtype=np.uint32) + np.uint32((g0 + seed) & M32))


def _reduce_in(redop, seed, src, g0, k):
    """Rank src's contribution to a reduction at g0..g0+k-1: its own 2 bits of the element's hash
    (ranks 16 and up: of another hash), plus 1; for prod 1 bit, plus 1."""
    word = hash_at((seed + (src // 16) * GOLDEN) & M32, g0, k)
    return ((word >> np.uint32(2 * (src % 16))) & np.uint32(1 if redop == 'prod' else 3)).astype(np.int64) + 1


def poison_value(dtype):
    """The value outputs hold before a checked call: -1 as the dtype stores it (u8: 255), which no
    input or result holds."""
    return int(cast([-1], dtype)[0]) if dtype not in FLOATS else -1.0


def move_arr(src, g0, k, seed, dtype):
    """Rank src's data at global elements g0..g0+k-1 under seed, for ops that move data (1..100)."""
    return ((hash_at(seed, g0, k) % 100 + src * 37) % 100 + 1).astype(NUMPY[dtype])


def reduce_in_arr(redop, src, g0, k, seed, dtype):
    """Rank src's contribution to a reduction at g0..g0+k-1 under seed (1..4, for prod 1..2)."""
    return _reduce_in(redop, seed, src, g0, k).astype(NUMPY[dtype])


def reduce_out_arr(redop, dtype, n, g0, k, seed):
    """The expected result of redop over n ranks at g0..g0+k-1 under seed, as float64."""
    acc = _reduce_in(redop, seed, 0, g0, k)
    for r in range(1, n):
        v = _reduce_in(redop, seed, r, g0, k)
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


def cast(values, dtype):
    """values as dtype stores them (integers wrap, floats round), back as float64."""
    if dtype in FLOATS:
        return np.asarray(values, dtype=np.float64).astype(NUMPY[dtype]).astype(np.float64)
    return np.asarray(values, dtype=np.int64).astype(NUMPY[dtype]).astype(np.float64)


def fill(a, g0, values):
    """Writes values(g, k), the data of global elements g..g+k-1, into the numpy array a whose first
    element is global element g0, a chunk at a time."""
    for i in range(0, len(a), CHUNK):
        part = a[i:i + CHUNK]
        part[:] = values(g0 + i, len(part))


def count_wrong(got, g0, expected, dtype):
    """Elements of the numpy array got (its first at global element g0) that differ from expected(g,
    k), the float64 values of global elements g..g+k-1 (floats within the dtype's tolerance), a chunk
    at a time."""
    got = np.asarray(got).reshape(-1)
    tol = TOLERANCE.get(dtype, 0.0)
    wrong = 0
    for i in range(0, len(got), CHUNK):
        g = got[i:i + CHUNK]
        e = np.asarray(expected(g0 + i, len(g)), dtype=np.float64)
        miss = np.flatnonzero(g != e)  # most elements match exactly, in every dtype
        if tol and len(miss):
            gm, em = g[miss].astype(np.float64), e[miss]
            miss = miss[~(np.abs(gm - em) <= tol * np.maximum(1.0, np.abs(em)))]
        wrong += len(miss)
    return wrong


class Data:
    """One row's data on one rank (dtype, redop, n ranks): writes seeded data into numpy arrays and
    counts their wrong elements. g0 is the global index of an array's first element."""

    def __init__(self, c, rank, n):
        self.dtype, self.redop, self.rank, self.n = c['dtype'], c['redop'], rank, n

    def put_move(self, a, src, g0, seed):
        fill(a, g0, lambda g, k: move_arr(src, g, k, seed, self.dtype))

    def wrong_move(self, a, src, g0, seed):
        return count_wrong(a, g0, lambda g, k: move_arr(src, g, k, seed, self.dtype), self.dtype)

    def wrong_blocks(self, blocks, g, seed):
        """Block p must hold rank p's data from global index g(p)."""
        return sum(self.wrong_move(b, p, g(p), seed) for p, b in enumerate(blocks))

    def put_input(self, a, g0, seed):
        """This rank's contribution to a reduction."""
        fill(a, g0, lambda g, k: reduce_in_arr(self.redop, self.rank, g, k, seed, self.dtype))

    def wrong_input(self, a, g0, seed):
        d = self.dtype
        return count_wrong(a, g0, lambda g, k: reduce_in_arr(self.redop, self.rank, g, k, seed, d), d)

    def wrong_result(self, a, g0, seed):
        """The reduction's result."""
        d = self.dtype
        return count_wrong(a, g0, lambda g, k: reduce_out_arr(self.redop, d, self.n, g, k, seed), d)


def payload(src, g0, k, seed):
    """The k bytes an object collective carries for rank src (its u8 data from element g0)."""
    return move_arr(src, g0, k, seed, 'u8').tobytes()


def wrong_bytes(v, src, g0, k, seed):
    """How many bytes of the received object v differ from payload(src, g0, k, seed)."""
    if not isinstance(v, (bytes, bytearray)) or len(v) != k:
        return k
    got = np.frombuffer(v, dtype=np.uint8)
    return count_wrong(got, g0, lambda g, m: move_arr(src, g, m, seed, 'u8'), 'u8')


def wrong_list(vs, n, k, seed):
    """How many bytes of the n received objects vs differ from every rank's payload of k bytes."""
    if not isinstance(vs, list) or len(vs) != n:
        return k * n
    return sum(wrong_bytes(v, p, p * k, k, seed) for p, v in enumerate(vs))


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
    """One row on one rank. run() is one call (the timed unit); arm(seed) writes this rank's inputs
    for seed (in place: the buffer itself) and zeroes every output element the call must write;
    verify(seed) counts the elements this rank can see are wrong after the call armed with seed."""

    def __init__(self, run, arm, verify):
        self.run = run
        self.arm = arm
        self.verify = verify


def object_row(c, rank, n, call):
    """The Prepared of object op c on this rank, where call(data) sends this rank's data (None where
    it sends nothing) and returns what this rank receives. arm builds the data from the seed and
    forgets the last value received; verify checks the value received for that seed."""
    op, root, count, chunk = c['op'], c['root'], c['count'], c['chunk']
    is_root = rank == root
    st = {'data': None, 'got': None}

    def build(s):
        if op == 'broadcast_object':
            return payload(root, 0, count, s) if is_root else None
        if op == 'scatter_object':
            return [payload(p, p * chunk, chunk, s) for p in range(n)] if is_root else None
        return payload(rank, rank * chunk, chunk, s)  # allgather_object, gather_object

    def run():
        st['got'] = call(st['data'])

    def arm(s):
        st['data'], st['got'] = build(s), None

    def verify(s):
        if op == 'broadcast_object':
            return wrong_bytes(st['got'], root, 0, count, s)
        if op == 'scatter_object':
            return wrong_bytes(st['got'], rank, rank * chunk, chunk, s)
        return wrong_list(st['got'], n, chunk, s) if op == 'allgather_object' or is_root else 0
    return Prepared(run, arm, verify)


def measure(comm, p, cfg, row):
    """Times one prepared row (case index `row`) on every rank (bench/measure.ts)."""
    pc = time.perf_counter
    s = seed_of(row, 0)
    p.arm(s)
    p.run()
    wrong = p.verify(s)
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
        chk = checked(row, k, iters)
        if chk:
            s = seed_of(row, k + 1)
            p.arm(s)
            comm.barrier()
        t0 = pc()
        p.run()
        times[k] = pc() - t0
        if chk:
            wrong += p.verify(s)
            comm.barrier()
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
        res = measure(comm, p, cfg, c['index'])
        res.update({'index': c['index'], 'transport': transport})
        if lead:
            say('ROW ' + json.dumps(res))
        del p
    comm.barrier()


def fail(msg):
    print(msg, file=sys.stderr, flush=True)
    sys.exit(2)
