/* An LD_PRELOAD shim that makes the Nth matching write or flush fail, for the
 * disk-fault tests (tests/crash/disk_fault_test.cpp). It wraps pwrite,
 * pwrite64, writev, pwritev, write, fdatasync, fsync and msync; a call it
 * fails does nothing and returns -1 with errno set, as a full or failing disk
 * would before writing anything.
 *
 * Configured by the environment, read once:
 *   CAIRN_FAULT_CALL       calls that count, comma-separated (pwrite covers
 *                          pwrite64, writev covers pwritev). Unset: none.
 *   CAIRN_FAULT_NTH        the first counted call to fail, from 1. Default 1.
 *   CAIRN_FAULT_COUNT      how many counted calls fail from there; 0: every
 *                          later one (a disk that stays full). Default 1.
 *   CAIRN_FAULT_ERRNO      EIO, ENOSPC, EFBIG or EDQUOT. Default EIO.
 *   CAIRN_FAULT_FD_SUFFIX  only files whose path ends so. Default data.mdb.
 *   CAIRN_FAULT_REGION     writes only: meta (offset below
 *                          CAIRN_FAULT_META_BYTES, default 8192: LMDB's two
 *                          meta pages), data (at or above it) or any. Default any.
 *   CAIRN_FAULT_THREAD     only calls from the thread of this name; with a
 *                          leading '!', only from the others.
 *   CAIRN_FAULT_ARM        "start": count from the first call. Otherwise the
 *                          shim counts once the program calls cairn_fault_arm()
 *                          (found with dlsym), so a store can open first.
 *   CAIRN_FAULT_LOG        file that gets one line per failed call.
 *   CAIRN_FAULT_DURABLE    with CAIRN_FAULT_DURABLE_SOURCE (the data file's
 *                          path): keep at this path what a power loss would
 *                          leave of the file, copied when armed. A write
 *                          reaches it with the next successful flush of the
 *                          file, from any descriptor; a failed flush loses
 *                          the writes it covered (the worst a kernel may do),
 *                          and, as Linux does since 4.13, every other
 *                          descriptor of the file reports that error once at
 *                          its next flush.
 *   CAIRN_FAULT_DIE_AFTER  with a power-loss image: once a call failed, let
 *                          this many flushes of the file happen, then die of
 *                          SIGKILL at the next one (a power loss right then).
 *
 * Plain C with no dependency but libc and libdl, so it loads before anything. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum call_bit {
  bit_pwrite = 1,
  bit_writev = 2,
  bit_write = 4,
  bit_fdatasync = 8,
  bit_fsync = 16,
  bit_msync = 32,
};

static struct {
  atomic_int ready; /* 0: not read, 1: being read, 2: read */
  unsigned calls;
  unsigned long nth;
  unsigned long count;
  int err;
  char suffix[128];
  int region; /* 0 any, 1 meta, 2 data */
  long long meta_bytes;
  char thread[32];
  int thread_negated;
  char log[512];
} cfg;

static atomic_int armed;
static atomic_ulong counted;
static atomic_int fault_fired;
static atomic_long die_after = -1; /* flushes left before dying; -1: never */

/* -- the power-loss image (CAIRN_FAULT_DURABLE) ------------------------------- */

struct pending_write {
  long long offset;
  size_t size;
  struct pending_write* next;
  char data[];
};

static pthread_mutex_t durable_mu = PTHREAD_MUTEX_INITIALIZER;
static int durable_fd = -1;
static struct pending_write* pending_head;
static struct pending_write** pending_tail = &pending_head;
static unsigned long error_seq;      /* failed flushes so far */
static unsigned long seen_seq[4096]; /* per descriptor: the failures it reported */

typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec*, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec*, int, off_t);
typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef int (*sync_fn)(int);
typedef int (*msync_fn)(void*, size_t, int);

static void* next_symbol(const char* name) { return dlsym(RTLD_NEXT, name); }

static void drop_pending(void) {
  while (pending_head != NULL) {
    struct pending_write* w = pending_head;
    pending_head = w->next;
    free(w);
  }
  pending_tail = &pending_head;
}

