/* sandbox.c — the worker process's hardening, after its sources are in memory
 * and before any function code runs (worker_harden, called by worker_main).
 *
 * Each step is checked; any failure writes a line on stderr (when it is still
 * open) and _exit(70), so the proxy sees the channel close:
 *   a. close every descriptor but the channel (and stderr in sanitizer
 *      builds): nothing inherited from the proxy (listeners, TLS keys, the
 *      cache, the log) is reachable, even by a VM escape;
 *   b. rlimits: no core dumps (no memory image of other tenants' events on
 *      disk), no file writes (FSIZE 0), no new descriptors (NOFILE), and an
 *      address-space cap (AS) behind the Lua allocator's own count, for C-level
 *      leaks the counting allocator cannot see;
 *   c. when started as root: drop to nobody/nogroup with no supplementary
 *      groups, verified, so an escape runs without root's file access or
 *      capabilities;
 *   d. no_new_privs + a seccomp allowlist (hand-written BPF, x86_64 only):
 *      after an escape to native code the process still cannot open files,
 *      create sockets, connect, exec, fork, signal or trace other processes;
 *      everything off the list fails with EPERM, a foreign-architecture or x32
 *      syscall kills the process.
 * Single-threaded (a worker process); no state.
 */
#include "worker.h"

#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WORKER_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define WORKER_SANITIZER_BUILD 1
#endif
#endif
#ifndef WORKER_SANITIZER_BUILD
#define WORKER_SANITIZER_BUILD 0
#endif

#if !defined(__x86_64__)
#error "the worker's seccomp allowlist is written for x86_64 syscall numbers"
#endif

static void harden_fail(const char *step) __attribute__((noreturn));
static void harden_fail(const char *step)
{
    char line[256];
    int len =
        snprintf(line, sizeof line, "verge worker: hardening step '%s' failed: %s (errno %d)\n", step, strerror(errno), errno);
    /* Best effort: outside sanitizer builds stderr is already closed after step a. */
    if (write(STDERR_FILENO, line, (size_t)len) < 0) {
    }
    _exit(70);
}

static void harden_close_descriptors(int channel_fd)
{
    int keep[2] = {channel_fd, channel_fd};
    if (WORKER_SANITIZER_BUILD) /* ASan/UBSan must be able to print their reports */
        keep[channel_fd < STDERR_FILENO ? 1 : 0] = STDERR_FILENO;
    unsigned next = 0;
    for (int i = 0; i < 2; i++) {
        if ((unsigned)keep[i] > next && close_range(next, (unsigned)keep[i] - 1, 0) != 0)
            harden_fail("close descriptors");
        next = (unsigned)keep[i] + 1;
    }
    if (close_range(next, ~0u, 0) != 0)
        harden_fail("close descriptors");
}

static void harden_set_limit(int resource, rlim_t value, const char *step)
{
    struct rlimit limit = {value, value};
    if (setrlimit(resource, &limit) != 0)
        harden_fail(step);
}

static void harden_limits(int channel_fd, uint32_t memory_limit_mb)
{
    harden_set_limit(RLIMIT_CORE, 0, "setrlimit(RLIMIT_CORE)");
    /* Sanitizer builds keep stderr for reports, and stderr is often a file:
     * FSIZE 0 would turn the report into SIGXFSZ. */
    if (!WORKER_SANITIZER_BUILD)
        harden_set_limit(RLIMIT_FSIZE, 0, "setrlimit(RLIMIT_FSIZE)");
    int highest = channel_fd > STDERR_FILENO ? channel_fd : STDERR_FILENO;
    harden_set_limit(RLIMIT_NOFILE, (rlim_t)highest + 1, "setrlimit(RLIMIT_NOFILE)");
    /* The Lua heap is capped by the counting allocator; AS catches what it
     * cannot see (C-level growth) with 1 GiB headroom for LuaJIT's machine code
     * areas, libc and the in-memory sources. Skipped in sanitizer builds:
     * ASan/TSan reserve terabytes of shadow address space up front. */
    if (!WORKER_SANITIZER_BUILD)
        harden_set_limit(RLIMIT_AS, ((rlim_t)memory_limit_mb + 1024) * 1024 * 1024, "setrlimit(RLIMIT_AS)");
}

static void harden_drop_root(void)
{
    if (geteuid() != 0)
        return;
    const uid_t nobody = 65534;
    const gid_t nogroup = 65534;
    if (setgroups(0, NULL) != 0)
        harden_fail("setgroups");
    if (setgid(nogroup) != 0)
        harden_fail("setgid(65534)");
    if (setuid(nobody) != 0)
        harden_fail("setuid(65534)");
    errno = EPERM;
    if (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0 || getgroups(0, NULL) != 0)
        harden_fail("verify uid/gid");
    if (setuid(0) == 0) {
        errno = 0;
        harden_fail("verify setuid(0) fails");
    }
}

/* Every syscall a LuaJIT worker makes after hardening (glibc on x86_64: stdio,
 * malloc, the socket channel, nanosleep, clocks, LuaJIT's machine code areas),
 * plus what ASan/UBSan use while running and reporting. */
static const unsigned allowed_syscalls[] = {
    __NR_read,       __NR_write,      __NR_readv,         __NR_writev,          __NR_recvfrom,     __NR_sendto,
    __NR_recvmsg,    __NR_sendmsg,    __NR_mmap,          __NR_munmap,          __NR_mremap,       __NR_mprotect,
    __NR_brk,        __NR_madvise,    __NR_clock_gettime, __NR_clock_nanosleep, __NR_nanosleep,    __NR_gettimeofday,
    __NR_exit,       __NR_exit_group, __NR_rt_sigreturn,  __NR_rt_sigprocmask,  __NR_rt_sigaction, __NR_futex,
    __NR_getpid,     __NR_gettid,     __NR_sched_yield,   __NR_getrandom,       __NR_close,        __NR_fstat,
    __NR_newfstatat, __NR_lseek,      __NR_sigaltstack,   __NR_getrlimit,       __NR_uname,
};

static void harden_seccomp(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        harden_fail("prctl(PR_SET_NO_NEW_PRIVS)");
    struct sock_filter filter[6 + 2 * VERGE_ARRAY_SIZE(allowed_syscalls) + 11]; /* head, list, prlimit64 tail */
    size_t n = 0;
#define EMIT(instruction) (filter[n++] = (struct sock_filter)instruction)
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1)); /* x32 ABI numbers */
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(allowed_syscalls); i++) {
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, allowed_syscalls[i], 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }
    /* prlimit64 only on this process (pid 0) and only to read: glibc's getrlimit. */
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prlimit64, 0, 8));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 6));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 4));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]) + 4));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef EMIT
    VERGE_ASSERT(n == VERGE_ARRAY_SIZE(filter));
    struct sock_fprog program = {.len = (unsigned short)n, .filter = filter};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program) != 0)
        harden_fail("seccomp(SECCOMP_SET_MODE_FILTER)");
    /* A call off the list must now fail with EPERM. */
    if (syscall(SYS_getppid) != -1 || errno != EPERM) {
        errno = 0;
        harden_fail("verify seccomp");
    }
}

void worker_harden(int channel_fd, uint32_t memory_limit_mb)
{
    harden_close_descriptors(channel_fd);
    harden_limits(channel_fd, memory_limit_mb);
    harden_drop_root();
    harden_seccomp();
}
