/**
 * @module
 * Tests of the status endpoint: /status and /metrics with the job token or the read-only status token,
 * 401 without them or with a wrong one, errors of the callbacks, binding, CHOIR_STATUS_* settings, and
 * 1,000 random-byte payloads over raw TCP after which the server still answers.
 */

import assert from "node:assert/strict";
import { InvalidArgumentError, TransportError } from "../../errors.ts";
import { readEnv } from "../../config.ts";
import { FlightRecorder } from "../../collectives/diagnostics/flight_recorder.ts";
import { Metrics } from "../../collectives/diagnostics/metrics.ts";
import {
  PROMETHEUS_CONTENT_TYPE,
  startStatusServer,
  type StatusServer,
} from "../../collectives/diagnostics/status_server.ts";
import { statusToken } from "../../transports/mod.ts";

const TOKEN = "status-token-0123456789abcdef";

async function withServer(
  f: (server: StatusServer, url: string) => Promise<void>,
  status: () => object | Promise<object> = () => ({ rank: 0 }),
  metrics: () => string | Promise<string> = () => "",
): Promise<void> {
  const server = await startStatusServer({ token: TOKEN, status, metrics });
  try {
    await f(server, `http://${server.hostname}:${server.port}`);
  } finally {
    await server.close();
  }
}

async function get(
  url: string,
  auth?: string,
): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(url, { headers: auth === undefined ? {} : { authorization: auth } });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

Deno.test("status server: /status and /metrics with the right token", async () => {
  const rec = new FlightRecorder({ capacity: 4 });
  const call = { name: "allReduce", seq: 0, dtype: "f32", count: 2, root: -1, op: "sum" };
  rec.end(rec.begin(call, 8), undefined);
  rec.begin({ ...call, seq: 1 }, 8);
  const metrics = new Metrics();
  metrics.record("allReduce", 8, 1e-5);
  const status = () => ({
    rank: 0,
    size: 2,
    inFlight: rec.inFlight(),
    flightRecorder: rec.snapshot(),
    big: 5n,
  });
  await withServer(
    async (server, url) => {
      assert.equal(server.hostname, "127.0.0.1");
      const s = await get(`${url}/status`, `Bearer ${TOKEN}`);
      assert.equal(s.status, 200);
      assert.match(s.type ?? "", /^application\/json/);
      const body = JSON.parse(s.body);
      assert.deepEqual(body, JSON.parse(JSON.stringify({ ...status(), big: "5" })));
      assert.deepEqual(body.inFlight.map((e: { seq: number }) => e.seq), [1]);
      const m = await get(`${url}/metrics`, `Bearer ${TOKEN}`);
      assert.equal(m.status, 200);
      assert.equal(m.type, PROMETHEUS_CONTENT_TYPE);
      assert.equal(m.body, metrics.text());
      assert.match(m.body, /^choir_ops_total\{op="allReduce",group="0"\} 1$/m);
      assert.equal((await get(`${url}/nope`, `Bearer ${TOKEN}`)).status, 404);
    },
    status,
    async () => await Promise.resolve(metrics.text()),
  );
});

Deno.test("status server: no token, a wrong token or a malformed header is refused with 401", async () => {
  await withServer(async (_server, url) => {
    const wrong = [
      undefined,
      "",
      "Bearer",
      `Bearer ${TOKEN.slice(0, -1)}x`,
      `Bearer ${TOKEN}x`,
      `bearer ${TOKEN}`,
      `Basic ${btoa(`user:${TOKEN}`)}`,
      TOKEN,
    ];
    for (const path of ["/status", "/metrics", "/nope"]) {
      for (const auth of wrong) {
        const r = await get(`${url}${path}`, auth);
        assert.equal(r.status, 401, `${path} with ${JSON.stringify(auth)}`);
        assert.doesNotMatch(r.body, /rank/);
      }
    }
  });
});