/* Copies the data file to the image (under durable_mu). */
static void start_image(void) {
  const char* image = getenv("CAIRN_FAULT_DURABLE");
  const char* source = getenv("CAIRN_FAULT_DURABLE_SOURCE");
  if (image == NULL || source == NULL || durable_fd >= 0)
    return;
  pwrite_fn real_pwrite = (pwrite_fn)next_symbol("pwrite");
  int in = open(source, O_RDONLY | O_CLOEXEC);
  int out = open(image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (in < 0 || out < 0) {
    if (in >= 0)
      close(in);
    if (out >= 0)
      close(out);
    return;
  }
  static char buf[1 << 16];
  long long at = 0;
  for (ssize_t n; (n = pread(in, buf, sizeof buf, at)) > 0; at += n)
    if (real_pwrite(out, buf, (size_t)n, at) != n)
      break;
  close(in);
  durable_fd = out;
}

/* A write of the data file succeeded: it reaches the image with the next flush. */
static void record_write(const struct iovec* iov, int cnt, long long offset, ssize_t written) {
  if (durable_fd < 0 || written <= 0 || offset < 0)
    return;
  struct pending_write* w = malloc(sizeof *w + (size_t)written);
  if (w == NULL)
    return;
  w->offset = offset;
  w->size = (size_t)written;
  w->next = NULL;
  size_t done = 0;
  for (int i = 0; i < cnt && done < w->size; ++i) {
    size_t n = iov[i].iov_len < w->size - done ? iov[i].iov_len : w->size - done;
    memcpy(w->data + done, iov[i].iov_base, n);
    done += n;
  }
  *pending_tail = w; /* the caller holds durable_mu */
  pending_tail = &w->next;
}

static unsigned parse_calls(const char* s) {
  unsigned out = 0;
  if (s == NULL)
    return 0;
  if (strstr(s, "pwrite") != NULL)
    out |= bit_pwrite;
  if (strstr(s, "writev") != NULL)
    out |= bit_writev;
  /* "write" alone, not as part of pwrite or writev */
  for (const char* p = s; (p = strstr(p, "write")) != NULL; p += 5)
    if ((p == s || p[-1] == ',') && (p[5] == '\0' || p[5] == ','))
      out |= bit_write;
  if (strstr(s, "fdatasync") != NULL)
    out |= bit_fdatasync;
  for (const char* p = s; (p = strstr(p, "fsync")) != NULL; p += 5)
    if (p == s || p[-1] == ',')
      out |= bit_fsync;
  if (strstr(s, "msync") != NULL)
    out |= bit_msync;
  return out;
}

static int parse_errno(const char* s) {
  if (s == NULL || strcmp(s, "EIO") == 0)
    return EIO;
  if (strcmp(s, "ENOSPC") == 0)
    return ENOSPC;
  if (strcmp(s, "EFBIG") == 0)
    return EFBIG;
  if (strcmp(s, "EDQUOT") == 0)
    return EDQUOT;
  return atoi(s) > 0 ? atoi(s) : EIO;
}

static void copy_env(char* dst, size_t size, const char* name, const char* fallback) {
  const char* v = getenv(name);
  snprintf(dst, size, "%s", v != NULL ? v : fallback);
}

static void load_config(void) {
  int expected = 0;
  if (atomic_load(&cfg.ready) == 2)
    return;
  if (!atomic_compare_exchange_strong(&cfg.ready, &expected, 1)) {
    while (atomic_load(&cfg.ready) != 2) {
    }
    return;
  }
  const char* v;
  cfg.calls = parse_calls(getenv("CAIRN_FAULT_CALL"));
  v = getenv("CAIRN_FAULT_NTH");
  cfg.nth = v != NULL ? strtoul(v, NULL, 10) : 1;
  if (cfg.nth == 0)
    cfg.nth = 1;
  v = getenv("CAIRN_FAULT_COUNT");
  cfg.count = v != NULL ? strtoul(v, NULL, 10) : 1;
  cfg.err = parse_errno(getenv("CAIRN_FAULT_ERRNO"));
  copy_env(cfg.suffix, sizeof cfg.suffix, "CAIRN_FAULT_FD_SUFFIX", "data.mdb");
  v = getenv("CAIRN_FAULT_REGION");
  cfg.region = v == NULL ? 0 : strcmp(v, "meta") == 0 ? 1 : strcmp(v, "data") == 0 ? 2 : 0;
  v = getenv("CAIRN_FAULT_META_BYTES");
  cfg.meta_bytes = v != NULL ? strtoll(v, NULL, 10) : 8192;
  copy_env(cfg.thread, sizeof cfg.thread, "CAIRN_FAULT_THREAD", "");
  if (cfg.thread[0] == '!') {
    cfg.thread_negated = 1;
    memmove(cfg.thread, cfg.thread + 1, strlen(cfg.thread));
  }
  copy_env(cfg.log, sizeof cfg.log, "CAIRN_FAULT_LOG", "");
  v = getenv("CAIRN_FAULT_DIE_AFTER");
  if (v != NULL && *v != '\0')
    atomic_store(&die_after, strtol(v, NULL, 10));
  v = getenv("CAIRN_FAULT_ARM");
  if (v != NULL && strcmp(v, "start") == 0)
    atomic_store(&armed, 1);
  atomic_store(&cfg.ready, 2);
  if (atomic_load(&armed)) {
    pthread_mutex_lock(&durable_mu);
    start_image();
    pthread_mutex_unlock(&durable_mu);
  }
}

/* Starts counting calls (CAIRN_FAULT_ARM unset). */
__attribute__((visibility("default"))) void cairn_fault_arm(void) {
  load_config();
  pthread_mutex_lock(&durable_mu);
  start_image();
  pthread_mutex_unlock(&durable_mu);
  atomic_store(&armed, 1);
}

/* Calls counted since arming, failed or not. */
__attribute__((visibility("default"))) unsigned long cairn_fault_counted(void) {
  return atomic_load(&counted);
}

static int fd_matches(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0)
    return 0;
  path[n] = '\0';
  size_t len = (size_t)n, slen = strlen(cfg.suffix);
  return len >= slen && strcmp(path + len - slen, cfg.suffix) == 0;
}

