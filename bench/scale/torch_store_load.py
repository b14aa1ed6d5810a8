"""torch's c10d TCPStore under the same start-up load as bench/scale/store_load.ts: N client threads
(one TCPStore client each) do a barrier (torch's: one add, the last rank sets a key, everyone waits on
it), publish an address, read their ring and tree neighbours' addresses (`neighbours`) or every
rank's (`mesh`), one get after another, and barrier again. Prints the same table line and writes the
same JSON (--out). The server runs in this process (is_master=True), as in store_load.ts.

usage: /usr/bin/python3 bench/scale/torch_store_load.py --n 1024 [--variant neighbours|mesh] [--out f.json]
"""
import argparse
import datetime
import json
import subprocess
import threading
import time

from torch.distributed import TCPStore

PHASES = ('join', 'publish', 'read', 'barrier')


def neighbours(rank, size):
    """Ring previous/next and binary-tree parent/children, as bench/scale/neighbours.ts."""
    s = set()
    if size > 1:
        s.add((rank + size - 1) % size)
        s.add((rank + 1) % size)
    if rank > 0:
        s.add((rank - 1) >> 1)
    for c in (2 * rank + 1, 2 * rank + 2):
        if c < size:
            s.add(c)
    s.discard(rank)
    return sorted(s)


class Sampler(threading.Thread):
    """Peak established connections on the server port, from ss (as conn_sampler.ts)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.peak, self.stop = port, -1, False

    def run(self):
        while not self.stop:
            out = subprocess.run(['ss', '-Htn', 'state', 'established', f'( sport = :{self.port} )'],
                                 capture_output=True, text=True).stdout
            self.peak = max(self.peak, len([l for l in out.splitlines() if l.strip()]))
            time.sleep(0.05)


def barrier(store, tag, n):
    if store.add(f'{tag}/count', 1) == n:
        store.set(f'{tag}/done', '1')
    store.wait([f'{tag}/done'])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=1024)
    ap.add_argument('--variant', default='neighbours', choices=['neighbours', 'mesh'])
    ap.add_argument('--out')
    a = ap.parse_args()
    n = a.n
    timeout = datetime.timedelta(seconds=600)
    server = TCPStore('127.0.0.1', 0, None, True, timeout, wait_for_workers=False)
    sampler = Sampler(server.port)
    sampler.start()
    c0 = time.perf_counter()
    clients = [TCPStore('127.0.0.1', server.port, None, False, timeout) for _ in range(n)]
    connect_ms = round((time.perf_counter() - c0) * 1000)
    requests = [0] * n
    ends = [0.0] * len(PHASES)
    lock = threading.Lock()
    errors = []
    go = threading.Event()
    t0 = [0.0]

    def mark(i):
        with lock:
            ends[i] = max(ends[i], time.perf_counter() - t0[0])

    def rank_main(rank):
        s = clients[rank]
        try:
            go.wait()
            barrier(s, 'load/join', n)
            requests[rank] += 2
            mark(0)
            s.set(f'addr/{rank}', f'127.0.0.1:{30000 + rank}')
            requests[rank] += 1
            mark(1)
            peers = [r for r in range(n) if r != rank] if a.variant == 'mesh' else neighbours(rank, n)
            for p in peers:
                if s.get(f'addr/{p}').decode() != f'127.0.0.1:{30000 + p}':
                    raise RuntimeError(f'rank {rank} read a wrong address')
            requests[rank] += len(peers)
            mark(2)
            barrier(s, 'load/done', n)
            requests[rank] += 2
            mark(3)
        except Exception as e:  # reported after the join
            errors.append(f'rank {rank}: {e!r}')

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    t0[0] = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0[0]
    sampler.stop = True
    sampler.join()
    if errors:
        raise SystemExit('\n'.join(errors[:10]))
    # Two ranks per barrier also set the done key.
    res = {
        'label': 'torch-1.13', 'n': n, 'variant': a.variant, 'connectMs': connect_ms,
        'phasesMs': {p: round(ends[i] * 1000) for i, p in enumerate(PHASES)},
        'totalMs': round(total * 1000), 'requests': sum(requests) + 2, 'peakConnections': sampler.peak,
        'multiGet': False,
    }
    ph = ' '.join(f'{res["phasesMs"][p]:>8}' for p in PHASES)
    print(f'{res["label"]:<10} {n:>6} {a.variant:<10} {connect_ms:>10} {ph} {res["totalMs"]:>8} {res["requests"]:>9} '
          f'{res["peakConnections"]:>7}')
    if a.out:
        with open(a.out, 'a') as f:
            f.write(json.dumps(res) + '\n')


if __name__ == '__main__':
    main()
