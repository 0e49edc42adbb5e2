#include "hangar/service.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>

namespace hangar {

namespace {

using namespace std::chrono_literals;

template <class V1, class V2> struct concat;
template <class... A, class... B> struct concat<std::variant<A...>, std::variant<B...>> {
  using type = std::variant<A..., B...>;
};
/// Every event of the sample: what the provider_status projection folds.
using any_event = concat<provider::event, provider_group::event>::type;

constexpr const char* status_projection = "provider_status";

std::string id_of(std::string_view stream) {
  return std::string{stream.substr(stream.find('-') + 1)};
}

/// A rejection means the world moved on (the provider stopped, the call was
/// answered before a restart): nothing to retry. Anything else is retried.
template <class R> cairn::result<void> settled(const R& r) {
  if (r || r.error().code == cairn::errc::rejected)
    return {};
  return tl::unexpected(r.error());
}

/// Where the projection keeps what a group knows of a member's lifecycle:
/// under its own keys, so the group values stored before it still decode.
std::string lifecycle_key(const std::string& group, const std::string& member) {
  return "member/" + group + "/" + member;
}

cairn::result<void> fold_status(const cairn::envelope<any_event>& e, cairn::read_model& model) {
  bool is_group = e.stream.rfind("provider_group-", 0) == 0;
  auto key = std::string{is_group ? "group/" : "provider/"} + id_of(e.stream);
  if (is_group) {
    auto current = model.get_as<group_status>(key);
    if (!current)
      return tl::unexpected(current.error());
    auto g = current->value_or(group_status{});
    const auto group = id_of(e.stream);
    if (auto* l = std::get_if<group_member_lifecycle_changed>(&e.event))
      return model.put_as(lifecycle_key(group, l->member), std::string{to_string(l->lifecycle)});
    std::vector<std::string> forget; // members whose lifecycle key goes
    if (auto* r = std::get_if<group_member_removed>(&e.event))
      forget.push_back(r->provider_id);
    if (std::holds_alternative<group_deleted>(e.event))
      for (const auto& [member, in] : g.in_rotation)
        forget.push_back(member);
    for (const auto& member : forget)
      if (auto ok = model.erase(lifecycle_key(group, member)); !ok)
        return ok;
    bool erase = false;
    std::visit(
      [&](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, group_state_changed>) {
          g.state = to_string(ev.new_state);
        } else if constexpr (std::is_same_v<T, group_member_added>) {
          g.in_rotation[ev.provider_id] = true;
        } else if constexpr (std::is_same_v<T, group_member_removed>) {
          g.in_rotation.erase(ev.provider_id);
        } else if constexpr (std::is_same_v<T, group_member_health_changed>) {
          g.in_rotation[ev.member] = ev.in_rotation;
        } else if constexpr (std::is_same_v<T, group_circuit_opened>) {
          g.circuit = "open";
          ++g.circuit_openings;
        } else if constexpr (std::is_same_v<T, group_circuit_half_opened>) {
          g.circuit = "half_open";
        } else if constexpr (std::is_same_v<T, group_circuit_closed>) {
          g.circuit = "closed";
        } else if constexpr (std::is_same_v<T, group_deleted>) {
          erase = true;
        }
      },
      e.event);
    return erase ? model.erase(key) : model.put_as(key, g);
  }
  auto current = model.get_as<provider_status>(key);
  if (!current)
    return tl::unexpected(current.error());
  auto p = current->value_or(provider_status{});
  // Calls count when they run (tool_invocation_requested). A queued call
  // that a failed start abandoned never ran; the start failure is the
  // provider's one failure, so only last_error shows the abandon.
  bool erase = false;
  std::visit(
    [&](const auto& ev) {
      using T = std::decay_t<decltype(ev)>;
      if constexpr (std::is_same_v<T, provider_registered>) {
        p = provider_status{};
        p.mode = to_string(ev.mode);
      } else if constexpr (std::is_same_v<T, provider_state_changed>) {
        p.state = to_string(ev.new_state);
      } else if constexpr (std::is_same_v<T, provider_started>) {
        p.consecutive_failures = 0;
      } else if constexpr (std::is_same_v<T, provider_start_failed>) {
        p.consecutive_failures = ev.consecutive_failures;
        ++p.total_failures;
        p.last_error = ev.error;
      } else if constexpr (std::is_same_v<T, provider_transport_died>) {
        p.consecutive_failures = ev.consecutive_failures;
        ++p.total_failures;
        p.last_error = ev.error;
      } else if constexpr (std::is_same_v<T, tool_invocation_requested>) {
        ++p.invocations;
      } else if constexpr (std::is_same_v<T, tool_invocation_completed>) {
        ++p.completed;
        p.consecutive_failures = 0;
      } else if constexpr (std::is_same_v<T, tool_invocation_failed>) {
        ++p.total_failures;
        if (is_consecutive_failure(ev.type))
          ++p.consecutive_failures;
        p.last_error = ev.error;
      } else if constexpr (std::is_same_v<T, health_check_passed>) {
        p.consecutive_failures = 0;
      } else if constexpr (std::is_same_v<T, health_check_failed>) {
        p.consecutive_failures = ev.consecutive_failures;
        ++p.total_failures;
        p.last_error = ev.error;
      } else if constexpr (std::is_same_v<T, provider_degraded>) {
        p.consecutive_failures = ev.consecutive_failures;
        p.total_failures = ev.total_failures;
      } else if constexpr (std::is_same_v<T, tool_invocation_abandoned>) {
        p.last_error = ev.reason;
      } else if constexpr (std::is_same_v<T, provider_deregistered>) {
        erase = true;
      }
    },
    e.event);
  return erase ? model.erase(key) : model.put_as(key, p);
}

/// "<seed>-[<node>-]<start>-": the ids of invocations and group requests are
/// their command ids, which the store deduplicates forever, so they must
/// differ between the starts of a service and between the nodes of a
/// cluster. <start> is the start's wall clock in microseconds, base 36 (a
/// store is open in one service at a time, and a start takes longer).
std::string request_id_prefix(const service_options& opts, std::int64_t started_ns) {
  std::string start;
  for (auto us = static_cast<std::uint64_t>(started_ns / 1000); us > 0; us /= 36)
    start.insert(start.begin(), "0123456789abcdefghijklmnopqrstuvwxyz"[us % 36]);
  return std::to_string(opts.seed) + "-" + (opts.cluster ? opts.cluster->node_id + "-" : "") + start
         + "-";
}

} // namespace

