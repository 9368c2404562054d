#include "lane-stream.h"

#include <capnp/serialize.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <climits>

namespace pyworker {

namespace {

constexpr size_t BUFFER_WORDS = 16 * 1024;
// 128 KiB: any message but an inline payload that the shared data memory had no room for.

constexpr size_t SCRATCH_WORDS = 8 * 1024 + 256;
// 32 KiB of inline payload and the rest of the message.

std::atomic<int> spinners{0};
// Why spin at all: on a virtual machine, waking a thread whose CPU has gone idle costs tens
// of microseconds (the hypervisor must reschedule that CPU); polling for a moment keeps the
// CPU awake when the answer is about to come. Why only one spinner per process: with many
// requests in flight the CPUs have better things to do than several threads polling.

class SpinTurn {
  // This thread's turn to spin, if no other thread of the process has it.
public:
  SpinTurn() {
    int none = 0;
    held_ = spinners.compare_exchange_strong(none, 1, std::memory_order_acquire);
  }
  ~SpinTurn() {
    if (held_) spinners.store(0, std::memory_order_release);
  }
  SpinTurn(const SpinTurn&) = delete;
  SpinTurn& operator=(const SpinTurn&) = delete;
  explicit operator bool() const { return held_; }

private:
  bool held_;
};

int millisecondsUntil(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                           std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

bool pollFor(int fd, short events, int milliseconds) {
  pollfd p = {fd, events, 0};
  for (;;) {
    int r = poll(&p, 1, milliseconds);
    if (r >= 0) return r > 0;  // POLLHUP/POLLERR count: the read or write then says what
    if (errno != EINTR) throw LaneError(LaneError::CLOSED, "poll on a lane failed");
  }
}

}  // namespace

kj::Array<capnp::word> newMessageScratch() {
  auto scratch = kj::heapArray<capnp::word>(SCRATCH_WORDS);
  memset(scratch.begin(), 0, scratch.asBytes().size());
  return scratch;
}

LaneStream::LaneStream(kj::AutoCloseFd socket)
    : socket_(kj::mv(socket)), buffer_(kj::heapArray<capnp::word>(BUFFER_WORDS)) {}

void LaneStream::write(capnp::MessageBuilder& message) {
  // capnp frames the message; the socket takes it with MSG_NOSIGNAL, so a gone peer is an
  // error here and never a SIGPIPE for whichever process this is.
  class Output final : public kj::OutputStream {
  public:
    explicit Output(int fd) : fd_(fd) {}
    void write(const void* buffer, size_t size) override {
      kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
      write(kj::arrayPtr(&piece, 1));
    }
    void write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
      KJ_STACK_ARRAY(iovec, vector, pieces.size(), 16, 128);
      for (size_t i = 0; i < pieces.size(); ++i) {
        vector[i] = {const_cast<kj::byte*>(pieces[i].begin()), pieces[i].size()};
      }
      iovec* next = vector.begin();
      size_t count = vector.size();
      while (count > 0) {
        msghdr m{};
        m.msg_iov = next;
        m.msg_iovlen = std::min<size_t>(count, IOV_MAX);
        ssize_t n = sendmsg(fd_, &m, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          throw LaneError(LaneError::CLOSED, "the other end of the lane is gone");
        }
        // Skip what was sent; a partial write leaves the rest of one piece.
        size_t sent = static_cast<size_t>(n);
        while (count > 0 && sent >= next->iov_len) {
          sent -= next->iov_len;
          ++next;
          --count;
        }
        if (count > 0) {
          next->iov_base = static_cast<char*>(next->iov_base) + sent;
          next->iov_len -= sent;
        }
      }
    }

  private:
    int fd_;
  };
  Output output(socket_.get());
  capnp::writeMessage(output, message);
}

bool LaneStream::waitReadable(std::optional<std::chrono::steady_clock::time_point> deadline,
                              std::chrono::microseconds spin) {
  if (spin.count() > 0) {
    if (SpinTurn turn; turn) {
      auto until = std::chrono::steady_clock::now() + spin;
      do {
        if (pollFor(socket_.get(), POLLIN, 0)) return true;
        sched_yield();  // a runnable thread on this CPU (the one we wait for?) goes first
      } while (std::chrono::steady_clock::now() < until);
    }
  }
  if (!deadline) return true;  // the blocking read waits
  return pollFor(socket_.get(), POLLIN, millisecondsUntil(*deadline));
}

size_t LaneStream::receive(kj::byte* into, size_t room) {
  for (;;) {
    ssize_t n = recv(socket_.get(), into, room, 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n < 0 && errno == EINTR) continue;
    throw LaneError(LaneError::CLOSED, n == 0 ? "the lane was closed by the other end"
                                              : "the lane failed (connection reset)");
  }
}

kj::ArrayPtr<const capnp::word> LaneStream::read(
    std::optional<std::chrono::steady_clock::time_point> deadline,
    std::chrono::microseconds spin, const LaterDeadline& later) {
  large_ = nullptr;
  kj::ArrayPtr<capnp::word> into = buffer_;
  size_t filled = 0;  // bytes
  for (bool first = true;; first = false) {
    size_t needed = 1;  // words: the first one holds the segment count and first size
    if (filled >= sizeof(capnp::word)) {
      needed = capnp::expectedSizeInWordsFromPrefix(
          kj::arrayPtr(into.begin(), filled / sizeof(capnp::word)));
    }
    if (needed > MAX_MESSAGE_WORDS) {
      throw LaneError(LaneError::MALFORMED, "a lane message is larger than the limit");
    }
    if (filled >= needed * sizeof(capnp::word)) {
      if (filled > needed * sizeof(capnp::word)) {
        // One call at a time each way: nothing may follow a message.
        throw LaneError(LaneError::MALFORMED, "unexpected bytes after a lane message");
      }
      return into.slice(0, needed);
    }
    if (needed > into.size()) {
      auto bigger = kj::heapArray<capnp::word>(needed);
      memcpy(bigger.begin(), into.begin(), filled);
      large_ = kj::mv(bigger);
      into = large_;
    }
    while (!waitReadable(deadline, first ? spin : std::chrono::microseconds(0))) {
      auto next = later ? later() : std::nullopt;
      if (!next) throw LaneError(LaneError::TIMED_OUT, "no reply on the lane before the deadline");
      deadline = next;
      first = false;
    }
    auto* bytes = reinterpret_cast<kj::byte*>(into.begin());
    filled += receive(bytes + filled, into.size() * sizeof(capnp::word) - filled);
  }
}

}  // namespace pyworker
