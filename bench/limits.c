/*
 * bench/limits.c: the physical limits of this machine, for `deno task bench --limits` (bench/limits.ts
 * compiles it with `cc -O2 -pthread` and runs it). Prints one line of JSON:
 *
 *   memcpyGBs1       memcpy of 64 MiB, one thread (GB/s = 1e9 bytes copied per second, median)
 *   memcpyGBs2       the same with two threads copying their own buffers at once (per thread, mean of
 *                    the two threads' medians); memcpyGBs2Total is the sum of the two medians
 *   shmRttUs         8-byte ping-pong between two processes over a shared page, each side spinning on
 *                    an atomic on its own cache line (median round trip, us); shmRttUsMin the fastest
 *   tcpRttUs         8-byte round trip over TCP loopback, TCP_NODELAY, blocking sockets (median, us)
 *   tcpRttUsPoll     the same with both sides polling non-blocking reads (spin, then yield) instead of
 *                    sleeping in read(): on an idle virtual machine waking a halted CPU costs tens of us
 *   tcpGBs           one TCP loopback stream, 4 MiB writes (GB/s)
 *   tcpGBsBoth       both directions of one connection at once (GB/s per direction, mean of the two)
 *   cpus             online processors
 *
 * Only libc and pthreads. Every wait is bounded: a deadline in each spin loop, SO_RCVTIMEO/SO_SNDTIMEO on
 * each socket, and alarm() in every process as a backstop; a child dies with its parent. Any error
 * prints "limits: ..." to stderr and exits non-zero. Takes a few seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MIB (1024UL * 1024UL)
#define COPY_BYTES (64 * MIB)
#define COPY_WARM 3
#define COPY_ITERS 11
#define SHM_WARM 2000
#define SHM_ITERS 20000
#define TCP_RTT_WARM 500
#define TCP_RTT_ITERS 5000
#define CHUNK (4 * MIB)
#define STREAM_WARM (256 * MIB)
#define STREAM_TIMED (1024 * MIB)
#define STREAM_TAIL (256 * MIB)
#define SPINS_BEFORE_YIELD 64
#define PHASE_SECONDS 20  /* deadline of any one wait */
#define ALARM_SECONDS 60  /* backstop for a whole process */

static void die(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "limits: %s\n", msg);
  fflush(stderr);
  _exit(1);
}

static void die_errno(const char *what) { die("%s: %s", what, strerror(errno)); }

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] = "limits: timed out (alarm)\n";
  ssize_t w = write(2, m, sizeof m - 1);
  (void)w;
  _exit(3);
}

static void arm_alarm(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  alarm(ALARM_SECONDS);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *xs, size_t n) {
  qsort(xs, n, sizeof *xs, cmp_double);
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

static double min_of(const double *xs, size_t n) {
  double m = xs[0];
  for (size_t i = 1; i < n; i++)
    if (xs[i] < m) m = xs[i];
  return m;
}

/* Forks a child that dies with its parent and has its own alarm; returns its pid (0 in the child). */
static pid_t fork_child(void) {
  pid_t parent = getpid();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) die_errno("fork");
  if (pid == 0) {
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) _exit(1);
    arm_alarm();
  }
  return pid;
}

static void reap(pid_t pid, const char *what) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) die_errno("waitpid");
  if (WIFSIGNALED(st)) die("%s: child killed by signal %d", what, WTERMSIG(st));
  if (WEXITSTATUS(st) != 0) die("%s: child exited with %d", what, WEXITSTATUS(st));
}

/* ---- memcpy ---------------------------------------------------------------------------------- */

static char *alloc_touched(size_t n, int byte) {
  char *p = malloc(n);
  if (!p) die("out of memory (%zu bytes)", n);
  memset(p, byte, n);
  return p;
}

typedef struct {
  pthread_barrier_t *barrier; /* NULL with one thread */
  double gbs;                 /* out: median GB/s */
} copy_job;