service::service(service_options opts)
    : opts_(std::move(opts)), started_steady_(std::chrono::steady_clock::now()),
      started_wall_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count()),
      id_prefix_(request_id_prefix(opts_, started_wall_ns_)), rng_(opts_.seed) {}

cairn::result<std::unique_ptr<service>> service::start(service_options opts) {
  if (!(opts.speed > 0))
    return cairn::fail(cairn::errc::invalid_argument, "speed must be positive");
  std::unique_ptr<service> s{new service(std::move(opts))};
  if (auto ok = s->wire(); !ok)
    return tl::unexpected(ok.error());
  s->timer_ = std::thread([p = s.get()] { p->timer_loop(); });
  return s;
}

service::~service() { shutdown(); }

std::int64_t service::now_ns() const {
  auto real = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now()
                                                                   - started_steady_)
                .count();
  return started_wall_ns_ + static_cast<std::int64_t>(static_cast<double>(real) * opts_.speed);
}

cairn::result<void> service::wire() {
  cairn::runtime_options ro;
  ro.data_dir = opts_.data_dir;
  ro.durability = opts_.durability;
  ro.metrics_address = opts_.metrics_address;
  ro.cluster = opts_.cluster;
  ro.cluster_admin = opts_.cluster_admin;
  auto rt = cairn::runtime::start(ro);
  if (!rt)
    return tl::unexpected(rt.error());
  rt_ = std::move(*rt);
  cairn::aggregate_options snapshots;
  snapshots.snapshot_interval = 50;
  if (auto ok = rt_->register_aggregate<provider>(snapshots); !ok)
    return ok;
  cairn::aggregate_options groups = snapshots;
  groups.record_commands = opts_.record_commands;
  if (auto ok = rt_->register_aggregate<provider_group>(groups); !ok)
    return ok;
  cairn::subscription_options quick;
  quick.initial_backoff = 20ms;
  quick.max_backoff = 1s;
  using pe = cairn::envelope<provider::event>;
  if (auto ok = rt_->subscribe<provider::event>(
        "hangar.transport",
        {{"provider"}, {provider_state_changed::type_name, tool_invocation_requested::type_name}},
        [this](const pe& e) { return on_transport(e); }, quick);
      !ok)
    return ok;
  if (auto ok = rt_->subscribe<provider::event>(
        "hangar.recovery",
        {{"provider"},
         {provider_degraded::type_name, provider_started::type_name, provider_stopped::type_name}},
        [this](const pe& e) { return on_recovery(e); }, quick);
      !ok)
    return ok;
  if (auto ok = rt_->subscribe<provider::event>(
        "hangar.groups",
        {{"provider"},
         {tool_invocation_completed::type_name, tool_invocation_failed::type_name,
          tool_invocation_abandoned::type_name, health_check_passed::type_name,
          health_check_failed::type_name, provider_state_changed::type_name,
          provider_stopped::type_name}},
        [this](const pe& e) { return on_group_bridge(e); }, quick);
      !ok)
    return ok;
  if (auto ok = rt_->subscribe<provider_group::event>(
        "hangar.selection", {{"provider_group"}, {member_selected::type_name}},
        [this](const cairn::envelope<provider_group::event>& e) { return on_selection(e); }, quick);
      !ok)
    return ok;
  return rt_->project<any_event>(status_projection, {{"provider", "provider_group"}, {}},
                                 fold_status, quick);
}

