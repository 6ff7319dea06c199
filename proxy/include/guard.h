/*
 * guard.h: the socket-level guard of every accepted connection (guard.c):
 * the request stream runs through framing.h's parser before h2o's HTTP/1
 * parser sees a byte, and a violation is answered with a problem document
 * and the connection closed.
 */
#ifndef PULSE_GUARD_H
#define PULSE_GUARD_H

#include <h2o.h>
#include "config.h"
#include "worker.h"

/**
 * Puts the guard in front of `sock`, a plain connection h2o_accept just handed to h2o's HTTP/1 layer on `w`'s loop (its
 * read callback is h2o's). Takes the limits from the current configuration (a reload applies to new connections). On
 * failure (out of memory) the connection is closed. The guard is freed with the socket, or as soon as the connection
 * becomes HTTP/2 (which frames its own messages).
 */
void pulse_guard_attach(pulse_worker_t *w, h2o_socket_t *sock);

/**
 * Registers on `pathconf` the filter through which the guard keeps h2o's HTTP/1 connections in front of it after each
 * response (h2o re-arms its own read callback when a response has been written). Every path that answers requests
 * must have it, the host's fallback path included. Returns 0 or -1.
 */
int pulse_guard_register_filter(h2o_pathconf_t *pathconf) PULSE_WUR;

#endif
