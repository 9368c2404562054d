// Conversions of script return values, on an embedded interpreter: the strictness of
// in-process nbdkit where it has some, and clear messages where it has none.

#include "script.h"
#include "rpc-limits.h"
#include "value-conversions.h"

#include <gtest/gtest.h>

#include <mutex>

namespace pyworker {
namespace {

class ValueConversions: public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    static std::once_flag once;
    std::call_once(once, []() { Py_InitializeEx(0); });  // this thread keeps the GIL
  }

  PyRef eval(const char* expression) {
    PyObject* main = PyImport_AddModule("__main__");
    PyObject* globals = PyModule_GetDict(main);
    PyRef value(PyRun_String(expression, Py_eval_input, globals, globals));
    if (!value) PyErr_Print();
    EXPECT_TRUE(value) << expression;
    return value;
  }

  template <typename Convert>
  std::string errorOf(const char* expression, Convert&& convert) {
    PyRef value = eval(expression);
    try {
      convert(value.get());
    } catch (ScriptError& error) {
      EXPECT_FALSE(PyErr_Occurred());
      return error.message;
    } catch (PythonError&) {
      PyErr_Clear();
      return "<python error>";
    }
    ADD_FAILURE() << expression << " was accepted";
    return "";
  }
};

TEST_F(ValueConversions, OnlyExactTrueIsTrue) {
  EXPECT_TRUE(toBool(eval("True").get()));
  EXPECT_FALSE(toBool(eval("False").get()));
  EXPECT_FALSE(toBool(eval("1").get()));
  EXPECT_FALSE(toBool(eval("'yes'").get()));
  EXPECT_FALSE(toBool(eval("None").get()));
}

TEST_F(ValueConversions, Size) {
  EXPECT_EQ(toSize(eval("0").get(), "get_size"), 0);
  EXPECT_EQ(toSize(eval("2**63 - 1").get(), "get_size"), INT64_MAX);
  auto size = [](PyObject* v) { toSize(v, "get_size"); };
  EXPECT_EQ(errorOf("'1024'", size), "get_size returned 'str', expected int");
  EXPECT_EQ(errorOf("1024.0", size), "get_size returned 'float', expected int");
  EXPECT_EQ(errorOf("-1", size),
            "get_size returned -1, expected an int between 0 and 9223372036854775807");
  EXPECT_EQ(errorOf("2**63", size),
            "get_size returned 9223372036854775808, expected an int between 0 and "
            "9223372036854775807");
  EXPECT_EQ(errorOf("2**70", size),
            "get_size returned 1180591620717411303424, expected an int between 0 and "
            "9223372036854775807");
}

TEST_F(ValueConversions, Choice) {
  const char* names = "nbdkit.FUA_NONE, FUA_EMULATE or FUA_NATIVE";
  EXPECT_EQ(toChoice(eval("2").get(), "can_fua", 2, names), 2);
  auto fua = [&](PyObject* v) { toChoice(v, "can_fua", 2, names); };
  EXPECT_EQ(errorOf("3", fua), "can_fua returned 3, expected " + std::string(names));
  EXPECT_EQ(errorOf("-1", fua), "can_fua returned -1, expected " + std::string(names));
  EXPECT_EQ(errorOf("'native'", fua), "can_fua returned 'str', expected " + std::string(names));
  EXPECT_EQ(errorOf("None", fua), "can_fua returned 'NoneType', expected " + std::string(names));
}

