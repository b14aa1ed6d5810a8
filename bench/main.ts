/**
 * @module
 * `deno task bench`: runs every series of the run (choir per transport, buffer kind and algorithm;
 * with `--compare` also Gloo and Open MPI), `--rounds` times interleaved, and prints every row in
 * nccl-tests' layout (or OSU's, or JSON lines), then the comparison and algorithm tables; writes the
 * JSON lines, the plot and the HTML report when asked. Exits 1 when any result was wrong or a series
 * failed, 2 on a command-line mistake. `deno task bench --help` lists the options.
 */

import { bestOfGroups } from "./best.ts";
import { type Case, enumerateCases } from "./cases.ts";
import { type BenchOptions, CliError, parseCli, USAGE } from "./cli.ts";
import { compareSeries, findCompareTools, runCompare } from "./compare.ts";
import { algoTables } from "./formats/algos.ts";
import { jsonLine, jsonSink } from "./formats/json.ts";
import { ncclSink } from "./formats/nccl.ts";
import { osuSink } from "./formats/osu.ts";
import { ratioTables } from "./formats/ratios.ts";
import { fmtGBs, placeName, type RowSink, sizeLabel } from "./formats/text.ts";
import { htmlReport } from "./html.ts";
import { limitsLines, measureLimits } from "./limits.ts";
import { plotSvg } from "./plot.ts";
import { Progress } from "./progress.ts";
import { type BenchRow, finishRow, type Series } from "./row.ts";
import { runChoir, type SeriesHandlers } from "./run_choir.ts";

/** The choir series of the run: every transport x buffer kind x algorithm. */
function choirSeries(o: BenchOptions): Series[] {
  const out: Series[] = [];
  for (const transport of o.transports) {
    for (const buffers of o.buffers) {
      if (buffers === "alloc" && transport === "tcp") continue; // pg.alloc needs shared memory
      for (const algo of o.algos) {
        const parts = ["choir", transport === "auto" ? "" : transport, buffers === "alloc" ? "alloc" : ""];
        if (o.algos.length > 1 || algo !== "auto") parts.push(`algo=${algo}`);
        out.push({ label: parts.filter((p) => p).join(" "), lib: "choir", transport, algo, buffers });
      }
    }
  }
  return out;
}

/** A row as the progress line names it: `allreduce f32 sum 64 MiB in-place`. */
function describeCase(c: Case): string {
  const redop = c.redop === "none" ? "" : c.redop;
  return [c.op, c.dtype, redop, sizeLabel(c.bytes), placeName(c.place === "in")].filter((x) => x).join(" ");
}

/** Of several rounds' rows of one case, the round with the median time (wrong elements summed). */
function medianRound(rows: readonly BenchRow[]): BenchRow {
  const timed = rows.filter((r) => !r.unsupported).sort((a, b) => a.timeUs - b.timeUs);
  if (timed.length === 0) return rows[0];
  const mid = timed[Math.floor((timed.length - 1) / 2)];
  return { ...mid, wrong: rows.reduce((a, r) => a + r.wrong, 0), roundsUs: rows.map((r) => r.timeUs) };
}

const LOCAL = new Set(["localhost", "127.0.0.1", "::1"]);

