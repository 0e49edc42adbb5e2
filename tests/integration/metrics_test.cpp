// Metrics over HTTP: scraped during a load, parsed as the Prometheus text
// format, and checked against what the test did; the endpoint's address
// errors and its shutdown.

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using cairn::test::await;
using cairn::test::describe;
using cairn::test::scaled;

namespace {

/// One sample line: `name{labels} value`.
struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// A scrape, parsed; fails the test on any line that is not the text format.
struct exposition {
  std::vector<sample> samples;
  std::map<std::string, std::string> types; // family -> counter, gauge, histogram

  /// The value of the one sample `name` with these labels; fails if absent.
  double value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels)
        return s.value;
    FAIL("no sample " << name);
    return 0;
  }

  bool has(const std::string& name, const std::map<std::string, std::string>& labels) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels)
        return true;
    return false;
  }
};

std::map<std::string, std::string> parse_labels(const std::string& text) {
  std::map<std::string, std::string> out;
  static const std::regex label{R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$))re"};
  auto begin = std::sregex_iterator(text.begin(), text.end(), label);
  std::size_t consumed = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    REQUIRE(static_cast<std::size_t>(it->position()) == consumed);
    out[(*it)[1]] = (*it)[2];
    consumed += static_cast<std::size_t>(it->length());
  }
  REQUIRE(consumed == text.size());
  return out;
}

exposition parse(const std::string& text) {
  exposition out;
  static const std::regex line_re{R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)"};
  static const std::regex type_re{
    R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)"};
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    REQUIRE(!line.empty());
    std::smatch m;
    if (line.rfind("# HELP cairn_", 0) == 0)
      continue;
    if (line[0] == '#') {
      REQUIRE(std::regex_match(line, m, type_re));
      REQUIRE(out.types.count(m[1]) == 0); // one TYPE per family
      out.types[m[1]] = m[2];
      continue;
    }
    REQUIRE(std::regex_match(line, m, line_re));
    sample s;
    s.name = m[1];
    REQUIRE(s.name.rfind("cairn_", 0) == 0);
    s.labels = parse_labels(m[3]);
    std::string value = m[4];
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    REQUIRE((value == "+Inf" || *end == '\0'));
    // Every sample belongs to a family declared above it.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (out.types.count(family) == 0 && family.size() > std::strlen(suffix)
          && family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family.resize(family.size() - std::strlen(suffix));
    REQUIRE(out.types.count(family) == 1);
    if (out.types[family] == "counter")
      REQUIRE(s.name.size() > 6);
    if (out.types[family] == "counter")
      CHECK(s.name.compare(s.name.size() - 6, 6, "_total") == 0);
    out.samples.push_back(std::move(s));
  }
  // Histograms: cumulative buckets ending in +Inf, which equals _count.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram")
      continue;
    INFO("histogram " << family);
    double previous = 0;
    double previous_le = -1;
    std::string last_le;
    for (const auto& s : out.samples) {
      if (s.name != family + "_bucket")
        continue;
      REQUIRE(s.labels.count("le") == 1);
      last_le = s.labels.at("le");
      CHECK(s.value >= previous);
      previous = s.value;
      if (last_le != "+Inf") {
        double le = std::stod(last_le);
        CHECK(le > previous_le);
        previous_le = le;
      }
    }
    CHECK(last_le == "+Inf");
    CHECK(previous == out.value(family + "_count"));
    CHECK(out.value(family + "_sum") >= 0);
  }
  return out;
}

exposition scrape(const std::string& endpoint) {
  httplib::Client client{"http://" + endpoint};
  client.set_read_timeout(10, 0);
  auto res = client.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  return parse(res->body);
}