static void *copy_run(void *arg) {
  copy_job *job = arg;
  char *src = alloc_touched(COPY_BYTES, 1), *dst = alloc_touched(COPY_BYTES, 2);
  double gbs[COPY_ITERS];
  for (int i = 0; i < COPY_WARM + COPY_ITERS; i++) {
    if (job->barrier) pthread_barrier_wait(job->barrier);
    double t0 = now_s();
    memcpy(dst, src, COPY_BYTES);
    double dt = now_s() - t0;
    __asm__ __volatile__("" : : "r"(dst) : "memory"); /* keep the copy */
    if (i >= COPY_WARM) gbs[i - COPY_WARM] = COPY_BYTES / dt / 1e9;
  }
  if (dst[COPY_BYTES - 1] != 1) die("memcpy check failed");
  free(src);
  free(dst);
  job->gbs = median(gbs, COPY_ITERS);
  return NULL;
}

static double memcpy_one(void) {
  copy_job job = {NULL, 0};
  copy_run(&job);
  return job.gbs;
}

static void memcpy_two(double *per_thread, double *total) {
  pthread_barrier_t b;
  if (pthread_barrier_init(&b, NULL, 2)) die("pthread_barrier_init failed");
  copy_job jobs[2] = {{&b, 0}, {&b, 0}};
  pthread_t t;
  int rc = pthread_create(&t, NULL, copy_run, &jobs[1]);
  if (rc) die("pthread_create: %s", strerror(rc));
  copy_run(&jobs[0]);
  pthread_join(t, NULL);
  pthread_barrier_destroy(&b);
  *per_thread = (jobs[0].gbs + jobs[1].gbs) / 2;
  *total = jobs[0].gbs + jobs[1].gbs;
}

/* ---- shared-memory ping-pong ----------------------------------------------------------------- */

/* Each side writes only its own 128-byte line (two 64-byte lines: no adjacent-line prefetch sharing). */
typedef struct {
  _Alignas(128) _Atomic uint64_t seq;
  uint64_t payload;
} shm_line;

typedef struct {
  shm_line ping, pong;
} shm_page;

/* Waits until *seq == want, spinning, then yielding; dies past the deadline or if the peer is gone. */
static void shm_wait(_Atomic uint64_t *seq, uint64_t want, pid_t peer) {
  unsigned spins = 0;
  double deadline = 0;
  while (atomic_load_explicit(seq, memory_order_acquire) != want) {
    if (++spins < SPINS_BEFORE_YIELD) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    sched_yield();
    if ((spins & 1023) == 0) {
      double t = now_s();
      if (deadline == 0) deadline = t + PHASE_SECONDS;
      if (t > deadline) die("shm ping-pong: no answer within %d s", PHASE_SECONDS);
      if (peer > 0 && waitpid(peer, NULL, WNOHANG) == peer) die("shm ping-pong: peer exited");
    }
  }
}

static void shm_pingpong(double *med_us, double *min_us) {
  shm_page *pg = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (pg == MAP_FAILED) die_errno("mmap shared page");
  memset(pg, 0, sizeof *pg);
  const uint64_t total = SHM_WARM + SHM_ITERS;
  pid_t pid = fork_child();
  if (pid == 0) {
    for (uint64_t i = 1; i <= total; i++) {
      shm_wait(&pg->ping.seq, i, 0); /* the parent's death kills this child */
      pg->pong.payload = pg->ping.payload + 1;
      atomic_store_explicit(&pg->pong.seq, i, memory_order_release);
    }
    _exit(0);
  }
  double *us = malloc(SHM_ITERS * sizeof *us);
  if (!us) die("out of memory");
  for (uint64_t i = 1; i <= total; i++) {
    double t0 = now_s();
    pg->ping.payload = i;
    atomic_store_explicit(&pg->ping.seq, i, memory_order_release);
    shm_wait(&pg->pong.seq, i, pid);
    double dt = now_s() - t0;
    if (pg->pong.payload != i + 1) die("shm ping-pong: wrong payload");
    if (i > SHM_WARM) us[i - SHM_WARM - 1] = dt * 1e6;
  }
  reap(pid, "shm ping-pong");
  *min_us = min_of(us, SHM_ITERS);
  *med_us = median(us, SHM_ITERS);
  free(us);
  munmap(pg, 4096);
}

/* ---- TCP loopback ---------------------------------------------------------------------------- */

static void set_timeouts(int fd) {
  struct timeval tv = {PHASE_SECONDS, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) ||
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv))
    die_errno("setsockopt timeouts");
}

