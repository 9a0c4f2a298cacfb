/* The `fork` probe's forking process: a small dynamically linked C program, as
 * lmbench's `lat_proc fork` is, and as are the programs real workloads fork (a
 * compiler, make, a shell). build.rs compiles it with the host's C compiler; the
 * agent embeds it, and runs it from memory in the target, where the host's C
 * library is reached through the toolchain the target shows (see
 * src/targets/toolchain.rs).
 *
 *   fork_loop <budget in ns>
 *
 * Pins itself, and so the children it forks, to the first CPU it may run on (a
 * child started on another CPU wakes its parent across CPUs at its exit, on some
 * forks and not others), then forks, lets the child leave through the C
 * library's exit() as lat_proc's child does, and waits for it, until the budget
 * has passed. Prints the CPU (`-` when the affinity could not be set) on the first
 * line, then the nanoseconds of each fork + exit + wait, one a line; the agent
 * takes the median. Exit status 0 when every child exited with status 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long long budget = argc == 2 ? strtoll(argv[1], &end, 10) : 0;
    if (argc != 2 || *end != '\0' || budget <= 0) {
        fprintf(stderr, "usage: fork_loop <budget in ns>\n");
        return 2;
    }
    int cpu = -1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (CPU_ISSET(c, &set)) {
                cpu_set_t one;
                CPU_ZERO(&one);
                CPU_SET(c, &one);
                if (sched_setaffinity(0, sizeof one, &one) == 0)
                    cpu = c;
                break;
            }
        }
    }
    /* The times are kept and printed at the end: nothing is written while
     * forking, and nothing is left buffered for a child's exit() to flush. */
    size_t cap = 1024, n = 0;
    long long *ns = malloc(cap * sizeof *ns);
    if (!ns) {
        perror("malloc");
        return 1;
    }
    long long start = now_ns();
    do {
        long long t0 = now_ns();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            exit(0);
        int status;
        pid_t got;
        do
            got = waitpid(pid, &status, 0);
        while (got < 0 && errno == EINTR);
        if (got != pid) {
            perror("waitpid");
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "the child ended with wait status %#x\n", status);
            return 1;
        }
        if (n == cap) {
            cap *= 2;
            long long *more = realloc(ns, cap * sizeof *ns);
            if (!more) {
                perror("realloc");
                return 1;
            }
            ns = more;
        }
        ns[n++] = now_ns() - t0;
    } while (now_ns() - start < budget);
    if (cpu >= 0)
        printf("%d\n", cpu);
    else
        printf("-\n");
    for (size_t i = 0; i < n; i++)
        printf("%lld\n", ns[i]);
    free(ns);
    return fflush(stdout) == 0 ? 0 : 1;
}
