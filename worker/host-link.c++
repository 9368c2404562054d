#include "host-link.h"

namespace pyworker {

namespace {

thread_local HostCallCapture* threadCapture = nullptr;

bool captured(HostCall::Kind kind, const std::string& text = {}) {
  return threadCapture != nullptr && threadCapture->keep(kind, text);
}

}  // namespace

HostCallCapture::HostCallCapture() : saved_(threadCapture) { threadCapture = this; }

HostCallCapture::~HostCallCapture() { threadCapture = saved_; }

bool HostCallCapture::keep(HostCall::Kind kind, const std::string& text) {
  // Once one is sent, so are the rest: they must not overtake it.
  if (full_ || bytes_ + text.size() > MAX_BYTES) {
    full_ = true;
    return false;
  }
  bytes_ += text.size();
  calls_.push_back({kind, text});
  return true;
}

HostLink::HostLink(const kj::Executor& loop)
    : loop(loop), loopThread(std::this_thread::get_id()) {}

void HostLink::setHost(rpc::Host::Client newHost) { host = kj::mv(newHost); }

void HostLink::disconnect() {
  gone = true;
  host = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  room.notify_all();
}

void HostLink::answered() {
  std::lock_guard<std::mutex> lock(mutex);
  --inFlight;
  room.notify_one();
}

template <typename Send>
void HostLink::onLoop(Send&& send) {
  if (gone) return;
  bool onLoopThread = std::this_thread::get_id() == loopThread;
  if (!onLoopThread) {
    // The loop thread never waits here: it is the one that sees the answers.
    std::unique_lock<std::mutex> lock(mutex);
    room.wait(lock, [this]() { return inFlight < MAX_HOST_CALLS_IN_FLIGHT || gone; });
  }
  auto call = [&]() {
    KJ_IF_MAYBE(h, host) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        ++inFlight;
      }
      // Fire and forget: a dead config-phase Host must not fail the script's call.
      send(*h)
          .then([this]() { answered(); }, [this](kj::Exception&&) { answered(); })
          .detach([](kj::Exception&&) {});
    }
  };
  if (onLoopThread) {
    call();
  } else {
    loop.executeSync(call);
  }
}

void HostLink::debug(const std::string& message) {
  // Always sent: nbdkit has no API telling a plugin whether -v is on; the plugin's
  // nbdkit_debug() filters.
  if (captured(HostCall::DEBUG, message)) return;
  onLoop([&](rpc::Host::Client& h) {
    auto request = h.debugRequest();
    request.setMessage(message);
    return request.send().ignoreResult();
  });
}

void HostLink::error(const std::string& message) {
  if (captured(HostCall::ERROR, message)) return;
  onLoop([&](rpc::Host::Client& h) {
    auto request = h.errorRequest();
    request.setMessage(message);
    return request.send().ignoreResult();
  });
}

void HostLink::breakpointWaits(const std::string& where, const std::string& file,
                               unsigned line) {
  onLoop([&](rpc::Host::Client& h) {
    auto request = h.breakpointWaitsRequest();
    request.setWhere(where);
    request.setFile(file);
    request.setLine(line);
    return request.send().ignoreResult();
  });
}

void HostLink::breakpointResumed() {
  onLoop([&](rpc::Host::Client& h) { return h.breakpointResumedRequest().send().ignoreResult(); });
}

void HostLink::shutdown() {
  if (captured(HostCall::SHUTDOWN)) return;
  onLoop([&](rpc::Host::Client& h) { return h.shutdownRequest().send().ignoreResult(); });
}

}  // namespace pyworker
