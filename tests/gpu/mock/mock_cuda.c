// A mock of the CUDA driver and cuBLAS for choir's tests on machines without a GPU.
//
// It exports the symbols gpu/cuda_lib.ts and gpu/cublas.ts bind, with the same C signatures as
// cuda.h / cublas_api.h, so a wrong FFI type or argument order shows up as a wrong result here.
// "Device" memory is host memory in a POSIX shared-memory object (so CUDA IPC between processes can be
// imitated), every call runs synchronously, and kernels are run by name with C code that follows the
// semantics of gpu/kernels/*.cu. Like the real driver, a process cannot open its own IPC handle, the
// current context is per thread, and the calls are thread-safe (Worker ranks are threads of one process).
// It checks the host side only: nothing here says the PTX is right (ptxas and a GPU run do that).
//
// Build: gcc -O2 -shared -fPIC -o libmockcuda.so mock_cuda.c -lm -lrt

#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef struct { char reserved[64]; } CUipcHandle;

enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_CONTEXT = 201, INVALID_PTX = 218,
       INVALID_HANDLE = 400, NOT_FOUND = 500, NOT_READY = 600, NOT_SUPPORTED = 801 };
static void flush_all(void);
static int take_sticky(void);

static int inited = 0;
static int ctx_token = 0;
static __thread void* current_ctx = NULL;  // per OS thread, as in the real driver

// ------------------------------------------------------------------------------------ errors
static const char* err_name(int c) {
  switch (c) {
    case OK: return "CUDA_SUCCESS";
    case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case INVALID_PTX: return "CUDA_ERROR_INVALID_PTX";
    case INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case NOT_READY: return "CUDA_ERROR_NOT_READY";
    case NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return NULL;
  }
}
CUresult cuGetErrorName(CUresult c, const char** p) {
  *p = err_name(c);
  return *p ? OK : INVALID_VALUE;
}
CUresult cuGetErrorString(CUresult c, const char** p) {
  *p = err_name(c) ? "mock: see the error name" : NULL;
  return *p ? OK : INVALID_VALUE;
}

#define NEED_INIT if (!inited) return 3
#define NEED_CTX if (!current_ctx) return INVALID_CONTEXT

// ----------------------------------------------------------------------------------- devices
CUresult cuInit(unsigned flags) { inited = flags == 0; return flags == 0 ? OK : INVALID_VALUE; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { NEED_INIT; *n = 1; return OK; }
CUresult cuDeviceGet(int* d, int ordinal) { NEED_INIT; if (ordinal != 0) return 101; *d = 0; return OK; }
CUresult cuDeviceGetName(char* name, int len, int dev) { snprintf(name, len, "Mock GPU %d", dev); return OK; }
CUresult cuDeviceGetPCIBusId(char* id, int len, int dev) { snprintf(id, len, "0000:00:%02x.0", dev); return OK; }
CUresult cuDeviceTotalMem_v2(size_t* b, int dev) { (void)dev; *b = (size_t)1 << 34; return OK; }
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
  (void)dev;
  switch (attr) {
    case 16: *v = 4; return OK;   // multiprocessors
    case 41: *v = 1; return OK;   // unified addressing
    case 75: *v = 9; return OK;   // cc major
    case 76: *v = 0; return OK;   // cc minor
    case 125: *v = 1; return OK;  // ipc events
    default: return INVALID_VALUE;
  }
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { NEED_INIT; (void)dev; *ctx = &ctx_token; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return OK; }
CUresult cuCtxSetCurrent(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current_ctx; return OK; }
CUresult cuCtxSynchronize(void) { NEED_CTX; flush_all(); return take_sticky(); }

// ------------------------------------------------------------------------------------ memory
// Every allocation is a shared-memory object so that another process can map it through IPC.
typedef struct { CUdeviceptr base; size_t size; char name[48]; int imported; } Region;
static Region regions[4096];
static int nregions = 0;
static unsigned long counter = 0;
// Guards the region table: threads (Worker ranks) allocate and free at the same time.
static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
#define WITH_LOCK(call) \
  do { pthread_mutex_lock(&regions_lock); CUresult rc_ = (call); pthread_mutex_unlock(&regions_lock); return rc_; } while (0)

static Region* find(CUdeviceptr p) {
  for (int i = 0; i < nregions; i++)
    if (p >= regions[i].base && p < regions[i].base + (regions[i].size ? regions[i].size : 1)) return &regions[i];
  return NULL;
}
static void forget(Region* r) { *r = regions[--nregions]; }

// As the real driver does at exit, drop what the process allocated (its shared-memory names).
__attribute__((destructor)) static void release_all(void) {
  for (int i = 0; i < nregions; i++) if (!regions[i].imported) shm_unlink(regions[i].name);
}

static CUresult alloc_unlocked(CUdeviceptr* out, size_t bytes) {
  NEED_CTX;
  if (bytes == 0 || nregions == 4096) return INVALID_VALUE;
  Region r = {0};
  snprintf(r.name, sizeof r.name, "/mockcuda_%d_%lu", getpid(), counter++);
  int fd = shm_open(r.name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return OUT_OF_MEMORY;
  if (ftruncate(fd, (off_t)bytes) != 0) { close(fd); shm_unlink(r.name); return OUT_OF_MEMORY; }
  void* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) { shm_unlink(r.name); return OUT_OF_MEMORY; }
  r.base = (CUdeviceptr)p;
  r.size = bytes;
  regions[nregions++] = r;
  *out = r.base;
  return OK;
}
CUresult cuMemAlloc_v2(CUdeviceptr* out, size_t bytes) { WITH_LOCK(alloc_unlocked(out, bytes)); }
static CUresult free_unlocked(CUdeviceptr p) {
  NEED_CTX;
  Region* r = find(p);
  if (!r || r->base != p || r->imported) return INVALID_VALUE;
  munmap((void*)r->base, r->size);
  shm_unlink(r->name);
  forget(r);
  return OK;
}
// As the driver does, a free first waits for the work queued on the device (which may use the memory).
CUresult cuMemFree_v2(CUdeviceptr p) { flush_all(); WITH_LOCK(free_unlocked(p)); }
static CUresult range_unlocked(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
  NEED_CTX;
  Region* r = find(p);
  if (!r) return NOT_FOUND;
  if (base) *base = r->base;
  if (size) *size = r->size;
  return OK;
}
CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr p) { WITH_LOCK(range_unlocked(base, size, p)); }
CUresult cuMemGetInfo_v2(size_t* f, size_t* t) { *f = (size_t)1 << 33; *t = (size_t)1 << 34; return OK; }

