// readPassword() against nbdkit_read_password() (nbdkit's server/public.c): the forms the worker
// can serve give nbdkit's answers; the two that need nbdkit's own stdin or descriptors are
// refused with the reason.

#include "read-password.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

namespace pyworker {
namespace {

std::string passwordOf(const std::string& value) {
  auto result = readPassword(value.c_str());
  auto* password = std::get_if<std::string>(&result);
  EXPECT_NE(password, nullptr) << "'" << value << "' was refused: "
                               << std::get<ReadPasswordError>(result).message;
  return password ? *password : "<refused>";
}

std::string errorOf(const std::string& value) {
  auto result = readPassword(value.c_str());
  auto* error = std::get_if<ReadPasswordError>(&result);
  EXPECT_NE(error, nullptr) << "'" << value << "' was accepted";
  return error ? error->message : "";
}

class PasswordFile : public testing::Test {
protected:
  void SetUp() override {
    char pattern[] = "/tmp/pyworker-password-XXXXXX";
    int fd = mkstemp(pattern);
    ASSERT_NE(fd, -1);
    close(fd);
    path = pattern;
  }
  void TearDown() override { unlink(path.c_str()); }
  void write(const std::string& text) { std::ofstream(path, std::ios::binary) << text; }
  std::string path;
};

TEST(ReadPassword, TheValueItselfIsThePassword) {
  EXPECT_EQ(passwordOf("secret"), "secret");
  EXPECT_EQ(passwordOf(""), "");
  EXPECT_EQ(passwordOf("with spaces\tand é"), "with spaces\tand é");
}

TEST_F(PasswordFile, PlusFileIsItsFirstLineWithoutTheNewline) {
  write("testing 1 2 3\n");
  EXPECT_EQ(passwordOf("+" + path), "testing 1 2 3");
  write("no newline");
  EXPECT_EQ(passwordOf("+" + path), "no newline");
  write("first\nsecond\n");
  EXPECT_EQ(passwordOf("+" + path), "first");
  write("trailing blanks  \r\n");
  EXPECT_EQ(passwordOf("+" + path), "trailing blanks  \r");
  write("");
  EXPECT_EQ(passwordOf("+" + path), "");
  write("\n");
  EXPECT_EQ(passwordOf("+" + path), "");
}

TEST(ReadPassword, MissingFileIsNbdkitsOpenError) {
  EXPECT_EQ(errorOf("+/nonexistent/password"),
            "open /nonexistent/password: No such file or directory");
  EXPECT_EQ(errorOf("+"), "open : No such file or directory");
  EXPECT_EQ(errorOf("+/"), "could not read password from /: Is a directory");
}

TEST(ReadPassword, StdinAndNbdkitsDescriptorsAreNotTheWorkers) {
  // nbdkit says the same for "-" whenever stdio is not safe (under -s, after configuration).
  EXPECT_EQ(errorOf("-"), "stdin is not available for reading password");
  EXPECT_NE(errorOf("-3").find("cannot use password -FD under pyworker"), std::string::npos);
  EXPECT_NE(errorOf("-x").find("cannot use password -FD under pyworker"), std::string::npos);
}

}  // namespace
}  // namespace pyworker
