/**
 * @module
 * The CUDA driver bindings against `cuda.h`: every symbol of gpu/cuda_lib.ts is a name the header
 * exports (the versioned one its macro maps to, `cuMemAlloc` -> `cuMemAlloc_v2`), with the header's
 * parameter count and an FFI type that fits each C type, and the enum values choir uses are the header's.
 * Skipped, with the reason, where no CUDA toolkit headers are installed.
 */

import assert from "node:assert/strict";
import { CUDA_SYMBOLS } from "../../gpu/cuda_lib.ts";
import { DeviceAttribute, EventFlags } from "../../gpu/cuda.ts";
import { readEnv } from "../../config.ts";

function findHeader(): string | null {
  const home = readEnv().cudaHome;
  const roots = [...(home ? [home] : []), "/usr/local/cuda"];
  try {
    for (const e of Deno.readDirSync("/usr/local")) {
      if (e.name.startsWith("cuda-")) roots.push(`/usr/local/${e.name}`);
    }
  } catch { /* no /usr/local */ }
  for (const r of roots) {
    try {
      if (Deno.statSync(`${r}/include/cuda.h`).isFile) return `${r}/include/cuda.h`;
    } catch { /* not there */ }
  }
  return null;
}

const HEADER = findHeader();
if (!HEADER) console.log("signatures_test: no cuda.h (CUDA toolkit headers not installed): skipped");
const source = HEADER
  ? Deno.readTextFileSync(HEADER).replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "")
  : "";

/** `#define cuX cuX_v2` and `#define cuX __CUDA_API_PTDS(cuX_v2)`: exported name -> public name. */
function publicNames(): Map<string, string> {
  const m = new Map<string, string>();
  for (const d of source.matchAll(/^#define\s+(cu\w+)\s+(?:__CUDA_API_PT[DS][SZ]\()?(cu\w+)\)?\s*$/gm)) {
    m.set(d[2], d[1]);
  }
  return m;
}

/** Parameter type lists of every `CUresult CUDAAPI name(...)` declaration (first one wins). */
function prototypes(): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of source.matchAll(/CUresult\s+CUDAAPI\s+(\w+)\s*\(([^)]*)\)\s*;/g)) {
    if (m.has(p[1])) continue;
    const args = p[2].trim() === "void" || p[2].trim() === ""
      ? []
      : p[2].split(",").map((a) =>
        a.trim().replace(/\s+/g, " ")
          // drop the parameter name (the last identifier), keep the type and its stars
          .replace(/\s*\b\w+$/, "").trim()
      );
    m.set(p[1], args);
  }
  return m;
}

const HANDLES = ["CUcontext", "CUmodule", "CUfunction", "CUstream", "CUevent"];
const INT32 = ["int", "CUdevice", "CUdevice_attribute", "CUjit_option", "CUresult"];

/** The FFI types that carry a C parameter type correctly on x86-64. */
function fits(c: string): (t: Deno.NativeType) => boolean {
  if (c.includes("*")) return (t) => t === "buffer" || t === "pointer";
  if (c === "CUdeviceptr") return (t) => t === "u64";
  if (c === "size_t") return (t) => t === "usize";
  if (c === "unsigned int") return (t) => t === "u32";
  if (c === "unsigned char") return (t) => t === "u8";
  if (INT32.includes(c)) return (t) => t === "i32";
  if (HANDLES.includes(c)) return (t) => t === "pointer";
  if (c === "CUipcMemHandle" || c === "CUipcEventHandle") {
    return (t) =>
      typeof t === "object" && "struct" in t && t.struct.length === 64 && t.struct.every((x) => x === "u8");
  }
  throw new Error(`no rule for the C type '${c}'`);
}

