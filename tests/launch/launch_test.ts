/**
 * @module
 * Tests of the launcher: CLI parsing, line prefixing, the env each rank gets, and that one failing
 * rank stops the others (SIGTERM, then SIGKILL) and makes the launcher exit non-zero naming it.
 */

import assert from "node:assert/strict";
import { readEnv } from "../../config.ts";
import { InvalidArgumentError } from "../../errors.ts";
import { GLIBC_TUNABLES_DEFAULT, launch } from "../../launch/mod.ts";
import { parseLaunchArgs } from "../../launch/args.ts";
import { splitLines } from "../../launch/output.ts";
import { roundLogDir } from "../../launch/elastic/rank_logs.ts";
import { TcpStore } from "../../transports/store/mod.ts";
import { freePort } from "../helpers/ranks.ts";

const here = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Runs the launcher CLI; kills it if it is still running after `limitMs`. */
async function runCli(args: string[], limitMs = 20_000): Promise<Deno.CommandOutput> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", here("launch/mod.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  try {
    return await child.output();
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("parseLaunchArgs: launcher options before PROGRAM, the rest untouched", () => {
  const a = parseLaunchArgs([
    "--nproc-per-node",
    "4",
    "--master-port=29500",
    "prog.ts",
    "--nproc-per-node",
    "9",
  ]);
  assert.equal(a.nprocPerNode, 4);
  assert.equal(a.masterPort, 29500);
  assert.equal(a.program, "prog.ts");
  assert.deepEqual(a.args, ["--nproc-per-node", "9"]);
  const b = parseLaunchArgs(["--token", "s3cret", "--", "-weird-name.ts", "x"]);
  assert.equal(b.nprocPerNode, 1);
  assert.equal(b.token, "s3cret");
  assert.equal(b.program, "-weird-name.ts");
  assert.deepEqual(b.args, ["x"]);
  assert.equal(parseLaunchArgs(["-h"]).help, true);
  assert.throws(() => parseLaunchArgs(["--bogus", "1", "p.ts"]), InvalidArgumentError);
  assert.throws(() => parseLaunchArgs(["--nproc-per-node", "0", "p.ts"]), /nproc-per-node/);
  assert.throws(() => parseLaunchArgs(["--master-port", "x", "p.ts"]), /master-port/);
  assert.throws(() => parseLaunchArgs(["--nproc-per-node", "2"]), /no PROGRAM/);
  assert.equal(parseLaunchArgs(["--restart-failed", "3", "p.ts"]).restartFailed, 3);
});

Deno.test("splitLines: lines split across chunks, multi-byte characters, final line without newline", async () => {
  const enc = new TextEncoder();
  const euro = enc.encode("€");
  const chunks = [
    enc.encode("a\nb"),
    enc.encode("c\n"),
    euro.subarray(0, 1),
    euro.subarray(1),
    enc.encode("\ntail"),
  ];
  const stream = ReadableStream.from(chunks);
  const calls: string[][] = [];
  await splitLines(stream, (lines) => calls.push(lines));
  assert.deepEqual(calls, [["a"], ["bc"], ["€"], ["tail"]]);
});

Deno.test("splitLines: a line longer than 64 KiB is cut there and marked; the next line is whole", async () => {
  const enc = new TextEncoder();
  const big = enc.encode("y".repeat(1 << 20)); // 1 MiB without a newline, in 16 chunks
  const chunks = Array.from({ length: 16 }, (_, i) => big.subarray(i << 16, (i + 1) << 16));
  const lines: string[] = [];
  await splitLines(ReadableStream.from([...chunks, enc.encode("\nnext\n€ ok")]), (l) => lines.push(...l));
  assert.equal(lines.length, 3, lines.map((l) => l.length).join(","));
  assert.equal(
    lines[0],
    `${"y".repeat(65536)} [line cut at 65536 bytes]`,
    `a line of ${lines[0].length} characters`,
  );
  assert.deepEqual(lines.slice(1), ["next", "€ ok"]);
});

Deno.test("launch CLI: a stdout nobody reads freezes neither the store nor the ranks; output is dropped, --log-dir keeps it", async () => {
  const port = freePort();
  const logDir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      here("launch/mod.ts"),
      "--master-port",
      String(port),
      "--token",
      "tk",
      "--rdzv-id",
      "flood",
      "--log-dir",
      logDir,
      here("tests/fixtures/flood_stdout.ts"),
      "8",
    ],
    stdout: "piped", // and never read until the launcher has exited
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const stderr = new Response(child.stderr).text();
  const store = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 15_000 });
  try {
    await store.wait(["flood/done"], 15_000); // the rank got through 9 MiB of output ...
    const t0 = performance.now();
    assert.equal(await store.add("probe", 1), 1); // ... and the store answers at once
    assert.ok(performance.now() - t0 < 2000);
    await store.set("flood/release", "1");
    const status = await child.status;
    assert.equal(status.code, 0, await stderr);
    assert.match(await stderr, /launch: stdout was not being read: dropped \d+ line\(s\) of rank output/);
    const log = await Deno.readTextFile(`${await roundLogDir(logDir, "flood", 0)}/rank_0.log`);
    const lines = log.split("\n");
    assert.equal(lines[0], `${"H".repeat(65536)} [line cut at 65536 bytes]`);
    assert.equal(lines.length, 1 + 8 * 1024 + 2); // the cut line, every 1 KiB line, "released", ""
    assert.equal(lines.at(-2), "released");
  } finally {
    clearTimeout(timer);
    await store.close();
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await child.stdout.cancel();
    await stderr;
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("launch CLI: 3 ranks get the rendezvous env, join through the launcher's store, output prefixed", async () => {
  const out = await runCli(["--nproc-per-node", "3", here("tests/fixtures/launch_env.ts"), "a", "b"]);
  const stdout = text(out.stdout);
  const stderr = text(out.stderr);
  assert.equal(out.code, 0, stderr);
  const glibc = readEnv().glibcTunables ?? GLIBC_TUNABLES_DEFAULT;
  const ports = new Set<string>();
  for (let r = 0; r < 3; r++) {
    const line = stdout.split("\n").find((l) => l.startsWith(`[rank ${r}] RANK=`));
    assert.ok(line, `no env line of rank ${r} in:\n${stdout}`);
    const expected =
      `[rank ${r}] RANK=${r} LOCAL_RANK=${r} WORLD_SIZE=3 LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 ` +
      `MASTER_PORT=(\\d+) TOKEN_LENGTH=64 STORE_EXTERNAL=true GLIBC_TUNABLES=(.*) GROUP_RANK=0 RESTARTS=0 ` +
      `JOB=j\\w{12} ARGS=a,b`;
    const m = line.match(new RegExp(`^${expected.replace(/[[\]]/g, "\\$&")}$`));
    assert.ok(m, line);
    ports.add(m[1]);
    assert.equal(m[2], glibc);
    assert.ok(stdout.includes(`[rank ${r}] joined\n`), stdout);
    assert.ok(stderr.includes(`[rank ${r}] no newline from ${r}\n`), stderr);
  }
  assert.equal(ports.size, 1);
  for (const line of stdout.trimEnd().split("\n")) assert.match(line, /^\[rank [0-2]\] /);
});

Deno.test("launch CLI: a rank exiting 3 stops the others; the launcher exits non-zero naming it", async () => {
  const t0 = performance.now();
  const out = await runCli(["--nproc-per-node", "3", here("tests/fixtures/launch_fail.ts")]);
  const stdout = text(out.stdout);
  const stderr = text(out.stderr);
  assert.ok(performance.now() - t0 < 15_000);
  assert.equal(out.code, 3, stderr);
  assert.match(stderr, /launch: rank 1 exited with code 3; stopping ranks 0, 2/);
  assert.match(stderr, /job failed: rank 1 exited with code 3/);
  assert.match(stdout, /\[rank 1\] failing now/);
  assert.match(stdout, /\[rank 0\] sleeping/);
  assert.match(stdout, /\[rank 2\] sleeping/);
});

Deno.test("launch(): SIGKILL after the grace period for a rank that ignores SIGTERM", async () => {
  const lines: string[] = [];
  const logs: string[] = [];
  const result = await launch({
    program: here("tests/fixtures/launch_fail.ts"),
    args: ["stubborn"],
    nprocPerNode: 3,
    graceMs: 300,
    onOutput: (rank, stream, line) => lines.push(`${rank} ${stream} ${line}`),
    log: (m) => logs.push(m),
  });
  assert.equal(result.code, 3);
  assert.equal(result.failed?.rank, 1);
  assert.deepEqual(result.ranks.map((r) => [r.rank, r.signal]), [[0, "SIGTERM"], [1, null], [2, "SIGKILL"]]);
  assert.equal(result.ranks[1].code, 3);
  assert.ok(lines.includes("1 stdout failing now"), lines.join("\n"));
  assert.ok(logs.some((m) => /rank 1 exited with code 3/.test(m)), logs.join("\n"));
  assert.ok(logs.some((m) => /ranks 2 ignored SIGTERM; sending SIGKILL/.test(m)), logs.join("\n"));
});

Deno.test("launch CLI: SIGTERM to the launcher is forwarded to every rank", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      here("launch/mod.ts"),
      "--nproc-per-node",
      "2",
      here("tests/fixtures/launch_fail.ts"),
      "sleep",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const stderr = new Response(child.stderr).text();
  let seen = "";
  const sleeping = new Set<string>();
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    seen += chunk;
    for (const m of seen.matchAll(/\[rank (\d)\] sleeping/g)) sleeping.add(m[1]);
    if (sleeping.size === 2) {
      child.kill("SIGTERM");
      break;
    }
  }
  const status = await child.status;
  clearTimeout(timer);
  await stderr;
  assert.equal(sleeping.size, 2, seen);
  assert.equal(status.code, 143);
});

