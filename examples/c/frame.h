/*
 * frame.h: the channel guests' frame format (guest/sdk/src/frame.rs), ported to C, for the
 * example peers. Header-only (static inline), usable from C11 and C++17.
 *
 * A frame of len >= FRAME_HEADER bytes holds its sequence number (word 0, u64 little
 * endian), a tag binding the sequence number, the length and the publisher's seed (word 1),
 * the sender's wall-clock stamp in ns (word 2, not covered by the tag), and then
 * frame_byte(seed, seq, i) ^ key for every later byte i (counted from the frame's start).
 * Every multiplication wraps modulo 2^64, as Rust's wrapping_mul: uint64_t arithmetic.
 */
#ifndef RESMEM_EXAMPLE_FRAME_H
#define RESMEM_EXAMPLE_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bytes of a frame's header. */
#define FRAME_HEADER 24

/* The payload byte at index i (from the frame's start) of frame seq. */
static inline uint8_t frame_byte(uint64_t seed, uint64_t seq, uint64_t i) {
    uint64_t s = seed ^ (seq * UINT64_C(0x9E3779B97F4A7C15));
    return (uint8_t)((i * UINT64_C(0x9E3779B9) + s * UINT64_C(0x51)) >> 3) ^ (uint8_t)(s >> 56);
}

/* The tag of frame seq of len bytes from a publisher seeded with seed. */
static inline uint64_t frame_tag(uint64_t seed, uint64_t seq, uint64_t len) {
    uint64_t z = seed ^ UINT64_C(0x5A3C96E10F0F7B2D);
    const uint64_t words[2] = {seq, len};
    for (int k = 0; k < 2; k++) {
        z = (z ^ words[k]) * UINT64_C(0xBF58476D1CE4E5B9);
        z ^= z >> 31;
    }
    return z;
}

static inline uint64_t frame_get_word(const uint8_t *at) {
    uint64_t w = 0;
    for (int k = 7; k >= 0; k--) {
        w = (w << 8) | at[k];
    }
    return w;
}

static inline void frame_put_word(uint8_t *at, uint64_t w) {
    for (int k = 0; k < 8; k++) {
        at[k] = (uint8_t)(w >> (8 * k));
    }
}

/* Writes frame seq into buf (all len bytes), payload XORed with key. Returns 0, or -1
 * (writing nothing) when len is below FRAME_HEADER. */
static inline int frame_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t seq,
                             uint64_t stamp_ns, uint8_t key) {
    if (len < FRAME_HEADER) {
        return -1;
    }
    frame_put_word(buf, seq);
    frame_put_word(buf + 8, frame_tag(seed, seq, (uint64_t)len));
    frame_put_word(buf + 16, stamp_ns);
    for (size_t i = FRAME_HEADER; i < len; i++) {
        buf[i] = frame_byte(seed, seq, (uint64_t)i) ^ key;
    }
    return 0;
}

/* Checks every byte of a frame written by frame_fill with seed and key. Returns 0 and sets
 * *seq; otherwise -1, with what is wrong in why (the Rust check's wording). */
static inline int frame_check(const uint8_t *buf, size_t len, uint64_t seed, uint8_t key,
                              uint64_t *seq, char *why, size_t why_len) {
    if (len < FRAME_HEADER) {
        snprintf(why, why_len, "%zu bytes: no frame header", len);
        return -1;
    }
    uint64_t claimed = frame_get_word(buf);
    if (frame_get_word(buf + 8) != frame_tag(seed, claimed, (uint64_t)len)) {
        snprintf(why, why_len, "frame %llu: header does not match seed and length",
                 (unsigned long long)claimed);
        return -1;
    }
    for (size_t i = FRAME_HEADER; i < len; i++) {
        uint8_t expected = frame_byte(seed, claimed, (uint64_t)i) ^ key;
        if (buf[i] != expected) {
            snprintf(why, why_len, "frame %llu: byte %zu is 0x%02x, expected 0x%02x",
                     (unsigned long long)claimed, i, (unsigned)buf[i], (unsigned)expected);
            return -1;
        }
    }
    *seq = claimed;
    return 0;
}

#endif /* RESMEM_EXAMPLE_FRAME_H */