TEST_F(ValueConversions, BlockSize) {
  auto sizes = toBlockSize(eval("(1, 4096, 2**32 - 1)").get(), "block_size");
  EXPECT_EQ(sizes.minimum, 1u);
  EXPECT_EQ(sizes.preferred, 4096u);
  EXPECT_EQ(sizes.maximum, 4294967295u);
  auto convert = [](PyObject* v) { toBlockSize(v, "block_size"); };
  EXPECT_EQ(errorOf("[1, 4096, 65536]", convert),
            "block_size returned 'list', expected a tuple (minimum, preferred, maximum)");
  EXPECT_EQ(errorOf("(1, 4096)", convert),
            "block_size returned a tuple of 2 items, expected a tuple (minimum, preferred, "
            "maximum)");
  EXPECT_EQ(errorOf("(1, '4096', 65536)", convert),
            "block_size returned 'str' as the preferred, expected int");
  EXPECT_EQ(errorOf("(1, 4096, 2**32)", convert),
            "block_size returned 4294967296 as the maximum, expected an int between 0 and "
            "4294967295");
  EXPECT_EQ(errorOf("(-1, 4096, 65536)", convert),
            "block_size returned -1 as the minimum, expected an int between 0 and 4294967295");
  // nbdkit's rules, named here rather than refused by nbdkit without the script's name.
  EXPECT_EQ(toBlockSize(eval("(0, 0, 0)").get(), "block_size").preferred, 0u);
  EXPECT_EQ(toBlockSize(eval("(65536, 32 * 2**20, 2**32 - 1)").get(), "block_size").minimum,
            65536u);
  EXPECT_EQ(errorOf("(0, 4096, 65536)", convert),
            "block_size returned (0, 4096, 65536): the minimum must be between 1 and 65536");
  EXPECT_EQ(errorOf("(131072, 131072, 131072)", convert),
            "block_size returned (131072, 131072, 131072): the minimum must be between 1 and "
            "65536");
  EXPECT_EQ(errorOf("(3, 4096, 65536)", convert),
            "block_size returned (3, 4096, 65536): the minimum must be a power of 2");
  EXPECT_EQ(errorOf("(512, 3000, 65536)", convert),
            "block_size returned (512, 3000, 65536): the preferred size must be a power of 2");
  EXPECT_EQ(errorOf("(1, 256, 65536)", convert),
            "block_size returned (1, 256, 65536): the preferred size must be between 512 and "
            "32M");
  EXPECT_EQ(errorOf("(512, 4096, 1000000)", convert),
            "block_size returned (512, 4096, 1000000): the maximum must be 0xffffffff or a "
            "multiple of the minimum");
  EXPECT_EQ(errorOf("(1024, 512, 65536)", convert),
            "block_size returned (1024, 512, 65536): expected minimum <= preferred <= maximum");
  EXPECT_EQ(errorOf("(512, 8192, 4096)", convert),
            "block_size returned (512, 8192, 4096): expected minimum <= preferred <= maximum");
}

TEST_F(ValueConversions, ExtentRules) {
  auto check = [this](const char* list, uint64_t offset, uint32_t count) {
    return [=, this](PyObject*) {
      checkExtents(toExtents(eval(list).get(), "extents"), offset, count, "extents");
    };
  };
  // Accepted as nbdkit accepts them: extents before the request, zero-length ones, extents
  // past its end, a first extent starting before the offset.
  EXPECT_NO_THROW(check("[(0, 4096, 0), (4096, 0, 0), (4096, 8192, 1)]", 8192, 4096)(nullptr));
  EXPECT_NO_THROW(check("[(0, 16384, 0), (16384, 4096, 3)]", 4096, 4096)(nullptr));
  // nbdkit_add_extent()'s refusals, in its words (nbdkit python shows them so).
  EXPECT_EQ(errorOf("None", check("[(0, 4096, 0), (8192, 4096, 0)]", 0, 65536)),
            "nbdkit_add_extent: extents must be added in ascending order and must be "
            "contiguous");
  EXPECT_EQ(errorOf("None", check("[(0, 4096, 0), (4096, 0, 0), (0, 4096, 0)]", 0, 8192)),
            "nbdkit_add_extent: extents must be added in ascending order and must be "
            "contiguous");
  EXPECT_EQ(errorOf("None", check("[(4096, 4096, 0)]", 0, 65536)),
            "nbdkit_add_extent: first extent must not be > start (0)");
  // Its arithmetic wraps at 2^64: a length running past it is contiguous with offset 4095.
  EXPECT_NO_THROW(check("[(0, 4096, 1), (4096, 2**64 - 1, 0)]", 0, 65536)(nullptr));
  EXPECT_NO_THROW(check("[(0, 4096, 1), (4096, 2**64 - 1, 0), (4095, 1, 0)]", 0, 65536)(nullptr));
  // Starting at or past the end of the request: nbdkit decides (it knows the export's size).
  EXPECT_NO_THROW(check("[(65536, 4096, 0)]", 0, 65536)(nullptr));
}

