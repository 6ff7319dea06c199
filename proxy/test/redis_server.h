/*
 * redis_server.h: a real redis-server for the proxy's unit tests, started on
 * a free loopback port as a child that dies with the test
 * (PR_SET_PDEATHSIG), killed with stop_redis().  Included by one test file
 * per binary (it also defines LeakSanitizer's default suppressions).
 */
#ifndef PULSE_TEST_REDIS_SERVER_H
#define PULSE_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t redis_pid = -1;
static int redis_port;

/* h2o 2.2.5 keeps freed buffer chunks in per-thread recycle bins that nothing frees at exit (see lsan.supp) */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\n";
}

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline int port_accepts(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static inline void stop_redis(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        while (waitpid(redis_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        redis_pid = -1;
    }
}

static inline int start_redis(int port)
{
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--enable-debug-command", "yes", "--lua-time-limit", "100", "--loglevel", "warning",
               (char *)NULL);
        _exit(127);
    }
    redis_pid = pid;
    for (uint64_t deadline = now_ms() + 5000; now_ms() < deadline;) {
        if (port_accepts(port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            redis_pid = -1;
            return -1;
        }
        usleep(20000);
    }
    stop_redis();
    return -1;
}

#endif
