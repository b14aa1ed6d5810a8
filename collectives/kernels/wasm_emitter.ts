/**
 * @module
 * A tiny WebAssembly binary emitter: LEB128, function bodies (core and 0xFD SIMD opcodes) and a module
 * that imports one memory and exports functions. It knows nothing of reductions; the kernels do.
 */

/** Value types of the WebAssembly binary format. */
export const T = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b } as const;

/** One WebAssembly value type byte. */
export type ValType = typeof T[keyof typeof T];

/** Core (single-byte) opcodes used by the kernels. */
export const Op = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  br_if: 0x0d,
  select: 0x1b,
  local_get: 0x20,
  local_set: 0x21,
  local_tee: 0x22,
  i32_load: 0x28,
  i64_load: 0x29,
  f32_load: 0x2a,
  f64_load: 0x2b,
  i32_load8_s: 0x2c,
  i32_load8_u: 0x2d,
  i32_load16_u: 0x2f,
  i32_store: 0x36,
  i64_store: 0x37,
  f32_store: 0x38,
  f64_store: 0x39,
  i32_store8: 0x3a,
  i32_store16: 0x3b,
  i32_const: 0x41,
  i64_const: 0x42,
  i32_eqz: 0x45,
  i32_lt_s: 0x48,
  i32_lt_u: 0x49,
  i32_gt_s: 0x4a,
  i32_gt_u: 0x4b,
  i32_ge_u: 0x4f,
  i64_lt_s: 0x53,
  i64_gt_s: 0x55,
  f32_ne: 0x5c,
  i32_add: 0x6a,
  i32_sub: 0x6b,
  i32_mul: 0x6c,
  i32_div_s: 0x6d,
  i32_div_u: 0x6e,
  i32_and: 0x71,
  i32_or: 0x72,
  i32_xor: 0x73,
  i32_shl: 0x74,
  i32_shr_u: 0x76,
  i64_add: 0x7c,
  i64_mul: 0x7e,
  i64_div_s: 0x7f,
  i64_and: 0x83,
  i64_or: 0x84,
  i64_xor: 0x85,
  i64_extend_i32_u: 0xad,
  f32_add: 0x92,
  f32_mul: 0x94,
  f32_div: 0x95,
  f32_min: 0x96,
  f32_max: 0x97,
  f64_add: 0xa0,
  f64_mul: 0xa2,
  f64_div: 0xa3,
  f64_min: 0xa4,
  f64_max: 0xa5,
  f32_demote_f64: 0xb6,
  i32_reinterpret_f32: 0xbc,
  f32_reinterpret_i32: 0xbe,
} as const;

/** SIMD opcodes (written after the 0xFD prefix as unsigned LEB128). */
export const Simd = {
  v128_load: 0x00,
  v128_store: 0x0b,
  v128_const: 0x0c,
  i32x4_splat: 0x11,
  f32x4_splat: 0x13,
  f64x2_splat: 0x14,
  i32x4_lt_s: 0x39,
  i32x4_gt_s: 0x3b,
  f32x4_ne: 0x42,
  v128_and: 0x4e,
  v128_or: 0x50,
  v128_xor: 0x51,
  v128_bitselect: 0x52,
  i8x16_add: 0x6e,
  i8x16_min_s: 0x76,
  i8x16_min_u: 0x77,
  i8x16_max_s: 0x78,
  i8x16_max_u: 0x79,
  i16x8_narrow_i32x4_u: 0x86,
  i32x4_extend_low_i16x8_u: 0xa9,
  i32x4_extend_high_i16x8_u: 0xaa,
  i32x4_shl: 0xab,
  i32x4_shr_u: 0xad,
  i32x4_add: 0xae,
  i32x4_sub: 0xb1,
  i32x4_mul: 0xb5,
  i32x4_min_s: 0xb6,
  i32x4_min_u: 0xb7,
  i32x4_max_s: 0xb8,
  i32x4_max_u: 0xb9,
  i64x2_add: 0xce,
  i64x2_mul: 0xd5,
  i64x2_lt_s: 0xd8,
  i64x2_gt_s: 0xd9,
  f32x4_add: 0xe4,
  f32x4_mul: 0xe6,
  f32x4_div: 0xe7,
  f32x4_min: 0xe8,
  f32x4_max: 0xe9,
  f64x2_add: 0xf0,
  f64x2_mul: 0xf2,
  f64x2_div: 0xf3,
  f64x2_min: 0xf4,
  f64x2_max: 0xf5,
} as const;

