/**
 * @module
 * UCX specifics: a rank killed mid-allreduce gives every survivor PeerLostError naming it within the
 * timeout (over UCX's TCP and shared-memory transports), an unknown UCX version and a missing libucp
 * are refused with clear errors, and the registration cache reuses and evicts handles.
 */

import assert from "node:assert/strict";
import { assertNamed, killTrial } from "../helpers/kill.ts";
import { ucxAvailability, ucxLib } from "../../transports/ucx/lib.ts";
import { layoutFor } from "../../transports/ucx/structs.ts";
import { LibraryUnavailableError } from "../../errors.ts";
import process from "node:process";
import type { FrameHeader } from "../../transports/frame.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { UcxTransport } from "../../transports/ucx/transport.ts";
import { lanesOf, probeVerbs, tagProtocolsOf } from "../../transports/ucx/devices.ts";

const avail = ucxAvailability();
if (!avail.ok) console.log(`ucx tests: skipped, ${avail.reason}`);
const ignore = !avail.ok;

for (
  const [tls, count, worldSize, victim, hosts] of [
    ["tcp", 65536, 2, 1, 1],
    ["tcp", 65536, 3, 2, 1],
    ["posix,self", 65536, 3, 1, 1],
    ["sysv,cma,self", 2, 4, 2, 1],
    // Every rank its own "host": no pid watch, UCX's peer-failure mode and error callback instead.
    ["tcp", 65536, 3, 1, 3],
  ] as const
) {
  const where = hosts > 1 ? `, ${hosts} hosts` : "";
  const name = `SIGKILL of rank ${victim} of ${worldSize} mid-allreduce (ucx, UCX_TLS=${tls}${where}, ${
    count * 4
  } B)`;
  Deno.test(`${name}: every survivor gets PeerLostError naming it`, { ignore }, async () => {
    const results = await killTrial({
      op: "allReduce",
      transport: "ucx",
      count,
      worldSize,
      victim,
      env: (rank) => ({ UCX_TLS: tls, ...(hosts > 1 ? { CHOIR_HOST_ID: `host-${rank}` } : {}) }),
    });
    assertNamed(results, victim, name);
  });
}

Deno.test("ucx: an unverified libucp version is refused, naming the version", () => {
  assert.throws(
    () => layoutFor(1, 99),
    (e: Error) => e instanceof LibraryUnavailableError && /1\.99/.test(e.message),
  );
  assert.throws(() => layoutFor(2, 0), LibraryUnavailableError);
});

Deno.test("ucx: the installed libucp has a verified layout", { ignore }, () => {
  const v = ucxLib().version;
  assert.ok(layoutFor(v.major, v.minor));
});

Deno.test("ucx: without libucp the error names the package to install", () => {
  assert.throws(
    () => ucxLib({ ucp: "libucp-not-installed.so.0", ucs: "libucs.so.0" }),
    (e: Error) =>
      e instanceof LibraryUnavailableError && /libucx0/.test(e.message) && /apt-get install/.test(e.message),
  );
});

/** Two UCX transports of one job inside this process (rank 0 and rank 1), wired through a MemoryStore. */
async function pair(): Promise<[UcxTransport, UcxTransport, MemoryStore]> {
  const store = new MemoryStore();
  const o = { size: 2, store, token: "t", timeoutMs: 10_000 };
  const [a, b] = await Promise.all([
    UcxTransport.create({ ...o, rank: 0 }),
    UcxTransport.create({ ...o, rank: 1 }),
  ]);
  return [a, b, store];
}

const hdr = (chunk: number, bytes: number): FrameHeader => ({
  group: 0,
  seq: 1,
  op: 1,
  dtype: 0,
  count: 0,
  root: -1,
  chunk,
  bytes,
});

