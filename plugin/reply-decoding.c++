#include "reply-decoding.h"

#include <string.h>

#include "reply-checks.h"

namespace pyworker {

std::string copyText(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

ExportList decodeExportList(rpc::Worker::ListExportsResults::Reader reply) {
  ExportList list;
  list.useDefault = reply.getUseDefault();
  auto exports = reply.getExports();
  list.count = exports.size();
  if (list.count > MAX_EXPORTS) return list;  // refused by checkExportList, without copying
  list.exports.reserve(list.count);
  for (auto e : exports) {
    std::optional<std::string> description;
    if (e.getHasDescription()) description = copyText(e.getDescription());
    list.exports.emplace_back(copyText(e.getName()), kj::mv(description));
  }
  return list;
}

void checkExportList(const ExportList& list) {
  checkExportCount(list.count);
  for (auto& [name, description] : list.exports) {
    checkText(name, "export name");
    if (description) checkText(*description, "export description");
  }
}

std::string decodeDefaultExport(rpc::Worker::DefaultExportResults::Reader reply) {
  return copyText(reply.getName());
}

std::optional<std::string> decodeExportDescription(rpc::LaneReply::Reader reply) {
  if (!reply.getHasDescription()) return std::nullopt;
  return copyText(reply.getDescription());
}

size_t decodePreadReply(rpc::LaneReply::Reader reply, const void* shared, void* buffer,
                        uint32_t count) {
  auto data = reply.getData();
  if (shared) {
    // The script filled our range; the reply itself must carry nothing.
    size_t received = data.size() == 0 ? count : count + data.size();
    if (received == count) memcpy(buffer, shared, count);
    return received;
  }
  if (data.size() == count) memcpy(buffer, data.begin(), count);
  return data.size();
}

size_t decodeExtents(rpc::LaneReply::Reader reply, std::vector<ExtentEntry>& into) {
  auto entries = reply.getExtents();
  size_t received = entries.size();
  if (received > MAX_EXTENTS) return received;  // refused by checkExtentCount, without copying
  into.reserve(received);
  for (auto e : entries) into.push_back({e.getOffset(), e.getLength(), e.getType()});
  return received;
}

}  // namespace pyworker