TEST(ExtentShaping, KeepsWhatNbdkitAddExtentKeeps) {
  auto shaped = [](std::vector<ExtentValue> extents, uint64_t offset) {
    shapeExtents(extents, offset);
    std::string out;
    for (auto& e : extents) {
      out += "(" + std::to_string(e.offset) + "," + std::to_string(e.length) + "," +
             std::to_string(e.type) + ")";
    }
    return out;
  };
  // Before the request and empty: dropped; the first kept one clipped to the offset.
  EXPECT_EQ(shaped({{0, 4096, 0}, {4096, 0, 1}, {4096, 4096, 1}, {8192, 4096, 3}}, 6000),
            "(6000,2192,1)(8192,4096,3)");
  // Neighbours of one type merged, also across an empty one; past the request kept.
  EXPECT_EQ(shaped({{0, 512, 3}, {512, 512, 3}, {1024, 0, 0}, {1024, 512, 3}, {1536, 512, 0}},
                   0),
            "(0,1536,3)(1536,512,0)");
  // A first extent after the offset is left for nbdkit to refuse (or ignore).
  EXPECT_EQ(shaped({{65536, 4096, 0}}, 0), "(65536,4096,0)");
}

TEST(ExtentShaping, KeepsAtMostMaxExtents) {
  // 3,000,000 alternating extents: the first MAX_EXTENTS kept.
  std::vector<ExtentValue> extents;
  for (uint32_t i = 0; i < 3000000; ++i) extents.push_back({i * 512ull, 512, i % 2 ? 3u : 0u});
  shapeExtents(extents, 100);
  ASSERT_EQ(extents.size(), MAX_EXTENTS);
  EXPECT_EQ(extents[0].offset, 100u);
  EXPECT_EQ(extents[0].length, 412u);
  EXPECT_EQ(extents.back().offset, (MAX_EXTENTS - 1) * 512ull);
  EXPECT_EQ(extents.back().length, 512u);
  // Once full, nbdkit ignores the rest: one of the last one's type is not merged into it.
  std::vector<ExtentValue> full;
  for (uint32_t i = 0; i < MAX_EXTENTS; ++i) full.push_back({i * 512ull, 512, i % 2 ? 3u : 0u});
  full.push_back({MAX_EXTENTS * 512ull, 512, full.back().type});
  shapeExtents(full, 0);
  ASSERT_EQ(full.size(), MAX_EXTENTS);
  EXPECT_EQ(full.back().length, 512u);
  // All of one type: one extent, however many there were.
  std::vector<ExtentValue> same;
  for (uint32_t i = 0; i < 3000000; ++i) same.push_back({i * 512ull, 512, 1});
  shapeExtents(same, 0);
  ASSERT_EQ(same.size(), 1u);
  EXPECT_EQ(same[0].length, 3000000ull * 512);
}

TEST_F(ValueConversions, Extents) {
  auto extents = toExtents(eval("[(0, 4096, 0), (4096, 2**40, 3)]").get(), "extents");
  ASSERT_EQ(extents.size(), 2u);
  EXPECT_EQ(extents[1].offset, 4096u);
  EXPECT_EQ(extents[1].length, 1ull << 40);
  EXPECT_EQ(extents[1].type, 3u);
  // Any iterable, a generator too.
  EXPECT_EQ(toExtents(eval("((o, 512, 1) for o in range(0, 2048, 512))").get(), "extents")
                .size(), 4u);
  // Types as PyLong_AsUnsignedLong() into a uint32_t: any, truncated to 32 bits.
  EXPECT_EQ(toExtents(eval("[(0, 512, 2**32 + 3)]").get(), "extents")[0].type, 3u);
  EXPECT_EQ(toExtents(eval("[(0, 512, 8)]").get(), "extents")[0].type, 8u);
  auto convert = [](PyObject* v) { toExtents(v, "extents"); };
  EXPECT_EQ(errorOf("42", convert), "extents method did not return something which is iterable");
  EXPECT_EQ(errorOf("[]", convert), "extents method cannot return an empty list");
  EXPECT_EQ(errorOf("[(0, 512, 0), [512, 512, 0]]", convert),
            "extents method did not return an iterable of 3-tuples");
  EXPECT_EQ(errorOf("[(0, 512)]", convert),
            "extents method did not return an iterable of 3-tuples");
  // Conversion errors are Python's own ("PyLong: error: ..."): no __index__, no negatives.
  EXPECT_EQ(errorOf("[(0, -512, 0)]", convert), "<python error>");
  EXPECT_EQ(errorOf("[(0, 512, 2**64)]", convert), "<python error>");
  EXPECT_EQ(errorOf("[(0, 512, 'hole')]", convert), "<python error>");
  // An iterator raising part-way ends the list; raising at once leaves it empty.
  auto partial = toExtents(eval("(x if x else 1/0 for x in [(0, 512, 1), None])").get(),
                           "extents");
  ASSERT_EQ(partial.size(), 1u);
  EXPECT_FALSE(PyErr_Occurred());
  EXPECT_EQ(errorOf("(1/0 for _ in [1])", convert), "extents method cannot return an empty list");
}

