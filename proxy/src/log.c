/*
 * log.c: buffered JSON log.
 *
 * Producers (event loops, the catalog thread) format a line and append it to
 * `buf` under `mutex`; the writer thread swaps the buffer out under the mutex
 * and writes it without holding it.  At most LOG_BUF_MAX bytes wait; beyond
 * that lines are dropped and counted, and the count is logged later.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

#define LOG_BUF_MAX (4 * 1024 * 1024)
#define LOG_FLUSH_MS 100

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static char *buf;
static size_t buf_len, buf_cap;
static unsigned long dropped;
static int access_fd = 2, access_off, running, stopping;
static pthread_t writer;

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mutex);
    for (;;) {
        while (buf_len == 0 && !stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += LOG_FLUSH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&cond, &mutex, &ts);
        }
        if (buf_len == 0 && stopping)
            break;
        char *out = buf;
        size_t n = buf_len;
        unsigned long d = dropped;
        buf = NULL;
        buf_len = buf_cap = 0;
        dropped = 0;
        pthread_mutex_unlock(&mutex);
        write_all(access_fd, out, n);
        free(out);
        if (d != 0) {
            char line[128];
            int l = snprintf(line, sizeof(line), "{\"level\":\"warning\",\"msg\":\"log buffer full: %lu lines dropped\"}\n", d);
            write_all(2, line, (size_t)l);
        }
        pthread_mutex_lock(&mutex);
    }
    pthread_mutex_unlock(&mutex);
    return NULL;
}

int pulse_log_open(const char *target)
{
    if (strcmp(target, "off") == 0) {
        access_off = 1;
    } else if (strcmp(target, "-") != 0) {
        int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        access_fd = fd;
    }
    if (pthread_create(&writer, NULL, writer_main, NULL) != 0)
        return -1;
    running = 1;
    return 0;
}

void pulse_log_close(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&mutex);
    stopping = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mutex);
    pthread_join(writer, NULL);
    running = 0;
    if (access_fd > 2)
        close(access_fd);
}

static void append(const char *line, size_t n)
{
    if (!running) { /* before the log is open, or in unit tests */
        write_all(2, line, n);
        return;
    }
    pthread_mutex_lock(&mutex);
    if (buf_len + n > LOG_BUF_MAX) {
        dropped++;
    } else {
        if (buf_len + n > buf_cap) {
            size_t cap = buf_cap == 0 ? 65536 : buf_cap;
            while (cap < buf_len + n)
                cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                dropped++;
                pthread_mutex_unlock(&mutex);
                return;
            }
            buf = nb;
            buf_cap = cap;
        }
        memcpy(buf + buf_len, line, n);
        buf_len += n;
        if (buf_len > 65536)
            pthread_cond_signal(&cond);
    }
    pthread_mutex_unlock(&mutex);
}

static void timestamp(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static void emit(json_t *o)
{
    /* 7 significant digits: durations in ms to the microsecond, not 1.0189999999999999 */
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(o);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps's NUL becomes the newline */
    append(s, n + 1);
    free(s);
}

static json_t *jstrn(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    return j != NULL ? j : json_string("(invalid UTF-8)");
}

void pulse_log_access(const pulse_access_t *e)
{
    if (access_off)
        return;
    char ts[40];
    timestamp(ts, sizeof(ts));
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "request_id", e->request_id != NULL ? json_string(e->request_id) : json_null());
    if (e->trace_id != NULL)
        json_object_set_new(o, "trace_id", json_string(e->trace_id));
    json_object_set_new(o, "remote", e->remote != NULL ? json_string(e->remote) : json_null());
    json_object_set_new(o, "method", jstrn(e->method, e->method_len));
    json_object_set_new(o, "path", jstrn(e->path, e->path_len > 2048 ? 2048 : e->path_len));
    json_object_set_new(o, "status", json_integer(e->status));
    json_object_set_new(o, "bytes", json_integer((json_int_t)e->bytes));
    json_object_set_new(o, "duration_ms", json_real(e->duration_ms));
    if (e->endpoint != NULL)
        json_object_set_new(o, "endpoint", json_string(e->endpoint));
    if (e->cls != NULL)
        json_object_set_new(o, "class", json_string(e->cls));
    if (e->tenant != NULL)
        json_object_set_new(o, "tenant", json_string(e->tenant));
    if (e->source != NULL)
        json_object_set_new(o, "source", json_string(e->source));
    if (e->cache != NULL)
        json_object_set_new(o, "cache", json_string(e->cache));
    emit(o);
}

void pulse_log_msg(const char *level, const char *request_id, const char *fmt, ...)
{
    char msg[1024], ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof(ts));
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "msg", jstrn(msg, strlen(msg)));
    if (request_id != NULL)
        json_object_set_new(o, "request_id", json_string(request_id));
    if (!running || access_fd == 2 || access_off) {
        emit(o);
    } else { /* access lines go to a file: messages still belong on stderr */
        char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
        json_decref(o);
        if (s != NULL) {
            size_t n = strlen(s);
            s[n] = '\n';
            write_all(2, s, n + 1);
            free(s);
        }
    }
}
