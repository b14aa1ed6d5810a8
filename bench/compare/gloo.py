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
        bad = C.poison_value(d)  # outputs before a checked call
        redop = ops.get(c['redop'])
        is_root = rank == root
        D = C.Data(c, rank, n)

        def zeros(k):
            return torch.zeros(k, dtype=tt)

        def blocks(separate):
            """n tensors of chunk elements: views of one tensor, or separate tensors (list forms)."""
            return [zeros(chunk) for _ in range(n)] if separate else list(zeros(count).chunk(n))

        def clear(ts):
            for t in ts:
                t.fill_(bad)

        def wrong_blocks(ts, g, s):
            """Block p must hold rank p's data from global index g(p)."""
            return D.wrong_blocks([t.numpy() for t in ts], g, s)

        if op == 'allreduce':
            buf = zeros(count)
            return C.Prepared(lambda: dist.all_reduce(buf, op=redop),
                              lambda s: D.put_input(buf.numpy(), 0, s),
                              lambda s: D.wrong_result(buf.numpy(), 0, s))
        if op == 'broadcast':
            buf = zeros(count)

            def arm(s):
                if is_root:
                    D.put_move(buf.numpy(), root, 0, s)
                else:
                    buf.fill_(bad)
            return C.Prepared(lambda: dist.broadcast(buf, src=root), arm,
                              lambda s: D.wrong_move(buf.numpy(), root, 0, s))
        if op == 'reduce':
            buf = zeros(count)
            # Gloo leaves partial results in other ranks' tensors: only the root's is checked.
            return C.Prepared(lambda: dist.reduce(buf, dst=root, op=redop),
                              lambda s: D.put_input(buf.numpy(), 0, s),
                              lambda s: D.wrong_result(buf.numpy(), 0, s) if is_root else 0)
        if op in ('allgather', 'allgather_list'):
            outs = blocks(op == 'allgather_list')
            inp = zeros(chunk)

            def arm(s):
                clear(outs)
                D.put_move(inp.numpy(), rank, rank * chunk, s)
            return C.Prepared(lambda: dist.all_gather(outs, inp), arm,
                              lambda s: wrong_blocks(outs, lambda p: p * chunk, s))
        if op == 'alltoall':
            inp = zeros(count)
            out = zeros(count)

            # Block q of rank p's input goes to rank q, at global index q*chunk: rank r gets from every p.
            def arm(s):
                for q, b in enumerate(inp.chunk(n)):
                    D.put_move(b.numpy(), rank, q * chunk, s)
                out.fill_(bad)
            return C.Prepared(lambda: dist.all_to_all_single(out, inp), arm,
                              lambda s: wrong_blocks(out.chunk(n), lambda p: rank * chunk, s))
        if op in ('gather', 'gather_list'):
            outs = blocks(op == 'gather_list') if is_root else None
            inp = zeros(chunk)

            def arm(s):
                if is_root:
                    clear(outs)
                D.put_move(inp.numpy(), rank, rank * chunk, s)
            return C.Prepared(lambda: dist.gather(inp, outs, dst=root), arm,
                              lambda s: wrong_blocks(outs, lambda p: p * chunk, s) if is_root else 0)
        if op in ('scatter', 'scatter_list'):
            ins = blocks(op == 'scatter_list') if is_root else None
            out = zeros(chunk)

            # Block p of the root's input is rank p's: it carries p's data.
            def arm(s):
                for p, t in enumerate(ins or []):
                    D.put_move(t.numpy(), p, p * chunk, s)
                out.fill_(bad)
            return C.Prepared(lambda: dist.scatter(out, ins, src=root), arm,
                              lambda s: D.wrong_move(out.numpy(), rank, rank * chunk, s))
        if op == 'sendrecv':
            send = zeros(count)
            recv = zeros(count)
            nxt, prev = (rank + 1) % n, (rank + n - 1) % n

            def sendrecv():
                for w in (dist.isend(send, nxt), dist.irecv(recv, prev)):
                    w.wait()

            def arm(s):
                D.put_move(send.numpy(), rank, 0, s)
                recv.fill_(bad)
            return C.Prepared(sendrecv, arm, lambda s: D.wrong_move(recv.numpy(), prev, 0, s))
        if op == 'barrier':
            return C.Prepared(dist.barrier, lambda s: None, lambda s: 0)
        return prepare_object(dist, c, rank, n)

    return prepare


def prepare_object(dist, c, rank, n):
    """Object ops: the *_object calls, on the bytes common.object_row builds."""
    root = c['root']

    def broadcast(data):
        box = [data]
        dist.broadcast_object_list(box, src=root)
        return box[0]

    def allgather(data):
        out = [None] * n
        dist.all_gather_object(out, data)
        return out

    def gather(data):
        out = [None] * n if rank == root else None
        dist.gather_object(data, out, dst=root)
        return out

    def scatter(data):
        out = [None]
        dist.scatter_object_list(out, data, src=root)
        return out[0]
    calls = {'broadcast_object': broadcast, 'allgather_object': allgather, 'gather_object': gather,
             'scatter_object': scatter}
    if c['op'] not in calls:
        raise C.Unsupported('no Gloo mapping for %s' % c['op'])
    return C.object_row(c, rank, n, calls[c['op']])


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
