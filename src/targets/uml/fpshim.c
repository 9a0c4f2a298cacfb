/*
 * virtmark's FP-state mediator for User-Mode Linux, preloaded (LD_PRELOAD) into
 * the UML kernel's host process.
 *
 * Why: on every switch to guest user space, UML saves and restores the guest's
 * FP registers with PTRACE_GETREGSET / PTRACE_SETREGSET (NT_X86_XSTATE) into a
 * buffer of fixed size (`struct _xstate`, 832 bytes in Linux 6.1). Reading a
 * shorter buffer is fine (the host kernel truncates), but the host kernel's
 * xstateregs_set() accepts a write only when it is exactly the host's full
 * user XSAVE size (EFAULT otherwise). On CPUs with AVX-512 or AMX that size is
 * 2.7-11 KiB, so every UML guest dies at its first system call with
 * "userspace - ptrace set fp regs failed, errno = 14".
 *
 * What: GETREGSET of NT_X86_XSTATE with a short buffer reads the full state
 * into a private slot keyed by (tracee, caller's buffer) and hands back the
 * prefix; SETREGSET with a short buffer lays the caller's prefix over that
 * slot and writes the full state. UML keeps one FP buffer per guest thread and
 * always reads it before writing it back, so each guest thread gets back its
 * own extended state (AVX-512, AMX), not only the part UML knows of. A write
 * with no slot (a new thread) starts from the tracee's current state.
 * Every other ptrace call, and every call on hosts whose XSAVE state fits the
 * caller's buffer, goes straight to the C library.
 *
 * UML runs its kernel on one host thread, so the table needs no lock.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SLOTS 1024
#define PROBE 65536

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static size_t full_size;        /* the host's user XSAVE size; 0 until known */
static int pass_through;        /* the callers' buffers are large enough */
static unsigned char *slots;    /* SLOTS * full_size bytes */
static unsigned char scratch[PROBE];
static struct {
    pid_t pid;
    void *key;
} slot_keys[SLOTS];

/* The slot of (pid, key), made when `create`; NULL when there is none. */
static unsigned char *slot_for(pid_t pid, void *key, int create)
{
    if (!slots)
        return NULL;
    unsigned h = (unsigned)((((uintptr_t)key) >> 4) ^ (uintptr_t)pid) % SLOTS;
    for (unsigned i = 0; i < SLOTS; i++) {
        unsigned j = (h + i) % SLOTS;
        if (slot_keys[j].key == key && slot_keys[j].pid == pid)
            return slots + (size_t)j * full_size;
        if (!slot_keys[j].key) {
            if (!create)
                return NULL;
            slot_keys[j].pid = pid;
            slot_keys[j].key = key;
            return slots + (size_t)j * full_size;
        }
    }
    return NULL;
}

/* Read the whole XSAVE state of `pid` into `buf` (learning its size once). */
static long get_full(pid_t pid, void *buf, size_t len)
{
    struct iovec iov = { buf, len };
    long r = real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
    if (r == 0 && !full_size)
        full_size = iov.iov_len;
    return r;
}

long ptrace(enum __ptrace_request req, ...)
{
    va_list ap;
    va_start(ap, req);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (!real_ptrace)
        real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    if ((req != PTRACE_GETREGSET && req != PTRACE_SETREGSET) ||
        (uintptr_t)addr != NT_X86_XSTATE || pass_through || !data)
        return real_ptrace(req, pid, addr, data);
    struct iovec *iov = data;
    if (!full_size) {
        long r = get_full(pid, scratch, PROBE);
        if (r)
            return r;
        if (full_size <= iov->iov_len || full_size > PROBE) {
            pass_through = 1;
            return real_ptrace(req, pid, addr, data);
        }
        void *m = mmap(NULL, (size_t)SLOTS * full_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        slots = m == MAP_FAILED ? NULL : m;
    }
    if (iov->iov_len >= full_size)
        return real_ptrace(req, pid, addr, data);
    if (req == PTRACE_GETREGSET) {
        unsigned char *buf = slot_for(pid, iov->iov_base, 1);
        if (!buf)
            buf = scratch;
        long r = get_full(pid, buf, full_size);
        if (r)
            return r;
        memcpy(iov->iov_base, buf, iov->iov_len);
        return 0;
    }
    unsigned char *buf = slot_for(pid, iov->iov_base, 0);
    if (!buf) {
        buf = scratch;
        long r = get_full(pid, buf, full_size);
        if (r)
            return r;
    }
    memcpy(buf, iov->iov_base, iov->iov_len);
    struct iovec whole = { buf, full_size };
    return real_ptrace(PTRACE_SETREGSET, pid, addr, &whole);
}
