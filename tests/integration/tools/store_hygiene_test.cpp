// The `cairn` CLI against hostile surroundings: what it creates is private,
// it never follows a planted symlink, and a damaged store is reported, not
// crashed on.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/event_store.hpp"
#include "corruption_campaign.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "unit/persistence/helpers.hpp"

extern char** environ;

using namespace cairn::persistence;
using cairn::test::append_ok;
using cairn::test::numbered;
using cairn::test::open_ok;
using cairn::test::temp_dir;

namespace {

namespace fs = std::filesystem;

struct cli_run {
  int code = -1; ///< Exit code, or 128 + the signal.
  bool signalled = false;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs `cairn args...` to completion, its output in files under `scratch`.
cli_run run_cairn(const std::vector<std::string>& args, const temp_dir& scratch) {
  std::vector<std::string> argv_s{CAIRN_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  auto out = scratch.sub("stdout"), err = scratch.sub("stderr");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, CAIRN_CLI_PATH, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  cli_run r;
  r.signalled = WIFSIGNALED(status);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void small_store(const std::string& dir) {
  auto store = open_ok(dir);
  append_ok(*store, "acct-1", numbered(5));
  append_ok(*store, "acct-2", numbered(3));
}

} // namespace

TEST_CASE("cairn export writes a file only its owner can read", "[integration][cli][hygiene]") {
  temp_dir dir, scratch;
  small_store(dir.sub("s"));
  auto old_mask = ::umask(0);
  auto r = run_cairn({"export", dir.sub("s"), dir.sub("out.jsonl")}, scratch);
  auto b = run_cairn({"backup", dir.sub("s"), dir.sub("backup")}, scratch);
  ::umask(old_mask);
  INFO(r.out << r.err << b.out << b.err);
  REQUIRE(r.code == 0);
  REQUIRE(b.code == 0);
  CHECK(mode_of(dir.sub("out.jsonl")) == 0600);
  CHECK(mode_of(dir.sub("backup")) == 0700);
  CHECK(mode_of(dir.sub("backup/data.mdb")) == 0600);
}

TEST_CASE("cairn export refuses a symlink at the destination and leaves its target alone",
          "[integration][cli][hygiene]") {
  temp_dir dir, scratch;
  small_store(dir.sub("s"));
  cairn::test::write_file(dir.sub("victim"), "precious");
  fs::create_symlink(dir.sub("victim"), dir.sub("link"));
  fs::create_symlink(dir.sub("nowhere"), dir.sub("dangling"));
  for (const auto* name : {"link", "dangling"}) {
    INFO(name);
    auto r = run_cairn({"export", dir.sub("s"), dir.sub(name)}, scratch);
    INFO(r.out << r.err);
    CHECK(r.code != 0);
    CHECK_FALSE(r.signalled);
    CHECK_THAT(r.err, Catch::Contains("symbolic link"));
  }
  CHECK(cairn::test::read_file(dir.sub("victim")) == "precious");
  CHECK_FALSE(fs::exists(dir.sub("nowhere")));
}

TEST_CASE("on stores with random bytes flipped in used pages, cairn verify never dies by a signal",
          "[integration][cli][corruption]") {
  auto seed = cairn::test::test_seed();
  constexpr int copies = 20;
  auto r = cairn::test::campaign::run(copies, seed);
  auto summary = cairn::test::campaign::describe(r, copies, seed);
  WARN(summary);
  CHECK(r.verify.crashed == 0);
  CHECK(r.verify.hung == 0);
}

TEST_CASE("cairn verify checks the sparse stream index and the command records",
          "[integration][cli][hygiene]") {
  temp_dir dir, scratch;
  auto path = dir.sub("s");
  {
    auto store = open_ok(path);
    append_ok(*store, "acct-1", numbered(300)); // index entries at versions 128 and 256
    metadata once;
    once.command_id = "cmd-42";
    append_ok(*store, "acct-2", numbered(2), once);
  }
  auto clean = run_cairn({"verify", path}, scratch);
  INFO(clean.out << clean.err);
  REQUIRE(clean.code == 0);
  CHECK_THAT(clean.out, Catch::Contains("2 stream index records, 1 command record"));

  // The index entry of acct-1 (stream 1) v128: its value follows its 16-byte key.
  std::string key(16, '\0');
  key[7] = 1;                       // stream number 1, big-endian
  key[15] = static_cast<char>(128); // version 128, big-endian
  auto data = path + "/data.mdb";
  REQUIRE(cairn::test::flip_in_file(data, key, 16) >= 1);
  // The command record of acct-2 (stream 2): "cmd-42" ends its key.
  REQUIRE(cairn::test::flip_in_file(data, "cmd-42", 6) >= 1);

  auto damaged = run_cairn({"verify", path}, scratch);
  INFO(damaged.out << damaged.err);
  CHECK(damaged.code == 1);
  CHECK_THAT(damaged.out, Catch::Contains("stream index entry of stream number 1 v128"));
  CHECK_THAT(damaged.out, Catch::Contains("command record"));
  CHECK_THAT(damaged.out, Catch::Contains("fails its checksum"));
}
