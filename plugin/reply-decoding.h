#pragma once
// What the plugin copies out of the worker's replies to the non-data callbacks (list_exports,
// default_export, export_description). Pure: no nbdkit, no RPC. The decode functions run on the
// RPC thread while the reply is alive; the check functions on nbdkit's thread afterwards
// (reply-checks.h). plugin.c++ and fuzz/plugin-replies-fuzz.c++ share them, so the fuzzer
// feeds exactly the code that the plugin runs.

#include <stddef.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pyworker.capnp.h"
#include "reply-checks.h"

namespace pyworker {

std::string copyText(capnp::Text::Reader text);
// Byte for byte, NULs included: the checks decide what is acceptable.

struct ExportList {
  bool useDefault = false;  // the script has no list_exports: nbdkit_use_default_export()
  size_t count = 0;         // as the reply says, even when too many to copy
  std::vector<std::pair<std::string, std::optional<std::string>>> exports;
  // (name, description); left empty when `count` is over MAX_EXPORTS.
};

ExportList decodeExportList(rpc::Worker::ListExportsResults::Reader reply);

void checkExportList(const ExportList& list);
// checkExportCount, then checkText on every name and description (BadReply).

std::string decodeDefaultExport(rpc::Worker::DefaultExportResults::Reader reply);
// Checked with checkText(name, "default export name").

std::optional<std::string> decodeExportDescription(rpc::LaneReply::Reader reply);
// Empty when the script has no export_description. Checked with checkText.

constexpr uint32_t SHARED_PAYLOAD_MINIMUM = 32 * 1024;
// Payloads from this size up go through the data memory shared with the worker instead of
// inside the lane messages (two copies fewer); smaller ones are cheaper inline.

size_t decodePreadReply(rpc::LaneReply::Reader reply, const void* shared, void* buffer,
                        uint32_t count);
// A successful pread's data into `buffer`, from the reply or, when the call lent the worker
// `shared` (count bytes of the shared data memory), from there. Returns how many bytes the
// worker gave (checkPreadSize); copies only when that is exactly `count`.

size_t decodeExtents(rpc::LaneReply::Reader reply, std::vector<ExtentEntry>& into);
// The extents of a successful reply, copied into `into` unless there are more than
// MAX_EXTENTS. Returns how many the reply holds (checkExtentCount, then checkExtents).

}  // namespace pyworker
