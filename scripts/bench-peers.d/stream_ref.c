/* STREAM-style reference for virtmark's mem-bw check (scripts/bench-peers.d/mem.sh).
 *
 * Written for virtmark after McCalpin's STREAM: static f64 arrays of
 * STREAM_ARRAY_SIZE elements, initialized before timing, the four kernels timed
 * separately NTIMES times, the first trial skipped, the best time kept; bytes counted
 * as STREAM counts them (16 per element for copy and scale, 24 for add and triad).
 * Single-threaded (STREAM without OpenMP). Prints one line per kernel:
 *   <kernel> <best MB/s>
 * and fails when the results do not match the scalar recurrence.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef STREAM_ARRAY_SIZE
#define STREAM_ARRAY_SIZE 10000000
#endif
#ifndef NTIMES
#define NTIMES 20
#endif

static double a[STREAM_ARRAY_SIZE] __attribute__((aligned(64)));
static double b[STREAM_ARRAY_SIZE] __attribute__((aligned(64)));
static double c[STREAM_ARRAY_SIZE] __attribute__((aligned(64)));

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    const long n = STREAM_ARRAY_SIZE;
    const double scalar = 3.0;
    static const char *names[4] = {"copy", "scale", "add", "triad"};
    const double bytes[4] = {16.0 * n, 16.0 * n, 24.0 * n, 24.0 * n};
    double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    long j;
    int k;

    for (j = 0; j < n; j++) {
        a[j] = 1.0;
        b[j] = 2.0;
        c[j] = 0.0;
    }
    for (k = 0; k < NTIMES; k++) {
        double t[4];
        t[0] = now();
        for (j = 0; j < n; j++) c[j] = a[j];
        t[0] = now() - t[0];
        t[1] = now();
        for (j = 0; j < n; j++) b[j] = scalar * c[j];
        t[1] = now() - t[1];
        t[2] = now();
        for (j = 0; j < n; j++) c[j] = a[j] + b[j];
        t[2] = now() - t[2];
        t[3] = now();
        for (j = 0; j < n; j++) a[j] = b[j] + scalar * c[j];
        t[3] = now() - t[3];
        if (k > 0) /* STREAM skips the first trial */
            for (int i = 0; i < 4; i++)
                if (t[i] < best[i]) best[i] = t[i];
    }

    /* checkSTREAMresults: the same operations on scalars. */
    double ea = 1.0, eb = 2.0, ec = 0.0, err[3] = {0, 0, 0};
    for (k = 0; k < NTIMES; k++) {
        ec = ea;
        eb = scalar * ec;
        ec = ea + eb;
        ea = eb + scalar * ec;
    }
    for (j = 0; j < n; j++) {
        err[0] += fabs(a[j] - ea);
        err[1] += fabs(b[j] - eb);
        err[2] += fabs(c[j] - ec);
    }
    if (err[0] / n / ea > 1e-13 || err[1] / n / eb > 1e-13 || err[2] / n / ec > 1e-13) {
        fprintf(stderr, "validation failed\n");
        return 1;
    }
    for (int i = 0; i < 4; i++) printf("%s %.1f\n", names[i], bytes[i] / best[i] / 1e6);
    return 0;
}