template <class A>
cairn::result<cairn::outcome<A>>
service::send(const std::string& id, const typename A::command& cmd, const std::string& correlation,
              const std::string& command_id, const std::string& causation) {
  cairn::command_options o;
  o.command_id = command_id;
  o.correlation_id = correlation;
  o.causation_id = causation;
  o.user = "hangar";
  o.timeout = 30s;
  return rt_->send<A>(id, cmd, o).get();
}

// -- commands from callers -------------------------------------------------------

cairn::result<void> service::register_provider(const std::string& id, provider_mode mode,
                                               provider_config config, provider_options options) {
  auto r = send<provider>(id,
                          hangar::register_provider{id, "hangar", mode, std::move(config), options},
                          "register-" + id);
  if (!r)
    return tl::unexpected(r.error());
  return {};
}

cairn::result<void> service::start_provider(const std::string& id) {
  return start_provider(id, "start-" + id);
}

std::int32_t service::draw_jitter() {
  std::lock_guard lock{mutex_};
  return static_cast<std::int32_t>(rng_() % 201) - 100;
}

cairn::result<void> service::start_provider(const std::string& id, const std::string& correlation) {
  auto r = send<provider>(id, hangar::start_provider{now_ns(), draw_jitter()}, correlation);
  if (!r)
    return tl::unexpected(r.error());
  return {};
}

cairn::result<void> service::stop_provider(const std::string& id, const std::string& reason) {
  auto r = send<provider>(id, hangar::stop_provider{reason, now_ns()}, "stop-" + id);
  if (!r)
    return tl::unexpected(r.error());
  return {};
}

cairn::result<std::string> service::invoke(const std::string& id, const std::string& tool,
                                           const std::string& args) {
  std::string correlation;
  {
    std::lock_guard lock{mutex_};
    correlation = "c" + id_prefix_ + std::to_string(++next_request_);
  }
  auto r = send<provider>(id, invoke_tool{tool, args, correlation, 30000, now_ns(), draw_jitter()},
                          correlation);
  if (!r)
    return tl::unexpected(r.error());
  return correlation;
}

cairn::result<void> service::create_group(const std::string& id, group_options options) {
  auto r = send<provider_group>(id, hangar::create_group{id, options}, "create-" + id);
  if (!r)
    return tl::unexpected(r.error());
  return {};
}

cairn::result<void> service::add_member(const std::string& group, const std::string& provider_id,
                                        std::uint32_t weight, std::uint32_t priority) {
  auto r = send<provider_group>(group, hangar::add_member{provider_id, weight, priority},
                                "create-" + group);
  if (!r)
    return tl::unexpected(r.error());
  return {};
}

cairn::result<std::string> service::invoke_group(const std::string& group, const std::string& tool,
                                                 const std::string& args) {
  std::string request;
  std::uint64_t seed = 0;
  {
    std::lock_guard lock{mutex_};
    request = "r" + id_prefix_ + std::to_string(++next_request_);
    seed = rng_();
    group_requests_[request] = group;
    request_calls_[request] = {tool, args};
  }
  auto r = send<provider_group>(group, select_member{request, now_ns(), seed}, request);
  if (!r) {
    std::lock_guard lock{mutex_};
    group_requests_.erase(request);
    request_calls_.erase(request);
    return tl::unexpected(r.error());
  }
  return request;
}

cairn::result<void> service::inject_outage(const std::string& id, std::uint64_t calls) {
  auto* t = transport_for(id, true);
  auto* sim = dynamic_cast<simulated_transport*>(t);
  if (sim == nullptr)
    return cairn::fail(cairn::errc::invalid_argument, "not a simulated provider", id);
  sim->fail_next(calls);
  return {};
}