static int dev_ok(CUdeviceptr p, size_t n) {
  pthread_mutex_lock(&regions_lock);
  Region* r = find(p);
  int ok = r && p + n <= r->base + r->size;
  pthread_mutex_unlock(&regions_lock);
  return ok;
}
#define CHECK_DEV(p, n) if (n && !dev_ok(p, n)) return INVALID_VALUE

// ------------------------------------------------------------------------------ deferred work
// Work queued on a stream runs only when something forces it: a stream or event synchronize or query,
// a cuStreamWaitEvent chain, cuCtxSynchronize, cuMemFree(Host), an IPC event record, or a call that
// the driver documents as complete on return (a copy to the host). The legacy NULL stream is a queue
// too: kernels, cuBLAS, memsets and device-to-device copies on it, synchronous ones included, may still
// be pending when the call returns (as on a GPU), and choir's CU_STREAM_NON_BLOCKING streams do not
// wait for it. So a result read before its work is waited for is stale here, as it may be on a GPU.
// MOCK_CUDA_EAGER=1 runs everything at once instead (as this mock did before). Errors of deferred work
// are sticky: the next synchronizing call returns them.
typedef struct Stream Stream;
typedef struct { double ms; unsigned flags; Stream* s; unsigned long pos; int pending; size_t gen; } Event;
typedef struct Op Op;
typedef int (*RunFn)(Op*);
struct Op {
  Op* next;
  RunFn run;
  CUdeviceptr d, src; void* h; size_t n; unsigned char v; void* staged;     // copies and memsets
  char name[96]; void* kp[16]; uint64_t blob[64];                            // kernels (params copied)
  int t, ta, tb, m, nn, k, lda, ldb, ldc; double alpha, beta; CUdeviceptr A, B, C;  // cuBLAS
  Stream* ws; unsigned long wpos;                                             // cuStreamWaitEvent
  Event* ev;                                                                  // cuEventRecord
};
struct Stream { unsigned flags; Op* head; Op* tail; unsigned long queued, done; Stream* all; };
// The legacy default stream (per context; one here), first in the list of every stream.
static Stream legacy = { 0, NULL, NULL, 0, 0, NULL };
static Stream* streams = &legacy;
static int sticky = OK;
static int eager = -1;
// One lock for queues (recursive: a wait flushes another stream); taken before regions_lock, never after.
static pthread_mutex_t work_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
#define WORK_LOCK pthread_mutex_lock(&work_lock)
#define WORK_UNLOCK pthread_mutex_unlock(&work_lock)

