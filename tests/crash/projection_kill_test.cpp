// A child process runs deposits and a local projection of balances, and is
// killed with SIGKILL at a random moment; every round, the read model in the
// store must equal a recomputation from the log up to the projection's
// checkpoint (exactly once: nothing lost, nothing applied twice), and after
// the last round a restarted projection must catch up to the aggregates.
// Failures reproduce with the printed seed: CAIRN_CRASH_SEED=<seed>.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "account.hpp"
#include "cairn/runtime/runtime.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using cairn::test::write_all;

namespace {

constexpr int rounds = 12;
constexpr int accounts = 40;
const char* const projection = "balances";

using balances = std::map<std::string, std::int64_t>;

std::string account_of(std::string_view stream) {
  return std::string{stream.substr(std::string_view{"account-"}.size())};
}

/// The projection under test, shared by the child and the final check.
cairn::result<void> project(const cairn::envelope<bank::account::event>& e,
                            cairn::read_model& model) {
  auto id = account_of(e.stream);
  auto current = model.get_as<std::int64_t>(id);
  if (!current)
    return tl::unexpected(current.error());
  auto balance = current->value_or(0);
  if (auto d = std::get_if<bank::money_deposited>(&e.event))
    balance += d->amount;
  if (auto w = std::get_if<bank::money_withdrawn>(&e.event))
    balance -= w->amount;
  return model.put_as(id, balance);
}

/// What the projection must hold after the events up to `until`.
balances recompute(const cairn::persistence::event_store& store, std::uint64_t until) {
  balances out;
  std::string_view opened = bank::account_opened::type_name;
  for (std::uint64_t from = 1; from <= until;) {
    auto page = store.read_all(from, 10000, {{"account"}, {}});
    REQUIRE(page);
    for (const auto& e : page->events) {
      if (e.position > until)
        return out;
      auto& b = out[account_of(e.stream)];
      if (e.type == opened)
        continue;
      if (e.type == std::string_view{bank::money_deposited::type_name}) {
        auto d = cairn::persistence::decode_payload<bank::money_deposited>(e.payload);
        REQUIRE(d);
        b += d->amount;
      } else {
        auto w = cairn::persistence::decode_payload<bank::money_withdrawn>(e.payload);
        REQUIRE(w);
        b -= w->amount;
      }
    }
    if (page->next_position == from)
      break;
    from = page->next_position;
  }
  return out;
}

balances stored_model(const cairn::persistence::event_store& store) {
  balances out;
  auto entries = store.kv_scan(projection, "");
  REQUIRE(entries);
  for (const auto& [key, bytes] : *entries) {
    auto v = cairn::persistence::decode_payload<std::int64_t>(bytes);
    REQUIRE(v);
    out[key] = *v;
  }
  return out;
}

cairn::runtime_options child_options(const std::string& dir) {
  cairn::runtime_options opts;
  opts.data_dir = dir;
  opts.durability = cairn::persistence::durability::sync;
  opts.worker_threads = 2;
  return opts;
}

/// Runs deposits and the projection until killed.
int child_main(const std::string& dir, std::uint64_t seed, int fd) {
  auto started = cairn::runtime::start(child_options(dir));
  if (!started)
    return 10;
  auto& rt = **started;
  if (!rt.register_aggregate<bank::account>())
    return 11;
  std::mt19937_64 rng{seed};
  cairn::subscription_options o;
  o.checkpoint_every = 1 + rng() % 20; // many checkpoints: many kills land in one
  o.checkpoint_interval = 2ms;
  o.batch_size = 1 + rng() % 50;
  if (!rt.project<bank::account::event>(projection, {}, project, o))
    return 12;
  for (int a = 0; a < accounts; ++a)
    (void)rt.send<bank::account>("c" + std::to_string(a), bank::open_account{"o"}).get();
  char ready = 'r';
  if (!write_all(fd, &ready, 1))
    return 13;
  std::mutex m;
  std::condition_variable cv;
  int in_flight = 0;
  for (auto until = std::chrono::steady_clock::now() + 60s;
       std::chrono::steady_clock::now() < until;) {
    {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return in_flight < 32; });
      ++in_flight;
    }
    auto id = "c" + std::to_string(rng() % accounts);
    rt.send<bank::account>(id, bank::deposit{static_cast<std::int64_t>(1 + rng() % 100)}, {},
                           [&](cairn::result<cairn::outcome<bank::account>>) {
                             std::lock_guard lock{m};
                             --in_flight;
                             cv.notify_one();
                           });
  }
  return 14; // the parent kills long before
}

/// Forks the child, kills it `delay` after it is ready; "" or what went wrong.
std::string run_round(const std::string& dir, std::uint64_t seed, std::chrono::milliseconds delay) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return "pipe2 failed";
  if (auto busy = cairn::test::await_quiet_threads(); !busy.empty()) {
    ::close(fds[0]);
    ::close(fds[1]);
    return busy;
  }
  std::fflush(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0)
    return "fork failed";
  if (pid == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(15);
    int code = 15;
    try {
      code = child_main(dir, seed, fds[1]);
    } catch (...) {
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  std::string problem;
  pollfd p{fds[0], POLLIN, 0};
  char ready = 0;
  if (::poll(&p, 1, 30000) != 1 || ::read(fds[0], &ready, 1) != 1)
    problem = "the child did not get ready within 30 s";
  else
    std::this_thread::sleep_for(delay);
  int status = 0;
  auto reaped = cairn::test::kill_and_reap(pid, status);
  ::close(fds[0]);
  if (problem.empty())
    problem = reaped;
  if (problem.empty() && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
    problem = "the child " + cairn::test::describe_status(status);
  return problem;
}

} // namespace

TEST_CASE("a projection killed with SIGKILL always equals a recomputation from the log up to "
          "its checkpoint",
          "[crash][subscriber]") {
  cairn::test::temp_dir dir;
  auto seed = cairn::test::test_seed();
  INFO("CAIRN_CRASH_SEED=" << seed);
  std::mt19937_64 rng{seed};
  std::uint64_t last_checkpoint = 0;
  int advanced = 0;
  for (int round = 0; round < rounds; ++round) {
    auto delay = std::chrono::milliseconds{50 + rng() % 400};
    auto problem = run_round(dir.path(), rng(), delay);
    INFO("round " << round << ", killed " << delay.count() << " ms in");
    REQUIRE(problem.empty());
    auto store = cairn::persistence::open_store(dir.path());
    REQUIRE(store);
    auto cp = (*store)->load_checkpoint(projection);
    REQUIRE(cp);
    auto at = cp->value_or(0);
    CHECK(at >= last_checkpoint);
    advanced += at > last_checkpoint ? 1 : 0;
    last_checkpoint = at;
    CHECK(stored_model(**store) == recompute(**store, at));
  }
  CHECK(advanced >= rounds / 2); // the kills really landed in a moving projection

  // Restarted, the projection catches up to what the aggregates say.
  auto started = cairn::runtime::start(child_options(dir.path()));
  REQUIRE(started);
  auto& rt = **started;
  REQUIRE(rt.register_aggregate<bank::account>());
  REQUIRE(rt.project<bank::account::event>(projection, {}, project));
  auto last = rt.store().last_position();
  REQUIRE(last);
  REQUIRE(rt.wait_for(projection, *last, 60s));
  auto model = stored_model(rt.store());
  CHECK(model == recompute(rt.store(), *last));
  REQUIRE(model.size() == accounts);
  for (const auto& [id, balance] : model)
    CHECK(rt.state<bank::account>(id)->balance == balance);
}
