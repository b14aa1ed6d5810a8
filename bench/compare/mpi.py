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
    """The helper collectives common.measure needs, made of point-to-point messages through rank 0 on a
    duplicate of the communicator: a variant that forces a coll_tuned algorithm (which may not run at
    this rank count, e.g. two_proc on 3 ranks) changes the measured calls only, never the harness."""

    TAG = 7

    def __init__(self, comm):
        self.comm = comm.Dup()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def _gather(self, obj):
        """Every rank's obj on rank 0 (a list), None elsewhere."""
        if self.rank != 0:
            self.comm.send(obj, dest=0, tag=self.TAG)
            return None
        return [obj] + [self.comm.recv(source=r, tag=self.TAG) for r in range(1, self.size)]

    def _share(self, obj):
        """Rank 0's obj on every rank."""
        if self.rank == 0:
            for r in range(1, self.size):
                self.comm.send(obj, dest=r, tag=self.TAG)
            return obj
        return self.comm.recv(source=0, tag=self.TAG)

    def bcast(self, arr):
        arr[:] = self._share(arr.copy() if self.rank == 0 else None)

    def barrier(self):
        self._gather(None)
        self._share(None)

    def allgather_times(self, times):
        every = self._share(self._gather(np.asarray(times, dtype=np.float64)))
        return np.stack(every)

    def sum(self, x):
        every = self._share(self._gather(float(x)))
        return float(sum(every))


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
        bad = C.poison_value(d)  # outputs before a checked call
        redop = OPS.get(c['redop'])
        is_root = rank == root
        inp_place = place == 'in'
        D = C.Data(c, rank, n)

        def zeros(k):
            return np.zeros(k, dtype=nt)

        def blocks(a):
            return np.split(a, n)

        def mine_of(a):
            """This rank's block of a."""
            return a[rank * chunk:(rank + 1) * chunk]

        def wrong_gathered(out, s):
            """Block p of out must hold rank p's block of data."""
            return D.wrong_blocks(blocks(out), lambda p: p * chunk, s)

        if op == 'allreduce':
            buf = zeros(count)
            if inp_place:
                return C.Prepared(lambda: comm.Allreduce(IN, buf, op=redop),
                                  lambda s: D.put_input(buf, 0, s), lambda s: D.wrong_result(buf, 0, s))
            src = zeros(count)

            def arm(s):
                D.put_input(src, 0, s)
                buf.fill(bad)
            return C.Prepared(lambda: comm.Allreduce(src, buf, op=redop), arm,
                              lambda s: D.wrong_result(buf, 0, s))
        if op == 'broadcast':
            buf = zeros(count)

            def arm(s):
                if is_root:
                    D.put_move(buf, root, 0, s)
                else:
                    buf.fill(bad)
            return C.Prepared(lambda: comm.Bcast(buf, root=root), arm,
                              lambda s: D.wrong_move(buf, root, 0, s))
        if op == 'reduce':
            buf = zeros(count)
            if inp_place:
                def run():
                    if is_root:
                        comm.Reduce(IN, buf, op=redop, root=root)
                    else:
                        comm.Reduce(buf, None, op=redop, root=root)
                def verify(s):  # other ranks' buffers must still hold their input
                    return D.wrong_result(buf, 0, s) if is_root else D.wrong_input(buf, 0, s)
                return C.Prepared(run, lambda s: D.put_input(buf, 0, s), verify)
            other = zeros(count)

            def arm(s):
                D.put_input(buf, 0, s)
                other.fill(bad)
            return C.Prepared(lambda: comm.Reduce(buf, other if is_root else None, op=redop, root=root),
                              arm, lambda s: D.wrong_result(other, 0, s) if is_root else 0)
        if op in ('allgather', 'allgather_list'):
            out = zeros(count)
            mine = mine_of(out) if inp_place else zeros(chunk)

            def arm(s):
                out.fill(bad)  # first: in place, the input is a block of the output
                D.put_move(mine, rank, rank * chunk, s)
            run = (lambda: comm.Allgather(IN, out)) if inp_place else (lambda: comm.Allgather(mine, out))
            return C.Prepared(run, arm, lambda s: wrong_gathered(out, s))
        if op in ('reduce_scatter', 'reduce_scatter_list'):
            inp = zeros(count)
            # In place the result lands at the start of the buffer, which holds input until the call.
            out = inp[:chunk] if inp_place else zeros(chunk)

            def arm(s):
                D.put_input(inp, 0, s)
                if not inp_place:
                    out.fill(bad)
            run = (lambda: comm.Reduce_scatter_block(IN, inp, op=redop)) if inp_place else \
                (lambda: comm.Reduce_scatter_block(inp, out, op=redop))
            return C.Prepared(run, arm, lambda s: D.wrong_result(out, rank * chunk, s))
        if op == 'alltoall':
            inp = zeros(count)
            out = zeros(count)

            # Block q of rank p's input goes to rank q, at global index q*chunk: rank r gets from every p.
            def arm(s):
                for q, b in enumerate(blocks(inp)):
                    D.put_move(b, rank, q * chunk, s)
                out.fill(bad)
            return C.Prepared(lambda: comm.Alltoall(inp, out), arm,
                              lambda s: D.wrong_blocks(blocks(out), lambda p: rank * chunk, s))
        if op in ('gather', 'gather_list'):
            out = zeros(count) if is_root else None
            in_out = inp_place and is_root
            mine = mine_of(out) if in_out else zeros(chunk)

            def arm(s):
                if is_root:
                    out.fill(bad)
                D.put_move(mine, rank, rank * chunk, s)

            def run():
                if in_out:
                    comm.Gather(IN, out, root=root)
                else:
                    comm.Gather(mine, out, root=root)
            return C.Prepared(run, arm, lambda s: wrong_gathered(out, s) if is_root else 0)
        if op in ('scatter', 'scatter_list'):
            inp = zeros(count) if is_root else None
            in_out = inp_place and is_root
            out = mine_of(inp) if in_out else zeros(chunk)

            # Block p of the root's input is rank p's: it carries p's data.
            def arm(s):
                if is_root:
                    for p, b in enumerate(blocks(inp)):
                        D.put_move(b, p, p * chunk, s)
                if not in_out:
                    out.fill(bad)

            def run():
                if in_out:
                    comm.Scatter(inp, IN, root=root)
                else:
                    comm.Scatter(inp, out, root=root)
            return C.Prepared(run, arm, lambda s: D.wrong_move(out, rank, rank * chunk, s))
        if op == 'sendrecv':
            send = zeros(count)
            recv = zeros(count)
            nxt, prev = (rank + 1) % n, (rank + n - 1) % n

            def arm(s):
                D.put_move(send, rank, 0, s)
                recv.fill(bad)
            return C.Prepared(lambda: comm.Sendrecv(send, dest=nxt, recvbuf=recv, source=prev), arm,
                              lambda s: D.wrong_move(recv, prev, 0, s))
        if op == 'barrier':
            return C.Prepared(comm.Barrier, lambda s: None, lambda s: 0)
        return prepare_object(comm, c, rank, n)

    return prepare


def prepare_object(comm, c, rank, n):
    """Object ops: the pickling calls, on the bytes common.object_row builds."""
    root = c['root']
    calls = {'broadcast_object': lambda data: comm.bcast(data, root=root),
             'allgather_object': comm.allgather,
             'gather_object': lambda data: comm.gather(data, root=root),
             'scatter_object': lambda data: comm.scatter(data, root=root)}
    if c['op'] not in calls:
        raise C.Unsupported('no MPI mapping for %s' % c['op'])
    return C.object_row(c, rank, n, calls[c['op']])


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
