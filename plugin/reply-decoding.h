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

}  // namespace pyworker
