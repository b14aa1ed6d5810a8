/**
 * @module
 * Least privilege: each transport runs with exactly the permissions docs/permissions.md lists, and
 * one permission fewer gives a PermissionError naming the missing flag (not Deno's NotCapable).
 */

import assert from "node:assert/strict";
import { freePort } from "./helpers/ranks.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const RANK = `${ROOT}/tests/fixtures/permission_rank.ts`;
const SPAWN = `${ROOT}/tests/fixtures/permission_spawn.ts`;

interface Outcome {
  ok: boolean;
  backend?: string;
  name?: string;
  message?: string;
  permission?: string;
}

function parse(stdout: Uint8Array, stderr: Uint8Array): Outcome {
  const text = new TextDecoder().decode(stdout);
  const line = text.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`no RESULT:\n${text}\n${new TextDecoder().decode(stderr)}`);
  return JSON.parse(line.slice(7)) as Outcome;
}

/** Runs a 2-rank env:// job of permission_rank.ts with `flags` (`@PORT` becomes the store port). */
async function job(transport: string, flags: string[], initMethod?: string): Promise<Outcome[]> {
  const port = freePort();
  const token = "perm-" + crypto.randomUUID();
  const children = [0, 1].map((rank) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        ...flags.map((f) => f.replace("@PORT", String(port))),
        RANK,
        ...(initMethod ? [initMethod] : []),
      ],
      env: {
        RANK: String(rank),
        WORLD_SIZE: "2",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        CHOIR_TOKEN: token,
        CHOIR_TRANSPORT: transport,
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn()
  );
  const timer = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 60_000);
  try {
    return (await Promise.all(children.map((c) => c.output()))).map((o) => parse(o.stdout, o.stderr));
  } finally {
    clearTimeout(timer);
  }
}

const ENV = "--allow-env=RANK,WORLD_SIZE,MASTER_ADDR,MASTER_PORT,CHOIR_TOKEN,CHOIR_TRANSPORT";

Deno.test("permissions: tcp runs with --allow-env and --allow-net=127.0.0.1 only", async () => {
  for (const r of await job("tcp", [ENV, "--allow-net=127.0.0.1"])) {
    assert.deepEqual(r, { ok: true, backend: "tcp" });
  }
});

Deno.test("permissions: tcp without --allow-net names the store address to allow", async () => {
  for (const r of await job("tcp", [ENV])) {
    assert.equal(r.name, "PermissionError", r.message);
    assert.match(r.permission!, /^--allow-net=127\.0\.0\.1:\d+$/);
  }
});

Deno.test("permissions: tcp with only the store's port names the listener's host", async () => {
  for (const r of await job("tcp", [ENV, "--allow-net=127.0.0.1:@PORT"])) {
    assert.equal(r.name, "PermissionError", r.message);
    assert.equal(r.permission, "--allow-net=127.0.0.1");
  }
});

Deno.test("permissions: shm runs with --allow-ffi plus the store's one address", async () => {
  const flags = [ENV, "--allow-net=127.0.0.1:@PORT", "--allow-ffi"];
  for (const r of await job("shm", flags)) assert.deepEqual(r, { ok: true, backend: "shm" });
  // auto finds the peer on this host too (the host id is read through libc).
  for (const r of await job("auto", flags)) assert.deepEqual(r, { ok: true, backend: "shm" });
});

Deno.test("permissions: shm without --allow-ffi names --allow-ffi", async () => {
  for (const r of await job("shm", [ENV, "--allow-net=127.0.0.1:@PORT"])) {
    assert.equal(r.name, "PermissionError", r.message);
    assert.equal(r.permission, "--allow-ffi");
  }
});

Deno.test("permissions: file:// runs with read and write of its directory; without them both flags are named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "choir-perm-" });
  try {
    const allowed = [ENV, "--allow-net=127.0.0.1", `--allow-read=${dir}`, `--allow-write=${dir}`];
    for (const r of await job("tcp", allowed, `file://${dir}/store`)) assert.equal(r.ok, true, r.message);
    for (const r of await job("tcp", [ENV, "--allow-net=127.0.0.1"], `file://${dir}/store2`)) {
      assert.equal(r.name, "PermissionError", r.message);
      assert.equal(r.permission, `--allow-read=${dir}/store2 --allow-write=${dir}/store2`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function spawnWith(flags: string[]): Promise<Outcome> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, SPAWN],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  return parse(o.stdout, o.stderr);
}

Deno.test("permissions: Worker ranks need only --allow-read of their modules", async () => {
  const r = await spawnWith([`--allow-read=${ROOT}`]);
  assert.equal(r.ok, true, r.message);
});

Deno.test("permissions: Worker ranks without --allow-read name the module", async () => {
  const r = await spawnWith([]);
  assert.equal(r.name, "PermissionError", r.message);
  assert.equal(r.permission, `--allow-read=${ROOT}/tests/fixtures/embed_rank.ts`);
});
