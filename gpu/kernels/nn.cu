// choir small-network kernels (f32): the CUDA C source of the nn module in reduce_ptx.ts (./build.sh).
// What ddp/nn's GPU layers need beyond cuBLAS: bias add and bias gradient, GELU (tanh form, as the CPU
// layer), softmax cross-entropy with its gradient, AdamW, and the row argmax for accuracy.

#include <stdint.h>

typedef unsigned long long u64;

#define GRID_STRIDE(i, n) \
  for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// y[r*cols + c] += b[c]
extern "C" __global__ void choir_bias_add_f32(float* y, const float* b, unsigned rows, unsigned cols) {
  GRID_STRIDE(i, (u64)rows * cols) y[i] += b[i % cols];
}

// db[c] += sum over rows of g[r*cols + c] (one thread per column; columns are few in an MLP)
extern "C" __global__ void choir_bias_grad_f32(float* db, const float* g, unsigned rows, unsigned cols) {
  GRID_STRIDE(c, (u64)cols) {
    float s = 0.f;
    for (unsigned r = 0; r < rows; r++) s += g[(u64)r * cols + c];
    db[c] += s;
  }
}

#define GELU_C 0.7978845608028654f
#define GELU_K 0.044715f

// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
extern "C" __global__ void choir_gelu_f32(float* y, const float* x, u64 n) {
  GRID_STRIDE(i, n) {
    const float v = x[i];
    y[i] = 0.5f * v * (1.f + tanhf(GELU_C * (v + GELU_K * v * v * v)));
  }
}

// dx = g * GELU'(x)
extern "C" __global__ void choir_gelu_backward_f32(float* dx, const float* g, const float* x, u64 n) {
  GRID_STRIDE(i, n) {
    const float v = x[i];
    const float t = tanhf(GELU_C * (v + GELU_K * v * v * v));
    const float d = 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * GELU_C * (1.f + 3.f * GELU_K * v * v);
    dx[i] = g[i] * d;
  }
}

// Per row r: loss[r] = -log softmax(logits[r])[label[r]]; grad[r] = (softmax - onehot) / rows.
extern "C" __global__ void choir_softmax_xent_f32(const float* logits, const int* labels, float* grad,
                                                  float* loss, unsigned rows, unsigned cols) {
  GRID_STRIDE(r, (u64)rows) {
    const float* z = logits + r * cols;
    float m = z[0];
    for (unsigned c = 1; c < cols; c++) m = fmaxf(m, z[c]);
    float s = 0.f;
    for (unsigned c = 0; c < cols; c++) s += expf(z[c] - m);
    const int y = labels[r];
    loss[r] = logf(s) - (z[y] - m);
    for (unsigned c = 0; c < cols; c++) {
      grad[r * cols + c] = (expf(z[c] - m) / s - (c == (unsigned)y ? 1.f : 0.f)) / (float)rows;
    }
  }
}

// out[r] = the first index of the largest value of row r
extern "C" __global__ void choir_argmax_rows_f32(const float* x, int* out, unsigned rows, unsigned cols) {
  GRID_STRIDE(r, (u64)rows) {
    const float* z = x + r * cols;
    int best = 0;
    for (unsigned c = 1; c < cols; c++) if (z[c] > z[best]) best = (int)c;
    out[r] = best;
  }
}

// AdamW, as ddp/nn's CPU optimizer: m, v moments; c1 = 1 - b1^t, c2 = 1 - b2^t; decay = 1 - lr * wd.
extern "C" __global__ void choir_adamw_f32(float* w, const float* g, float* m, float* v, u64 n, float lr,
                                           float b1, float b2, float eps, float decay, float c1, float c2) {
  GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * decay - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
  }
}
