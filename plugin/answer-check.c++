#include "answer-check.h"

#include <array>

#include "script-outcome.h"

namespace pyworker {

namespace {

const char* queryName(rpc::Query query) {
  switch (query) {
  case rpc::Query::CAN_WRITE: return "can_write";
  case rpc::Query::CAN_FLUSH: return "can_flush";
  case rpc::Query::IS_ROTATIONAL: return "is_rotational";
  case rpc::Query::CAN_TRIM: return "can_trim";
  case rpc::Query::CAN_ZERO: return "can_zero";
  case rpc::Query::CAN_FAST_ZERO: return "can_fast_zero";
  case rpc::Query::CAN_FUA: return "can_fua";
  case rpc::Query::CAN_CACHE: return "can_cache";
  case rpc::Query::CAN_EXTENTS: return "can_extents";
  case rpc::Query::CAN_MULTI_CONN: return "can_multi_conn";
  }
  return "can_?";
}

struct Difference {
  // Why the handle is not the connection nbdkit knows, or nothing.
  std::string text;
  explicit operator bool() const { return !text.empty(); }
};

template <typename Fill, typename Read>
Difference ask(WorkerInstance& instance, uint64_t handle, const char* callback, Fill&& fill,
               Read&& read) {
  ScriptOutcome outcome;
  instance.laneCall(
      [&](rpc::LaneCall::Builder call) {
        call.setHandle(handle);
        fill(call);
      },
      [&](rpc::LaneReply::Reader reply) {
        outcome = ScriptOutcome::from(reply.getStatus());
        if (outcome.error == 0) read(reply);
      });
  if (outcome.error != 0) return {std::string(callback) + " failed: " + outcome.message};
  return {};
}

}  // namespace

std::string differenceFrom(WorkerInstance& instance, uint64_t handle,
                           const Connection::Answers& told) {
  if (told.size) {
    int64_t size = 0;
    auto failed = ask(instance, handle, "get_size",
                      [](rpc::LaneCall::Builder call) { call.setGetSize(); },
                      [&](rpc::LaneReply::Reader reply) { size = reply.getSize(); });
    if (failed) return failed.text;
    if (size != *told.size) {
      return {"get_size changed from " + std::to_string(*told.size) + " to " +
              std::to_string(size)};
    }
  }
  const auto& facts = instance.scriptFacts();
  for (auto [query, before] : told.queries) {
    // An answer that runs no script code needs no round trip (nbdkit asks ten of them).
    int32_t now = facts.fixedAnswers[static_cast<size_t>(query)];
    if (now < 0) {
      auto failed = ask(instance, handle, queryName(query),
                        [&](rpc::LaneCall::Builder call) { call.setQuery(query); },
                        [&](rpc::LaneReply::Reader reply) { now = reply.getValue(); });
      if (failed) return failed.text;
    }
    if (now != before) {
      return {std::string(queryName(query)) + " changed from " + std::to_string(before) +
              " to " + std::to_string(now)};
    }
  }
  if (told.blockSize) {
    std::array<uint32_t, 3> now{};  // a script without block_size: no sizes
    if (facts.blockSize) {
      auto failed = ask(instance, handle, "block_size",
                        [](rpc::LaneCall::Builder call) { call.setBlockSize(); },
                        [&](rpc::LaneReply::Reader reply) {
                          now = {reply.getMinimum(), reply.getPreferred(), reply.getMaximum()};
                        });
      if (failed) return failed.text;
    }
    if (now != *told.blockSize) {
      auto text = [](const std::array<uint32_t, 3>& b) {
        return std::to_string(b[0]) + "/" + std::to_string(b[1]) + "/" + std::to_string(b[2]);
      };
      return {"block_size changed from " + text(*told.blockSize) + " to " + text(now)};
    }
  }
  return {};
}

std::string describeExport(const ConnectionContext& context) {
  return "export \"" + context.exportName + "\"";
}

}  // namespace pyworker