Deno.test("ucx: large buffers reused across sends are registered once", { ignore }, async () => {
  const [a, b] = await pair();
  try {
    const [ab, ba] = await Promise.all([a.channel(1), b.channel(0)]);
    const size = 3 << 20;
    const src = new Uint8Array(size);
    const dst = new Uint8Array(size);
    for (let i = 0; i < 3; i++) {
      src.fill(i + 7);
      await Promise.all([ab.send(hdr(i, size), src), ba.recv(hdr(i, size), dst)]);
      assert.ok(dst.every((x) => x === i + 7), `round ${i}: wrong bytes`);
    }
    assert.deepEqual(a.registrations(), { registered: 1, hits: 2, held: 1 });
    assert.equal(b.registrations().registered, 1);
    assert.ok(a.wires()[0].lanes.length > 0, "UCX reported no lanes");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test(
  "ucx: a receive waiting a second sleeps on the event fd instead of spinning",
  { ignore },
  async () => {
    const [a, b] = await pair();
    try {
      const [ab, ba] = await Promise.all([a.channel(1), b.channel(0)]);
      await Promise.all([ab.send(hdr(0, 4), new Uint8Array(4)), ba.recv(hdr(0, 4), new Uint8Array(4))]);
      const into = new Uint8Array(4);
      const before = process.cpuUsage();
      const t0 = performance.now();
      const got = ba.recv(hdr(1, 4), into);
      await new Promise((r) => setTimeout(r, 1000)); // the idle period under test, not synchronisation
      await Promise.all([ab.send(hdr(1, 4), new Uint8Array([1, 2, 3, 4])), got]);
      const wallMs = performance.now() - t0;
      const cpu = process.cpuUsage(before);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      assert.deepEqual([...into], [1, 2, 3, 4]);
      assert.ok(cpuMs < 0.25 * wallMs, `used ${cpuMs.toFixed(0)} ms of CPU in ${wallMs.toFixed(0)} ms`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },
);

Deno.test("ucx: the verbs probe answers, with devices or saying there are none", () => {
  const p = probeVerbs();
  console.log(`verbs probe: ${p.summary}`);
  assert.ok(p.devices.length > 0 || /no RDMA devices/.test(p.summary));
});

Deno.test("ucx: endpoint lanes are read from ucp_ep_print_info's text", () => {
  const text = "#                 lane[0]:  5:sysv/memory.0 md[3]   -> md[3]/sysv/sysdev[255] am am_bw#0\n" +
    "#                 lane[1]:  6:cma/memory.0 md[4]    -> md[4]/cma/sysdev[255] rma_bw#0\n" +
    "#                tag_send: 0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)\n";
  assert.deepEqual(lanesOf(text), ["sysv/memory", "cma/memory"]);
  assert.equal(tagProtocolsOf(text), "0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)");
});

/** The C program that prints the offsets structs.ts hard-codes, from the installed UCX headers. */
const OFFSETS_C = `#include <ucp/api/ucp.h>
#include <stdio.h>
#include <stddef.h>
#define O(t, f) printf("%zu ", offsetof(t, f))
#define S(t) printf("%zu ", sizeof(t))
int main(void) {
  S(ucp_params_t); O(ucp_params_t, field_mask); O(ucp_params_t, features); O(ucp_params_t, estimated_num_eps);
  S(ucp_worker_params_t); O(ucp_worker_params_t, field_mask); O(ucp_worker_params_t, thread_mode);
  S(ucp_ep_params_t); O(ucp_ep_params_t, field_mask); O(ucp_ep_params_t, address); O(ucp_ep_params_t, err_mode);
  O(ucp_ep_params_t, err_handler.cb); O(ucp_ep_params_t, err_handler.arg); O(ucp_ep_params_t, user_data);
  S(ucp_request_param_t); O(ucp_request_param_t, op_attr_mask); O(ucp_request_param_t, flags);
  O(ucp_request_param_t, datatype); O(ucp_request_param_t, recv_info); O(ucp_request_param_t, memh);
  S(ucp_tag_recv_info_t); O(ucp_tag_recv_info_t, sender_tag); O(ucp_tag_recv_info_t, length);
  S(ucp_mem_map_params_t); O(ucp_mem_map_params_t, field_mask); O(ucp_mem_map_params_t, address);
  O(ucp_mem_map_params_t, length);
  printf("%d.%d\\n", UCP_API_MAJOR, UCP_API_MINOR);
  return 0;
}
`;

const headers = (() => {
  for (const [path, pkg] of [["/usr/include/ucp/api/ucp.h", "libucx-dev"], ["/usr/bin/gcc", "gcc"]]) {
    try {
      Deno.statSync(path);
    } catch {
      return `${path} absent (Debian: ${pkg})`;
    }
  }
  return null;
})();
if (headers) console.log(`ucx layout check: skipped, ${headers}`);

Deno.test(
  "ucx: structs.ts offsets equal offsetof on the installed headers",
  { ignore: headers !== null },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "choir-ucx-layout-" });
    try {
      await Deno.writeTextFile(`${dir}/off.c`, OFFSETS_C);
      const cc = await new Deno.Command("gcc", { args: [`${dir}/off.c`, "-o", `${dir}/off`] }).output();
      assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
      const out = new TextDecoder().decode((await new Deno.Command(`${dir}/off`).output()).stdout).trim()
        .split(" ");
      const [major, minor] = out.pop()!.split(".").map(Number);
      const l = layoutFor(major, minor);
      const ours = [
        [l.params.size, l.params.fieldMask, l.params.features, l.params.estimatedNumEps],
        [l.workerParams.size, l.workerParams.fieldMask, l.workerParams.threadMode],
        [
          l.epParams.size,
          l.epParams.fieldMask,
          l.epParams.address,
          l.epParams.errMode,
          l.epParams.errHandlerCb,
        ],
        [l.epParams.errHandlerArg, l.epParams.userData],
        [l.requestParam.size, l.requestParam.opAttrMask, l.requestParam.flags, l.requestParam.datatype],
        [l.requestParam.recvInfo, l.requestParam.memh],
        [l.tagRecvInfo.size, l.tagRecvInfo.senderTag, l.tagRecvInfo.length],
        [l.memMapParams.size, l.memMapParams.fieldMask, l.memMapParams.address, l.memMapParams.length],
      ].flat();
      assert.deepEqual(out.map(Number), ours);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
