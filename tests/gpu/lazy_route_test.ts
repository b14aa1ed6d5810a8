/**
 * @module
 * The GPU route loads on first GPU use: `mod.ts` statically loads nothing of `gpu/` (no PTX), the house
 * has no import cycle, and a GPU collective issued while the route still loads keeps its place in the
 * group's order (mock driver, 2 ranks over tcp).
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { mockCudaLibrary, mockEnv } from "../helpers/mock_cuda.ts";

const ROOT = new URL("../../", import.meta.url);

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string }; isDynamic?: boolean }[];
}

async function info(entry: string): Promise<{ roots: string[]; modules: InfoModule[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(out.code, 0, `deno info ${entry} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("import of mod.ts loads no gpu/ module; no import cycle among the house's modules", async () => {
  const g = await info("mod.ts");
  const mods = new Map(g.modules.map((m) => [m.specifier, m]));
  // What `import` loads: static code imports only (type-only and dynamic ones load nothing).
  const loaded = new Set<string>();
  const todo = [g.roots[0]];
  while (todo.length > 0) {
    const s = todo.pop()!;
    if (loaded.has(s) || !mods.has(s)) continue;
    loaded.add(s);
    for (const d of mods.get(s)!.dependencies ?? []) if (!d.isDynamic && d.code) todo.push(d.code.specifier);
  }
  const local = [...loaded].filter((s) => s.startsWith(ROOT.href)).map((s) => s.slice(ROOT.href.length));
  assert.ok(local.includes("collectives/process_group.ts"), local.join(" "));
  assert.deepEqual(
    local.filter((p) => p.startsWith("gpu/") || p.endsWith("_ptx.ts") || /gpu_(route|staged|ipc)/.test(p)),
    [],
  );

  // Cycles: a depth-first search over code and type imports between local modules.
  for (const entry of ["mod.ts", "gpu/mod.ts", "ddp/mod.ts"]) {
    const gi = entry === "mod.ts" ? g : await info(entry);
    const edges = new Map<string, string[]>();
    for (const m of gi.modules) {
      if (!m.specifier.startsWith(ROOT.href)) continue;
      edges.set(
        m.specifier,
        (m.dependencies ?? []).flatMap((d) => [d.code?.specifier, d.type?.specifier])
          .filter((s): s is string => s !== undefined && s.startsWith(ROOT.href)),
      );
    }
    const state = new Map<string, 1 | 2>();
    const visit = (v: string, path: string[]): void => {
      state.set(v, 1);
      for (const w of edges.get(v) ?? []) {
        if (state.get(w) === 1) assert.fail(`import cycle: ${[...path, v, w].join(" -> ")}`);
        if (!state.has(w)) visit(w, [...path, v]);
      }
      state.set(v, 2);
    };
    for (const v of edges.keys()) if (!state.has(v)) visit(v, []);
  }
});

const mock = await mockCudaLibrary();
Deno.test({
  name: "mock driver: a GPU collective issued while the GPU route loads keeps its place in the order",
  ignore: typeof mock !== "string",
  fn: async () => {
    const outs = await runRanks({
      script: "tests/fixtures/gpu_first_use_worker.ts",
      worldSize: 2,
      env: { ...mockEnv(mock as string), CHOIR_TRANSPORT: "tcp" },
      deadlineMs: 120_000,
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      assert.deepEqual(resultOf<{ failures: string[] }>(out).failures, [], `rank ${out.rank}`);
    }
  },
});
