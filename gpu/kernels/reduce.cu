// choir reduce kernels: the CUDA C source of reduce_ptx.ts (regenerate with ./build.sh).
//
// One kernel per (op, dtype): choir_reduce_<op>_<dtype>(srcs, nsrc, dsts, ndst, n, factor).
//   srcs, dsts: up to 16 device pointers each, passed by value (a 128-byte struct parameter, so a
//   launch needs no device-side pointer table); nsrc >= 1 inputs and ndst >= 1 outputs;
//   every output element i becomes op(srcs[0][i], ..., srcs[nsrc-1][i]). Outputs may alias inputs
//   (each element is read and written by the same thread), so no restrict/non-coherent loads.
//   n: element count. factor: PREMUL_SUM multiplies each input by it (rounded to f32 for 32-bit and
//   16-bit floats, as the CPU kernels do); AVG divides the sum by it (integers truncate toward zero).
// The accumulator is kept in the element type, so f16/bf16 round after every step like the CPU path.
// Each thread moves 16 bytes at a time when every pointer is 16-byte aligned; the tail is scalar.

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

typedef unsigned long long u64;

// The pointer lists, by value. MAX_PTRS must match gpu/kernels.ts.
#define MAX_PTRS 16
struct Ptrs {
  u64 p[MAX_PTRS];
};

// ---- element operations: float math in the element's precision (halves through f32) ----
template <typename T> struct Num;

template <> struct Num<float> {
  __device__ static float add(float a, float b) { return a + b; }
  __device__ static float mul(float a, float b) { return a * b; }
  __device__ static float min(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fminf(a, b); }
  __device__ static float max(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b); }
  __device__ static float pre(float a, double f) { return a * (float)f; }
  __device__ static float div(float a, double f) { return a / (float)f; }
};

template <> struct Num<double> {
  __device__ static double add(double a, double b) { return a + b; }
  __device__ static double mul(double a, double b) { return a * b; }
  __device__ static double min(double a, double b) { return (a != a || b != b) ? __longlong_as_double(0x7ff8000000000000LL) : fmin(a, b); }
  __device__ static double max(double a, double b) { return (a != a || b != b) ? __longlong_as_double(0x7ff8000000000000LL) : fmax(a, b); }
  __device__ static double pre(double a, double f) { return a * f; }
  __device__ static double div(double a, double f) { return a / f; }
};

template <> struct Num<__half> {
  __device__ static __half f(float v) { return __float2half_rn(v); }
  __device__ static float g(__half v) { return __half2float(v); }
  __device__ static __half add(__half a, __half b) { return f(g(a) + g(b)); }
  __device__ static __half mul(__half a, __half b) { return f(g(a) * g(b)); }
  __device__ static __half min(__half a, __half b) { return f(Num<float>::min(g(a), g(b))); }
  __device__ static __half max(__half a, __half b) { return f(Num<float>::max(g(a), g(b))); }
  __device__ static __half pre(__half a, double s) { return f(g(a) * (float)s); }
  __device__ static __half div(__half a, double s) { return f(g(a) / (float)s); }
};

template <> struct Num<__nv_bfloat16> {
  __device__ static __nv_bfloat16 f(float v) { return __float2bfloat16_rn(v); }
  __device__ static float g(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 add(__nv_bfloat16 a, __nv_bfloat16 b) { return f(g(a) + g(b)); }
  __device__ static __nv_bfloat16 mul(__nv_bfloat16 a, __nv_bfloat16 b) { return f(g(a) * g(b)); }
  __device__ static __nv_bfloat16 min(__nv_bfloat16 a, __nv_bfloat16 b) { return f(Num<float>::min(g(a), g(b))); }
  __device__ static __nv_bfloat16 max(__nv_bfloat16 a, __nv_bfloat16 b) { return f(Num<float>::max(g(a), g(b))); }
  __device__ static __nv_bfloat16 pre(__nv_bfloat16 a, double s) { return f(g(a) * (float)s); }
  __device__ static __nv_bfloat16 div(__nv_bfloat16 a, double s) { return f(g(a) / (float)s); }
};

// Integers wrap on overflow (unsigned arithmetic), as Int32Array does on the CPU.
template <> struct Num<int32_t> {
  __device__ static int32_t add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
  __device__ static int32_t mul(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }
  __device__ static int32_t min(int32_t a, int32_t b) { return a < b ? a : b; }
  __device__ static int32_t max(int32_t a, int32_t b) { return a > b ? a : b; }
  __device__ static int32_t pre(int32_t a, double) { return a; }
  __device__ static int32_t div(int32_t a, double f) { return a / (int32_t)f; }
};

// ---- ops: first(x) prepares the first input, step(acc, x) folds the next, last(acc) finishes ----
#define OP(NAME, FIRST, STEP, LAST)                                                    \
  struct Op_##NAME {                                                                   \
    template <typename T> __device__ static T first(T x, double f) { return FIRST; }  \
    template <typename T> __device__ static T step(T a, T x, double f) { return STEP; } \
    template <typename T> __device__ static T last(T a, double f) { return LAST; }    \
  };