async function main(argv: string[]): Promise<number> {
  if (argv.some((a) => a === "--scale" || a.startsWith("--scale="))) {
    // A program of its own (bench/scale/), loaded only when asked for.
    const { scaleMain } = await import("./scale/harness.ts");
    return await scaleMain(argv);
  }
  let o: BenchOptions;
  try {
    o = parseCli(argv);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    console.error(`bench: ${err.message}\n(deno task bench --help lists the options)`);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  if (o.limits) {
    const l = await measureLimits();
    for (const line of limitsLines(l)) console.log(line);
    if (o.json) await Deno.writeTextFile(o.json, JSON.stringify(l, null, 2) + "\n");
    return 0;
  }
  const remote = (o.hosts ?? []).filter((h) => !LOCAL.has(h.host) && h.host !== Deno.hostname());
  if (remote.length > 0) {
    console.error(
      `bench: --hosts names other hosts (${remote.map((h) => h.host).join(", ")}); the launcher starts ` +
        "ranks on this host only so far. Run across hosts as docs/benchmarks.md describes.",
    );
    return 2;
  }
  const n = o.nproc;
  const cases = enumerateCases(o.run, n);
  if (cases.length === 0) {
    console.error("bench: nothing to measure (see --op, --dtype, --redop and --place)");
    return 2;
  }

  const progress = new Progress(o.progress === "on" || (o.progress === "auto" && Deno.stderr.isTerminal()));
  const out = (line: string) => progress.out(line);
  const text = o.format !== "json";
  const series = choirSeries(o);
  let compareRunner: ((s: Series, h: SeriesHandlers) => Promise<number>) | undefined;
  if (o.compare) {
    progress.status("looking for torch.distributed and Open MPI", 0, 0, true);
    const tools = await findCompareTools(o.python);
    for (const m of tools.missing) progress.err(`bench: --compare: ${m}`);
    series.push(...compareSeries(tools, o.transports, o.run.ops));
    compareRunner = (s, h) => runCompare(s, tools, o.run, cases, n, h);
  }

  const sizes = o.run.sizes;
  const describeRun = `${n} ranks, sizes ${sizeLabel(sizes[0])}..${sizeLabel(sizes[sizes.length - 1])}, ` +
    `${series.map((s) => s.label).join(" / ")}${o.rounds > 1 ? `, median of ${o.rounds} rounds` : ""}` +
    (o.bindTo === "core" && series.some((s) => s.lib === "choir" && s.transport !== "worker")
      ? ", choir's rank processes bound to a CPU each (--bind-to core)"
      : "");
  if (text) out(`# choir bench: ${describeRun}`);

  const sink: RowSink = o.format === "json"
    ? jsonSink(out)
    : o.format === "osu"
    ? osuSink(out)
    : ncclSink(out, o.run.place);
  const jsonFile = o.json ? await Deno.open(o.json, { write: true, create: true, truncate: true }) : null;
  const enc = new TextEncoder();
  const emit = (r: BenchRow) => {
    sink.row(r);
    jsonFile?.writeSync(enc.encode(jsonLine(r) + "\n"));
  };

  const perRound = new Map<string, BenchRow[][]>(); // series label -> case index -> rows of the rounds
  const failures: string[] = [];
  let firstCode = 0;
  const total = o.rounds * series.length * cases.length;
  let done = 0;
  for (let round = 1; round <= o.rounds; round++) {
    for (const s of series) {
      const tag = `${s.label}${o.rounds > 1 ? ` (round ${round}/${o.rounds})` : ""}`;
      if (!perRound.has(s.label)) perRound.set(s.label, cases.map(() => []));
      const store = perRound.get(s.label)!;
      let seen = 0;
      const handlers: SeriesHandlers = {
        onCase: (i) => {
          if (cases[i]) progress.status(`${tag}: ${describeCase(cases[i])}`, done, total, true);
        },
        onRow: (raw) => {
          const c = cases[raw.index];
          if (!c) return;
          const row = finishRow(c, raw, s, n);
          store[c.index].push(row);
          if (o.rounds === 1) emit(row);
          done++;
          seen++;
          progress.status(`${tag}`, done, total);
        },
        onLog: (line) => progress.err(line),
      };
      progress.status(`${tag}: starting`, done, total, true);
      const code = s.lib === "choir"
        ? await runChoir(s, o.run, n, handlers, o.bindTo)
        : await compareRunner!(s, handlers);
      done += cases.length - seen; // rows a failed series never reported
      if (code !== 0 && s.group && s.algo !== "default") {
        // A forced Open MPI algorithm that cannot run here is left out of the best-of, not a failure.
        progress.err(
          `bench: ${tag} exited ${code} after ${seen} of ${cases.length} rows (a forced algorithm this run cannot use); its other rows are missing from ${s.group}'s best`,
        );
      } else if (code !== 0) {
        failures.push(`${tag} failed (exit ${code}) after ${seen} of ${cases.length} rows`);
        progress.err(`bench: ${failures[failures.length - 1]}`);
        if (firstCode === 0) firstCode = code;
      }
    }
  }
  const rows: BenchRow[] = [];
  for (const s of series) {
    for (const list of perRound.get(s.label) ?? []) {
      if (list.length === 0) continue;
      const r = o.rounds === 1 ? list[0] : medianRound(list);
      rows.push(r);
      if (o.rounds > 1) emit(r);
    }
  }
  // Each variant group's fastest variant per row, as rows of their own (series = the group's label).
  const best = bestOfGroups(rows, series);
  for (const r of best.rows) if (r.variant !== undefined) emit(r);
  sink.end();
  jsonFile?.close();
  progress.done();

  const wrong = rows.reduce((a, r) => a + r.wrong, 0);
  const ratios = o.compare ? ratioTables(best.rows, best.series) : [];
  const algos = o.algos.length > 1 ? algoTables(rows, o.algos).lines : [];
  if (text) {
    out("");
    out(`# Out of bounds values : ${wrong} ${wrong ? "FAILED" : "OK"}`);
    for (const s of series.filter((x) => x.lib === "choir")) {
      const mine = rows.filter((r) => r.series === s.label && r.bytes > 0 && !r.unsupported);
      if (mine.length === 0) continue;
      const avg = mine.reduce((a, r) => a + r.busbw, 0) / mine.length;
      out(`# Avg bus bandwidth    : ${fmtGBs(avg)} (${s.label})`);
    }
    for (const table of [ratios, algos]) {
      if (table.length === 0) continue;
      out("");
      table.forEach(out);
    }
  }
  for (const f of failures) console.error(`bench: ${f}`);

  const title = `choir bench: ${n} ranks`;
  if (o.plot || o.html) {
    const svg = plotSvg(best.rows, `${title}, ${new Date().toISOString().slice(0, 10)}`);
    if (o.plot) await Deno.writeTextFile(o.plot, svg);
    if (o.html) {
      const about = [
        `deno task bench ${argv.join(" ")}`,
        describeRun,
        `host ${Deno.hostname()}, ${navigator.hardwareConcurrency} CPUs, ${Deno.build.os}/${Deno.build.arch}, ` +
        `Deno ${Deno.version.deno}`,
        new Date().toISOString(),
      ];
      await Deno.writeTextFile(o.html, htmlReport({ title, about, svg, ratios, algos, rows }));
    }
  }
  if (firstCode !== 0) return firstCode;
  return wrong > 0 || failures.length > 0 ? 1 : 0;
}

Deno.exit(await main(Deno.args));