Deno.test("status server: the read-only status token opens /status and /metrics; it is not the job token and does not reveal it", async () => {
  const readOnly = await statusToken(TOKEN);
  assert.match(readOnly, /^[0-9a-f]{64}$/);
  assert.notEqual(readOnly, TOKEN);
  assert.equal(await statusToken(TOKEN), readOnly); // the same on every rank of the job
  assert.notEqual(await statusToken(TOKEN + "x"), readOnly);
  await assert.rejects(statusToken(""), InvalidArgumentError);
  await withServer(async (_server, url) => {
    for (const path of ["/status", "/metrics"]) {
      assert.equal((await get(`${url}${path}`, `Bearer ${readOnly}`)).status, 200, path);
      assert.equal((await get(`${url}${path}`, `Bearer ${TOKEN}`)).status, 200, path);
      assert.equal((await get(`${url}${path}`, `Bearer ${await statusToken("another-job")}`)).status, 401);
    }
  });
});

Deno.test("status server: a failing callback answers 500 and the server goes on", async () => {
  let calls = 0;
  const status = () => {
    if (++calls === 1) throw new Error("status exploded");
    return { ok: true };
  };
  await withServer(async (_server, url) => {
    const bad = await get(`${url}/status`, `Bearer ${TOKEN}`);
    assert.equal(bad.status, 500);
    assert.match(bad.body, /status exploded/);
    assert.deepEqual(JSON.parse((await get(`${url}/status`, `Bearer ${TOKEN}`)).body), { ok: true });
  }, status);
});

Deno.test("status server: empty token and a taken port are typed errors; close is idempotent", async () => {
  const cb = { status: () => ({}), metrics: () => "" };
  await assert.rejects(startStatusServer({ token: "", ...cb }), InvalidArgumentError);
  const first = await startStatusServer({ token: TOKEN, ...cb });
  try {
    await assert.rejects(startStatusServer({ token: TOKEN, port: first.port, ...cb }), TransportError);
  } finally {
    await Promise.all([first.close(), first.close()]);
  }
});

Deno.test("status server: 1,000 random-byte payloads over raw TCP do not crash it", async () => {
  await withServer(async (server, url) => {
    const enc = new TextEncoder();
    const heads = [
      "",
      "GET /status HTTP/1.1\r\n",
      "GET /metrics HTTP/1.1\r\nAuthorization: Bearer ",
      "POST / HTTP/1.1\r\n",
    ];
    const send = async (i: number) => {
      const head = enc.encode(heads[i % heads.length]);
      const junk = crypto.getRandomValues(new Uint8Array(1 + Math.floor(Math.random() * 4096)));
      const payload = new Uint8Array(head.length + junk.length);
      payload.set(head);
      payload.set(junk, head.length);
      const conn = await Deno.connect({ hostname: server.hostname, port: server.port });
      try {
        for (let off = 0; off < payload.length;) off += await conn.write(payload.subarray(off));
      } catch {
        // The server may hang up on garbage before reading all of it.
      } finally {
        conn.close();
      }
    };
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => send(i + k)));
    }
    const ok = await get(`${url}/status`, `Bearer ${TOKEN}`);
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { rank: 0 });
  });
});

Deno.test("CHOIR_STATUS_PORT and CHOIR_STATUS_ADDR: read by config.ts", () => {
  const env = (vars: Record<string, string>) => readEnv((n) => vars[n]);
  assert.equal(env({}).statusPort, undefined);
  assert.equal(env({}).statusAddr, undefined);
  const set = env({ CHOIR_STATUS_PORT: "9400", CHOIR_STATUS_ADDR: "10.0.0.5" });
  assert.equal(set.statusPort, 9400);
  assert.equal(set.statusAddr, "10.0.0.5");
  assert.equal(env({ CHOIR_STATUS_PORT: "0" }).statusPort, 0);
  assert.equal(env({ CHOIR_STATUS_PORT: "http" }).statusPort, undefined);
});
