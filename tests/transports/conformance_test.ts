/**
 * @module
 * Transport conformance: every transport in factories.ts must pass these, between real processes:
 * ordered frames of every size in both directions at once, a large frame received in place, header
 * mismatch detection, and a typed error when the peer dies.
 */

import assert from "node:assert/strict";
import { TRANSPORT_ENV, TRANSPORTS, unavailable } from "./factories.ts";

interface Result {
  rank: number;
  checks: number;
  failures: string[];
}

const script = new URL("../fixtures/transport_worker.ts", import.meta.url).pathname;

async function run(name: string, size: number, scenario: string): Promise<Result[]> {
  const dir = await Deno.makeTempDir({ prefix: "choir-conf-" });
  try {
    const children = Array.from({ length: size }, (_, rank) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", script, name, String(rank), String(size), dir, scenario],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
        env: TRANSPORT_ENV[name] ?? {},
      }).spawn());
    const timer = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 60_000);
    const outs = await Promise.all(children.map((c) => c.output()));
    clearTimeout(timer);
    return outs.map((o, rank) => {
      const text = new TextDecoder().decode(o.stdout);
      const line = text.split("\n").find((l) => l.startsWith("RESULT "));
      if (!line) {
        if (scenario === "peer-dies" && rank === 1) return { rank, checks: 0, failures: [] };
        throw new Error(`rank ${rank} printed no result:\n${text}\n${new TextDecoder().decode(o.stderr)}`);
      }
      return JSON.parse(line.slice(7)) as Result;
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

for (const name of TRANSPORTS) {
  const missing = unavailable(name);
  if (missing) console.log(`conformance ${name}: skipped, ${missing}`);
  const ignore = missing !== null;
  for (const size of [2, 3]) {
    Deno.test(`conformance ${name}: battery, ${size} ranks`, { ignore }, async () => {
      for (const r of await run(name, size, "battery")) {
        assert.deepEqual(r.failures, [], `rank ${r.rank}`);
        assert.ok(r.checks > 0);
      }
    });
  }
  Deno.test(`conformance ${name}: a peer that dies gives PeerLostError`, { ignore }, async () => {
    const [r0] = await run(name, 2, "peer-dies");
    assert.deepEqual(r0.failures, []);
    assert.equal(r0.checks, 2);
  });
}