static int thread_matches(void) {
  if (cfg.thread[0] == '\0')
    return 1;
  char name[32] = {0};
  prctl(PR_GET_NAME, name, 0, 0, 0);
  int same = strcmp(name, cfg.thread) == 0;
  return cfg.thread_negated ? !same : same;
}

static void log_fault(const char* call, unsigned long n, long long offset) {
  if (cfg.log[0] == '\0')
    return;
  static write_fn real_write;
  if (real_write == NULL)
    real_write = (write_fn)next_symbol("write");
  int fd = open(cfg.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return;
  char name[32] = {0};
  prctl(PR_GET_NAME, name, 0, 0, 0);
  char line[160];
  int len = snprintf(line, sizeof line, "%s n=%lu offset=%lld thread=%s errno=%d\n", call, n,
                     offset, name, cfg.err);
  if (len > 0)
    (void)real_write(fd, line, (size_t)len);
  close(fd);
}

/* True when this call must fail (errno is then set). `offset` < 0: not a write at an offset. */
static int should_fail(unsigned bit, const char* call, int fd, long long offset) {
  load_config();
  if ((cfg.calls & bit) == 0 || !atomic_load(&armed))
    return 0;
  if (fd >= 0 && !fd_matches(fd))
    return 0;
  if (offset >= 0 && cfg.region != 0 && (cfg.region == 1) != (offset < cfg.meta_bytes))
    return 0;
  if (!thread_matches())
    return 0;
  unsigned long n = atomic_fetch_add(&counted, 1) + 1;
  if (n < cfg.nth || (cfg.count != 0 && n >= cfg.nth + cfg.count))
    return 0;
  log_fault(call, n, offset);
  atomic_store(&fault_fired, 1);
  errno = cfg.err;
  return 1;
}

static int is_write_region_call(void) { return cfg.region != 0; }

/* True when writes to `fd` go to the image too. */
static int tracking(int fd) { return durable_fd >= 0 && fd_matches(fd); }

/* Runs `call` (a write of `fd`) and records what it wrote, under durable_mu
 * so that no flush falls between the two. */
#define CAIRN_RECORDED(fd, iov, cnt, offset, call)                                                 \
  do {                                                                                             \
    if (!tracking(fd))                                                                             \
      return call;                                                                                 \
    pthread_mutex_lock(&durable_mu);                                                               \
    ssize_t r_ = call;                                                                             \
    record_write(iov, cnt, offset, r_);                                                            \
    pthread_mutex_unlock(&durable_mu);                                                             \
    return r_;                                                                                     \
  } while (0)

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  static pwrite_fn real;
  if (real == NULL)
    real = (pwrite_fn)next_symbol("pwrite");
  if (should_fail(bit_pwrite, "pwrite", fd, (long long)off))
    return -1;
  struct iovec v = {(void*)buf, n};
  CAIRN_RECORDED(fd, &v, 1, (long long)off, real(fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  static pwrite_fn real;
  if (real == NULL)
    real = (pwrite_fn)next_symbol("pwrite64");
  if (should_fail(bit_pwrite, "pwrite64", fd, (long long)off))
    return -1;
  struct iovec v = {(void*)buf, n};
  CAIRN_RECORDED(fd, &v, 1, (long long)off, real(fd, buf, n, off));
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  static writev_fn real;
  if (real == NULL)
    real = (writev_fn)next_symbol("writev");
  load_config();
  long long off = is_write_region_call() || durable_fd >= 0 ? (long long)lseek(fd, 0, SEEK_CUR)
                                                            : -1;
  if (should_fail(bit_writev, "writev", fd, is_write_region_call() ? off : -1))
    return -1;
  CAIRN_RECORDED(fd, iov, cnt, off, real(fd, iov, cnt));
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  static pwritev_fn real;
  if (real == NULL)
    real = (pwritev_fn)next_symbol("pwritev");
  if (should_fail(bit_writev, "pwritev", fd, (long long)off))
    return -1;
  CAIRN_RECORDED(fd, iov, cnt, (long long)off, real(fd, iov, cnt, off));
}

ssize_t write(int fd, const void* buf, size_t n) {
  static write_fn real;
  if (real == NULL)
    real = (write_fn)next_symbol("write");
  load_config();
  long long off = -1;
  if ((cfg.calls & bit_write) != 0 || durable_fd >= 0) {
    off = (long long)lseek(fd, 0, SEEK_CUR);
    if (should_fail(bit_write, "write", fd, is_write_region_call() ? off : -1))
      return -1;
  }
  struct iovec v = {(void*)buf, n};
  CAIRN_RECORDED(fd, &v, 1, off, real(fd, buf, n));
}

/* A flush of the data file: the pending writes reach the image, or are lost. */
static int flush(sync_fn real, unsigned bit, const char* call, int fd) {
  load_config();
  if (atomic_load(&fault_fired) && atomic_load(&die_after) >= 0 && fd_matches(fd)
      && atomic_fetch_sub(&die_after, 1) == 0)
    kill(getpid(), SIGKILL); /* the power goes out before this flush */
  int fail = should_fail(bit, call, fd, -1);
  if (durable_fd < 0 || !fd_matches(fd) || fd < 0 || fd >= 4096)
    return fail ? -1 : real(fd);
  pthread_mutex_lock(&durable_mu);
  if (!fail && seen_seq[fd] < error_seq) {
    /* Another descriptor's flush failed since this one's last: report it once.
       The writes that failure lost were dropped when it happened; the ones made
       since are still pending, as in Linux, where a report of an old error
       loses nothing new. */
    seen_seq[fd] = error_seq;
    log_fault("(earlier failure)", 0, -1);
    pthread_mutex_unlock(&durable_mu);
    errno = EIO;
    return -1;
  }
  if (fail) {
    ++error_seq;
    seen_seq[fd] = error_seq;
    drop_pending();
    pthread_mutex_unlock(&durable_mu);
    return -1;
  }
  int rc = real(fd);
  if (rc == 0) {
    pwrite_fn real_pwrite = (pwrite_fn)next_symbol("pwrite");
    for (struct pending_write* w = pending_head; w != NULL; w = w->next)
      (void)real_pwrite(durable_fd, w->data, w->size, (off_t)w->offset);
    drop_pending();
  }
  pthread_mutex_unlock(&durable_mu);
  return rc;
}

int fdatasync(int fd) {
  static sync_fn real;
  if (real == NULL)
    real = (sync_fn)next_symbol("fdatasync");
  return flush(real, bit_fdatasync, "fdatasync", fd);
}

int fsync(int fd) {
  static sync_fn real;
  if (real == NULL)
    real = (sync_fn)next_symbol("fsync");
  return flush(real, bit_fsync, "fsync", fd);
}

int msync(void* addr, size_t n, int flags) {
  static msync_fn real;
  if (real == NULL)
    real = (msync_fn)next_symbol("msync");
  if (should_fail(bit_msync, "msync", -1, -1))
    return -1;
  return real(addr, n, flags);
}