static void set_nodelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)) die_errno("setsockopt TCP_NODELAY");
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port, written to *addr. */
static int tcp_listen(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die_errno("socket");
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)addr, sizeof *addr)) die_errno("bind 127.0.0.1");
  socklen_t len = sizeof *addr;
  if (getsockname(fd, (struct sockaddr *)addr, &len)) die_errno("getsockname");
  if (listen(fd, 1)) die_errno("listen");
  set_timeouts(fd); /* bounds accept() */
  return fd;
}

static int tcp_accept(int lfd) {
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) die_errno(errno == EAGAIN || errno == EWOULDBLOCK ? "accept timed out" : "accept");
  close(lfd);
  set_timeouts(fd);
  set_nodelay(fd);
  return fd;
}

static int tcp_connect(const struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die_errno("socket");
  set_timeouts(fd);
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr)) die_errno("connect 127.0.0.1");
  set_nodelay(fd);
  return fd;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die_errno(errno == EAGAIN || errno == EWOULDBLOCK ? "write timed out" : "write");
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Reads up to n bytes (at least one); dies on end of stream, error or timeout. */
static size_t read_some(int fd, char *p, size_t n) {
  for (;;) {
    ssize_t r = read(fd, p, n);
    if (r > 0) return (size_t)r;
    if (r == 0) die("read: peer closed the connection");
    if (errno == EINTR) continue;
    die_errno(errno == EAGAIN || errno == EWOULDBLOCK ? "read timed out" : "read");
  }
}

static void read_all(int fd, char *p, size_t n) {
  while (n > 0) {
    size_t r = read_some(fd, p, n);
    p += r;
    n -= r;
  }
}

/* Reads exactly n bytes; with `poll`, spins on non-blocking reads (yielding after a few) instead of
 * sleeping in the kernel, bounded by a deadline. */
static void read_exact(int fd, char *p, size_t n, int poll) {
  if (!poll) {
    read_all(fd, p, n);
    return;
  }
  unsigned spins = 0;
  double deadline = 0;
  while (n > 0) {
    ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
    if (r > 0) {
      p += r;
      n -= (size_t)r;
      continue;
    }
    if (r == 0) die("read: peer closed the connection");
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) die_errno("recv");
    if (++spins >= SPINS_BEFORE_YIELD) sched_yield();
    if ((spins & 1023) == 0) {
      double t = now_s();
      if (deadline == 0) deadline = t + PHASE_SECONDS;
      if (t > deadline) die("tcp round trip: no answer within %d s", PHASE_SECONDS);
    }
  }
}

/* Median 8-byte round trip over TCP loopback; `poll`: both sides poll instead of blocking in read. */
static double tcp_rtt(int poll) {
  struct sockaddr_in addr;
  int lfd = tcp_listen(&addr);
  const int total = TCP_RTT_WARM + TCP_RTT_ITERS;
  pid_t pid = fork_child();
  if (pid == 0) {
    close(lfd);
    int fd = tcp_connect(&addr);
    uint64_t v;
    for (int i = 0; i < total; i++) {
      read_exact(fd, (char *)&v, sizeof v, poll);
      v++;
      write_all(fd, (const char *)&v, sizeof v);
    }
    close(fd);
    _exit(0);
  }
  int fd = tcp_accept(lfd);
  double *us = malloc(TCP_RTT_ITERS * sizeof *us);
  if (!us) die("out of memory");
  for (int i = 0; i < total; i++) {
    uint64_t v = (uint64_t)i, back;
    double t0 = now_s();
    write_all(fd, (const char *)&v, sizeof v);
    read_exact(fd, (char *)&back, sizeof back, poll);
    double dt = now_s() - t0;
    if (back != v + 1) die("tcp round trip: wrong payload");
    if (i >= TCP_RTT_WARM) us[i - TCP_RTT_WARM] = dt * 1e6;
  }
  close(fd);
  reap(pid, "tcp round trip");
  double m = median(us, TCP_RTT_ITERS);
  free(us);
  return m;
}

#define STREAM_TOTAL (STREAM_WARM + STREAM_TIMED + STREAM_TAIL)