static void op_free(Op* o) { free(o->staged); free(o); }
static void flush(Stream* s, unsigned long upto) {
  WORK_LOCK;
  while (s->done < upto && s->head) {
    Op* o = s->head;
    s->head = o->next;
    if (!s->head) s->tail = NULL;
    int rc = o->run(o);
    if (rc != OK && sticky == OK) sticky = rc;
    s->done++;
    op_free(o);
  }
  WORK_UNLOCK;
}
static void flush_all(void) {
  WORK_LOCK;
  for (Stream* s = streams; s; s = s->all) flush(s, s->queued);
  WORK_UNLOCK;
}
static int take_sticky(void) { int rc = sticky; sticky = OK; return rc; }
static int run_wait(Op* o) { flush(o->ws, o->wpos); return OK; }
static Op* op(RunFn run) { Op* o = calloc(1, sizeof(Op)); o->run = run; return o; }
static void enqueue(Stream* s, Op* o) {
  o->next = NULL;
  if (s->tail) s->tail->next = o; else s->head = o;
  s->tail = o;
  s->queued++;
}
// Queues `o` on `s` (NULL: the legacy stream), or runs it now in eager mode (returning its error).
// Work on the legacy stream waits for the blocking streams' earlier work, and theirs for its.
static CUresult submit(Stream* s, Op* o) {
  if (eager < 0) eager = getenv("MOCK_CUDA_EAGER") != NULL;
  if (eager) {
    int rc = o->run(o);
    op_free(o);
    return rc;
  }
  if (!s) s = &legacy;
  WORK_LOCK;
  for (Stream* b = streams; b && s->flags == 0; b = b->all) {
    if (b == s || b->flags != 0 || (s != &legacy && b != &legacy) || b->queued == b->done) continue;
    Op* w = op(run_wait); w->ws = b; w->wpos = b->queued;
    enqueue(s, w);
  }
  enqueue(s, o);
  WORK_UNLOCK;
  return OK;
}
// Queues `o` on `s` and returns once it ran (a call the driver documents as complete on return),
// with the error of any deferred work.
static CUresult submit_wait(Stream* s, Op* o) {
  CUresult rc = submit(s, o);
  if (rc != OK) return rc;
  if (!s) s = &legacy;
  flush(s, s->queued);
  return take_sticky();
}

// Pinned host memory: async copies to or from it are queued; others behave as the driver's staging
// does for pageable memory (the copy is done, in stream order, when the call returns).
typedef struct { uintptr_t base; size_t size; } Pinned;
static Pinned pinned[1024];
static int npinned = 0;
static int is_pinned(const void* h, size_t n) {
  uintptr_t p = (uintptr_t)h;
  WORK_LOCK;
  int ok = 0;
  for (int i = 0; i < npinned && !ok; i++) ok = p >= pinned[i].base && p + n <= pinned[i].base + pinned[i].size;
  WORK_UNLOCK;
  return ok;
}
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned flags) {
  NEED_CTX;
  if (flags > 7) return INVALID_VALUE;
  if (posix_memalign(p, 4096, bytes) != 0) return OUT_OF_MEMORY;
  WORK_LOCK;
  if (npinned < 1024) pinned[npinned++] = (Pinned){ (uintptr_t)*p, bytes };
  WORK_UNLOCK;
  return OK;
}
CUresult cuMemFreeHost(void* p) {
  flush_all();  // as the driver: it waits for the work that may still use the memory
  WORK_LOCK;
  for (int i = 0; i < npinned; i++) if (pinned[i].base == (uintptr_t)p) { pinned[i] = pinned[--npinned]; break; }
  WORK_UNLOCK;
  free(p);
  return OK;
}

static int run_set(Op* o) { if (o->n && !dev_ok(o->d, o->n)) return INVALID_VALUE; memset((void*)o->d, o->v, o->n); return OK; }
static int run_htod(Op* o) { if (o->n && !dev_ok(o->d, o->n)) return INVALID_VALUE; memcpy((void*)o->d, o->h, o->n); return OK; }
static int run_dtoh(Op* o) { if (o->n && !dev_ok(o->src, o->n)) return INVALID_VALUE; memcpy(o->h, (void*)o->src, o->n); return OK; }
static int run_dtod(Op* o) {
  if (o->n && (!dev_ok(o->d, o->n) || !dev_ok(o->src, o->n))) return INVALID_VALUE;
  memmove((void*)o->d, (void*)o->src, o->n);
  return OK;
}
static Op* copy_op(RunFn run, CUdeviceptr d, CUdeviceptr src, void* h, size_t n) {
  Op* o = op(run); o->d = d; o->src = src; o->h = h; o->n = n; return o;
}
// A copy from pageable host memory goes through a staging buffer: the caller may reuse its memory
// as soon as the call returns, before the copy reaches the device.
static Op* htod_op(CUdeviceptr d, const void* h, size_t n) {
  if (is_pinned(h, n)) return copy_op(run_htod, d, 0, (void*)h, n);
  void* staged = malloc(n ? n : 1);
  memcpy(staged, h, n);
  Op* o = copy_op(run_htod, d, 0, staged, n);
  o->staged = staged;
  return o;
}

// Synchronous memsets and device-to-device copies are asynchronous to the host (legacy stream).
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) {
  NEED_CTX; CHECK_DEV(d, n); Op* o = copy_op(run_set, d, 0, NULL, n); o->v = v; return submit(NULL, o);
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void* s) {
  NEED_CTX; CHECK_DEV(d, n); Op* o = copy_op(run_set, d, 0, NULL, n); o->v = v; return submit(s, o);
}
// From pageable memory the call returns once the data is staged; from pinned memory, once it is copied.
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* h, size_t n) {
  NEED_CTX; CHECK_DEV(d, n);
  if (is_pinned(h, n)) return submit_wait(NULL, htod_op(d, h, n));
  flush(&legacy, legacy.queued);  // the driver synchronizes the stream before a pageable copy
  return submit(NULL, htod_op(d, h, n));
}
CUresult cuMemcpyDtoH_v2(void* h, CUdeviceptr d, size_t n) { NEED_CTX; CHECK_DEV(d, n); return submit_wait(NULL, copy_op(run_dtoh, 0, d, h, n)); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
  NEED_CTX; CHECK_DEV(d, n); CHECK_DEV(s, n); return submit(NULL, copy_op(run_dtod, d, s, NULL, n));
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* h, size_t n, void* s) {
  NEED_CTX; CHECK_DEV(d, n); return submit(s, htod_op(d, h, n));
}
// Into pageable memory an async copy is complete when the call returns.
CUresult cuMemcpyDtoHAsync_v2(void* h, CUdeviceptr d, size_t n, void* s) {
  NEED_CTX; CHECK_DEV(d, n);
  Op* o = copy_op(run_dtoh, 0, d, h, n);
  return is_pinned(h, n) ? submit(s, o) : submit_wait(s, o);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr src, size_t n, void* s) {
  NEED_CTX; CHECK_DEV(d, n); CHECK_DEV(src, n); return submit(s, copy_op(run_dtod, d, src, NULL, n));
}