/// A plain TCP client, to send what httplib's client would not (partial
/// requests, huge bodies) without SIGPIPE.
class raw_client {
public:
  explicit raw_client(const std::string& endpoint) {
    auto colon = endpoint.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    REQUIRE(::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) == 1);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval limit{10, 0}; // a server that never reads fails the test, not hangs it
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  }
  ~raw_client() { ::close(fd_); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  /// False once the server closed or reset the connection.
  bool send_all(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// Reads until the server closes (or resets) or `limit` passes.
  std::string read_until_closed(std::chrono::milliseconds limit) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!closed_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
      if (left <= 0)
        break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0)
        continue;
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        closed_ = true;
      else
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  bool closed() const { return closed_; }

private:
  int fd_ = -1;
  bool closed_ = false;
};

/// The status code of an HTTP response's first line, 0 if there is none.
int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12)
    return 0;
  return std::atoi(response.substr(9, 3).c_str());
}

/// Peak resident set (VmHWM) of this process, in KiB.
long peak_rss_kib() {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::atol(line.c_str() + 6);
  FAIL("no VmHWM in /proc/self/status");
  return 0;
}

/// Resets VmHWM to the current RSS (Linux 4.0+), so a peak reached by an
/// earlier test does not hide this one's.
void reset_peak_rss() {
  std::ofstream out{"/proc/self/clear_refs"};
  out << "5";
  out.flush();
  if (!out)
    WARN("cannot reset the peak RSS; the RSS check is weaker");
}

} // namespace

