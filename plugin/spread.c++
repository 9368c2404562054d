#include "spread.h"

#include <future>
#include <string>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "answer-check.h"
#include "handle-opening.h"
#include "plugin-state.h"

namespace pyworker {

namespace {

struct Attempt {
  // One other worker's handle for the connection, or why there is none.
  Connection::Binding binding;  // a handle id only when it answered as the first one
  pid_t pid = 0;
  std::string failure;
};

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const WorkerLost& lost) {
    return "worker process " + std::to_string(lost.pid) + " was lost (" + lost.why + ")";
  } catch (const std::exception& e) {
    return e.what();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  } catch (...) {
    return "no worker could be had";  // reported where it failed (ScriptFailed)
  }
}

Attempt openBeside(const Connection& connection, const Connection::Answers& answers,
                   size_t slot) {
  Attempt attempt;
  try {
    auto instance = state().supervisor().instanceOfSlot(slot);
    attempt.pid = instance->pid();
    auto opened = openHandle(instance, connection.readonly(), connection.context());
    if (opened.outcome.error != 0) {
      attempt.failure = "open failed: " + opened.outcome.message;
      return attempt;
    }
    std::string difference;
    try {
      difference = differenceFrom(*instance, opened.binding.handleId, answers);
    } catch (...) {
      instance->closeHandle(opened.binding.handleId);
      throw;
    }
    if (!difference.empty()) {
      instance->closeHandle(opened.binding.handleId);
      attempt.failure = difference;
      return attempt;
    }
    attempt.binding = opened.binding;
  } catch (...) {
    attempt.failure = describe(std::current_exception());
  }
  return attempt;
}

}  // namespace

std::vector<Connection::Binding> spreadConnection(const Connection& connection,
                                                  const Connection::Binding& first) {
  auto where = describeExport(connection.context());
  auto answers = connection.answers();
  auto multiConn = answers.queries.find(rpc::Query::CAN_MULTI_CONN);
  if (multiConn == answers.queries.end() || multiConn->second != 1) {
    nbdkit_debug("pyworker: connection (%s) stays on worker process %d: the script's "
                 "can_multi_conn is false",
                 where.c_str(), static_cast<int>(first.instance->pid()));
    return {};
  }
  if (!state().supervisor().isCurrent(first.instance)) {
    // A reload has retired it: its script and the new workers' may differ.
    nbdkit_debug("pyworker: connection (%s) stays on worker process %d: a reload retired it",
                 where.c_str(), static_cast<int>(first.instance->pid()));
    return {};
  }
  size_t slots = state().supervisor().slotCount();
  std::vector<size_t> otherSlots;
  for (size_t slot = 0; slot < slots; ++slot) {
    if (slot != first.instance->slot()) otherSlots.push_back(slot);
  }
  // At once: one on this thread, each other on a thread of its own (with workers=2, none:
  // a thread per connection costs nbdkit more than the round trips it would overlap).
  std::vector<std::future<Attempt>> others;
  for (size_t i = 1; i < otherSlots.size(); ++i) {
    others.push_back(std::async(std::launch::async, [&, slot = otherSlots[i]] {
      return openBeside(connection, answers, slot);
    }));
  }
  std::vector<Attempt> attempts;
  if (!otherSlots.empty()) attempts.push_back(openBeside(connection, answers, otherSlots.front()));
  for (auto& other : others) attempts.push_back(other.get());
  std::string why;
  for (auto& attempt : attempts) {
    if (!attempt.failure.empty() && why.empty()) {
      why = attempt.pid != 0 ? "on worker process " + std::to_string(attempt.pid) + ", " +
                                   attempt.failure
                             : attempt.failure;
    }
  }
  std::vector<Connection::Binding> bindings;
  std::string pids = std::to_string(first.instance->pid());
  for (auto& attempt : attempts) {
    if (!attempt.binding.instance) continue;
    if (!why.empty()) {
      attempt.binding.instance->closeHandle(attempt.binding.handleId);
      continue;
    }
    pids += ", " + std::to_string(attempt.pid);
    bindings.push_back(attempt.binding);
  }
  if (!why.empty()) {
    nbdkit_error("pyworker: connection (%s) is not spread, it stays on worker process %d: "
                 "%s",
                 where.c_str(), static_cast<int>(first.instance->pid()), why.c_str());
    return {};
  }
  nbdkit_debug("pyworker: connection (%s) spread over worker processes %s", where.c_str(),
               pids.c_str());
  return bindings;
}

}  // namespace pyworker
