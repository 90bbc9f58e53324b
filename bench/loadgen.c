/* Load generator for saslauthd-protocol daemons (the C saslauthd and saslauthpy alike).
 *
 * One thread per client; each client loops: connect to the UNIX socket, send one request
 * (four counted strings), read the reply until the daemon closes, check it against the
 * expected answer, record the latency.  Every answer is counted (OK / NO / error) and any
 * answer that is not the expected one is a mismatch, so a fast wrong answer never counts
 * as speed.  Optionally holds N idle connections open (slowloris), reopening any the
 * daemon closes.
 *
 * usage: loadgen -s SOCKET -d SECONDS [-t REQUEST_TIMEOUT] [-i IDLE] [-1] GROUP...
 *   GROUP = name,clients,expect,login_fmt,nusers,password_fmt,service_fmt,realm
 *   expect is OK or NO; login_fmt and service_fmt may hold one %d (the user index,
 *   0..nusers-1) and password_fmt one %d (a per-client request counter: distinct wrong
 *   passwords).  -1: one pass over the users, then stop (the duration is then a limit).
 * Output: one JSON object per group on stdout.
 *
 * Build: gcc -O2 -pthread -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_GROUPS 8
#define FIELD_MAX 256

struct group {
    char name[64];
    int clients;
    int expect_ok;
    char login_fmt[FIELD_MAX];
    int nusers;
    char password_fmt[FIELD_MAX];
    char service[FIELD_MAX];
    char realm[FIELD_MAX];
    /* results, merged from the clients */
    pthread_mutex_t lock;
    long ok, no, err, timeouts, mismatch;
    double *lat;  /* seconds */
    size_t nlat, caplat;
};

struct client {
    struct group *g;
    int index;
    pthread_t tid;
};

static const char *sock_path;
static double duration = 5.0;
static double req_timeout = 5.0;
static volatile int stop_flag;
static int one_pass;
static struct sockaddr_un addr;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t put_field(unsigned char *out, const char *s) {
    size_t n = strlen(s);
    out[0] = (unsigned char)(n >> 8);
    out[1] = (unsigned char)(n & 0xff);
    memcpy(out + 2, s, n);
    return n + 2;
}

