/**
 * @module
 * The launcher's secrets, with real launches: across nodes without a token it refuses an endpoint off
 * loopback (saying how to pass one); an impostor holding the endpoint's port learns nothing and the
 * launch fails naming the address; standalone it hands its workers a random token through the
 * environment only; rank logs are private and their path carries a hash of the run id, not the id.
 */

import assert from "node:assert/strict";
import { AuthError, InvalidArgumentError } from "../../errors.ts";
import { launch } from "../../launch/mod.ts";
import { parseLaunchArgs } from "../../launch/args.ts";
import { freePort } from "../helpers/ranks.ts";
import { containsBytes, impostor } from "../helpers/wire.ts";

const here = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;
const enc = new TextEncoder();

function outsideAddress(): string {
  const hit = Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."));
  return hit?.address ?? "192.0.2.77";
}

Deno.test("launch across nodes without a token refuses an endpoint off loopback, naming CHOIR_TOKEN", async () => {
  const logs: string[] = [];
  const where = `${outsideAddress()}:${freePort()}`;
  await assert.rejects(
    launch({
      program: here("tests/fixtures/launch_env.ts"),
      nprocPerNode: 1,
      rdzvEndpoint: where,
      rdzvId: "public-run-id",
      lastCallMs: 0,
      joinTimeoutMs: 5000,
      parentEnv: {},
      onOutput: () => {},
      log: (m) => logs.push(m),
    }),
    (e: Error) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.message, /CHOIR_TOKEN/);
      assert.ok(e.message.includes(where), e.message);
      return true;
    },
  );
});

Deno.test("launch: an impostor on the endpoint's port learns no token; the launch fails fast naming the address", async () => {
  const port = freePort();
  const fake = impostor(port, (chunk) => {
    if (!new TextDecoder().decode(chunk).includes("HTTP/1.1")) return undefined;
    const head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 64\r\n\r\n";
    const out = new Uint8Array(head.length + 64);
    out.set(enc.encode(head));
    out.set(crypto.getRandomValues(new Uint8Array(64)), head.length);
    return out;
  });
  const token = "launch-impostor-" + crypto.randomUUID();
  try {
    const t0 = performance.now();
    await assert.rejects(
      launch({
        program: here("tests/fixtures/launch_env.ts"),
        nprocPerNode: 1,
        rdzvEndpoint: `127.0.0.1:${port}`,
        rdzvId: "squatted",
        token,
        lastCallMs: 0,
        joinTimeoutMs: 20_000,
        parentEnv: {},
        onOutput: () => {},
        log: () => {},
      }),
      (e: Error) => {
        assert.ok(e instanceof AuthError, String(e));
        assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        assert.ok(!e.message.includes(token));
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 10_000, "the launcher waited for its join timeout");
    assert.ok(!containsBytes(fake.allFromClients(), enc.encode(token)), "the impostor received the token");
  } finally {
    await fake.close();
  }
});

Deno.test("launch standalone: workers get a random token through the environment, never on a command line; logs are private and named by a hash of the run id", async () => {
  const logDir = await Deno.makeTempDir({ prefix: "choir-launch-auth-" });
  const lines: string[] = [];
  const runId = "slurm-987654-0";
  try {
    const result = await launch({
      program: here("tests/fixtures/launch_cmdline.ts"),
      nprocPerNode: 2,
      rdzvId: runId,
      logDir,
      parentEnv: {},
      onOutput: (rank, _s, line) => lines.push(`${rank} ${line}`),
      log: () => {},
    });
    assert.equal(result.code, 0, lines.join("\n"));
    const seen = lines.filter((l) => / TOKEN /.test(l)).map((l) => JSON.parse(l.split(" TOKEN ")[1]));
    assert.equal(seen.length, 2, lines.join("\n"));
    for (const s of seen) {
      assert.match(s.token, /^[0-9a-f]{64}$/);
      assert.equal(s.token, seen[0].token);
      assert.ok(!s.cmdline.includes(s.token), "the token is on the worker's command line");
      assert.ok(!s.parentCmdline.includes(s.token), "the token is on the launcher's command line");
    }
    // The log tree: no component names the run id; directories 0700, files 0600.
    const paths: string[] = [];
    const walk = (dir: string) => {
      for (const e of Deno.readDirSync(dir)) {
        const p = `${dir}/${e.name}`;
        paths.push(p);
        if (e.isDirectory) walk(p);
      }
    };
    walk(logDir);
    assert.ok(paths.some((p) => p.endsWith("rank_1.log")), paths.join("\n"));
    for (const p of paths) {
      assert.ok(!p.includes("987654"), `${p} names the run id`);
      const mode = Deno.statSync(p).mode! & 0o777;
      assert.equal(mode, Deno.statSync(p).isDirectory ? 0o700 : 0o600, `${p}: mode ${mode.toString(8)}`);
    }
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("launch CLI: --token-file reads the secret from a file; --token stays accepted", () => {
  const a = parseLaunchArgs(["--token-file", "/run/secret", "prog.ts"]);
  assert.equal(a.tokenFile, "/run/secret");
  assert.equal(a.token, undefined);
  assert.throws(
    () => parseLaunchArgs(["--token", "x", "--token-file", "/f", "prog.ts"]),
    InvalidArgumentError,
  );
});

Deno.test("launch CLI: the workers get the --token-file secret; --token works but warns it is visible in ps", async () => {
  const dir = await Deno.makeTempDir({ prefix: "choir-tokenfile-" });
  const file = `${dir}/secret`;
  await Deno.writeTextFile(file, "from-a-file-0123456789\n", { mode: 0o600 });
  const cli = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", here("launch/mod.ts"), ...args, here("tests/fixtures/launch_cmdline.ts")],
      env: { CHOIR_TOKEN: "" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
  try {
    const viaFile = await cli(["--token-file", file]);
    const out = new TextDecoder().decode(viaFile.stdout);
    assert.equal(viaFile.code, 0, new TextDecoder().decode(viaFile.stderr));
    assert.match(out, /"token":"from-a-file-0123456789"/);
    assert.doesNotMatch(out, /"(cmdline|parentCmdline)":"[^"]*from-a-file/);
    const viaArg = await cli(["--token", "on-the-command-line"]);
    assert.equal(viaArg.code, 0);
    assert.match(new TextDecoder().decode(viaArg.stderr), /--token is visible to every user of this host/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
