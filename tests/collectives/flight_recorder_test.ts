/**
 * @module
 * Tests of the flight recorder: entries and their states, ring wrap-around, in-flight entries,
 * handles of overwritten entries, untimed recording, snapshots, and the CHOIR_FLIGHT_RECORDER setting.
 */

import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../errors.ts";
import { readEnv } from "../../config.ts";
import {
  DEFAULT_FLIGHT_RECORDER_SIZE,
  FlightRecorder,
  type OpDescriptor,
  recorderCapacity,
} from "../../collectives/diagnostics/flight_recorder.ts";

const call = (seq: number, name = "allReduce", count = 1024): OpDescriptor => ({
  name,
  seq,
  dtype: "f32",
  count,
  root: -1,
  op: "sum",
});

Deno.test("FlightRecorder: begin/end record the op, its sizes, state and timings", () => {
  const rec = new FlightRecorder({ capacity: 8, group: 3 });
  const h = rec.begin(call(0), 4096, 1000);
  rec.setAlgorithm(h, "ring");
  assert.deepEqual(rec.inFlight().map((e) => e.seq), [0]);
  const seconds = rec.end(h, undefined, 1002.5);
  assert.ok(Math.abs(seconds - 0.0025) < 1e-12, String(seconds));
  const [e] = rec.tail();
  const origin = performance.timeOrigin * 1000;
  assert.equal(e.group, 3);
  assert.equal(e.seq, 0);
  assert.equal(e.op, "allReduce");
  assert.equal(e.reduceOp, "sum");
  assert.equal(e.dtype, "f32");
  assert.equal(e.count, 1024);
  assert.equal(e.root, -1);
  assert.equal(e.bytes, 4096);
  assert.equal(e.algorithm, "ring");
  assert.equal(e.state, "done");
  assert.ok(Math.abs(e.startUs - (origin + 1_000_000)) <= 1);
  assert.equal(e.endUs! - e.startUs, 2500);
  assert.equal(e.error, undefined);
  assert.deepEqual(rec.inFlight(), []);
  // Ending twice is ignored.
  assert.equal(rec.end(h), -1);
  assert.equal(rec.tail()[0].state, "done");
});

Deno.test("FlightRecorder: a failed op keeps the error message", () => {
  const rec = new FlightRecorder();
  const h = rec.begin(call(5, "broadcast"), 16);
  rec.end(h, new Error("peer 2 went away"));
  const [e] = rec.tail();
  assert.equal(e.state, "failed");
  assert.equal(e.error, "peer 2 went away");
  assert.ok(e.endUs! >= e.startUs);
  const h2 = rec.begin(call(6, "barrier"), 0);
  rec.end(h2, "plain string");
  assert.equal(rec.tail(1)[0].error, "plain string");
});

Deno.test("FlightRecorder: the ring wraps around, keeping the last `capacity` ops in order", () => {
  const rec = new FlightRecorder({ capacity: 4 });
  const handles: number[] = [];
  for (let seq = 0; seq < 10; seq++) handles.push(rec.begin(call(seq), seq * 4, seq));
  for (const h of handles.slice(0, 8)) rec.end(h, undefined, 100);
  assert.equal(rec.recorded, 10);
  assert.deepEqual(rec.tail().map((e) => e.seq), [6, 7, 8, 9]);
  assert.deepEqual(rec.tail(2).map((e) => e.seq), [8, 9]);
  assert.deepEqual(rec.tail(0), []);
  assert.deepEqual(rec.tail(100).map((e) => e.seq), [6, 7, 8, 9]);
  assert.deepEqual(rec.tail().map((e) => e.state), ["done", "done", "running", "running"]);
  assert.deepEqual(rec.inFlight().map((e) => e.seq), [8, 9]);
  // Ending an op the ring has overwritten changes nothing.
  assert.equal(rec.end(handles[1], new Error("late")), -1);
  rec.setAlgorithm(handles[1], "ring");
  assert.deepEqual(rec.tail().map((e) => e.state), ["done", "done", "running", "running"]);
  assert.ok(rec.tail().every((e) => e.algorithm === undefined && e.error === undefined));
  // A slot reused by a new op starts clean.
  rec.end(handles[9], new Error("x"));
  rec.setAlgorithm(handles[9], "direct");
  for (let seq = 10; seq < 14; seq++) rec.begin(call(seq), 0, 0);
  assert.deepEqual(rec.tail().map((e) => [e.seq, e.state, e.algorithm, e.error]), [
    [10, "running", undefined, undefined],
    [11, "running", undefined, undefined],
    [12, "running", undefined, undefined],
    [13, "running", undefined, undefined],
  ]);
});