Deno.test({
  name: "every driver symbol is exported by cuda.h's macros with matching parameter types",
  ignore: HEADER === null,
  fn: () => {
    const names = publicNames(), protos = prototypes();
    const problems: string[] = [];
    for (const [sym, def] of Object.entries(CUDA_SYMBOLS)) {
      const pub = names.get(sym) ?? sym;
      // A versioned symbol must be what the public macro maps to (no plain cuMemAlloc when the header says _v2).
      const remapped = [...names.entries()].find(([exported, p]) => p === sym && exported !== sym);
      // Allowed only as an optional fallback for older drivers beside the versioned name (cuEventElapsedTime).
      const fallback = "optional" in def && def.optional && remapped && remapped[0] in CUDA_SYMBOLS;
      if (remapped && !fallback) problems.push(`${sym}: cuda.h maps it to ${remapped[0]}; bind that name`);
      const c = protos.get(pub) ?? protos.get(sym);
      if (!c) {
        problems.push(`${sym}: no declaration of ${pub} in cuda.h`);
        continue;
      }
      const ffi = def.parameters as readonly Deno.NativeType[];
      if (c.length !== ffi.length) {
        problems.push(
          `${sym}: cuda.h has ${c.length} parameters (${c.join(", ")}), the binding ${ffi.length}`,
        );
        continue;
      }
      c.forEach((ct, i) => {
        if (!fits(ct)(ffi[i])) problems.push(`${sym} parameter ${i}: C ${ct}, FFI ${JSON.stringify(ffi[i])}`);
      });
      if (def.result !== "i32") problems.push(`${sym}: CUresult is i32, the binding returns ${def.result}`);
    }
    assert.deepEqual(problems, []);
  },
});

Deno.test({
  name: "the enum values choir uses are cuda.h's",
  ignore: HEADER === null,
  fn: () => {
    const value = (name: string) => {
      const m = source.match(new RegExp(`\\b${name}\\s*=\\s*(0x[0-9a-fA-F]+|\\d+)`)) ??
        source.match(new RegExp(`#define\\s+${name}\\s+(0x[0-9a-fA-F]+|\\d+)`));
      assert.ok(m, `${name} not in cuda.h`);
      return Number(m[1]);
    };
    assert.equal(DeviceAttribute.multiprocessorCount, value("CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT"));
    assert.equal(DeviceAttribute.unifiedAddressing, value("CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING"));
    assert.equal(
      DeviceAttribute.computeCapabilityMajor,
      value("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR"),
    );
    assert.equal(
      DeviceAttribute.computeCapabilityMinor,
      value("CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR"),
    );
    assert.equal(DeviceAttribute.ipcEventSupported, value("CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED"));
    assert.equal(EventFlags.default, value("CU_EVENT_DEFAULT"));
    assert.equal(EventFlags.disableTiming, value("CU_EVENT_DISABLE_TIMING"));
    assert.equal(EventFlags.interprocess, value("CU_EVENT_INTERPROCESS"));
    // Private constants of gpu/cuda.ts, by value.
    for (
      const [name, v] of [
        ["CUDA_ERROR_NOT_READY", 600],
        ["CU_STREAM_NON_BLOCKING", 1],
        ["CU_MEMHOSTALLOC_PORTABLE", 1],
        ["CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS", 1],
        ["CU_IPC_HANDLE_SIZE", 64],
        ["CU_JIT_INFO_LOG_BUFFER", 3],
        ["CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES", 4],
        ["CU_JIT_ERROR_LOG_BUFFER", 5],
        ["CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES", 6],
        ["CU_JIT_LOG_VERBOSE", 12],
      ] as const
    ) assert.equal(value(name), v, name);
    const lib = Deno.readTextFileSync(HEADER!.replace(/cuda\.h$/, "library_types.h"));
    for (
      const [name, v] of [["CUDA_R_32F", 0], ["CUDA_R_16F", 2], ["CUDA_R_16BF", 14], [
        "CUDA_R_64F",
        1,
      ]] as const
    ) {
      assert.match(lib, new RegExp(`\\b${name}\\s*=\\s*${v}\\b`), name);
    }
  },
});
