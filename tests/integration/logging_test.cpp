// Logging: JSON lines that parse, named loggers, levels from SPDLOG_LEVEL.

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;

namespace {

/// Collects log lines in memory (the sink owns them: nothing dangles when
/// the process-wide loggers outlive the test).
struct captured {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink =
    std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100000);

  std::vector<std::string> lines() {
    auto out = sink->last_formatted();
    for (auto& line : out)
      if (!line.empty() && line.back() == '\n')
        line.pop_back();
    return out;
  }

  bool contains(const std::string& text) {
    for (const auto& line : lines())
      if (line.find(text) != std::string::npos)
        return true;
    return false;
  }
};

/// Sets an environment variable for one test, and restores it.
struct scoped_env {
  std::string name;
  explicit scoped_env(std::string n, const char* value) : name(std::move(n)) {
    ::setenv(name.c_str(), value, 1);
  }
  ~scoped_env() { ::unsetenv(name.c_str()); }
};

} // namespace

TEST_CASE("JSON log lines parse as JSON objects with time, level, logger and message",
          "[integration][logging]") {
  ::unsetenv("SPDLOG_LEVEL");
  captured log;
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.log_format = cairn::log_encoding::json;
  opts.log_sinks.push_back(log.sink);
  auto rt = cairn::test::start_runtime(opts);
  cairn::test::register_ok<bank::account>(*rt);
  // A handler that always fails: its retries and the dead letter are logged.
  cairn::subscription_options so;
  so.max_attempts = 2;
  so.initial_backoff = 1ms;
  so.max_backoff = 1ms;
  REQUIRE(rt->subscribe<bank::account::event>(
    "fails", {},
    [](const auto&) -> cairn::result<void> {
      return cairn::fail(cairn::errc::internal, "bad \"input\"\tin\nhandler");
    },
    so));
  REQUIRE(cairn::test::await(rt->send<bank::account>("j1", bank::open_account{"o"})));
  REQUIRE(cairn::test::eventually([&] {
    auto s = rt->subscription("fails");
    return s && s->dead_letters == 1;
  }));
  // Quotes, backslashes and control characters survive the escaping.
  const std::string tricky = "say \"hi\" \\ path\nnext\x01";
  spdlog::get("cairn.runtime")->warn("{}", tricky);
  rt->shutdown();

  auto lines = log.lines();
  REQUIRE(lines.size() >= 4);
  std::vector<std::string> loggers, messages, levels;
  for (const auto& line : lines) {
    INFO("line: " << line);
    rapidjson::Document doc;
    doc.Parse(line.c_str(), line.size());
    REQUIRE_FALSE(doc.HasParseError());
    REQUIRE(doc.IsObject());
    for (const char* field : {"time", "level", "logger", "message"}) {
      REQUIRE(doc.HasMember(field));
      REQUIRE(doc[field].IsString());
    }
    REQUIRE(doc.HasMember("thread"));
    CHECK(doc["thread"].IsNumber());
    std::string time = doc["time"].GetString();
    CHECK(time.size() == std::string{"2026-11-25T10:31:02.117123Z"}.size());
    CHECK(time.back() == 'Z');
    loggers.emplace_back(doc["logger"].GetString());
    levels.emplace_back(doc["level"].GetString());
    messages.emplace_back(doc["message"].GetString(), doc["message"].GetStringLength());
  }
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  CHECK(has(messages, tricky));
  CHECK(has(loggers, "cairn.runtime"));
  CHECK(has(loggers, "cairn.subscriber"));
  CHECK(has(levels, "warning")); // the retry
  CHECK(has(levels, "error"));   // the dead letter
  bool started = false, dead_lettered = false;
  for (const auto& m : messages) {
    started = started || m.rfind("started: data dir " + dir.path(), 0) == 0;
    dead_lettered = dead_lettered
                    || (m.find("fails: dead-lettered position 1") == 0
                        && m.find("bad \"input\"\tin\nhandler") != std::string::npos);
  }
  CHECK(started);
  CHECK(dead_lettered);
}

TEST_CASE("SPDLOG_LEVEL sets the level of each named logger", "[integration][logging]") {
  captured log;
  {
    scoped_env env{"SPDLOG_LEVEL", "cairn.runtime=warn,cairn.registry=debug"};
    cairn::test::temp_dir dir;
    auto opts = cairn::test::quick_options(dir.path());
    opts.log_sinks.push_back(log.sink);
    auto rt = cairn::test::start_runtime(opts);
    cairn::test::register_ok<bank::account>(*rt);
    REQUIRE(cairn::test::await(rt->send<bank::account>("l1", bank::open_account{"o"})));
    rt->shutdown();
    CHECK_FALSE(log.contains("[cairn.runtime]")); // info is below warn
    CHECK(log.contains("[debug] [cairn.registry] shutting down: passivating 1 live aggregates"));
    CHECK(log.contains("[debug] [cairn.registry] passivated account-l1"));
  }
  {
    // Without SPDLOG_LEVEL the next runtime logs at info again.
    cairn::test::temp_dir dir;
    auto opts = cairn::test::quick_options(dir.path());
    opts.log_sinks.push_back(log.sink);
    auto rt = cairn::test::start_runtime(opts);
    rt->shutdown();
    CHECK(log.contains("[info] [cairn.runtime] started: data dir " + dir.path()));
    CHECK(log.contains("[info] [cairn.runtime] stopped: data dir " + dir.path()));
  }
}

TEST_CASE("a store that cannot open is logged as an error", "[integration][logging]") {
  ::unsetenv("SPDLOG_LEVEL");
  captured log;
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.log_sinks.push_back(log.sink);
  auto first = cairn::test::start_runtime(opts);
  auto second = cairn::runtime::start(opts); // the directory is locked
  REQUIRE_FALSE(second);
  CHECK(log.contains("[error] [cairn.runtime] cannot open the store in " + dir.path()));
}