// ---------------------------------------------------------------------------- streams, events
CUresult cuStreamCreate(void** out, unsigned flags) {
  NEED_CTX;
  if (flags > 1) return INVALID_VALUE;
  Stream* s = calloc(1, sizeof(Stream));
  s->flags = flags;
  WORK_LOCK; s->all = streams; streams = s; WORK_UNLOCK;
  *out = s;
  return OK;
}
// The driver lets queued work finish after a destroy; events may still name the stream, so it stays.
CUresult cuStreamDestroy_v2(void* s) { if (!s) return INVALID_HANDLE; flush(s, ((Stream*)s)->queued); return OK; }
CUresult cuStreamSynchronize(void* s) {
  Stream* st = s ? s : &legacy;
  flush(st, st->queued);
  return take_sticky();
}
// A query of unfinished work says NOT_READY and lets the work finish, as a GPU would meanwhile.
CUresult cuStreamQuery(void* s) {
  Stream* st = s ? s : &legacy;
  if (st->done == st->queued) return take_sticky();
  flush(st, st->queued);
  return NOT_READY;
}
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int run_mark(Op* o) { if (o->n == o->ev->gen) { o->ev->ms = now_ms(); o->ev->pending = 0; } return OK; }
CUresult cuStreamWaitEvent(void* s, void* e, unsigned f) {
  if (!e || f != 0) return INVALID_VALUE;
  Event* ev = e;
  if (!ev->s) return OK;  // never recorded, or another process's (opened from an IPC handle): complete
  Op* o = op(run_wait); o->ws = ev->s; o->wpos = ev->pos;
  return submit(s, o);
}
CUresult cuEventCreate(void** e, unsigned flags) {
  NEED_CTX;
  if ((flags & 4) && !(flags & 2)) return INVALID_VALUE;  // interprocess needs disable-timing
  Event* ev = calloc(1, sizeof(Event)); ev->flags = flags; *e = ev; return OK;
}
// As the driver, a destroy does not wait for a pending record; its queued mark still points at the
// event, so that one is left allocated.
CUresult cuEventDestroy_v2(void* e) {
  Event* ev = e;
  WORK_LOCK;
  int pending = ev->pending;
  WORK_UNLOCK;
  if (!pending) free(e);
  return OK;
}
CUresult cuEventRecord(void* e, void* s) {
  Event* ev = e;
  WORK_LOCK;
  Op* o = op(run_mark); o->ev = ev; o->n = ++ev->gen;  // a mark of an earlier record changes nothing
  Stream* st = s ? s : &legacy;
  ev->pending = 1;
  ev->s = st;
  CUresult rc = submit(st, o);
  ev->pos = st->queued;
  WORK_UNLOCK;
  // A peer process waits on an IPC event through its own copy, which cannot see this queue: finish the
  // work now, as a GPU may have by the time the peer looks.
  if (rc == OK && (ev->flags & 4)) flush(st, ev->pos);
  return rc;
}
CUresult cuEventSynchronize(void* e) {
  if (!e) return INVALID_HANDLE;
  Event* ev = e;
  if (ev->s) flush(ev->s, ev->pos);
  return take_sticky();
}
CUresult cuEventQuery(void* e) {
  if (!e) return INVALID_HANDLE;
  Event* ev = e;
  if (!ev->pending) return OK;
  if (ev->s) flush(ev->s, ev->pos);
  return NOT_READY;
}
CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) {
  if ((((Event*)a)->flags | ((Event*)b)->flags) & 2) return INVALID_HANDLE;
  if (((Event*)a)->pending || ((Event*)b)->pending) return NOT_READY;
  *ms = (float)(((Event*)b)->ms - ((Event*)a)->ms); return OK;
}
CUresult cuIpcGetEventHandle(CUipcHandle* h, void* e) {
  if (!(((Event*)e)->flags & 4)) return INVALID_VALUE;
  memset(h, 0, sizeof *h); memcpy(h->reserved, "mockevt", 7); return OK;
}
CUresult cuIpcOpenEventHandle(void** e, CUipcHandle h) {
  if (memcmp(h.reserved, "mockevt", 7) != 0) return INVALID_VALUE;
  Event* ev = calloc(1, sizeof(Event)); ev->flags = 6; *e = ev; return OK;
}