/** Unsigned LEB128 encoding of a non-negative integer below 2^53. */
export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** Signed LEB128 encoding of an integer (a BigInt for 64-bit constants). */
function sleb(value: number | bigint): number[] {
  const out: number[] = [];
  let v = BigInt(value);
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

/** Encodes a string as a length-prefixed UTF-8 name. */
function name(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [...uleb(bytes.length), ...bytes];
}

/** A vector: count, then the items' bytes. */
function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** A section: id, byte size, contents. */
function section(id: number, contents: number[]): number[] {
  return [id, ...uleb(contents.length), ...contents];
}

/**
 * Builds one function body. Locals are allocated on demand with {@link FunctionBuilder.local};
 * instructions are appended with the small helpers, which return `this` for chaining.
 */
export class FunctionBuilder {
  /** Parameter types; parameters are locals 0 .. params.length - 1. */
  readonly params: readonly ValType[];
  /** Result types. */
  readonly results: readonly ValType[];
  private readonly locals: ValType[] = [];
  private readonly code: number[] = [];
  private readonly head: number[] = [];

  /** Starts a function with the given signature. */
  constructor(params: readonly ValType[], results: readonly ValType[] = []) {
    this.params = params;
    this.results = results;
  }

  /** Allocates a new local of `type` and returns its index. */
  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  /** Appends raw bytes. */
  emit(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }

  /** Appends raw bytes to the function's head, which runs before everything {@link emit} added. */
  emitHead(...bytes: number[]): this {
    for (const b of bytes) this.head.push(b);
    return this;
  }

  /** `local.get i`. */
  get(i: number): this {
    return this.emit(Op.local_get, ...uleb(i));
  }

  /** `local.set i`. */
  set(i: number): this {
    return this.emit(Op.local_set, ...uleb(i));
  }

  /** `i32.const v`. */
  i32(v: number): this {
    return this.emit(Op.i32_const, ...sleb(v | 0));
  }

  /** A SIMD instruction without immediates. */
  simd(opcode: number): this {
    return this.emit(0xfd, ...uleb(opcode));
  }

  /** A core memory instruction with its memarg (alignment exponent, constant offset). */
  mem(opcode: number, alignLog2: number, offset: number): this {
    return this.emit(opcode, ...uleb(alignLog2), ...uleb(offset));
  }

  /** `v128.load` at the address on the stack plus `offset`. */
  v128Load(offset: number, alignLog2 = 0): this {
    return this.emit(0xfd, ...uleb(Simd.v128_load), ...uleb(alignLog2), ...uleb(offset));
  }

  /** `v128.store` of (address, value) on the stack, at address plus `offset`. */
  v128Store(offset: number, alignLog2 = 0): this {
    return this.emit(0xfd, ...uleb(Simd.v128_store), ...uleb(alignLog2), ...uleb(offset));
  }

  /** The bytes of `v128.const` with four i32 lanes. */
  static v128I32x4(lanes: readonly [number, number, number, number]): number[] {
    const out = [0xfd, ...uleb(Simd.v128_const)];
    for (const lane of lanes) out.push(lane & 0xff, (lane >>> 8) & 0xff, (lane >>> 16) & 0xff, lane >>> 24);
    return out;
  }

  /** `block` (no result) around `body`; inside, depth 0 branches to its end. */
  block(body: () => void): this {
    this.emit(Op.block, 0x40);
    body();
    return this.emit(Op.end);
  }

  /** `loop` (no result) around `body`; inside, depth 0 branches to its start. */
  loop(body: () => void): this {
    this.emit(Op.loop, 0x40);
    body();
    return this.emit(Op.end);
  }

  /** `br_if depth`. */
  brIf(depth: number): this {
    return this.emit(Op.br_if, ...uleb(depth));
  }

  /** `br depth`. */
  br(depth: number): this {
    return this.emit(Op.br, ...uleb(depth));
  }

  /** The encoded body: local declarations (run-length grouped), code, `end`. */
  encodeBody(): number[] {
    const groups: number[][] = [];
    for (let i = 0; i < this.locals.length;) {
      let j = i;
      while (j < this.locals.length && this.locals[j] === this.locals[i]) j++;
      groups.push([...uleb(j - i), this.locals[i]]);
      i = j;
    }
    const body = [...vec(groups), ...this.head, ...this.code, Op.end];
    return [...uleb(body.length), ...body];
  }
}

/** The memory a module imports: `module.name`, shared or not. */
export interface MemoryImport {
  /** Import module name. */
  module: string;
  /** Import field name. */
  name: string;
  /** Whether the memory is shared (then a maximum is required). */
  shared: boolean;
  /** Minimum pages the imported memory must have. */
  minPages: number;
  /** Maximum pages (required when shared). */
  maxPages?: number;
}

/** Encodes a module that imports one memory and exports the given functions by name. */
export function encodeModule(
  memory: MemoryImport,
  functions: ReadonlyArray<[string, FunctionBuilder]>,
): Uint8Array<ArrayBuffer> {
  const types: string[] = [];
  const typeBytes: number[][] = [];
  const funcTypeIndex: number[] = [];
  for (const [, fn] of functions) {
    const sig = [0x60, ...vec(fn.params.map((t) => [t])), ...vec(fn.results.map((t) => [t]))];
    const key = sig.join(",");
    let idx = types.indexOf(key);
    if (idx < 0) {
      idx = types.length;
      types.push(key);
      typeBytes.push(sig);
    }
    funcTypeIndex.push(idx);
  }
  let limits: number[];
  if (memory.shared) {
    if (memory.maxPages === undefined) throw new RangeError("a shared memory import needs maxPages");
    limits = [0x03, ...uleb(memory.minPages), ...uleb(memory.maxPages)];
  } else if (memory.maxPages !== undefined) {
    limits = [0x01, ...uleb(memory.minPages), ...uleb(memory.maxPages)];
  } else {
    limits = [0x00, ...uleb(memory.minPages)];
  }
  const importEntry = [...name(memory.module), ...name(memory.name), 0x02, ...limits];
  const exportEntries = functions.map(([n], i) => [...name(n), 0x00, ...uleb(i)]);
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec(typeBytes)),
    ...section(2, vec([importEntry])),
    ...section(3, vec(funcTypeIndex.map((i) => uleb(i)))),
    ...section(7, vec(exportEntries)),
    ...section(10, vec(functions.map(([, fn]) => fn.encodeBody()))),
  ];
  return new Uint8Array(bytes);
}