TEST_F(ValueConversions, Exports) {
  auto exports = toExports(eval("['a', ('b', 'the b'), 'é']").get(), "list_exports");
  ASSERT_EQ(exports.size(), 3u);
  EXPECT_EQ(exports[0].name, "a");
  EXPECT_FALSE(exports[0].hasDescription);
  EXPECT_EQ(exports[1].name, "b");
  EXPECT_EQ(exports[1].description, "the b");
  EXPECT_TRUE(exports[1].hasDescription);
  EXPECT_EQ(exports[2].name, "\xc3\xa9");
  EXPECT_TRUE(toExports(eval("[]").get(), "list_exports").empty());
  // Bytes too, and a NUL ends a name (nbdkit python strdup()s them).
  auto bytes = toExports(eval("[b'bx', (b'by', b'dy'), 'c\\x00d']").get(), "list_exports");
  ASSERT_EQ(bytes.size(), 3u);
  EXPECT_EQ(bytes[0].name, "bx");
  EXPECT_EQ(bytes[1].description, "dy");
  EXPECT_EQ(bytes[2].name, "c");
  auto partial = toExports(eval("(x if x else 1/0 for x in ['a', None])").get(), "list_exports");
  EXPECT_EQ(partial.size(), 1u);
  EXPECT_TRUE(toExports(eval("(1/0 for _ in [1])").get(), "list_exports").empty());
  auto convert = [](PyObject* v) { toExports(v, "list_exports"); };
  EXPECT_EQ(errorOf("None", convert),
            "list_exports method did not return something which is iterable");
  EXPECT_EQ(errorOf("['a', 7]", convert),
            "list_exports method did not return an iterable of 2-tuples");
  EXPECT_EQ(errorOf("[('a', 'b', 'c')]", convert),
            "list_exports method did not return an iterable of 2-tuples");
  EXPECT_EQ(errorOf("[('a', None)]", convert),
            "list_exports method did not return an iterable of string 2-tuples");
  EXPECT_EQ(errorOf("[b'\\xff']", convert),
            "list_exports returned an export name b'\\xff' that is not valid UTF-8");
  std::string surrogate = errorOf("['bad\\udcff']", convert);
  EXPECT_EQ(surrogate.rfind("list_exports returned an export name 'bad\\udcff' that is not "
                            "valid UTF-8 (", 0), 0u) << surrogate;
}

TEST_F(ValueConversions, IndexObjects) {
  // __index__ is an int to PyLong_AsLong(), as in nbdkit python (get_size, thread_model,
  // can_fua, can_cache, block_size).
  eval("exec('class I:\\n def __init__(s, v): s.v = v\\n def __index__(s): return s.v')");
  EXPECT_EQ(toSize(eval("I(8192)").get(), "get_size"), 8192);
  EXPECT_EQ(toChoice(eval("I(2)").get(), "can_fua", 2, "names"), 2);
  EXPECT_EQ(toBlockSize(eval("(I(512), 4096, I(65536))").get(), "block_size").maximum, 65536u);
}

TEST_F(ValueConversions, Text) {
  EXPECT_EQ(utf8(eval("'x\\u20ac'").get(), "default_export", "the export name"),
            "x\xe2\x82\xac");
  auto convert = [](PyObject* v) { utf8(v, "default_export", "the export name"); };
  EXPECT_EQ(errorOf("b'x'", convert),
            "default_export returned 'bytes' as the export name, expected str");
}

}  // namespace
}  // namespace pyworker
