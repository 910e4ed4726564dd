// cpp_peer.cpp: a C++ peer of a resmem channel over the C API, with RAII: the subscriber
// and every sample are std::unique_ptr with custom deleters, so nothing leaks on any path
// (an exception included), and a sample is released even after its subscriber is gone.
//
//   cpp_peer <service> <count> <seed> [namespace]
//
// Same behaviour and output as subscriber.c: "frame <seq> <len>" per frame, "done
// count=<count>"; exit 0, 1 (error), 2 (usage) or 3 (a frame that does not check).
//
// Build by hand, from the repository root, after `cargo build --release -p resmem-c`:
//   c++ -std=c++17 -I host/capi/include examples/c/cpp_peer.cpp
//       target/release/libresmem_c.a -lpthread -ldl -lm -lrt -o cpp_peer
// (one command line).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "frame.h"
#include "resmem.h"

namespace resmem {

// A failed call: the status and the library's message (which names the function).
class Error : public std::runtime_error {
  public:
    explicit Error(resmem_status status)
        : std::runtime_error(std::string(resmem_status_name(status)) + ": " +
                             resmem_last_error_message()),
          status_(status) {}
    resmem_status status() const { return status_; }

  private:
    resmem_status status_;
};

inline void check(resmem_status status) {
    if (status != RESMEM_OK) {
        throw Error(status);
    }
}

struct SubscriberDeleter {
    void operator()(resmem_subscriber *s) const noexcept { resmem_subscriber_destroy(s); }
};

// A sample knows its subscriber: NULL releases it to that one (which may be gone already).
struct SampleDeleter {
    void operator()(resmem_sample *s) const noexcept { resmem_subscriber_release(nullptr, s); }
};

// A received sample, read in place; released when it goes out of scope.
class Sample {
  public:
    explicit Sample(resmem_sample *raw) : raw_(raw) {}
    const std::uint8_t *data() const {
        return static_cast<const std::uint8_t *>(resmem_sample_data(raw_.get()));
    }
    std::size_t size() const { return resmem_sample_len(raw_.get()); }
    std::uint64_t offset() const { return resmem_sample_offset(raw_.get()); }

  private:
    std::unique_ptr<resmem_sample, SampleDeleter> raw_;
};

class Subscriber {
  public:
    Subscriber(const char *service, const char *namespace_, std::uint32_t open_timeout_ms) {
        resmem_subscriber *raw = nullptr;
        check(resmem_subscriber_create(service, namespace_, open_timeout_ms, &raw));
        raw_.reset(raw);
    }

    // The next sample, or nothing when timeout_ms passed; throws Error (PUBLISHER_GONE once
    // the publisher is gone and the queue drained).
    std::optional<Sample> receive(std::int64_t timeout_ms) {
        resmem_sample *raw = nullptr;
        check(resmem_subscriber_receive(raw_.get(), timeout_ms, &raw));
        if (raw == nullptr) {
            return std::nullopt;
        }
        return Sample(raw);
    }

  private:
    std::unique_ptr<resmem_subscriber, SubscriberDeleter> raw_;
};

}  // namespace resmem

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: %s <service> <count> <seed> [namespace]\n", argv[0]);
        return 2;
    }
    char *end = nullptr;
    const unsigned long long count = std::strtoull(argv[2], &end, 10);
    const bool count_ok = *end == '\0';
    const unsigned long long seed = std::strtoull(argv[3], &end, 10);
    if (!count_ok || *end != '\0') {
        std::fprintf(stderr, "usage: %s <service> <count> <seed> [namespace]\n", argv[0]);
        return 2;
    }
    try {
        resmem::Subscriber subscriber(argv[1], argc == 5 ? argv[4] : nullptr, 30000);
        unsigned long long n = 0;
        for (; n < count; n++) {
            std::optional<resmem::Sample> sample = subscriber.receive(60000);
            if (!sample) {
                std::fprintf(stderr, "error: frame %llu did not arrive within 60 s\n", n);
                return 1;
            }
            std::uint64_t seq = 0;
            char why[160];
            if (frame_check(sample->data(), sample->size(), seed, 0, &seq, why, sizeof why) != 0) {
                std::printf("mismatch %s\n", why);
                std::fflush(stdout);
                return 3;
            }
            std::printf("frame %llu %zu\n", static_cast<unsigned long long>(seq), sample->size());
            std::fflush(stdout);
        }
        std::printf("done count=%llu\n", n);
        std::fflush(stdout);
    } catch (const resmem::Error &e) {
        std::fprintf(stderr, "error %s\n", e.what());
        return 1;
    }
    return 0;
}