Deno.test("FlightRecorder: fewer ops than capacity, and an empty recorder", () => {
  const rec = new FlightRecorder({ capacity: 16 });
  assert.deepEqual(rec.tail(), []);
  assert.deepEqual(rec.snapshot(), { group: 0, capacity: 16, recorded: 0, entries: [] });
  rec.begin(call(0), 1);
  rec.begin(call(1), 1);
  assert.deepEqual(rec.tail().map((e) => e.seq), [0, 1]);
});

Deno.test("FlightRecorder: without the clock, only passed times are recorded", () => {
  const rec = new FlightRecorder({ clock: false });
  const h = rec.begin(call(0), 8);
  assert.equal(rec.end(h), -1);
  const [e] = rec.tail();
  assert.equal(e.startUs, 0);
  assert.equal(e.endUs, undefined);
  assert.equal(e.state, "done");
  const h2 = rec.begin(call(1), 8, 10);
  assert.equal(rec.end(h2, undefined, 10.001) > 0, true);
});

Deno.test("FlightRecorder: the clock is read when no time is passed", () => {
  const rec = new FlightRecorder();
  const before = (performance.timeOrigin + performance.now()) * 1000;
  const h = rec.begin(call(0), 8);
  const d = rec.end(h);
  const after = (performance.timeOrigin + performance.now()) * 1000;
  assert.ok(d >= 0 && d < 1, String(d));
  const [e] = rec.tail();
  assert.ok(e.startUs >= Math.floor(before) && e.endUs! <= Math.ceil(after) + 1, JSON.stringify(e));
});

Deno.test("FlightRecorder: snapshot survives a JSON round trip, send/recv keep their tag", () => {
  const rec = new FlightRecorder({ capacity: 4, group: 1 });
  rec.end(rec.begin({ name: "send", seq: 0, dtype: "u8", count: 3, root: 7 }, 3, 1), undefined, 2);
  rec.begin(call(0), 4096, 3);
  const snap = rec.snapshot();
  assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap);
  assert.equal(snap.recorded, 2);
  assert.equal(snap.entries[0].root, 7);
  assert.equal(snap.entries[0].reduceOp, undefined);
});

Deno.test("FlightRecorder: capacity must be a positive integer", () => {
  for (const capacity of [0, -1, 1.5, NaN]) {
    assert.throws(() => new FlightRecorder({ capacity }), InvalidArgumentError);
  }
  assert.equal(new FlightRecorder().capacity, DEFAULT_FLIGHT_RECORDER_SIZE);
  assert.equal(new FlightRecorder({ capacity: 1 }).capacity, 1);
});

Deno.test("CHOIR_FLIGHT_RECORDER: read by config.ts, 0 turns recording off", () => {
  const env = (vars: Record<string, string>) => readEnv((n) => vars[n]);
  assert.equal(env({}).flightRecorder, undefined);
  assert.equal(env({ CHOIR_FLIGHT_RECORDER: "64" }).flightRecorder, 64);
  assert.equal(env({ CHOIR_FLIGHT_RECORDER: "lots" }).flightRecorder, undefined);
  assert.equal(recorderCapacity(undefined), DEFAULT_FLIGHT_RECORDER_SIZE);
  assert.equal(recorderCapacity(64), 64);
  assert.equal(recorderCapacity(0), 0);
  assert.equal(recorderCapacity(-3), 0);
});
