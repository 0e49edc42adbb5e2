#pragma once

// The real `cairn` binary run from the integration tests: its exit code,
// stdout and stderr apart, and readers of what it prints.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cairn/persistence/codec.hpp" // before rapidjson: cereal configures it
#include "support/temp_dir.hpp"

#include <rapidjson/document.h>

extern char** environ;

namespace cairn::test::cli {

struct run_result {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A started `cairn` process whose stdout and stderr go to files.
class cli_process {
public:
  explicit cli_process(const std::vector<std::string>& args) : files_() {
    std::vector<std::string> argv_s{CAIRN_CLI_PATH};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    int rc = posix_spawn(&pid_, CAIRN_CLI_PATH, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
  }
  ~cli_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  cli_process(const cli_process&) = delete;
  cli_process& operator=(const cli_process&) = delete;

  [[nodiscard]] std::string out() const { return slurp(out_path()); }
  void signal(int sig) const { ::kill(pid_, sig); }

  run_result wait() {
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    run_result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out_path());
    r.err = slurp(err_path());
    return r;
  }

private:
  std::string out_path() const { return files_.sub("stdout"); }
  std::string err_path() const { return files_.sub("stderr"); }
  cairn::test::temp_dir files_;
  pid_t pid_ = -1;
};

inline run_result cairn_cli(const std::vector<std::string>& args) {
  cli_process p{args};
  auto r = p.wait();
  INFO("cairn exited " << r.code << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  return r;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto nl = text.find('\n', at);
    if (nl == std::string::npos)
      nl = text.size();
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

inline rapidjson::Document parse_json(const std::string& line) {
  rapidjson::Document d;
  d.Parse(line.c_str(), line.size());
  INFO("JSON: " << line);
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

/// `cairn_cli` for a command line whose arguments hold no spaces.
inline run_result cairn_cli_line(const std::string& line) {
  std::vector<std::string> args;
  std::istringstream in{line};
  for (std::string a; in >> a;)
    args.push_back(a);
  return cairn_cli(args);
}

} // namespace cairn::test::cli