TEST_CASE("metrics scraped during a load parse and match what the commands did",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  cairn::test::register_ok<bank::account>(*rt);
  std::atomic<std::uint64_t> handled{0};
  REQUIRE(rt->subscribe<bank::account::event>("audit", {}, [&](const auto&) {
    ++handled;
    return cairn::result<void>{};
  }));
  auto endpoint = rt->metrics_endpoint();
  INFO("endpoint " << endpoint);
  REQUIRE(endpoint.rfind("127.0.0.1:", 0) == 0);
  REQUIRE(endpoint != "127.0.0.1:0");

  const int accounts = 40;
  std::uint64_t ok = 0;
  std::uint64_t events = 0;
  for (int i = 0; i < accounts; ++i) {
    auto r = await(rt->send<bank::account>("m" + std::to_string(i), bank::open_account{"o"}));
    REQUIRE(r);
    ++ok;
    events += r->events.size();
  }

  // A thread keeps commands in flight while the main thread scrapes.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> load_ok{0}, load_events{0}, load_rejected{0}, load_other{0};
  std::thread load{[&] {
    std::vector<std::future<cairn::result<cairn::outcome<bank::account>>>> inflight;
    int i = 0;
    while (!stop.load()) {
      auto id = "m" + std::to_string(i % accounts);
      // Every tenth command overdraws: rejected.
      bank::account::command cmd = i % 10 == 9 ? bank::account::command{bank::withdraw{1000000}}
                                               : bank::account::command{bank::deposit{1}};
      inflight.push_back(rt->send<bank::account>(id, cmd));
      ++i;
      if (inflight.size() >= 64) {
        for (auto& f : inflight) {
          auto r = f.get();
          if (r) {
            ++load_ok;
            load_events += r->events.size();
          } else if (r.error().code == cairn::errc::rejected) {
            ++load_rejected;
          } else {
            ++load_other;
          }
        }
        inflight.clear();
      }
    }
    for (auto& f : inflight) {
      auto r = f.get();
      if (r) {
        ++load_ok;
        load_events += r->events.size();
      } else if (r.error().code == cairn::errc::rejected) {
        ++load_rejected;
      } else {
        ++load_other;
      }
    }
  }};

  // A failed REQUIRE below must not leave the thread running.
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~joiner() {
      stop = true;
      if (t.joinable())
        t.join();
    }
  } join_load{stop, load};

  double previous_ok = 0;
  int scrapes_under_load = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (scrapes_under_load < 5 && std::chrono::steady_clock::now() < deadline) {
    auto seen_before = load_ok.load();
    auto e = scrape(endpoint);
    if (load_ok.load() > seen_before)
      ++scrapes_under_load; // commands completed while this scrape ran
    auto now_ok = e.value("cairn_commands_total", {{"outcome", "ok"}});
    CHECK(now_ok >= previous_ok); // a counter never goes back
    CHECK(now_ok >= static_cast<double>(ok + seen_before));
    previous_ok = now_ok;
    CHECK(e.has("cairn_subscriber_lag_events", {{"subscriber", "audit"}}));
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  load.join();
  CHECK(scrapes_under_load == 5);
  CHECK(load_other.load() == 0);
  REQUIRE(load_ok.load() > 0);
  REQUIRE(load_rejected.load() > 0);
  ok += load_ok.load();
  events += load_events.load();

  auto last = rt->store().last_position();
  REQUIRE(last);
  auto caught_up = rt->wait_for("audit", *last, 30s);
  INFO(describe(caught_up));
  REQUIRE(caught_up);

  auto e = scrape(endpoint);
  CHECK(e.value("cairn_commands_total", {{"outcome", "ok"}}) >= static_cast<double>(ok));
  CHECK(e.value("cairn_commands_total", {{"outcome", "rejected"}})
        >= static_cast<double>(load_rejected.load()));
  CHECK(e.value("cairn_events_appended_total") >= static_cast<double>(events));
  CHECK(e.value("cairn_events_appended_total") == static_cast<double>(*last));
  CHECK(e.value("cairn_aggregate_activations_total") >= accounts);
  CHECK(e.value("cairn_aggregates_live") == accounts); // idle timeout far away
  CHECK(e.value("cairn_aggregate_activation_duration_seconds_count") >= accounts);
  CHECK(e.value("cairn_journal_batch_appends_sum") >= static_cast<double>(ok));
  CHECK(e.value("cairn_journal_commit_duration_seconds_count") >= 1);
  CHECK(e.value("cairn_journal_commit_failures_total") == 0);
  CHECK(e.value("cairn_subscriber_lag_events", {{"subscriber", "audit"}}) == 0);
  CHECK(e.value("cairn_subscriber_dead_letters", {{"subscriber", "audit"}}) == 0);
  CHECK(e.value("cairn_subscriber_handled_total", {{"subscriber", "audit"}})
        == static_cast<double>(handled.load()));

  // The struct in-process says the same once nothing moves.
  auto m = rt->metrics();
  CHECK(static_cast<double>(m.commands_of(cairn::command_outcome::ok))
        == e.value("cairn_commands_total", {{"outcome", "ok"}}));
  CHECK(m.events_appended == *last);
  REQUIRE(m.subscribers.size() == 1);
  CHECK(m.subscribers[0].name == "audit");
  CHECK(m.subscribers[0].lag == 0);
}