pid_t service::child_of(const std::string& id) {
  std::lock_guard lock{mutex_};
  auto it = transports_.find(id);
  auto* sub = it == transports_.end() ? nullptr
                                      : dynamic_cast<subprocess_transport*>(it->second.get());
  return sub != nullptr ? sub->pid() : -1;
}

// -- transports ------------------------------------------------------------------

transport* service::transport_for(const std::string& id, bool start_if_missing) {
  {
    std::lock_guard lock{mutex_};
    if (auto it = transports_.find(id); it != transports_.end())
      return it->second.get();
  }
  auto state = rt_->state<provider>(id);
  if (!state || !state->registered)
    return nullptr;
  std::unique_ptr<transport> made;
  bool simulated = state->mode != provider_mode::subprocess;
  if (simulated) {
    simulated_options so;
    so.seed = opts_.seed ^ std::hash<std::string>{}(id);
    so.latency = opts_.latency;
    so.failure_rate = opts_.failure_rate;
    so.error_rate = opts_.error_rate;
    made = std::make_unique<simulated_transport>(so);
  } else {
    made = std::make_unique<subprocess_transport>(state->config.command, [this, id](int status) {
      // The child died by itself: the provider hears it as a command.
      auto what =
        WIFSIGNALED(status)
          ? "the provider process was killed by signal " + std::to_string(WTERMSIG(status))
          : "the provider process exited with code " + std::to_string(WEXITSTATUS(status));
      cairn::command_options o;
      o.correlation_id = "watch-" + id;
      rt_->send<provider>(id, record_transport_died{what, now_ns()}, o,
                          [](cairn::result<cairn::outcome<provider>>) {});
    });
  }
  std::lock_guard lock{mutex_};
  auto [it, inserted] = transports_.emplace(id, std::move(made));
  // A provider that was ready before a restart has a process again.
  if (inserted && simulated && start_if_missing && state->status == provider_state::ready)
    (void)it->second->start();
  return it->second.get();
}

// -- handlers --------------------------------------------------------------------

cairn::result<void> service::on_transport(const cairn::envelope<provider::event>& e) {
  auto id = id_of(e.stream);
  auto tag = "-" + std::to_string(e.position);
  if (auto changed = std::get_if<provider_state_changed>(&e.event)) {
    if (changed->new_state == provider_state::cold || changed->new_state == provider_state::dead) {
      if (changed->new_state == provider_state::cold)
        if (auto* t = transport_for(id, false))
          t->stop();
      return {};
    }
    if (changed->new_state != provider_state::initializing)
      return {};
    auto* t = transport_for(id, false);
    if (t == nullptr)
      return {};
    auto started = t->start();
    record_start_result r;
    r.ok = started.ok;
    r.tools_count = started.tools_count;
    r.duration_ms = started.duration_ms;
    if (started.ok)
      r.tags.push_back("hangar");
    r.error = started.error;
    r.now_ns = now_ns();
    return settled(send<provider>(id, r, e.meta.correlation_id, "start" + tag, e.id.to_string()));
  }
  if (auto call = std::get_if<tool_invocation_requested>(&e.event)) {
    auto* t = transport_for(id, true);
    call_outcome out;
    if (t == nullptr) {
      out.error = "no transport";
      out.error_type = "transport";
    } else {
      out = t->invoke(call->tool, call->arguments, std::chrono::milliseconds{call->timeout_ms});
    }
    record_invocation_result r;
    r.correlation_id = call->correlation_id;
    r.ok = out.ok;
    r.duration_ms = out.duration_ms;
    r.result_bytes = out.result_bytes;
    r.error = out.error;
    r.type = parse_error_type(out.error_type).value_or(error_type::application);
    r.now_ns = now_ns();
    return settled(send<provider>(id, r, e.meta.correlation_id, "call" + tag, e.id.to_string()));
  }
  return {};
}

cairn::result<void> service::on_recovery(const cairn::envelope<provider::event>& e) {
  auto id = id_of(e.stream);
  std::lock_guard lock{mutex_};
  if (std::holds_alternative<provider_degraded>(e.event)) {
    auto n = ++retries_[id];
    // 5 s x 2^(n-1), at most 60 s; after 3 retries the timer stops it.
    auto wait_s = std::min<std::int64_t>(60, std::int64_t{5} << (n - 1));
    retry_due_ns_[id] = now_ns() + wait_s * ns_per_s;
  } else {
    retries_.erase(id);
    retry_due_ns_.erase(id);
  }
  return {};
}