OP(sum, x, Num<T>::add(a, x), a)
OP(product, x, Num<T>::mul(a, x), a)
OP(min, x, Num<T>::min(a, x), a)
OP(max, x, Num<T>::max(a, x), a)
OP(avg, x, Num<T>::add(a, x), Num<T>::div(a, f))
OP(premul_sum, Num<T>::pre(x, f), Num<T>::add(a, Num<T>::pre(x, f)), a)
OP(band, x, (T)(a & x), a)
OP(bor, x, (T)(a | x), a)
OP(bxor, x, (T)(a ^ x), a)

template <typename Op, typename T>
__device__ __forceinline__ T fold(const Ptrs& srcs, unsigned nsrc, u64 i, double f) {
  T acc = Op::first(((const T*)srcs.p[0])[i], f);
  for (unsigned k = 1; k < nsrc; k++) acc = Op::step(acc, ((const T*)srcs.p[k])[i], f);
  return Op::last(acc, f);
}

template <typename Op, typename T>
__device__ void reduce_body(const Ptrs& srcs, unsigned nsrc, const Ptrs& dsts, unsigned ndst, u64 n, double f) {
  const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
  const u64 stride = (u64)gridDim.x * blockDim.x;
  constexpr unsigned L = 16 / sizeof(T);  // elements per 16-byte vector
  bool aligned = true;
  for (unsigned k = 0; k < nsrc; k++) aligned &= (srcs.p[k] & 15) == 0;
  for (unsigned k = 0; k < ndst; k++) aligned &= (dsts.p[k] & 15) == 0;
  u64 head = 0;
  if (aligned) {
    const u64 nv = n / L;
    head = nv * L;
    for (u64 v = tid; v < nv; v += stride) {
      union { uint4 u; T e[L]; } acc, x;
      acc.u = ((const uint4*)srcs.p[0])[v];
#pragma unroll
      for (unsigned j = 0; j < L; j++) acc.e[j] = Op::first(acc.e[j], f);
      for (unsigned k = 1; k < nsrc; k++) {
        x.u = ((const uint4*)srcs.p[k])[v];
#pragma unroll
        for (unsigned j = 0; j < L; j++) acc.e[j] = Op::step(acc.e[j], x.e[j], f);
      }
#pragma unroll
      for (unsigned j = 0; j < L; j++) acc.e[j] = Op::last(acc.e[j], f);
      for (unsigned k = 0; k < ndst; k++) ((uint4*)dsts.p[k])[v] = acc.u;
    }
  }
  for (u64 i = head + tid; i < n; i += stride) {
    const T r = fold<Op, T>(srcs, nsrc, i, f);
    for (unsigned k = 0; k < ndst; k++) ((T*)dsts.p[k])[i] = r;
  }
}

#define KERNEL(OPN, TN, T)                                                                              \
  extern "C" __global__ void choir_reduce_##OPN##_##TN(const Ptrs srcs, unsigned nsrc, const Ptrs dsts,       \
                                                       unsigned ndst, u64 n, double factor) {           \
    reduce_body<Op_##OPN, T>(srcs, nsrc, dsts, ndst, n, factor);                                        \
  }

#define FLOAT_KERNELS(TN, T) \
  KERNEL(sum, TN, T) KERNEL(product, TN, T) KERNEL(min, TN, T) KERNEL(max, TN, T) KERNEL(avg, TN, T) \
  KERNEL(premul_sum, TN, T)

// build.sh compiles one module per dtype (-DCHOIR_F32 ...), so a process JIT-compiles only what it uses.
#ifdef CHOIR_F32
FLOAT_KERNELS(f32, float)
#endif
#ifdef CHOIR_F64
FLOAT_KERNELS(f64, double)
#endif
#ifdef CHOIR_F16
FLOAT_KERNELS(f16, __half)
#endif
#ifdef CHOIR_BF16
FLOAT_KERNELS(bf16, __nv_bfloat16)
#endif

#ifdef CHOIR_I32
KERNEL(sum, i32, int32_t)
KERNEL(product, i32, int32_t)
KERNEL(min, i32, int32_t)
KERNEL(max, i32, int32_t)
KERNEL(avg, i32, int32_t)
KERNEL(band, i32, int32_t)
KERNEL(bor, i32, int32_t)
KERNEL(bxor, i32, int32_t)
#endif
