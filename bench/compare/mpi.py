#!/usr/bin/env python3
"""Open MPI through mpi4py and numpy on the rows of a choir benchmark run (bench/compare.ts starts it
under mpirun; see common.py for the method).

usage: mpirun -np N python3 mpi.py --transport shm|tcp RUN_FILE.json

Every op maps to MPI's buffer call: allreduce Allreduce (MPI_IN_PLACE, as choir's is in place),
broadcast Bcast, reduce Reduce, allgather Allgather, reduce_scatter Reduce_scatter_block, alltoall
Alltoall, gather Gather, scatter Scatter (in-place forms with MPI_IN_PLACE; in-place
Reduce_scatter_block leaves the result at the start of the buffer), sendrecv Sendrecv with the next
and previous rank, barrier Barrier, and the *_object ops the pickling bcast/allgather/gather/scatter.
MPI has no list forms: the *_list ops run the same calls as their tensor forms. MPI has no AVG and
no PREMUL_SUM, and no half or bfloat16 type: those rows are reported as unsupported.
"""
import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

OPS = {'sum': MPI.SUM, 'prod': MPI.PROD, 'min': MPI.MIN, 'max': MPI.MAX,
       'band': MPI.BAND, 'bor': MPI.BOR, 'bxor': MPI.BXOR}
IN = MPI.IN_PLACE


class Comm:
    """The helper collectives common.measure needs, over an MPI communicator."""

    def __init__(self, comm):
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()

    def bcast(self, arr):
        self.comm.Bcast(arr, root=0)

    def barrier(self):
        self.comm.Barrier()

    def allgather_times(self, times):
        out = np.empty((self.size, len(times)), dtype=np.float64)
        self.comm.Allgather(times, out)
        return out

    def sum(self, x):
        return self.comm.allreduce(float(x), op=MPI.SUM)