// ----------------------------------------------------------------------------------------- IPC
// Handle layout: "mockipc\0" | pid (i32) | size (u64) | shm name.
static CUresult ipc_get_unlocked(CUipcHandle* h, CUdeviceptr base) {
  NEED_CTX;
  Region* r = find(base);
  if (!r || r->base != base || r->imported) return INVALID_VALUE;
  memset(h, 0, sizeof *h);
  memcpy(h->reserved, "mockipc", 8);
  int pid = getpid(); memcpy(h->reserved + 8, &pid, 4);
  memcpy(h->reserved + 16, &r->size, 8);
  strncpy(h->reserved + 24, r->name, 39);
  return OK;
}
CUresult cuIpcGetMemHandle(CUipcHandle* h, CUdeviceptr base) { WITH_LOCK(ipc_get_unlocked(h, base)); }
static CUresult ipc_open_unlocked(CUdeviceptr* out, CUipcHandle h, unsigned flags) {
  NEED_CTX;
  if (memcmp(h.reserved, "mockipc", 8) != 0 || flags != 1) return INVALID_VALUE;
  int pid; memcpy(&pid, h.reserved + 8, 4);
  if (pid == getpid()) return INVALID_CONTEXT;  // the real driver refuses a process's own handle too
  size_t size; memcpy(&size, h.reserved + 16, 8);
  Region r = {0};
  memcpy(r.name, h.reserved + 24, 39);
  int fd = shm_open(r.name, O_RDWR, 0);
  if (fd < 0) return INVALID_HANDLE;
  void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return OUT_OF_MEMORY;
  r.base = (CUdeviceptr)p; r.size = size; r.imported = 1;
  regions[nregions++] = r;
  *out = r.base;
  return OK;
}
CUresult cuIpcOpenMemHandle_v2(CUdeviceptr* out, CUipcHandle h, unsigned flags) { WITH_LOCK(ipc_open_unlocked(out, h, flags)); }
static CUresult ipc_close_unlocked(CUdeviceptr p) {
  Region* r = find(p);
  if (!r || !r->imported || r->base != p) return INVALID_VALUE;
  munmap((void*)r->base, r->size);
  forget(r);
  return OK;
}
CUresult cuIpcCloseMemHandle(CUdeviceptr p) { flush_all(); WITH_LOCK(ipc_close_unlocked(p)); }

// ------------------------------------------------------------------------- modules and kernels
typedef struct { char* ptx; } Module;
typedef struct { char name[96]; } Function;

// optionValues is void*[]: buffer pointers and sizes (as integers) by option index.
CUresult cuModuleLoadDataEx(void** m, const void* image, unsigned n, int* opts, void** vals) {
  NEED_CTX;
  const char* text = image;
  if (!strstr(text, ".version") || !strstr(text, ".entry")) {
    for (unsigned i = 0; i < n; i++) {
      if (opts[i] == 5) {  // CU_JIT_ERROR_LOG_BUFFER
        size_t cap = 0;
        for (unsigned j = 0; j < n; j++) if (opts[j] == 6) cap = (size_t)vals[j];
        if (cap) snprintf((char*)vals[i], cap, "mock ptx: no .version or .entry directive");
      }
    }
    return INVALID_PTX;
  }
  Module* mod = malloc(sizeof(Module)); mod->ptx = strdup(text); *m = mod; return OK;
}
CUresult cuModuleUnload(void* m) { free(((Module*)m)->ptx); free(m); return OK; }
CUresult cuModuleGetFunction(void** f, void* m, const char* name) {
  char pat[128]; snprintf(pat, sizeof pat, ".entry %s(", name);
  if (!strstr(((Module*)m)->ptx, pat)) return NOT_FOUND;
  Function* fn = malloc(sizeof(Function)); snprintf(fn->name, sizeof fn->name, "%s", name); *f = fn; return OK;
}