Deno.test("launch: /dev/shm entries a rank left behind are removed when the job ends", async () => {
  const lines: string[] = [];
  const logs: string[] = [];
  const result = await launch({
    program: here("tests/fixtures/launch_leftover.ts"),
    nprocPerNode: 2,
    onOutput: (_rank, _stream, line) => lines.push(line),
    log: (m) => logs.push(m),
  });
  assert.equal(result.code, 0, lines.join("\n"));
  const left = lines.filter((l) => l.startsWith("LEFT ")).map((l) => l.slice(5));
  assert.equal(left.length, 2, lines.join("\n"));
  for (const path of left) {
    assert.match(path, /^\/dev\/shm\/choir-j[0-9a-f]{16}\.leftover-r[01]$/);
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound, `${path} is still there`);
  }
  assert.ok(logs.some((m) => m.includes("removed 2 shared-memory segment(s)")), logs.join("\n"));
});

Deno.test("launch({ restartFailed }): only the failed worker is restarted, with the same env; the others go on", async () => {
  const dir = await Deno.makeTempDir();
  const lines: string[] = [];
  const logs: string[] = [];
  try {
    const result = await launch({
      program: here("tests/fixtures/fail_once.ts"),
      args: [dir],
      nprocPerNode: 3,
      restartFailed: 2,
      onOutput: (rank, _stream, line) => lines.push(`${rank} ${line}`),
      log: (m) => logs.push(m),
    });
    assert.equal(result.code, 0, [...logs, ...lines].join("\n"));
    assert.equal(result.workerRestarts, 1);
    assert.equal(result.restarts, 0);
    const starts = (r: number) => lines.filter((l) => l.startsWith(`${r} start`));
    assert.equal(starts(0).length, 1, lines.join("\n"));
    assert.equal(starts(2).length, 1, lines.join("\n"));
    assert.equal(starts(1).length, 2, lines.join("\n"));
    assert.equal(new Set(starts(1).map((l) => l.split(" ")[2])).size, 1, "the same env twice");
    assert.ok(
      logs.some((m) => /rank 1 exited with code 3; restarting only it \(restart 1 of 2\)/.test(m)),
      logs.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