cairn::result<void> service::on_group_bridge(const cairn::envelope<provider::event>& e) {
  auto member = id_of(e.stream);
  auto tag = "-" + std::to_string(e.position);
  auto report = [&](const std::string& group, bool ok, member_result_kind kind) {
    return settled(send<provider_group>(group, record_member_result{member, ok, kind, now_ns()},
                                        e.meta.correlation_id, "member" + tag + "-" + group,
                                        e.id.to_string()));
  };
  // The groups that `member` belongs to, from their live states.
  auto groups_of_member = [&] {
    std::vector<std::string> out;
    for (const auto& [group, status] : groups()) {
      auto g = rt_->state<provider_group>(group);
      if (g && g->members.count(member) != 0)
        out.push_back(group);
    }
    return out;
  };
  // The provider's lifecycle, so each group tells stopped from failing.
  auto lifecycle = [&](member_lifecycle l, const std::string& reason) -> cairn::result<void> {
    for (const auto& group : groups_of_member())
      if (auto done = settled(
            send<provider_group>(group, record_member_lifecycle{member, l, reason, now_ns()},
                                 e.meta.correlation_id, "lifecycle" + tag + "-" + group,
                                 e.id.to_string()));
          !done)
        return done;
    return {};
  };
  if (auto stopped = std::get_if<provider_stopped>(&e.event))
    return lifecycle(member_lifecycle::stopped, stopped->reason);
  if (auto changed = std::get_if<provider_state_changed>(&e.event)) {
    switch (changed->new_state) {
      case provider_state::cold: return {}; // provider_stopped, just before, said why
      case provider_state::initializing: return lifecycle(member_lifecycle::starting, "starting");
      case provider_state::ready: return lifecycle(member_lifecycle::ready, "started");
      case provider_state::dead:
      case provider_state::degraded:
        return lifecycle(member_lifecycle::failing, to_string(changed->new_state));
    }
    return {};
  }
  const std::string* correlation = nullptr;
  bool ok = false;
  if (auto c = std::get_if<tool_invocation_completed>(&e.event)) {
    correlation = &c->correlation_id;
    ok = true;
  } else if (auto f = std::get_if<tool_invocation_failed>(&e.event)) {
    correlation = &f->correlation_id;
  } else if (auto a = std::get_if<tool_invocation_abandoned>(&e.event)) {
    correlation = &a->correlation_id; // its start on demand failed: the request failed
  }
  if (correlation != nullptr) {
    std::string group;
    {
      std::lock_guard lock{mutex_};
      auto it = group_requests_.find(*correlation);
      if (it == group_requests_.end())
        return {}; // a direct call, not through a group
      group = it->second;
      group_requests_.erase(it);
      request_calls_.erase(*correlation);
    }
    auto done = report(group, ok, member_result_kind::request);
    if (done && opts_.on_request_done)
      opts_.on_request_done(*correlation, ok);
    return done;
  }
  // Health probes move the member in and out of rotation in its groups.
  bool healthy = std::holds_alternative<health_check_passed>(e.event);
  for (const auto& group : groups_of_member())
    if (auto done = report(group, healthy, member_result_kind::health_check); !done)
      return done;
  return {};
}

cairn::result<void> service::on_selection(const cairn::envelope<provider_group::event>& e) {
  const auto& selected = std::get<member_selected>(e.event);
  std::pair<std::string, std::string> call;
  {
    std::lock_guard lock{mutex_};
    auto it = request_calls_.find(selected.request_id);
    if (it == request_calls_.end())
      return {}; // selected before a restart: the caller is gone
    call = it->second;
  }
  // A cold (stopped), dead, or degraded-past-its-backoff member starts on
  // demand and runs the call once started; only a ready one runs it at once.
  auto r = send<provider>(selected.member,
                          invoke_tool{call.first, call.second, selected.request_id, 30000, now_ns(),
                                      draw_jitter()},
                          selected.request_id, "select-" + std::to_string(e.position),
                          e.id.to_string());
  if (!r && r.error().code == cairn::errc::rejected) {
    // The member refused (degraded inside its backoff, deregistered): the
    // request failed. The group counts it unless it knows the member as
    // stopped, which is never a failure.
    std::string group = id_of(e.stream);
    {
      std::lock_guard lock{mutex_};
      group_requests_.erase(selected.request_id);
      request_calls_.erase(selected.request_id);
    }
    auto done = settled(send<provider_group>(
      group, record_member_result{selected.member, false, member_result_kind::request, now_ns()},
      selected.request_id, "refused-" + std::to_string(e.position), e.id.to_string()));
    if (done && opts_.on_request_done)
      opts_.on_request_done(selected.request_id, false);
    return done;
  }
  return settled(r);
}