TEST_CASE("the metrics endpoint serves GET /metrics and /health and refuses the rest",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  httplib::Client client{"http://" + rt->metrics_endpoint()};
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == "ok\n");
  CHECK(health->get_header_value("Connection") == "close");
  auto get = client.Get("/metrics");
  REQUIRE(get);
  CHECK(get->status == 200);
  auto other = client.Get("/");
  REQUIRE(other);
  CHECK(other->status == 404);
  auto post = client.Post("/metrics", "x", "text/plain");
  REQUIRE(post);
  CHECK(post->status == 405);
  CHECK(post->get_header_value("Allow") == "GET, HEAD");
  auto put = client.Put("/health", "x", "text/plain");
  REQUIRE(put);
  CHECK(put->status == 405);
  auto del = client.Delete("/metrics");
  REQUIRE(del);
  CHECK(del->status == 405);
  auto post_other = client.Post("/other", "x", "text/plain");
  REQUIRE(post_other);
  CHECK(post_other->status == 404);
  // A GET that declares a body: refused before the body is sent.
  raw_client c{rt->metrics_endpoint()};
  REQUIRE(c.send_all("GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"));
  CHECK(status_of(c.read_until_closed(2s)) == 413);
  raw_client chunked{rt->metrics_endpoint()};
  REQUIRE(
    chunked.send_all("GET /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"));
  CHECK(status_of(chunked.read_until_closed(2s)) == 413);
  // Headers beyond the 8 KiB budget: refused, not buffered.
  raw_client big{rt->metrics_endpoint()};
  REQUIRE(big.send_all("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n"));
  CHECK(status_of(big.read_until_closed(2s)) == 400);
  // HEAD, as HTTP asks, and a second request on the same connection is not read.
  raw_client twice{rt->metrics_endpoint()};
  REQUIRE(twice.send_all("HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /health HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto answers = twice.read_until_closed(2s);
  CHECK(status_of(answers) == 200);
  CHECK(answers.find("HTTP/1.1", 1) == std::string::npos);
}

TEST_CASE("a 50 MB request body is refused unread and does not grow the RSS",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  const std::size_t body = 50u << 20;
  const std::string chunk(1u << 20, 'x');
  for (auto [target, refused] : {std::pair{"POST /metrics", 405}, std::pair{"POST /other", 404},
                                 std::pair{"GET /metrics", 413}}) {
    INFO(target);
    // The answer comes from the headers alone: no body byte is sent here.
    {
      raw_client c{rt->metrics_endpoint()};
      REQUIRE(c.send_all(std::string{target} + " HTTP/1.1\r\nHost: t\r\nContent-Length: "
                         + std::to_string(body) + "\r\n\r\n"));
      auto started = std::chrono::steady_clock::now();
      CHECK(status_of(c.read_until_closed(2s)) == refused);
      CHECK(std::chrono::steady_clock::now() - started < 1s);
    }
    // The whole body, as fast as the server takes it.
    reset_peak_rss();
    auto before = peak_rss_kib();
    std::size_t sent = 0;
    {
      raw_client c{rt->metrics_endpoint()};
      REQUIRE(c.send_all(std::string{target} + " HTTP/1.1\r\nHost: t\r\nContent-Length: "
                         + std::to_string(body) + "\r\n\r\n"));
      while (sent < body && c.send_all(chunk))
        sent += chunk.size();
      auto answer = c.read_until_closed(2s);
      if (!answer.empty())
        CHECK(status_of(answer) == refused);
    }
    auto grown = peak_rss_kib() - before;
    INFO("peak RSS grew by " << grown << " KiB; " << sent << " body bytes sent");
    CHECK(grown < 20 * 1024);
    CHECK(sent < body); // the server closed instead of reading it all
  }
  httplib::Client client{"http://" + rt->metrics_endpoint()};
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
}

TEST_CASE("connections beyond the metrics endpoint's cap are closed at once",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  auto endpoint = rt->metrics_endpoint();
  // Four idle connections take every worker (the cap is 4) until the
  // request deadline (3 s).
  std::vector<std::unique_ptr<raw_client>> idle;
  for (int i = 0; i < 4; ++i)
    idle.push_back(std::make_unique<raw_client>(endpoint));
  for (int i = 0; i < 3; ++i) {
    raw_client extra{endpoint};
    auto started = std::chrono::steady_clock::now();
    auto answer = extra.read_until_closed(2s);
    CHECK(extra.closed());
    CHECK(std::chrono::steady_clock::now() - started < 1s);
    CHECK(status_of(answer) == 503);
  }
  idle.clear();
  // Freed: served again.
  CHECK(cairn::test::eventually(
    [&] {
      httplib::Client client{"http://" + endpoint};
      client.set_read_timeout(1, 0);
      auto res = client.Get("/health");
      return res && res->status == 200;
    },
    5s));
}

TEST_CASE("a metrics client sending a header byte every 100 ms is cut off by the deadline",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  raw_client c{rt->metrics_endpoint()};
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: " + std::string(200, 'a')
                              + "\r\n\r\n";
  auto started = std::chrono::steady_clock::now();
  std::size_t next = 0;
  // One byte, then 100 ms of waiting for the server to close: 20 s of it
  // would send everything.
  while (next < request.size() && c.send_all(request.substr(next, 1))) {
    ++next;
    c.read_until_closed(100ms);
    if (c.closed())
      break;
  }
  auto elapsed = std::chrono::steady_clock::now() - started;
  INFO(next << " bytes sent in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms");
  CHECK(next < request.size());
  CHECK(elapsed >= 2500ms);
  CHECK(elapsed < 5s); // request_timeout is 3 s
}

TEST_CASE("shutdown is not delayed by metrics clients holding connections",
          "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  auto endpoint = rt->metrics_endpoint();
  raw_client partial{endpoint};
  REQUIRE(partial.send_all("GET /metr"));
  raw_client idle{endpoint};
  raw_client slow{endpoint};
  REQUIRE(slow.send_all("G"));
  std::atomic<bool> done{false};
  std::thread dribble{[&] {
    for (char ch : std::string{"ET /metrics HTTP/1.1\r\nHost: t\r\n"}) {
      if (done || !slow.send_all(std::string(1, ch)))
        return;
      std::this_thread::sleep_for(100ms);
    }
  }};
  std::this_thread::sleep_for(300ms); // the workers are reading
  auto started = std::chrono::steady_clock::now();
  rt->shutdown();
  auto took = std::chrono::steady_clock::now() - started;
  done = true;
  dribble.join();
  INFO("shutdown took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                        << " ms");
  CHECK(took < 1s); // the request deadline is 3 s
  partial.read_until_closed(1s);
  CHECK(partial.closed());
}

TEST_CASE("shutdown stops the metrics endpoint", "[integration][metrics]") {
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = "127.0.0.1:0";
  auto rt = cairn::test::start_runtime(opts);
  auto endpoint = rt->metrics_endpoint();
  httplib::Client client{"http://" + endpoint};
  REQUIRE(client.Get("/metrics"));
  rt->shutdown();
  httplib::Client after{"http://" + endpoint};
  after.set_connection_timeout(2, 0);
  CHECK_FALSE(after.Get("/metrics"));
  CHECK(rt->metrics_endpoint().empty());
}

TEST_CASE("a metrics address that does not parse fails start with invalid_argument",
          "[integration][metrics]") {
  for (std::string address : {"9464", "127.0.0.1:", ":9464", "127.0.0.1:99999", "127.0.0.1:http"}) {
    INFO(address);
    cairn::test::temp_dir dir;
    auto opts = cairn::test::quick_options(dir.path());
    opts.metrics_address = address;
    auto rt = cairn::runtime::start(opts);
    REQUIRE_FALSE(rt);
    CHECK(rt.error().code == cairn::errc::invalid_argument);
    CHECK(rt.error().context == address);
  }
}

TEST_CASE("a metrics port in use fails start with unavailable and frees the store",
          "[integration][metrics]") {
  cairn::test::temp_dir first_dir;
  auto first_opts = cairn::test::quick_options(first_dir.path());
  first_opts.metrics_address = "127.0.0.1:0";
  auto first = cairn::test::start_runtime(first_opts);
  cairn::test::temp_dir dir;
  auto opts = cairn::test::quick_options(dir.path());
  opts.metrics_address = first->metrics_endpoint();
  auto second = cairn::runtime::start(opts);
  REQUIRE_FALSE(second);
  CHECK(second.error().code == cairn::errc::unavailable);
  CHECK(second.error().context == first->metrics_endpoint());
  // The failed start closed its store: the directory opens again.
  opts.metrics_address.clear();
  auto again = cairn::runtime::start(opts);
  INFO(describe(again));
  CHECK(again);
}
