/**
 * @module
 * The time budget of one small 2-rank allReduce over TCP (issue 23): the public call, the channel
 * backend alone, the channel's one-call exchange, and a queued send + receive pair, each over a TCP
 * transport of its own, timed in step on both ranks. Run it on local ranks:
 * `deno task launch --nproc-per-node 2 bench/tcp_budget.ts [calls] [reps]`; it prints the per-call
 * median over reps (rank 0, microseconds).
 */

import { ReduceOp } from "../dtype.ts";
import { ProcessGroup } from "../collectives/process_group.ts";
import { Comm, OpKind } from "../collectives/comm.ts";
import { ChannelBackend } from "../collectives/channels/channel_backend.ts";
import { allReduceDirect } from "../collectives/channels/allreduce_direct.ts";
import type { OpRun } from "../collectives/backend.ts";
import { OpMonitor } from "../collectives/diagnostics/op_monitor.ts";
import { HostCalls } from "../collectives/host_calls.ts";
import { OpQueue } from "../collectives/op_queue.ts";
import { Router } from "../collectives/route.ts";
import { ArgCheck } from "../collectives/validate.ts";

import type { FrameHeader } from "../transports/frame.ts";
import { TcpTransport } from "../transports/tcp/transport.ts";
import {
  BUDGET_TIMEOUT_MS,
  budgetJob,
  noMonitor,
  type Step,
  timeVariants,
  transportMaker,
} from "./budget_kit.ts";
import { median } from "./stats.ts";

const CALLS = Number(Deno.args[0] ?? 20000);
const REPS = Number(Deno.args[1] ?? 5);
const SIZES = (Deno.args[2] ?? "8,4096").split(",").map(Number);
const TIMEOUT_MS = BUDGET_TIMEOUT_MS;

const rdzv = await budgetJob();
const { rank, worldSize: size } = rdzv;
/** A fresh transport per variant (its own links or segment). */
const transport = transportMaker(rdzv, "tcpb", (o) => TcpTransport.create(o));

async function variants(): Promise<[string, Step][]> {
  const out: [string, Step][] = [];
  {
    const pg = new ProcessGroup(await transport(), { timeoutMs: TIMEOUT_MS, group: 1 });
    await pg.connect();
    out.push(["public call, awaited", async (x) => await pg.allReduce(x)]);
    out.push(["public call, not awaited", (x) => pg.allReduce(x)]);
  }
  const peer = 1 - rank;
  const runOf = (router: Router, bytes: number): OpRun => ({
    call: {
      name: "allReduce",
      kind: OpKind.allReduce,
      dtype: "f32",
      count: bytes / 4,
      root: -1,
      op: ReduceOp.SUM,
      seq: 0,
    },
    route: router.route("allReduce", bytes),
    timeoutMs: TIMEOUT_MS,
  });
  const backend = async (monitor: OpMonitor | null) => {
    const t = await transport();
    const ch = await t.channel(peer);
    const queue = new OpQueue(
      rank,
      monitor ?? new OpMonitor({ rank, size, group: 3, capacity: 2000 }),
      () => Promise.resolve(),
    );
    const router = new Router({ rank, size, transport: "tcp" });
    const b = new ChannelBackend({
      rank,
      size,
      queue,
      router,
      connect: () => Promise.resolve(),
      pairOf: () => Promise.resolve(null),
    });
    const comm = new Comm(rank, size, 5, rank === 0 ? [null, ch] : [ch, null], 1 << 20);
    b.attach(comm, null, null);
    return { queue, b, router, comm };
  };
  {
    const { queue, b, router } = await backend(null);
    const calls = new HostCalls({
      rank,
      size,
      timeoutMs: TIMEOUT_MS,
      check: new ArgCheck(rank, size),
      router,
      queue,
      channels: b,
      arena: () => null,
    });
    out.push(["HostCalls (checks, route, record, backend)", (x) => calls.allReduce(x, {})]);
  }
  {
    const { b, router } = await backend(null);
    const runs = new Map(SIZES.map((n) => [n, runOf(router, n)]));
    out.push(["channel backend (queue, monitor, direct)", (x) => b.allReduce(runs.get(x.byteLength)!, x)]);
  }
  {
    const { b, router } = await backend(noMonitor);
    const runs = new Map(SIZES.map((n) => [n, runOf(router, n)]));
    out.push(["channel backend, monitor stubbed", (x) => b.allReduce(runs.get(x.byteLength)!, x)]);
  }
  {
    const { comm, router } = await backend(noMonitor);
    const runs = new Map(SIZES.map((n) => [n, runOf(router, n)]));
    out.push(["allReduceDirect on a Comm", (x) => allReduceDirect(comm, runs.get(x.byteLength)!.call, x)]);
  }
  const header = (bytes: number, seq: number): FrameHeader => ({
    group: 7,
    seq,
    op: OpKind.allReduce | (1 << 8),
    dtype: 1,
    count: bytes / 4,
    root: -1,
    chunk: 0,
    bytes,
  });
  {
    const ch = await (await transport()).channel(peer);
    let seq = 0;
    const other = new Float32Array(Math.max(...SIZES) / 4);
    out.push(["channel exchange + reduce", (x) => {
      const b = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
      const o = new Uint8Array(other.buffer, 0, x.byteLength);
      const p = ch.exchange!(header(x.byteLength, seq++), b, o);
      const fin = () => {
        for (let i = 0; i < x.length; i++) x[i] += other[i];
      };
      if (p === undefined) return fin();
      return p.then(fin);
    }]);
  }
  {
    const ch = await (await transport()).channel(peer);
    let seq = 0;
    const other = new Uint8Array(Math.max(...SIZES));
    out.push(["channel send + recv (Promise.all)", async (x) => {
      const b = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
      const h = header(x.byteLength, seq++);
      await Promise.all([ch.send(h, b), ch.recv(h, other.subarray(0, x.byteLength))]);
    }]);
  }
  return out;
}

const results = await timeVariants(await variants(), SIZES, CALLS, REPS);
if (rank === 0) {
  for (const [key, v] of results) {
    console.log(`${key}\t${median(v).toFixed(2)} us\t[${v.map((u) => u.toFixed(1)).join(" ")}]`);
  }
}
Deno.exit(0);
