// What the plugin copies out of list_exports, default_export and export_description replies,
// and the checks it runs on them (plugin/reply-decoding.h).

#include "reply-checks.h"
#include "reply-decoding.h"

#include <capnp/message.h>

#include <gtest/gtest.h>

namespace pyworker {
namespace {

TEST(ReplyDecoding, ExportListCopiesNamesAndDescriptions) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<rpc::Worker::ListExportsResults>();
  auto exports = reply.initExports(2);
  exports[0].setName("a");
  exports[0].setDescription("ignored: hasDescription is false");
  exports[1].setName(capnp::Text::Reader("b\0c", 3));
  exports[1].setDescription("the b");
  exports[1].setHasDescription(true);

  auto list = decodeExportList(reply.asReader());
  EXPECT_FALSE(list.useDefault);
  EXPECT_EQ(list.count, 2u);
  ASSERT_EQ(list.exports.size(), 2u);
  EXPECT_EQ(list.exports[0].first, "a");
  EXPECT_FALSE(list.exports[0].second);
  EXPECT_EQ(list.exports[1].first, std::string("b\0c", 3));  // NULs kept for the checks
  EXPECT_EQ(list.exports[1].second, "the b");
  EXPECT_THROW(checkExportList(list), BadReply);  // the NUL
}

TEST(ReplyDecoding, TooManyExportsAreCountedNotCopied) {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<rpc::Worker::ListExportsResults>();
  reply.initExports(MAX_EXPORTS + 1);
  auto list = decodeExportList(reply.asReader());
  EXPECT_EQ(list.count, MAX_EXPORTS + 1);
  EXPECT_TRUE(list.exports.empty());
  try {
    checkExportList(list);
    FAIL() << "accepted " << list.count << " exports";
  } catch (const BadReply& e) {
    EXPECT_EQ(e.blame, BadReply::SCRIPT);
  }
}

TEST(ReplyDecoding, DefaultExportAndDescription) {
  capnp::MallocMessageBuilder nameMessage;
  auto name = nameMessage.initRoot<rpc::Worker::DefaultExportResults>();
  name.setName("the default");
  EXPECT_EQ(decodeDefaultExport(name.asReader()), "the default");

  capnp::MallocMessageBuilder descriptionMessage;
  auto description = descriptionMessage.initRoot<rpc::LaneReply>();
  description.setDescription("text");
  EXPECT_FALSE(decodeExportDescription(description.asReader()));  // hasDescription false
  description.setHasDescription(true);
  EXPECT_EQ(decodeExportDescription(description.asReader()), "text");
}

}  // namespace
}  // namespace pyworker
