#!/usr/bin/env python3
"""torch.distributed with the Gloo backend on the rows of a choir benchmark run (bench/compare.ts
starts it; see common.py for the method). Starts --world processes on this host, joined over
tcp://127.0.0.1 with GLOO_SOCKET_IFNAME=lo, one intra-op thread each.

usage: gloo.py --world N RUN_FILE.json

Every op maps to torch's call on CPU tensors: allreduce all_reduce (in place), broadcast, reduce,
allgather all_gather into views of one tensor (all_gather_into_tensor is missing from Gloo), the list
forms into separate tensors, alltoall all_to_all_single, gather/scatter with lists of views,
sendrecv isend+irecv to the next and from the previous rank, barrier, and the *_object calls on
bytes. Gloo has no reduce_scatter, no AVG, no bfloat16 reductions and torch no uint32: those rows
are reported as unsupported, as are in-place forms torch does not have.
"""
import argparse
import os
import signal
import socket
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Comm:
    """The helper collectives common.measure needs, over torch.distributed."""

    def __init__(self, dist, torch):
        self.dist, self.torch = dist, torch
        self.rank, self.size = dist.get_rank(), dist.get_world_size()

    def bcast(self, arr):
        self.dist.broadcast(self.torch.from_numpy(arr), src=0)

    def barrier(self):
        self.dist.barrier()

    def allgather_times(self, times):
        t = self.torch.from_numpy(times)
        outs = [self.torch.empty_like(t) for _ in range(self.size)]
        self.dist.all_gather(outs, t)
        return np.stack([o.numpy() for o in outs])

    def sum(self, x):
        t = self.torch.tensor([float(x)], dtype=self.torch.float64)
        self.dist.all_reduce(t)
        return t.item()


def make_prepare(dist, torch, rank, n):
    types = {'f32': torch.float32, 'f64': torch.float64, 'i32': torch.int32, 'i64': torch.int64,
             'u8': torch.uint8, 'i8': torch.int8, 'f16': torch.float16}
    ops = {'sum': dist.ReduceOp.SUM, 'prod': dist.ReduceOp.PRODUCT, 'min': dist.ReduceOp.MIN,
           'max': dist.ReduceOp.MAX, 'band': dist.ReduceOp.BAND, 'bor': dist.ReduceOp.BOR,
           'bxor': dist.ReduceOp.BXOR}

    def prepare(c):
        op, d, place, root = c['op'], c['dtype'], c['place'], c['root']
        count, chunk = c['count'], c['chunk']
        if d not in types:
            raise C.Unsupported('torch %s has no %s tensors' % (torch.__version__, d))
        if c['redop'] != 'none' and c['redop'] not in ops:
            raise C.Unsupported('Gloo has no ReduceOp %s' % c['redop'].upper())
        if op in ('reduce_scatter', 'reduce_scatter_list'):
            raise C.Unsupported('Gloo in torch %s has no reduce_scatter' % torch.__version__)
        if place == 'in' and op not in ('allreduce', 'broadcast', 'reduce'):
            raise C.Unsupported('torch has no in-place %s' % op)
        tt = types[d]
        redop = ops.get(c['redop'])
        is_root = rank == root

        def tensor(period, k):
            return torch.from_numpy(C.tile(period, k, d))

        def zeros(k):
            return torch.zeros(k, dtype=tt)

        def set_to(t, period):
            t.copy_(tensor(period, t.numel()))

        def wrong_move(t, src, g0):
            return C.count_wrong(t.numpy(), C.move(src, g0), d)

        def wrong_blocks(ts, g):
            return sum(wrong_move(t, p, g(p)) for p, t in enumerate(ts))

        if op == 'allreduce':
            buf = zeros(count)
            return C.Prepared(
                lambda: dist.all_reduce(buf, op=redop),
                lambda: set_to(buf, C.reduce_in(c['redop'], rank, 0)),
                lambda: C.count_wrong(buf.numpy(), C.reduce_out(c['redop'], d, n, 0), d),
                lambda: buf.zero_(),
                lambda: C.count_wrong(buf.numpy(), C.ZERO, d))
        if op == 'broadcast':
            buf = zeros(count)
            return C.Prepared(
                lambda: dist.broadcast(buf, src=root),
                lambda: set_to(buf, C.move(root, 0) if is_root else C.ZERO),
                lambda: wrong_move(buf, root, 0))
        if op == 'reduce':
            buf = zeros(count)
            # Gloo leaves partial results in other ranks' tensors: only the root's is checked.
            return C.Prepared(
                lambda: dist.reduce(buf, dst=root, op=redop),
                lambda: set_to(buf, C.reduce_in(c['redop'], rank, 0)),
                lambda: C.count_wrong(buf.numpy(), C.reduce_out(c['redop'], d, n, 0), d)
                if is_root else 0,
                lambda: buf.zero_(),
                lambda: C.count_wrong(buf.numpy(), C.ZERO, d) if is_root else 0)
        if op in ('allgather', 'allgather_list'):
            out = zeros(count)
            outs = list(out.chunk(n)) if op == 'allgather' else [zeros(chunk) for _ in range(n)]
            inp = tensor(C.move(rank, rank * chunk), chunk)
            return C.Prepared(lambda: dist.all_gather(outs, inp), lambda: None,
                              lambda: wrong_blocks(outs, lambda p: p * chunk))
        if op == 'alltoall':
            inp = torch.cat([tensor(C.move(rank, q * chunk), chunk) for q in range(n)])
            out = zeros(count)
            return C.Prepared(lambda: dist.all_to_all_single(out, inp), lambda: None,
                              lambda: wrong_blocks(list(out.chunk(n)), lambda p: rank * chunk))
        if op in ('gather', 'gather_list'):
            out = zeros(count)
            outs = (list(out.chunk(n)) if op == 'gather' else [zeros(chunk) for _ in range(n)]) \
                if is_root else None
            inp = tensor(C.move(rank, rank * chunk), chunk)
            return C.Prepared(lambda: dist.gather(inp, outs, dst=root), lambda: None,
                              lambda: wrong_blocks(outs, lambda p: p * chunk) if is_root else 0)
        if op in ('scatter', 'scatter_list'):
            ins = [tensor(C.move(p, p * chunk), chunk) for p in range(n)] if is_root else None
            if op == 'scatter' and is_root:
                ins = list(torch.cat(ins).chunk(n))
            out = zeros(chunk)
            return C.Prepared(lambda: dist.scatter(out, ins, src=root), lambda: None,
                              lambda: wrong_move(out, rank, rank * chunk))
        if op == 'sendrecv':
            send = tensor(C.move(rank, 0), count)
            recv = zeros(count)
            nxt, prev = (rank + 1) % n, (rank + n - 1) % n

            def sendrecv():
                for w in (dist.isend(send, nxt), dist.irecv(recv, prev)):
                    w.wait()
            return C.Prepared(sendrecv, lambda: None, lambda: wrong_move(recv, prev, 0))
        if op == 'barrier':
            return C.Prepared(dist.barrier, lambda: None, lambda: 0)
        return prepare_object(dist, c, rank, n)

    return prepare