def make_prepare(comm, rank, n):
    def prepare(c):
        op, d, place, root = c['op'], c['dtype'], c['place'], c['root']
        count, chunk = c['count'], c['chunk']
        if d in ('f16', 'bf16'):
            raise C.Unsupported('MPI has no %s type' % ('half' if d == 'f16' else 'bfloat16'))
        if c['redop'] != 'none' and c['redop'] not in OPS:
            raise C.Unsupported('MPI has no %s reduction' % c['redop'])
        if place == 'in' and op in ('alltoall', 'sendrecv'):
            raise C.Unsupported('no in-place %s here' % op)
        nt = C.NUMPY[d]
        redop = OPS.get(c['redop'])
        is_root = rank == root
        inp_place = place == 'in'

        def arr(period, k):
            return C.tile(period, k, d)

        def zeros(k):
            return np.zeros(k, dtype=nt)

        def wrong_move(a, src, g0):
            return C.count_wrong(a, C.move(src, g0), d)

        def wrong_blocks(a, g):
            return sum(wrong_move(a[p * chunk:(p + 1) * chunk], p, g(p)) for p in range(n))

        def red_in(a, g0):
            a[:] = arr(C.reduce_in(c['redop'], rank, g0), len(a))

        def red_wrong(a, g0):
            return C.count_wrong(a, C.reduce_out(c['redop'], d, n, g0), d)

        if op == 'allreduce':
            buf = zeros(count)
            if inp_place:
                run = lambda: comm.Allreduce(IN, buf, op=redop)  # noqa: E731
                return C.Prepared(run, lambda: red_in(buf, 0), lambda: red_wrong(buf, 0),
                                  lambda: buf.fill(0), lambda: C.count_wrong(buf, C.ZERO, d))
            src = zeros(count)
            return C.Prepared(lambda: comm.Allreduce(src, buf, op=redop), lambda: red_in(src, 0),
                              lambda: red_wrong(buf, 0))
        if op == 'broadcast':
            buf = zeros(count)

            def fill():
                buf[:] = arr(C.move(root, 0), count) if is_root else 0
            return C.Prepared(lambda: comm.Bcast(buf, root=root), fill, lambda: wrong_move(buf, root, 0))
        if op == 'reduce':
            buf = zeros(count)
            other = zeros(count)
            if inp_place:
                def run():
                    if is_root:
                        comm.Reduce(IN, buf, op=redop, root=root)
                    else:
                        comm.Reduce(buf, None, op=redop, root=root)
                return C.Prepared(run, lambda: red_in(buf, 0),
                                  lambda: red_wrong(buf, 0) if is_root else 0, lambda: buf.fill(0),
                                  lambda: C.count_wrong(buf, C.ZERO, d) if is_root else 0)
            return C.Prepared(lambda: comm.Reduce(buf, other if is_root else None, op=redop, root=root),
                              lambda: red_in(buf, 0), lambda: red_wrong(other, 0) if is_root else 0)
        if op in ('allgather', 'allgather_list'):
            out = zeros(count)
            mine = arr(C.move(rank, rank * chunk), chunk)
            if inp_place:
                def fill():
                    out.fill(0)
                    out[rank * chunk:(rank + 1) * chunk] = mine
                run = lambda: comm.Allgather(IN, out)  # noqa: E731
            else:
                fill = lambda: out.fill(0)  # noqa: E731
                run = lambda: comm.Allgather(mine, out)  # noqa: E731
            return C.Prepared(run, fill, lambda: wrong_blocks(out, lambda p: p * chunk))
        if op in ('reduce_scatter', 'reduce_scatter_list'):
            inp = zeros(count)
            if inp_place:
                res = inp[:chunk]
                return C.Prepared(lambda: comm.Reduce_scatter_block(IN, inp, op=redop),
                                  lambda: red_in(inp, 0), lambda: red_wrong(res, rank * chunk),
                                  lambda: inp.fill(0), lambda: C.count_wrong(res, C.ZERO, d))
            out = zeros(chunk)
            return C.Prepared(lambda: comm.Reduce_scatter_block(inp, out, op=redop),
                              lambda: red_in(inp, 0), lambda: red_wrong(out, rank * chunk))
        if op == 'alltoall':
            inp = np.concatenate([arr(C.move(rank, q * chunk), chunk) for q in range(n)])
            out = zeros(count)
            return C.Prepared(lambda: comm.Alltoall(inp, out), lambda: out.fill(0),
                              lambda: wrong_blocks(out, lambda p: rank * chunk))
        if op in ('gather', 'gather_list'):
            out = zeros(count)
            mine = arr(C.move(rank, rank * chunk), chunk)

            def fill():
                out.fill(0)
                if inp_place and is_root:
                    out[rank * chunk:(rank + 1) * chunk] = mine

            def run():
                if inp_place and is_root:
                    comm.Gather(IN, out, root=root)
                else:
                    comm.Gather(mine, out if is_root else None, root=root)
            return C.Prepared(run, fill, lambda: wrong_blocks(out, lambda p: p * chunk) if is_root else 0)
        if op in ('scatter', 'scatter_list'):
            inp = np.concatenate([arr(C.move(p, p * chunk), chunk) for p in range(n)])
            out = inp[rank * chunk:(rank + 1) * chunk] if inp_place and is_root else zeros(chunk)

            def run():
                if inp_place and is_root:
                    comm.Scatter(inp, IN, root=root)
                else:
                    comm.Scatter(inp if is_root else None, out, root=root)
            return C.Prepared(run, lambda: None, lambda: wrong_move(out, rank, rank * chunk))
        if op == 'sendrecv':
            send = arr(C.move(rank, 0), count)
            recv = zeros(count)
            nxt, prev = (rank + 1) % n, (rank + n - 1) % n
            return C.Prepared(lambda: comm.Sendrecv(send, dest=nxt, recvbuf=recv, source=prev),
                              lambda: recv.fill(0), lambda: wrong_move(recv, prev, 0))
        if op == 'barrier':
            return C.Prepared(comm.Barrier, lambda: None, lambda: 0)
        return prepare_object(comm, c, rank, n)

    return prepare



def prepare_object(comm, c, rank, n):
    op, root, count, chunk = c['op'], c['root'], c['count'], c['chunk']
    is_root = rank == root
    last = {}

    def keep(f):
        def run():
            last['v'] = f()
        return run

    def wrong_list(vs):
        if vs is None or len(vs) != n:
            return chunk * n
        return sum(C.wrong_bytes(v, p, p * chunk, chunk) for p, v in enumerate(vs))
    if op == 'broadcast_object':
        data = C.payload(root, 0, count) if is_root else None
        return C.Prepared(keep(lambda: comm.bcast(data, root=root)), lambda: None,
                          lambda: C.wrong_bytes(last['v'], root, 0, count))
    mine = C.payload(rank, rank * chunk, chunk)
    if op == 'allgather_object':
        return C.Prepared(keep(lambda: comm.allgather(mine)), lambda: None, lambda: wrong_list(last['v']))
    if op == 'gather_object':
        return C.Prepared(keep(lambda: comm.gather(mine, root=root)), lambda: None,
                          lambda: wrong_list(last['v']) if is_root else 0)
    if op == 'scatter_object':
        every = [C.payload(p, p * chunk, chunk) for p in range(n)] if is_root else None
        return C.Prepared(keep(lambda: comm.scatter(every, root=root)), lambda: None,
                          lambda: C.wrong_bytes(last['v'], rank, rank * chunk, chunk))
    raise C.Unsupported('no MPI mapping for %s' % op)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--transport', default='shm')
    ap.add_argument('run_file')
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, n = comm.Get_rank(), comm.Get_size()
    C.run_all(Comm(comm), make_prepare(comm, rank, n), args.run_file, args.transport)


if __name__ == '__main__':
    main()
