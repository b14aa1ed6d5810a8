/**
 * @module
 * cuBLAS through FFI: finding `libcublas` where users have it, a handle per device, and the calls
 * choir uses (SGEMM, GemmEx in f32/f16/bf16 with f32 accumulation, axpy, scal). Statuses become
 * CublasError with their CUBLAS_STATUS_* name. Tensor-level matmul is in `tensor.ts`.
 */

import { readEnv } from "../config.ts";
import { CublasError, InvalidArgumentError, LibraryUnavailableError } from "../errors.ts";
import { type DevicePtr, type Stream, useDevice } from "./cuda.ts";

const SYMBOLS = {
  cublasCreate_v2: { parameters: ["buffer"], result: "i32" },
  cublasDestroy_v2: { parameters: ["pointer"], result: "i32" },
  cublasGetVersion_v2: { parameters: ["pointer", "buffer"], result: "i32" },
  cublasSetStream_v2: { parameters: ["pointer", "pointer"], result: "i32" },
  cublasSetMathMode: { parameters: ["pointer", "i32"], result: "i32" },
  // Device pointers go as u64 where C has float*: the same INTEGER class on x86-64 SysV.
  // alpha/beta are host scalars (the default pointer mode, CUBLAS_POINTER_MODE_HOST).
  cublasSgemm_v2: {
    parameters: [
      "pointer",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "buffer",
      "u64",
      "i32",
      "u64",
      "i32",
      "buffer",
      "u64",
      "i32",
    ],
    result: "i32",
  },
  cublasGemmEx: {
    parameters: [
      "pointer", // handle
      "i32", // transa
      "i32", // transb
      "i32", // m
      "i32", // n
      "i32", // k
      "buffer", // alpha
      "u64", // A
      "i32", // Atype
      "i32", // lda
      "u64", // B
      "i32", // Btype
      "i32", // ldb
      "buffer", // beta
      "u64", // C
      "i32", // Ctype
      "i32", // ldc
      "i32", // computeType
      "i32", // algo
    ],
    result: "i32",
  },
  cublasSaxpy_v2: { parameters: ["pointer", "i32", "buffer", "u64", "i32", "u64", "i32"], result: "i32" },
  cublasDaxpy_v2: { parameters: ["pointer", "i32", "buffer", "u64", "i32", "u64", "i32"], result: "i32" },
  cublasSscal_v2: { parameters: ["pointer", "i32", "buffer", "u64", "i32"], result: "i32" },
  cublasGetStatusName: { parameters: ["i32"], result: "pointer", optional: true },
  cublasGetStatusString: { parameters: ["i32"], result: "pointer", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

type CublasSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** cublasStatus_t names (`cublas_api.h`), used when the library has no cublasGetStatusName. */
const STATUS_NAMES: Readonly<Record<number, string>> = {
  0: "CUBLAS_STATUS_SUCCESS",
  1: "CUBLAS_STATUS_NOT_INITIALIZED",
  3: "CUBLAS_STATUS_ALLOC_FAILED",
  7: "CUBLAS_STATUS_INVALID_VALUE",
  8: "CUBLAS_STATUS_ARCH_MISMATCH",
  11: "CUBLAS_STATUS_MAPPING_ERROR",
  13: "CUBLAS_STATUS_EXECUTION_FAILED",
  14: "CUBLAS_STATUS_INTERNAL_ERROR",
  15: "CUBLAS_STATUS_NOT_SUPPORTED",
  16: "CUBLAS_STATUS_LICENSE_ERROR",
};

/** The name of a cublasStatus_t. */
export function cublasStatusName(status: number): string {
  const lib = loaded?.lib;
  const p = lib?.cublasGetStatusName?.(status);
  if (p) return Deno.UnsafePointerView.getCString(p);
  return STATUS_NAMES[status] ?? `cublasStatus ${status}`;
}

function check(call: string, status: number, detail = ""): void {
  if (status !== 0) throw new CublasError(call, status, cublasStatusName(status), detail);
}

const NAMES = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"];

function dirs(path: string, filter: (name: string) => boolean): string[] {
  try {
    return [...Deno.readDirSync(path)].filter((e) => e.isDirectory && filter(e.name)).map((e) =>
      `${path}/${e.name}`
    );
  } catch {
    return [];
  }
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Where choir looks for cuBLAS, in order: `CHOIR_CUBLAS_PATH` (a file, or a folder holding
 * `libcublas.so.*`); the CUDA toolkit's `lib64` (`CUDA_HOME`/`CUDA_PATH`, `/usr/local/cuda*`); the
 * `nvidia/cublas/lib` (or `nvidia/cu13/lib`, `nvidia/cu12/lib`) folder of a pip-installed PyTorch in
 * any Python site-packages or dist-packages this process can see; then the loader's own search path
 * (bare names). Returns candidate paths, not checked yet.
 */
export function cublasCandidates(): string[] {
  const env = readEnv();
  const out: string[] = [];
  const inFolder = (d: string) => NAMES.slice(0, 2).map((n) => `${d}/${n}`);
  if (env.cublasPath) {
    out.push(...(exists(env.cublasPath) ? [env.cublasPath] : inFolder(env.cublasPath)));
  }
  const toolkits = [
    ...(env.cudaHome ? [env.cudaHome] : []),
    "/usr/local/cuda",
    ...dirs("/usr/local", (n) => n.startsWith("cuda-")).sort().reverse(),
  ];
  for (const t of toolkits) out.push(...inFolder(`${t}/lib64`), ...inFolder(`${t}/targets/x86_64-linux/lib`));
  const libs = [
    ...(env.pythonPrefixes ?? []).map((p) => `${p}/lib`),
    "/usr/local/lib",
    "/usr/lib",
    "/opt/conda/lib",
  ];
  const sitePackages: string[] = [];
  for (const lib of libs) {
    for (const py of dirs(lib, (n) => /^python3(\.\d+)?$/.test(n))) {
      sitePackages.push(`${py}/site-packages`, `${py}/dist-packages`);
    }
  }
  for (const sp of sitePackages) {
    for (const sub of ["nvidia/cublas/lib", "nvidia/cu13/lib", "nvidia/cu12/lib", "torch/lib"]) {
      out.push(...inFolder(`${sp}/${sub}`));
    }
  }
  return out;
}

let loaded: { lib: CublasSymbols; path: string } | null = null;

/**
 * The path of the cuBLAS library this process uses (opened on first call); throws
 * LibraryUnavailableError naming where it looked.
 */
export function cublasLibrary(): string {
  return loadCublas().path;
}

function loadCublas(): { lib: CublasSymbols; path: string } {
  if (loaded) return loaded;
  const tried: string[] = [];
  const files = cublasCandidates().filter(exists);
  for (const path of [...files, ...NAMES]) {
    try {
      loaded = { lib: Deno.dlopen(path, SYMBOLS).symbols, path };
      return loaded;
    } catch (e) {
      tried.push(`${path} (${e instanceof Error ? e.message.split("\n")[0] : e})`);
    }
  }
  const looked = cublasCandidates().filter((p) => !files.includes(p));
  throw new LibraryUnavailableError(
    `cuBLAS (libcublas.so.13 or .12) was not found. Tried: ${tried.join("; ")}. Also looked for (absent): ${
      looked.slice(0, 12).join(", ")
    }${looked.length > 12 ? ` and ${looked.length - 12} more` : ""}. Install the CUDA toolkit or ` +
      `\`pip install nvidia-cublas\` (PyTorch brings it), or set CHOIR_CUBLAS_PATH`,
    { op: "cublas" },
  );
}

/** Whether cuBLAS can be opened here. */
export function cublasAvailable(): boolean {
  try {
    loadCublas();
    return true;
  } catch {
    return false;
  }
}

/** cublasOperation_t: no transpose or transpose. */
export type Transpose = "N" | "T";
const OP: Readonly<Record<Transpose, number>> = { N: 0, T: 1 };

/** Element types of {@link Cublas.gemmEx}: A, B and C share it; accumulation is f32. */
export type GemmDType = "f32" | "f16" | "bf16";
/** cudaDataType_t (`library_types.h`): CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF. */
const DATA_TYPE: Readonly<Record<GemmDType, number>> = { f32: 0, f16: 2, bf16: 14 };
/** cublasComputeType_t: CUBLAS_COMPUTE_32F and CUBLAS_COMPUTE_32F_FAST_TF32. */
const COMPUTE_32F = 68, COMPUTE_32F_FAST_TF32 = 77;
/** CUBLAS_GEMM_DEFAULT. */
const GEMM_DEFAULT = -1;

function int32(name: string, v: number): number {
  if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 31)) {
    throw new InvalidArgumentError(`cuBLAS ${name} must be an int32 >= 0, got ${v}`, { op: "cublas" });
  }
  return v;
}

/** A cuBLAS handle bound to one device (its primary context must be the one current at creation). */
export class Cublas {
  /** The device the handle belongs to. */
  readonly device: number;
  /** The library file in use. */
  readonly path: string;
  #handle: Deno.PointerValue;
  readonly #lib: CublasSymbols;
  readonly #a32 = new Float32Array(1);
  readonly #b32 = new Float32Array(1);
  readonly #a64 = new Float64Array(1);

  /** Creates a handle on device `ordinal` (`cublasCreate_v2`). */
  constructor(ordinal = 0) {
    const { lib, path } = loadCublas();
    useDevice(ordinal);
    const out = new BigUint64Array(1);
    check("cublasCreate_v2", lib.cublasCreate_v2(out));
    this.#lib = lib;
    this.path = path;
    this.device = ordinal;
    this.#handle = Deno.UnsafePointer.create(out[0]);
  }

  #h(): Deno.PointerValue {
    if (this.#handle === null) {
      throw new InvalidArgumentError("cuBLAS handle used after destroy", { op: "cublas" });
    }
    useDevice(this.device);
    return this.#handle;
  }

  /** The cuBLAS version number (`130000` ...). */
  version(): number {
    const out = new Int32Array(1);
    check("cublasGetVersion_v2", this.#lib.cublasGetVersion_v2(this.#h(), out));
    return out[0];
  }

  /**
   * Queues later calls on `stream` (null: the legacy default stream). Not on the shared handle of
   * {@link cublas}: GpuTensor.matmul, GpuMlp and DDP use it, and the collectives wait for the legacy
   * stream only, so a stream there would let them read results not yet computed.
   */
  setStream(stream: Stream | null): void {
    if (sharedHandles.has(this) && stream !== null) {
      throw new InvalidArgumentError(
        "the shared cuBLAS handle stays on the legacy stream (choir's own calls use it): " +
          "create a handle of your own for a stream, new Cublas(device)",
        { op: "cublas.setStream" },
      );
    }
    check("cublasSetStream_v2", this.#lib.cublasSetStream_v2(this.#h(), stream ? stream.handle : null));
  }

  /**
   * Column-major `C = alpha op(A) op(B) + beta C` in f32 (`cublasSgemm_v2`): C is m x n, op(A) m x k,
   * op(B) k x n, leading dimensions in elements.
   */
  sgemm(
    ta: Transpose,
    tb: Transpose,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: DevicePtr,
    lda: number,
    b: DevicePtr,
    ldb: number,
    beta: number,
    c: DevicePtr,
    ldc: number,
  ): void {
    this.#a32[0] = alpha;
    this.#b32[0] = beta;
    check(
      "cublasSgemm_v2",
      this.#lib.cublasSgemm_v2(
        this.#h(),
        OP[ta],
        OP[tb],
        int32("m", m),
        int32("n", n),
        int32("k", k),
        this.#a32,
        a,
        int32("lda", lda),
        b,
        int32("ldb", ldb),
        this.#b32,
        c,
        int32("ldc", ldc),
      ),
      `${ta}${tb} m=${m} n=${n} k=${k}`,
    );
  }

  /**
   * Column-major GEMM with A, B and C of `dtype` and f32 accumulation (`cublasGemmEx`,
   * CUBLAS_COMPUTE_32F; `tf32: true` lets f32 inputs use TF32 tensor cores).
   */
  gemmEx(
    dtype: GemmDType,
    ta: Transpose,
    tb: Transpose,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: DevicePtr,
    lda: number,
    b: DevicePtr,
    ldb: number,
    beta: number,
    c: DevicePtr,
    ldc: number,
    opts: { tf32?: boolean } = {},
  ): void {
    this.#a32[0] = alpha;
    this.#b32[0] = beta;
    const t = DATA_TYPE[dtype];
    check(
      "cublasGemmEx",
      this.#lib.cublasGemmEx(
        this.#h(),
        OP[ta],
        OP[tb],
        int32("m", m),
        int32("n", n),
        int32("k", k),
        this.#a32,
        a,
        t,
        int32("lda", lda),
        b,
        t,
        int32("ldb", ldb),
        this.#b32,
        c,
        t,
        int32("ldc", ldc),
        opts.tf32 && dtype === "f32" ? COMPUTE_32F_FAST_TF32 : COMPUTE_32F,
        GEMM_DEFAULT,
      ),
      `${dtype} ${ta}${tb} m=${m} n=${n} k=${k}`,
    );
  }

  /** `y += alpha x` over `n` f32 elements (`cublasSaxpy_v2`). */
  saxpy(n: number, alpha: number, x: DevicePtr, y: DevicePtr): void {
    this.#a32[0] = alpha;
    check("cublasSaxpy_v2", this.#lib.cublasSaxpy_v2(this.#h(), int32("n", n), this.#a32, x, 1, y, 1));
  }

  /** `y += alpha x` over `n` f64 elements (`cublasDaxpy_v2`). */
  daxpy(n: number, alpha: number, x: DevicePtr, y: DevicePtr): void {
    this.#a64[0] = alpha;
    check("cublasDaxpy_v2", this.#lib.cublasDaxpy_v2(this.#h(), int32("n", n), this.#a64, x, 1, y, 1));
  }

  /** `x *= alpha` over `n` f32 elements (`cublasSscal_v2`). */
  sscal(n: number, alpha: number, x: DevicePtr): void {
    this.#a32[0] = alpha;
    check("cublasSscal_v2", this.#lib.cublasSscal_v2(this.#h(), int32("n", n), this.#a32, x, 1));
  }

  /** Destroys the handle. */
  destroy(): void {
    if (this.#handle === null) return;
    useDevice(this.device);
    check("cublasDestroy_v2", this.#lib.cublasDestroy_v2(this.#handle));
    this.#handle = null;
  }

  /** Same as {@link destroy}, for `using`. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}

const handles = new Map<number, Cublas>();
/** The handles {@link cublas} shares: choir's own calls rely on them staying on the legacy stream. */
const sharedHandles = new WeakSet<Cublas>();

/**
 * The shared cuBLAS handle of device `ordinal` (created on first use). It stays on the legacy default
 * stream, which the collectives wait for; for another stream, create a {@link Cublas} of your own.
 */
export function cublas(ordinal = 0): Cublas {
  let h = handles.get(ordinal);
  if (!h) {
    handles.set(ordinal, h = new Cublas(ordinal));
    sharedHandles.add(h);
  }
  return h;
}
