/**
 * @module
 * Tests of the operation metrics: counters, histogram buckets (inclusive upper bounds, +Inf),
 * failed and untimed calls, and a Prometheus text exposition checked line by line.
 */

import assert from "node:assert/strict";
import { LATENCY_BUCKETS, Metrics, prometheusText } from "../../collectives/diagnostics/metrics.ts";

const LABEL = String.raw`[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"`;
const VALUE = String.raw`(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|\+Inf|-Inf|NaN)`;
const SAMPLE = new RegExp(
  String.raw`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(${LABEL}(?:,${LABEL})*)?\})? (${VALUE})$`,
);
const COMMENT = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses an exposition, asserting every line's format; returns the samples and the TYPE of each family. */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const c = COMMENT.exec(line);
    if (c) {
      const [, kind, name, rest] = c;
      if (kind === "TYPE") {
        assert.ok(!types.has(name), `one TYPE line for ${name}`);
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/);
        types.set(name, rest);
      } else {
        assert.ok(!helps.has(name), `one HELP line for ${name}`);
        helps.add(name);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k] = v.replace(/\\(.)/g, (_s, ch) => ch === "n" ? "\n" : ch);
    }
    const family = m[1].replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(m[1]) || types.has(family), `sample ${m[1]} after its TYPE line`);
    samples.push({ name: m[1], labels, value: Number(m[3].replace("+Inf", "Infinity")) });
  }
  return { samples, types };
}

const pick = (samples: Sample[], name: string, labels: Record<string, string>) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

Deno.test("LATENCY_BUCKETS: ascending 1-2.5-5 steps from 1 us to 100 s", () => {
  assert.equal(LATENCY_BUCKETS[0], 1e-6);
  assert.equal(LATENCY_BUCKETS.at(-1), 100);
  assert.equal(LATENCY_BUCKETS.length, 25);
  for (let i = 1; i < LATENCY_BUCKETS.length; i++) assert.ok(LATENCY_BUCKETS[i] > LATENCY_BUCKETS[i - 1]);
});

Deno.test("Metrics: counters, inclusive bucket bounds, failed and untimed calls", () => {
  const m = new Metrics({ group: 2 });
  m.record("allReduce", 8, 0.5e-6);
  m.record("allReduce", 8, 1e-6); // on the bound: le is inclusive
  m.record("allReduce", 8, 3e-6);
  m.record("allReduce", 8, 1000); // past the last bound: +Inf only
  m.record("allReduce", 8, -1); // untimed: counted, not observed
  m.record("allReduce", 8, 0.2, true); // failed: an error, not observed
  m.record("barrier", 0, 2e-5);
  const c = m.counters();
  assert.deepEqual(Object.keys(c).sort(), ["allReduce", "barrier"]);
  const a = c.allReduce;
  assert.equal(a.calls, 6);
  assert.equal(a.bytes, 48);
  assert.equal(a.errors, 1);
  assert.equal(a.timed, 4);
  assert.ok(Math.abs(a.seconds - (0.5e-6 + 1e-6 + 3e-6 + 1000)) < 1e-9);
  assert.equal(a.buckets.length, LATENCY_BUCKETS.length + 1);
  assert.equal(a.buckets[0], 2);
  assert.equal(a.buckets[LATENCY_BUCKETS.indexOf(5e-6)], 1);
  assert.equal(a.buckets[LATENCY_BUCKETS.length], 1);
  assert.equal(a.buckets.reduce((x, y) => x + y), 4);
  // counters() is a copy.
  a.calls = 0;
  assert.equal(m.counters().allReduce.calls, 6);
});

Deno.test("Metrics: the Prometheus text parses, with cumulative buckets matching _count", () => {
  const m = new Metrics({ group: 0 });
  for (let i = 0; i < 100; i++) m.record("allReduce", 4096, i * 1e-5);
  m.record("allReduce", 4096, 1, true);
  m.record("broadcast", 16, 0.003);
  const text = m.text();
  const { samples, types } = parse(text);
  assert.equal(types.get("choir_ops_total"), "counter");
  assert.equal(types.get("choir_bytes_total"), "counter");
  assert.equal(types.get("choir_errors_total"), "counter");
  assert.equal(types.get("choir_op_latency_seconds"), "histogram");
  assert.match(text, /^choir_ops_total\{op="allReduce",group="0"\} 101$/m);
  const ar = { op: "allReduce", group: "0" };
  assert.equal(pick(samples, "choir_ops_total", ar)[0].value, 101);
  assert.equal(pick(samples, "choir_bytes_total", ar)[0].value, 101 * 4096);
  assert.equal(pick(samples, "choir_errors_total", ar)[0].value, 1);
  assert.equal(pick(samples, "choir_errors_total", { op: "broadcast" })[0].value, 0);
  const buckets = pick(samples, "choir_op_latency_seconds_bucket", ar);
  assert.equal(buckets.length, LATENCY_BUCKETS.length + 1);
  assert.equal(buckets.at(-1)!.labels.le, "+Inf");
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    assert.equal(Number(buckets[i].labels.le), LATENCY_BUCKETS[i]);
  }
  const count = pick(samples, "choir_op_latency_seconds_count", ar)[0].value;
  assert.equal(count, 100);
  assert.equal(buckets.at(-1)!.value, count);
  assert.ok(Math.abs(pick(samples, "choir_op_latency_seconds_sum", ar)[0].value - 0.0495) < 1e-9);
  // le="0.0001" holds the 11 observations 0 .. 1e-4.
  assert.equal(buckets.find((b) => b.labels.le === "0.0001")!.value, 11);
});

Deno.test("prometheusText: several groups and ranks share one HELP/TYPE per family; labels are escaped", () => {
  const a = new Metrics({ group: 0, rank: 3 });
  const b = new Metrics({ group: 1, rank: 3 });
  a.record("allReduce", 8, 1e-5);
  b.record("allReduce", 8, 1e-5);
  b.record('we"ird\\op\nname', 1, 1e-3);
  const { samples } = parse(prometheusText([a, b]));
  assert.equal(pick(samples, "choir_ops_total", { op: "allReduce" }).length, 2);
  assert.deepEqual(pick(samples, "choir_ops_total", { group: "1" }).map((s) => s.labels.op), [
    "allReduce",
    'we"ird\\op\nname',
  ]);
  assert.ok(samples.every((s) => s.labels.rank === "3"));
  // Nothing recorded: only the HELP/TYPE lines.
  assert.equal(parse(new Metrics().text()).samples.length, 0);
});