// f16 / bf16 through f32, rounding to nearest even (as __float2half_rn / __float2bfloat16_rn).
static float h2f(uint16_t h) { _Float16 v; memcpy(&v, &h, 2); return (float)v; }
static uint16_t f2h(float f) { _Float16 v = (_Float16)f; uint16_t h; memcpy(&h, &v, 2); return h; }
static float b2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t f2b(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
static double nanmin(double a, double b) { return (a != a || b != b) ? NAN : (a < b ? a : b); }
static double nanmax(double a, double b) { return (a != a || b != b) ? NAN : (a > b ? a : b); }

typedef struct { CUdeviceptr p[16]; } Ptrs;

// Float ops in the element's precision: f32/f16/bf16 through float, rounding after each step.
static double fop(const char* op, double a, double x, int isf64) {
  double r;
  if (!strcmp(op, "sum") || !strcmp(op, "avg") || !strcmp(op, "premul_sum")) r = a + x;
  else if (!strcmp(op, "product")) r = a * x;
  else if (!strcmp(op, "min")) r = nanmin(a, x);
  else r = nanmax(a, x);
  return isf64 ? r : (double)(float)r;
}

static int run_reduce(const char* op, const char* dt, void** kp, int check_only) {
  Ptrs s = *(Ptrs*)kp[0], d = *(Ptrs*)kp[2];
  unsigned ns = *(unsigned*)kp[1], nd = *(unsigned*)kp[3];
  unsigned long long n = *(unsigned long long*)kp[4];
  double f = *(double*)kp[5];
  if (ns < 1 || ns > 16 || nd < 1 || nd > 16) return INVALID_VALUE;
  int es = !strcmp(dt, "f64") ? 8 : (!strcmp(dt, "f16") || !strcmp(dt, "bf16")) ? 2 : 4;
  for (unsigned k = 0; k < ns; k++) if (n && !dev_ok(s.p[k], n * es)) return INVALID_VALUE;
  for (unsigned k = 0; k < nd; k++) if (n && !dev_ok(d.p[k], n * es)) return INVALID_VALUE;
  if (check_only) return OK;
  int premul = !strcmp(op, "premul_sum"), avg = !strcmp(op, "avg");
  for (unsigned long long i = 0; i < n; i++) {
    if (!strcmp(dt, "i32")) {
      int32_t a = ((int32_t*)s.p[0])[i];
      for (unsigned k = 1; k < ns; k++) {
        int32_t x = ((int32_t*)s.p[k])[i];
        if (!strcmp(op, "sum") || avg) a = (int32_t)((uint32_t)a + (uint32_t)x);
        else if (!strcmp(op, "product")) a = (int32_t)((uint32_t)a * (uint32_t)x);
        else if (!strcmp(op, "min")) a = a < x ? a : x;
        else if (!strcmp(op, "max")) a = a > x ? a : x;
        else if (!strcmp(op, "band")) a &= x;
        else if (!strcmp(op, "bor")) a |= x;
        else if (!strcmp(op, "bxor")) a ^= x;
        else return NOT_FOUND;
      }
      if (avg) a /= (int32_t)f;
      for (unsigned k = 0; k < nd; k++) ((int32_t*)d.p[k])[i] = a;
      continue;
    }
    int f64 = !strcmp(dt, "f64"), f16 = !strcmp(dt, "f16"), bf = !strcmp(dt, "bf16");
#define LOAD(p) (f64 ? ((double*)(p))[i] : f16 ? h2f(((uint16_t*)(p))[i]) : bf ? b2f(((uint16_t*)(p))[i]) : ((float*)(p))[i])
#define ROUND(v) (f64 ? (v) : f16 ? h2f(f2h((float)(v))) : bf ? b2f(f2b((float)(v))) : (double)(float)(v))
    double pf = f64 ? f : (double)(float)f;
    double a = LOAD(s.p[0]);
    if (premul) a = ROUND(fop("product", a, pf, f64));
    for (unsigned k = 1; k < ns; k++) {
      double x = LOAD(s.p[k]);
      if (premul) x = ROUND(fop("product", x, pf, f64));
      a = ROUND(fop(op, a, x, f64));
    }
    if (avg) a = ROUND(f64 ? a / f : (double)((float)a / (float)f));
    for (unsigned k = 0; k < nd; k++) {
      if (f64) ((double*)d.p[k])[i] = a;
      else if (f16) ((uint16_t*)d.p[k])[i] = f2h((float)a);
      else if (bf) ((uint16_t*)d.p[k])[i] = f2b((float)a);
      else ((float*)d.p[k])[i] = (float)a;
    }
  }
  return OK;
}

#define ARG(T, i) (*(T*)kp[i])
#define PTR(T, i) ((T*)ARG(CUdeviceptr, i))
static const float GC = 0.7978845608028654f, GK = 0.044715f;

static int run_nn(const char* name, void** kp) {
  if (!strcmp(name, "choir_bias_add_f32")) {
    float* y = PTR(float, 0); const float* b = PTR(float, 1); unsigned r = ARG(unsigned, 2), c = ARG(unsigned, 3);
    for (unsigned long long i = 0; i < (unsigned long long)r * c; i++) y[i] += b[i % c];
  } else if (!strcmp(name, "choir_bias_grad_f32")) {
    float* db = PTR(float, 0); const float* g = PTR(float, 1); unsigned r = ARG(unsigned, 2), c = ARG(unsigned, 3);
    for (unsigned j = 0; j < c; j++) { float s = 0; for (unsigned i = 0; i < r; i++) s += g[(size_t)i * c + j]; db[j] += s; }
  } else if (!strcmp(name, "choir_gelu_f32")) {
    float* y = PTR(float, 0); const float* x = PTR(float, 1); unsigned long long n = ARG(unsigned long long, 2);
    for (unsigned long long i = 0; i < n; i++) { float v = x[i]; y[i] = 0.5f * v * (1.f + tanhf(GC * (v + GK * v * v * v))); }
  } else if (!strcmp(name, "choir_gelu_backward_f32")) {
    float* dx = PTR(float, 0); const float* g = PTR(float, 1); const float* x = PTR(float, 2);
    unsigned long long n = ARG(unsigned long long, 3);
    for (unsigned long long i = 0; i < n; i++) {
      float v = x[i], t = tanhf(GC * (v + GK * v * v * v));
      dx[i] = g[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * GC * (1.f + 3.f * GK * v * v));
    }
  } else if (!strcmp(name, "choir_softmax_xent_f32")) {
    const float* z0 = PTR(float, 0); const int* lab = PTR(int, 1); float* grad = PTR(float, 2); float* loss = PTR(float, 3);
    unsigned rows = ARG(unsigned, 4), cols = ARG(unsigned, 5);
    for (unsigned r = 0; r < rows; r++) {
      const float* z = z0 + (size_t)r * cols; float m = z[0], s = 0;
      for (unsigned c = 1; c < cols; c++) m = fmaxf(m, z[c]);
      for (unsigned c = 0; c < cols; c++) s += expf(z[c] - m);
      loss[r] = logf(s) - (z[lab[r]] - m);
      for (unsigned c = 0; c < cols; c++) grad[(size_t)r * cols + c] = (expf(z[c] - m) / s - (c == (unsigned)lab[r])) / rows;
    }
  } else if (!strcmp(name, "choir_argmax_rows_f32")) {
    const float* x = PTR(float, 0); int* out = PTR(int, 1); unsigned rows = ARG(unsigned, 2), cols = ARG(unsigned, 3);
    for (unsigned r = 0; r < rows; r++) { int b = 0; for (unsigned c = 1; c < cols; c++) if (x[(size_t)r * cols + c] > x[(size_t)r * cols + b]) b = c; out[r] = b; }
  } else if (!strcmp(name, "choir_adamw_f32")) {
    float* w = PTR(float, 0); const float* g = PTR(float, 1); float* m = PTR(float, 2); float* v = PTR(float, 3);
    unsigned long long n = ARG(unsigned long long, 4);
    float lr = ARG(float, 5), b1 = ARG(float, 6), b2 = ARG(float, 7), eps = ARG(float, 8), decay = ARG(float, 9),
          c1 = ARG(float, 10), c2 = ARG(float, 11);
    for (unsigned long long i = 0; i < n; i++) {
      m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      w[i] = w[i] * decay - lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
  } else return NOT_FOUND;
  return OK;
}

// Parameters of each kernel: how many, and which are the 128-byte pointer lists. Each value sits in
// its own 8-byte slot of choir's parameter block, so copying 8 bytes of the others is safe.
static int kernel_params(const char* name, int* lists) {
  static const struct { const char* name; int n; } nn[] = {
    { "choir_bias_add_f32", 4 }, { "choir_bias_grad_f32", 4 }, { "choir_gelu_f32", 3 },
    { "choir_gelu_backward_f32", 4 }, { "choir_softmax_xent_f32", 6 }, { "choir_argmax_rows_f32", 4 },
    { "choir_adamw_f32", 12 },
  };
  *lists = 0;
  if (!strncmp(name, "choir_reduce_", 13)) { *lists = 1 << 0 | 1 << 2; return 6; }
  for (size_t i = 0; i < sizeof nn / sizeof nn[0]; i++) if (!strcmp(name, nn[i].name)) return nn[i].n;
  return -1;
}
// Splits a reduce kernel's name, "choir_reduce_sum_f32" -> op "sum", dtype "f32"; 0 for other kernels.
static int reduce_name(const char* name, char op[32], char dt[8]) {
  if (sscanf(name, "choir_reduce_%31[a-z_0-9]", op) != 1) return 0;
  char* last = strrchr(op, '_');
  if (!last) return 0;
  snprintf(dt, 8, "%s", last + 1);
  *last = 0;
  return 1;
}
static int run_kernel(Op* o) {
  char op[32], dt[8];
  return reduce_name(o->name, op, dt) ? run_reduce(op, dt, o->kp, 0) : run_nn(o->name, o->kp);
}

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void* stream, void** kp, void** extra) {
  NEED_CTX;
  (void)smem;
  if (!f || !kp || extra || !gx || !gy || !gz || !bx || !by || !bz || bx * by * bz > 1024) return INVALID_VALUE;
  const char* name = ((Function*)f)->name;
  int lists, n = kernel_params(name, &lists);
  if (n < 0) return NOT_FOUND;
  // The driver copies the parameter values at launch: so does this, since the work may run later.
  Op* o = op(run_kernel);
  snprintf(o->name, sizeof o->name, "%s", name);
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    size_t bytes = (lists >> i & 1) ? 128 : 8;
    memcpy((char*)o->blob + at, kp[i], bytes);
    o->kp[i] = (char*)o->blob + at;
    at += bytes;
  }
  char opn[32], dt[8];
  if (reduce_name(name, opn, dt)) {
    int rc = run_reduce(opn, dt, o->kp, 1);  // argument checks at launch, as the driver's
    if (rc != OK) { free(o); return rc; }
  }
  return submit(stream, o);
}