// -- the timer -------------------------------------------------------------------

void service::timer_loop() {
  std::map<std::string, std::int64_t> next_probe_ns;
  std::mutex wait_mutex;
  while (!stopping_.load()) {
    {
      std::unique_lock lock{wait_mutex};
      timer_wake_.wait_for(lock, opts_.timer_period, [&] { return stopping_.load(); });
    }
    if (stopping_.load())
      return;
    auto now = now_ns();
    // Recovery starts that are due, or stops after the last retry.
    std::vector<std::pair<std::string, std::uint32_t>> due;
    {
      std::lock_guard lock{mutex_};
      for (auto& [id, at] : retry_due_ns_)
        if (at <= now)
          due.emplace_back(id, retries_[id]);
      for (const auto& d : due)
        retry_due_ns_.erase(d.first);
    }
    for (const auto& [id, n] : due) {
      if (n > 3) {
        (void)send<provider>(id, hangar::stop_provider{"max_retries_exceeded", now},
                             "recovery-" + id);
        continue;
      }
      if (auto r = start_provider(id, "recovery-" + id);
          !r && r.error().message.find("backoff_not_elapsed") != std::string::npos) {
        std::lock_guard lock{mutex_};
        retry_due_ns_[id] = now + ns_per_s; // the aggregate's own backoff is longer
      }
    }
    for (const auto& [id, p] : providers()) {
      if (p.state != "ready")
        continue;
      auto state = rt_->state<provider>(id);
      if (!state)
        continue;
      auto interval = static_cast<std::int64_t>(state->options.health_check_interval_s) * ns_per_s;
      auto& at = next_probe_ns[id];
      if (at == 0)
        at = now + interval;
      if (now < at)
        continue;
      at = now + interval;
      (void)send<provider>(id, detect_idle{now}, "idle-check");
      if (auto* t = transport_for(id, true)) {
        auto probe = t->probe();
        (void)send<provider>(id, record_health_probe{probe.ok, probe.duration_ms, probe.error, now},
                             "health-" + id);
      }
    }
    for (const auto& [id, g] : groups())
      if (g.circuit == "open")
        (void)send<provider_group>(id, tick{now}, "breaker-timer");
  }
}

// -- views -----------------------------------------------------------------------

std::map<std::string, provider_status> service::providers() {
  std::map<std::string, provider_status> out;
  auto all = rt_->query_range<provider_status>(status_projection, "provider/");
  if (all)
    for (auto& [key, value] : *all)
      out.emplace(key.substr(9), std::move(value));
  return out;
}

std::map<std::string, group_status> service::groups() {
  std::map<std::string, group_status> out;
  auto all = rt_->query_range<group_status>(status_projection, "group/");
  if (all)
    for (auto& [key, value] : *all)
      out.emplace(key.substr(6), std::move(value));
  auto lifecycles = rt_->query_range<std::string>(status_projection, "member/");
  if (lifecycles)
    for (auto& [key, value] : *lifecycles) {
      auto rest = key.substr(7); // "<group>/<member>"
      auto slash = rest.find('/');
      auto it = out.find(rest.substr(0, slash));
      if (slash != std::string::npos && it != out.end())
        it->second.lifecycle[rest.substr(slash + 1)] = std::move(value);
    }
  return out;
}

cairn::result<void> service::settle(std::chrono::milliseconds limit) {
  auto last = rt_->store().last_position();
  if (!last)
    return tl::unexpected(last.error());
  for (const char* name : {"hangar.transport", "hangar.recovery", "hangar.groups",
                           "hangar.selection", status_projection}) {
    if (auto s = rt_->subscription(name); s && s->state == cairn::subscription_state::held)
      continue;
    if (auto ok = rt_->wait_for(name, *last, limit); !ok)
      return ok;
  }
  return {};
}

void service::shutdown() {
  if (stopping_.exchange(true))
    return;
  timer_wake_.notify_all();
  if (timer_.joinable())
    timer_.join();
  if (rt_)
    rt_->shutdown();
  std::lock_guard lock{mutex_};
  for (auto& [id, t] : transports_)
    t->stop();
}

} // namespace hangar