/* 1 = OK, 0 = NO, -1 = error (no/garbled answer), -2 = timeout */
static int one_request(const unsigned char *req, size_t len) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {(time_t)req_timeout, (suseconds_t)((req_timeout - (long)req_timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        return (e == EAGAIN || e == EINPROGRESS) ? -2 : -1;
    }
    if (write(fd, req, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    unsigned char buf[1024];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n > 0) {
            got += (size_t)n;
            if (got >= 2 && got >= 2u + ((buf[0] << 8) | buf[1])) break;
            if (got == sizeof buf) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            close(fd);
            return -2;
        }
        break; /* closed */
    }
    close(fd);
    if (got < 4) return -1;
    if (buf[2] == 'O' && buf[3] == 'K') return 1;
    if (buf[2] == 'N' && buf[3] == 'O') return 0;
    return -1;
}

static void *client_main(void *arg) {
    struct client *c = arg;
    struct group *g = c->g;
    char login[FIELD_MAX + 32], password[FIELD_MAX + 32], service[FIELD_MAX + 32];
    /* four counted fields; a %d may make the first three longer than FIELD_MAX */
    unsigned char req[sizeof login + sizeof password + sizeof service + FIELD_MAX + 8];
    long counter = 0;
    long ok = 0, no = 0, err = 0, tmo = 0, mism = 0;
    size_t cap = 4096, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    while (!stop_flag) {
        long slot = c->index + counter * g->clients;
        if (one_pass && slot >= g->nusers) break;
        int user = (int)(slot % g->nusers);
        snprintf(login, sizeof login, g->login_fmt, user);
        snprintf(service, sizeof service, g->service, user);
        snprintf(password, sizeof password, g->password_fmt, (int)(c->index * 1000000 + counter));
        size_t len = 0;
        len += put_field(req + len, login);
        len += put_field(req + len, password);
        len += put_field(req + len, service);
        len += put_field(req + len, g->realm);
        double t0 = now();
        int r = one_request(req, len);
        double dt = now() - t0;
        counter++;
        if (stop_flag && r == -1) break; /* cut short by the end of the run, not by the daemon */
        if (r == 1) ok++;
        else if (r == 0) no++;
        else if (r == -2) tmo++;
        else err++;
        if (r != (g->expect_ok ? 1 : 0)) mism++;
        if (n == cap) {
            cap *= 2;
            lat = realloc(lat, cap * sizeof *lat);
        }
        lat[n++] = dt;
        if (r == -1) usleep(1000); /* refused: do not spin */
    }
    pthread_mutex_lock(&g->lock);
    g->ok += ok;
    g->no += no;
    g->err += err;
    g->timeouts += tmo;
    g->mismatch += mism;
    if (g->nlat + n > g->caplat) {
        g->caplat = (g->nlat + n) * 2;
        g->lat = realloc(g->lat, g->caplat * sizeof *g->lat);
    }
    memcpy(g->lat + g->nlat, lat, n * sizeof *lat);
    g->nlat += n;
    pthread_mutex_unlock(&g->lock);
    free(lat);
    return NULL;
}

/* Idle connections: open up to `want`, reopen those the daemon closes. */
struct idle {
    int want;
    int *fds;
    int open_now, max_open, reopened, resets;
    pthread_t tid;
};

static int idle_connect(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *idle_main(void *arg) {
    struct idle *id = arg;
    while (!stop_flag) {
        int open_now = 0;
        for (int i = 0; i < id->want; i++) {
            if (id->fds[i] < 0) {
                id->fds[i] = idle_connect();
                if (id->fds[i] >= 0 && id->max_open > 0) id->reopened++;
            }
            if (id->fds[i] >= 0) open_now++;
        }
        id->open_now = open_now;
        if (open_now > id->max_open) id->max_open = open_now;
        /* detect closed ones */
        for (int i = 0; i < id->want; i++) {
            if (id->fds[i] < 0) continue;
            struct pollfd p = {id->fds[i], POLLIN, 0};
            if (poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
                char b[64];
                ssize_t r = read(id->fds[i], b, sizeof b);
                if (r < 0 && errno == ECONNRESET) id->resets++;
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    close(id->fds[i]);
                    id->fds[i] = -1;
                }
            }
        }
        usleep(20000);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p) {
    if (n == 0) return 0.0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int parse_group(struct group *g, char *spec) {
    char *parts[8];
    int k = 0;
    char *save = NULL;
    for (char *tok = strtok_r(spec, ",", &save); tok && k < 8; tok = strtok_r(NULL, ",", &save))
        parts[k++] = tok;
    /* realm may be empty: "a,b,...,service," leaves 7 tokens */
    if (k < 7) return -1;
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", parts[0]);
    g->clients = atoi(parts[1]);
    g->expect_ok = strcmp(parts[2], "OK") == 0;
    snprintf(g->login_fmt, sizeof g->login_fmt, "%s", parts[3]);
    g->nusers = atoi(parts[4]);
    snprintf(g->password_fmt, sizeof g->password_fmt, "%s", parts[5]);
    snprintf(g->service, sizeof g->service, "%s", parts[6]);
    snprintf(g->realm, sizeof g->realm, "%s", k > 7 ? parts[7] : "");
    if (g->clients < 1 || g->nusers < 1) return -1;
    pthread_mutex_init(&g->lock, NULL);
    return 0;
}

int main(int argc, char **argv) {
    struct group groups[MAX_GROUPS];
    int ngroups = 0, idle_want = 0;
    int opt;
    while ((opt = getopt(argc, argv, "s:d:t:i:1")) != -1) {
        switch (opt) {
        case 's': sock_path = optarg; break;
        case 'd': duration = atof(optarg); break;
        case 't': req_timeout = atof(optarg); break;
        case 'i': idle_want = atoi(optarg); break;
        case '1': one_pass = 1; break;
        default: goto usage;
        }
    }
    for (int i = optind; i < argc && ngroups < MAX_GROUPS; i++) {
        if (parse_group(&groups[ngroups], argv[i]) < 0) {
            fprintf(stderr, "bad group spec: %s\n", argv[i]);
            return 2;
        }
        ngroups++;
    }
    if (!sock_path || ngroups == 0) goto usage;
    if (strlen(sock_path) >= sizeof addr.sun_path) {
        fprintf(stderr, "socket path too long\n");
        return 2;
    }
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, sock_path);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct idle id = {0};
    if (idle_want > 0) {
        id.want = idle_want;
        id.fds = malloc(sizeof(int) * (size_t)idle_want);
        for (int i = 0; i < idle_want; i++) id.fds[i] = -1;
        pthread_create(&id.tid, NULL, idle_main, &id);
        /* give the idle connections a moment to pile up before measuring */
        for (int w = 0; w < 100 && id.max_open < idle_want; w++) usleep(20000);
    }

    int total = 0;
    for (int g = 0; g < ngroups; g++) total += groups[g].clients;
    struct client *cs = calloc((size_t)total, sizeof *cs);
    int c = 0;
    double t0 = now();
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < groups[g].clients; i++, c++) {
            cs[c].g = &groups[g];
            cs[c].index = i;
            pthread_create(&cs[c].tid, NULL, client_main, &cs[c]);
        }
    while (now() - t0 < duration) {
        if (one_pass) {
            int running = 0;
            for (int i = 0; i < total; i++) {
                if (!cs[i].tid) continue;
                if (pthread_tryjoin_np(cs[i].tid, NULL) == EBUSY) running++;
                else cs[i].tid = 0;
            }
            if (!running) break;
        }
        usleep(10000);
    }
    stop_flag = 1;
    /* Clients stuck in a read wait at most req_timeout more. */
    for (int i = 0; i < total; i++)
        if (cs[i].tid) pthread_join(cs[i].tid, NULL);
    double elapsed = now() - t0;
    if (idle_want > 0) pthread_join(id.tid, NULL);

    for (int g = 0; g < ngroups; g++) {
        struct group *gr = &groups[g];
        qsort(gr->lat, gr->nlat, sizeof *gr->lat, cmp_double);
        long answered = gr->ok + gr->no;
        printf("{\"group\": \"%s\", \"clients\": %d, \"expect\": \"%s\", \"requests\": %zu, "
               "\"ok\": %ld, \"no\": %ld, \"errors\": %ld, \"timeouts\": %ld, \"mismatch\": %ld, "
               "\"elapsed\": %.3f, \"rps\": %.1f, \"good_rps\": %.1f, "
               "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
               "\"idle_max_open\": %d, \"idle_reopened\": %d, \"idle_resets\": %d}\n",
               gr->name, gr->clients, gr->expect_ok ? "OK" : "NO", gr->nlat, gr->ok, gr->no,
               gr->err, gr->timeouts, gr->mismatch, elapsed, answered / elapsed,
               (double)(gr->nlat - (size_t)gr->mismatch) / elapsed,
               pct(gr->lat, gr->nlat, 0.50) * 1e3, pct(gr->lat, gr->nlat, 0.99) * 1e3,
               gr->nlat ? gr->lat[gr->nlat - 1] * 1e3 : 0.0, id.max_open, id.reopened,
               id.resets);
    }
    return 0;
usage:
    fprintf(stderr, "usage: loadgen -s SOCKET -d SECONDS [-t TIMEOUT] [-i IDLE] [-1] "
                    "name,clients,OK|NO,login_fmt,nusers,password_fmt,service,realm ...\n");
    return 2;
}
