/*
 * publisher.c: a C publisher of a resmem channel, sending frames (see frame.h) that any
 * subscriber (Rust, C, C++, Python, a wasm guest) can check.
 *
 *   publisher <service> <count> <first-len> <seed> [namespace]
 *
 * Creates the service, waits up to 30 s for one subscriber, then sends <count> frames of
 * <first-len> << seq bytes (seq = 0, 1, ...), written in place into loaned shared memory,
 * printing "sent <seq> <len> <delivered>" per frame and "done sent=<count>". It then waits
 * (up to 30 s) until no subscriber is connected any more and destroys the publisher.
 * Exit status: 0, 1 on an error (the library's message on stderr), 2 on a bad command line.
 *
 * Build by hand like subscriber.c (see there).
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "resmem.h"

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

static uint64_t now_ns(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    uint64_t count = 0, first = 0, seed = 0;
    if ((argc != 5 && argc != 6) || parse_u64(argv[2], &count) != 0 ||
        parse_u64(argv[3], &first) != 0 || parse_u64(argv[4], &seed) != 0 || count > 40 ||
        first < FRAME_HEADER) {
        fprintf(stderr,
                "usage: %s <service> <count <= 40> <first-len >= %d> <seed> [namespace]\n",
                argv[0], FRAME_HEADER);
        return 2;
    }
    resmem_publisher_options opts = resmem_publisher_options_default();
    opts.namespace_ = argc == 6 ? argv[5] : NULL;
    opts.chunk_size = (size_t)first;

    resmem_publisher *publisher = NULL;
    resmem_status status = resmem_publisher_create(argv[1], &opts, &publisher);
    if (status != RESMEM_OK) {
        return fail(status);
    }
    int code = 0;
    size_t connected = 0;
    status = resmem_publisher_wait_for_subscribers(publisher, 1, 30000, &connected);
    if (status != RESMEM_OK) {
        code = fail(status);
    } else if (connected == 0) {
        fprintf(stderr, "error: no subscriber within 30 s\n");
        code = 1;
    }
    for (uint64_t seq = 0; code == 0 && seq < count; seq++) {
        size_t len = (size_t)(first << seq);
        resmem_loan *loan = NULL;
        status = resmem_publisher_loan(publisher, len, &loan);
        if (status != RESMEM_OK) {
            code = fail(status);
            break;
        }
        frame_fill((uint8_t *)resmem_loan_data(loan), resmem_loan_len(loan), seed, seq, now_ns(), 0);
        size_t delivered = 0;
        status = resmem_publisher_send(publisher, loan, &delivered); /* consumes the loan */
        if (status != RESMEM_OK) {
            code = fail(status);
            break;
        }
        printf("sent %" PRIu64 " %zu %zu\n", seq, len, delivered);
        fflush(stdout);
    }
    if (code == 0) {
        printf("done sent=%" PRIu64 "\n", count);
        fflush(stdout);
        /* Let the subscribers finish and leave before the service goes (they could also
         * drain it after the publisher is gone). */
        for (int waited = 0; waited < 3000; waited++) {
            status = resmem_publisher_wait_for_subscribers(publisher, 0, 0, &connected);
            if (status != RESMEM_OK || connected == 0) {
                break;
            }
            struct timespec pause = {0, 10 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    resmem_publisher_destroy(publisher);
    return code;
}
