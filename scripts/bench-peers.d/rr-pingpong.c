/* Reference TCP request/response ping-pong (netperf TCP_RR shape) for
 * scripts/bench-peers.d/net.sh: 1-byte request, 1-byte response, TCP_NODELAY,
 * each end pinned to a CPU.
 *
 *   rr-pingpong server <cpu|-1>              prints "listening 127.0.0.1:<port>"
 *   rr-pingpong client <port> <cpu|-1> <secs> prints "<transactions/s>"
 *
 * The server serves one connection at a time, until killed. Loopback only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int one = 1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (argc == 3 && strcmp(argv[1], "server") == 0) {
        pin(atoi(argv[2]));
        int l = socket(AF_INET, SOCK_STREAM, 0);
        if (l < 0) die("socket");
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(l, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
        if (listen(l, 16) != 0) die("listen");
        socklen_t len = sizeof a;
        getsockname(l, (struct sockaddr *)&a, &len);
        printf("listening 127.0.0.1:%d\n", ntohs(a.sin_port));
        fflush(stdout);
        for (;;) {
            int c = accept(l, NULL, NULL);
            if (c < 0) continue;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            char b;
            while (read(c, &b, 1) == 1)
                if (write(c, &b, 1) != 1) break;
            close(c);
        }
    }
    if (argc == 5 && strcmp(argv[1], "client") == 0) {
        a.sin_port = htons(atoi(argv[2]));
        pin(atoi(argv[3]));
        double secs = atof(argv[4]);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) die("socket");
        if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b = 'q';
        long n = 0;
        double start = now(), t = start;
        for (;;) {
            if (write(s, &b, 1) != 1) die("write");
            if (read(s, &b, 1) != 1) die("read");
            n++;
            if ((n & 63) == 0 && (t = now()) - start >= secs) break;
        }
        printf("%.1f\n", n / (t - start));
        close(s);
        return 0;
    }
    fprintf(stderr, "usage: %s server <cpu> | client <port> <cpu> <secs>\n", argv[0]);
    return 2;
}