// --------------------------------------------------------------------------------------- cuBLAS
// A handle holds its stream; the calls queue on it like kernels (alpha and beta read at the call, as
// with CUBLAS_POINTER_MODE_HOST).
typedef struct { void* stream; } Blas;
int cublasCreate_v2(void** h) { if (!current_ctx) return 1; *h = calloc(1, sizeof(Blas)); return 0; }
int cublasDestroy_v2(void* h) { if (!h) return 1; free(h); return 0; }
int cublasGetVersion_v2(void* h, int* v) { (void)h; *v = 130000; return 0; }
int cublasSetStream_v2(void* h, void* s) { ((Blas*)h)->stream = s; return 0; }
int cublasSetMathMode(void* h, int m) { (void)h; (void)m; return 0; }
static const char* status_name(int s) {
  switch (s) { case 0: return "CUBLAS_STATUS_SUCCESS"; case 7: return "CUBLAS_STATUS_INVALID_VALUE"; default: return "CUBLAS_STATUS_INTERNAL_ERROR"; }
}
const char* cublasGetStatusName(int s) { return status_name(s); }
const char* cublasGetStatusString(int s) { return status_name(s); }

// Column-major C = alpha op(A) op(B) + beta C, element loads through `ld`/`st` by dtype.
static double ld(int t, CUdeviceptr p, size_t i) {
  return t == 0 ? ((float*)p)[i] : t == 2 ? h2f(((uint16_t*)p)[i]) : b2f(((uint16_t*)p)[i]);
}
static void st(int t, CUdeviceptr p, size_t i, float v) {
  if (t == 0) ((float*)p)[i] = v; else if (t == 2) ((uint16_t*)p)[i] = f2h(v); else ((uint16_t*)p)[i] = f2b(v);
}
static int run_gemm(Op* o) {
  int t = o->t, ta = o->ta, tb = o->tb, m = o->m, n = o->nn, k = o->k, lda = o->lda, ldb = o->ldb, ldc = o->ldc;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double s = 0;
      for (int l = 0; l < k; l++) {
        double a = ta ? ld(t, o->A, (size_t)i * lda + l) : ld(t, o->A, (size_t)l * lda + i);
        double b = tb ? ld(t, o->B, (size_t)l * ldb + j) : ld(t, o->B, (size_t)j * ldb + l);
        s += a * b;
      }
      double c = o->beta == 0 ? 0 : ld(t, o->C, (size_t)j * ldc + i);
      st(t, o->C, (size_t)j * ldc + i, (float)((float)o->alpha * s + (float)o->beta * c));
    }
  return OK;
}
static int gemm(void* h, int t, int ta, int tb, int m, int n, int k, float alpha, CUdeviceptr A, int lda,
                CUdeviceptr B, int ldb, float beta, CUdeviceptr C, int ldc) {
  if (ta > 1 || tb > 1 || m < 0 || n < 0 || k < 0 || lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return 7;
  Op* o = op(run_gemm);
  o->t = t; o->ta = ta; o->tb = tb; o->m = m; o->nn = n; o->k = k; o->lda = lda; o->ldb = ldb; o->ldc = ldc;
  o->alpha = alpha; o->beta = beta; o->A = A; o->B = B; o->C = C;
  return submit(((Blas*)h)->stream, o) == OK ? 0 : 14;
}
int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, CUdeviceptr A, int lda,
                   CUdeviceptr B, int ldb, const float* beta, CUdeviceptr C, int ldc) {
  return gemm(h, 0, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, CUdeviceptr A, int at, int lda,
                 CUdeviceptr B, int bt, int ldb, const void* beta, CUdeviceptr C, int ct, int ldc, int compute, int algo) {
  if (at != bt || bt != ct || (at != 0 && at != 2 && at != 14) || (compute != 68 && compute != 77) || algo != -1) return 7;
  return gemm(h, at, ta, tb, m, n, k, *(const float*)alpha, A, lda, B, ldb, *(const float*)beta, C, ldc);
}
// y += a x (f32 or f64 by o->t), or x *= a (o->t == 2, f32).
static int run_vec(Op* o) {
  for (size_t i = 0; i < o->n; i++) {
    if (o->t == 0) ((float*)o->C)[i] += (float)o->alpha * ((float*)o->A)[i];
    else if (o->t == 1) ((double*)o->C)[i] += o->alpha * ((double*)o->A)[i];
    else ((float*)o->C)[i] *= (float)o->alpha;
  }
  return OK;
}
static int vec(void* h, int t, int n, double a, CUdeviceptr x, CUdeviceptr y) {
  Op* o = op(run_vec);
  o->t = t; o->n = (size_t)n; o->alpha = a; o->A = x; o->C = y;
  return submit(((Blas*)h)->stream, o) == OK ? 0 : 14;
}
int cublasSaxpy_v2(void* h, int n, const float* a, CUdeviceptr x, int incx, CUdeviceptr y, int incy) {
  if (incx != 1 || incy != 1 || n < 0) return 7;
  return vec(h, 0, n, *a, x, y);
}
int cublasDaxpy_v2(void* h, int n, const double* a, CUdeviceptr x, int incx, CUdeviceptr y, int incy) {
  if (incx != 1 || incy != 1 || n < 0) return 7;
  return vec(h, 1, n, *a, x, y);
}
int cublasSscal_v2(void* h, int n, const float* a, CUdeviceptr x, int incx) {
  if (incx != 1 || n < 0) return 7;
  return vec(h, 2, n, *a, x, x);
}
