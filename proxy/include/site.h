/*
 * site.h: the paths pulse-proxy serves (site.c): /rpc/<name> (rpc.h),
 * /health, /ready, /metrics, and a problem document for anything else.
 */
#ifndef PULSE_SITE_H
#define PULSE_SITE_H

#include <h2o.h>
#include "config.h"

/**
 * Registers the proxy's handlers on `hostconf`: /rpc, /health, /ready, /metrics and a catch-all 404, and the filter
 * that turns h2o's own error answers into problem documents. Returns 0 or -1.
 */
int pulse_site_register(h2o_hostconf_t *hostconf) PULSE_WUR;

#endif
