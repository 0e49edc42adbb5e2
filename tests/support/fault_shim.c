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
 *
 * Plain C with no dependency but libc and libdl, so it loads before anything. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
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

typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec*, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec*, int, off_t);
typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef int (*sync_fn)(int);
typedef int (*msync_fn)(void*, size_t, int);

static void* next_symbol(const char* name) { return dlsym(RTLD_NEXT, name); }

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
  v = getenv("CAIRN_FAULT_ARM");
  if (v != NULL && strcmp(v, "start") == 0)
    atomic_store(&armed, 1);
  atomic_store(&cfg.ready, 2);
}

/* Starts counting calls (CAIRN_FAULT_ARM unset). */
__attribute__((visibility("default"))) void cairn_fault_arm(void) {
  load_config();
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
  errno = cfg.err;
  return 1;
}

static int is_write_region_call(void) { return cfg.region != 0; }

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  static pwrite_fn real;
  if (real == NULL)
    real = (pwrite_fn)next_symbol("pwrite");
  if (should_fail(bit_pwrite, "pwrite", fd, (long long)off))
    return -1;
  return real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  static pwrite_fn real;
  if (real == NULL)
    real = (pwrite_fn)next_symbol("pwrite64");
  if (should_fail(bit_pwrite, "pwrite64", fd, (long long)off))
    return -1;
  return real(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  static writev_fn real;
  if (real == NULL)
    real = (writev_fn)next_symbol("writev");
  load_config();
  long long off = is_write_region_call() ? (long long)lseek(fd, 0, SEEK_CUR) : -1;
  if (should_fail(bit_writev, "writev", fd, off))
    return -1;
  return real(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  static pwritev_fn real;
  if (real == NULL)
    real = (pwritev_fn)next_symbol("pwritev");
  if (should_fail(bit_writev, "pwritev", fd, (long long)off))
    return -1;
  return real(fd, iov, cnt, off);
}

ssize_t write(int fd, const void* buf, size_t n) {
  static write_fn real;
  if (real == NULL)
    real = (write_fn)next_symbol("write");
  load_config();
  if ((cfg.calls & bit_write) != 0) {
    long long off = is_write_region_call() ? (long long)lseek(fd, 0, SEEK_CUR) : -1;
    if (should_fail(bit_write, "write", fd, off))
      return -1;
  }
  return real(fd, buf, n);
}

int fdatasync(int fd) {
  static sync_fn real;
  if (real == NULL)
    real = (sync_fn)next_symbol("fdatasync");
  if (should_fail(bit_fdatasync, "fdatasync", fd, -1))
    return -1;
  return real(fd);
}

int fsync(int fd) {
  static sync_fn real;
  if (real == NULL)
    real = (sync_fn)next_symbol("fsync");
  if (should_fail(bit_fsync, "fsync", fd, -1))
    return -1;
  return real(fd);
}

int msync(void* addr, size_t n, int flags) {
  static msync_fn real;
  if (real == NULL)
    real = (msync_fn)next_symbol("msync");
  if (should_fail(bit_msync, "msync", -1, -1))
    return -1;
  return real(addr, n, flags);
}
