/*
 * subscriber.c: a C peer of a resmem channel. Receives frames (see frame.h) from the
 * publisher of <service> and checks every byte of each.
 *
 *   subscriber <service> <count> <seed> [namespace]
 *
 * Opens the service (waiting up to 30 s for its publisher), receives <count> frames
 * (waiting up to 60 s for each), prints "frame <seq> <len>" per frame and then
 * "done count=<count>". Exit status: 0 when every frame checked, 1 on an error (the
 * library's message on stderr), 2 on a bad command line, 3 on a frame that does not check
 * ("mismatch <what>" on stdout and stderr).
 *
 * Build by hand, from the repository root, after `cargo build --release -p resmem-c`:
 *   cc -std=c11 -I host/capi/include examples/c/subscriber.c \
 *      target/release/libresmem_c.a -lpthread -ldl -lm -lrt -o subscriber
 * or against the shared library:
 *   cc -std=c11 -I host/capi/include examples/c/subscriber.c -L target/release -lresmem_c \
 *      -o subscriber && LD_LIBRARY_PATH=target/release ./subscriber svc 11 7
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "resmem.h"

#define OPEN_TIMEOUT_MS 30000u
#define FRAME_TIMEOUT_MS 60000

/* The message names the failing function already. */
static int fail(resmem_status status) {
    fprintf(stderr, "error %s: %s\n", resmem_status_name(status), resmem_last_error_message());
    return 1;
}

static int parse_u64(const char *text, uint64_t *out) {
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '\0' || text[0] == '-' || *end != '\0') {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int main(int argc, char **argv) {
    uint64_t count = 0, seed = 0;
    if ((argc != 4 && argc != 5) || parse_u64(argv[2], &count) != 0 ||
        parse_u64(argv[3], &seed) != 0) {
        fprintf(stderr, "usage: %s <service> <count> <seed> [namespace]\n", argv[0]);
        return 2;
    }
    const char *service = argv[1];
    const char *namespace_ = argc == 5 ? argv[4] : NULL;

    resmem_subscriber *subscriber = NULL;
    resmem_status status = resmem_subscriber_create(service, namespace_, OPEN_TIMEOUT_MS, &subscriber);
    if (status != RESMEM_OK) {
        return fail(status);
    }

    int code = 0;
    uint64_t n = 0;
    while (n < count) {
        resmem_sample *sample = NULL;
        status = resmem_subscriber_receive(subscriber, FRAME_TIMEOUT_MS, &sample);
        if (status == RESMEM_PUBLISHER_GONE) {
            fprintf(stderr, "error: the publisher is gone after %" PRIu64 " of %" PRIu64 " frames\n",
                    n, count);
            code = 1;
            break;
        }
        if (status != RESMEM_OK) {
            code = fail(status);
            break;
        }
        if (sample == NULL) {
            fprintf(stderr, "error: frame %" PRIu64 " did not arrive within %d ms\n", n,
                    FRAME_TIMEOUT_MS);
            code = 1;
            break;
        }
        const uint8_t *data = (const uint8_t *)resmem_sample_data(sample);
        size_t len = resmem_sample_len(sample);
        uint64_t seq = 0;
        char why[160];
        int checked = frame_check(data, len, seed, 0, &seq, why, sizeof why);
        status = resmem_subscriber_release(subscriber, sample);
        if (checked != 0) {
            printf("mismatch %s\n", why);
            fflush(stdout);
            fprintf(stderr, "mismatch in frame %" PRIu64 " received: %s\n", n, why);
            code = 3;
            break;
        }
        if (status != RESMEM_OK) {
            code = fail(status);
            break;
        }
        printf("frame %" PRIu64 " %zu\n", seq, len);
        fflush(stdout);
        n++;
    }
    if (code == 0) {
        printf("done count=%" PRIu64 "\n", n);
        fflush(stdout);
    }
    resmem_subscriber_destroy(subscriber);
    return code;
}
