# bench/peers/varnish/default.vcl: Varnish in front of the Express peer, as
# a team that wants a fast read API today would deploy it: a short TTL, one
# cache entry per tenant, and grace as the Varnish documentation recommends
# ("Grace mode and keep"): an expired object is answered for up to GRACE
# more seconds while one background fetch refreshes it.
#
# A template: bench/peers/varnish/run.sh replaces the @NAMES@ and writes
# the result into its working directory (under BENCH_DIR).
vcl 4.1;

backend express {
    .host = "@UPSTREAM_HOST@";
    .port = "@UPSTREAM_PORT@";
}

sub vcl_recv {
    # the harness's liveness probe and every write go to Express
    if (req.url == "/health" || (req.method != "GET" && req.method != "HEAD")) {
        return (pass);
    }
    # The built-in vcl_recv passes every request that has an Authorization
    # header; the API's reads all have one (the tenant's bearer token), so
    # they are looked up here instead, keyed on it (vcl_hash).
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    hash_data(req.http.Authorization);
    return (lookup);
}

sub vcl_backend_response {
    if (beresp.status == 200) {
        set beresp.ttl = @TTL@s;
        set beresp.grace = @GRACE@s;
    } else {
        # errors are not cached (a short hit-for-miss marker only)
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
    }
    return (deliver);
}

sub vcl_deliver {
    # X-Cache as the proxy and the Express peer spell it
    if (obj.hits > 0) {
        if (obj.ttl < 0s) {
            set resp.http.X-Cache = "stale";
        } else {
            set resp.http.X-Cache = "hit";
        }
    } else {
        set resp.http.X-Cache = "miss";
    }
}