def prepare_object(dist, c, rank, n):
    op, root, count, chunk = c['op'], c['root'], c['count'], c['chunk']
    is_root = rank == root
    last = {}
    if op == 'broadcast_object':
        def run():
            box = [C.payload(root, 0, count) if is_root else None]
            dist.broadcast_object_list(box, src=root)
            last['v'] = box[0]
        return C.Prepared(run, lambda: None, lambda: C.wrong_bytes(last['v'], root, 0, count))
    mine = C.payload(rank, rank * chunk, chunk)

    def wrong_list(vs):
        return sum(C.wrong_bytes(v, p, p * chunk, chunk) for p, v in enumerate(vs))
    if op == 'allgather_object':
        def run():
            out = [None] * n
            dist.all_gather_object(out, mine)
            last['v'] = out
        return C.Prepared(run, lambda: None, lambda: wrong_list(last['v']))
    if op == 'gather_object':
        def run():
            out = [None] * n if is_root else None
            dist.gather_object(mine, out, dst=root)
            last['v'] = out
        return C.Prepared(run, lambda: None, lambda: wrong_list(last['v']) if is_root else 0)
    if op == 'scatter_object':
        every = [C.payload(p, p * chunk, chunk) for p in range(n)] if is_root else None

        def run():
            out = [None]
            dist.scatter_object_list(out, every, src=root)
            last['v'] = out[0]
        return C.Prepared(run, lambda: None, lambda: C.wrong_bytes(last['v'], rank, rank * chunk, chunk))
    raise C.Unsupported('no Gloo mapping for %s' % op)


def worker(rank, n, port, run_file):
    os.environ.setdefault('GLOO_SOCKET_IFNAME', 'lo')
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:%d' % port, rank=rank, world_size=n)
    C.run_all(Comm(dist, torch), make_prepare(dist, torch, rank, n), run_file, 'tcp')
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--world', type=int, required=True)
    ap.add_argument('run_file')
    args = ap.parse_args()
    import torch.multiprocessing as mp
    ctx = mp.spawn(worker, args=(args.world, free_port(), args.run_file), nprocs=args.world, join=False)

    def stop(signum, _frame):
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        sys.exit(128 + signum if signum else 1)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not ctx.join(timeout=1):
            pass
    except Exception as e:  # a worker failed: mp.spawn says which and why
        print('gloo: %s' % e, file=sys.stderr, flush=True)
        stop(0, None)


if __name__ == '__main__':
    main()