/* Sends STREAM_TOTAL bytes in 4 MiB writes. */
static void stream_send(int fd) {
  char *buf = alloc_touched(CHUNK, 7);
  for (size_t sent = 0; sent < STREAM_TOTAL; sent += CHUNK) write_all(fd, buf, CHUNK);
  free(buf);
}

/* Receives STREAM_TOTAL bytes into a 4 MiB buffer; GB/s over the bytes past the warm-up, timed from the
 * first read that crosses STREAM_WARM to the one that crosses STREAM_WARM + STREAM_TIMED. */
static double stream_recv(int fd) {
  char *buf = alloc_touched(CHUNK, 0);
  size_t got = 0, t_from = 0, t_to = 0;
  double t0 = 0, t1 = 0;
  while (got < STREAM_TOTAL) {
    size_t want = STREAM_TOTAL - got < CHUNK ? STREAM_TOTAL - got : CHUNK;
    got += read_some(fd, buf, want);
    if (!t_from && got >= STREAM_WARM) t_from = got, t0 = now_s();
    if (!t_to && got >= STREAM_WARM + STREAM_TIMED) t_to = got, t1 = now_s();
  }
  if (buf[0] != 7) die("tcp stream: wrong payload");
  free(buf);
  if (t1 <= t0) die("tcp stream: no time passed");
  return (double)(t_to - t_from) / (t1 - t0) / 1e9;
}

static double tcp_stream(void) {
  struct sockaddr_in addr;
  int lfd = tcp_listen(&addr);
  pid_t pid = fork_child();
  if (pid == 0) {
    close(lfd);
    int fd = tcp_connect(&addr);
    stream_send(fd);
    close(fd);
    _exit(0);
  }
  int fd = tcp_accept(lfd);
  double gbs = stream_recv(fd);
  close(fd);
  reap(pid, "tcp stream");
  return gbs;
}

static void *sender_thread(void *arg) {
  stream_send(*(int *)arg);
  return NULL;
}

/* Sends on a second thread while this one receives; returns this direction's receive GB/s. */
static double stream_both_side(int fd) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, sender_thread, &fd);
  if (rc) die("pthread_create: %s", strerror(rc));
  double gbs = stream_recv(fd);
  pthread_join(t, NULL);
  return gbs;
}

static double tcp_stream_both(void) {
  struct sockaddr_in addr;
  int lfd = tcp_listen(&addr);
  int pipefd[2];
  if (pipe(pipefd)) die_errno("pipe");
  pid_t pid = fork_child();
  if (pid == 0) {
    close(lfd);
    close(pipefd[0]);
    int fd = tcp_connect(&addr);
    double gbs = stream_both_side(fd);
    write_all(pipefd[1], (const char *)&gbs, sizeof gbs);
    close(fd);
    _exit(0);
  }
  close(pipefd[1]);
  int fd = tcp_accept(lfd);
  double mine = stream_both_side(fd), theirs;
  /* a pipe takes no SO_RCVTIMEO: the child's exit (end of file) or the alarm bounds this read */
  read_all(pipefd[0], (char *)&theirs, sizeof theirs);
  close(pipefd[0]);
  close(fd);
  reap(pid, "tcp both directions");
  return (mine + theirs) / 2;
}

int main(void) {
  arm_alarm();
  signal(SIGPIPE, SIG_IGN);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  double m1 = memcpy_one(), m2, m2total;
  memcpy_two(&m2, &m2total);
  double shm_med, shm_min;
  shm_pingpong(&shm_med, &shm_min);
  double rtt = tcp_rtt(0), rtt_poll = tcp_rtt(1);
  double gbs = tcp_stream();
  double both = tcp_stream_both();
  printf("{\"memcpyGBs1\":%.3f,\"memcpyGBs2\":%.3f,\"memcpyGBs2Total\":%.3f,\"shmRttUs\":%.4f,"
         "\"shmRttUsMin\":%.4f,\"tcpRttUs\":%.3f,\"tcpRttUsPoll\":%.3f,\"tcpGBs\":%.3f,\"tcpGBsBoth\":%.3f,\"cpus\":%ld}\n",
         m1, m2, m2total, shm_med, shm_min, rtt, rtt_poll, gbs, both, cpus);
  return fflush(stdout) == 0 ? 0 : 1;
}
