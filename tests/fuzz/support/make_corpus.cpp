// Writes the seed corpora of tests/fuzz/corpus/<target>/ with cairn's real
// encoders: sample commands run through the aggregates' decide and evolve, so
// the payload seeds are the commands, events and states a service stores.
//
//   build-fuzz/tests/fuzz/cairn-fuzz-make-corpus tests/fuzz/corpus
//
// Files are named after what they hold; an existing file is overwritten, so
// running it again after a format change refreshes the seeds.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include <caf/binary_serializer.hpp>

#include "cairn/actors/gateway.hpp"
#include "cairn/model/match.hpp"
#include "cairn/persistence/format.hpp"
#include "cairn/runtime/cluster.hpp"
#include "cairn/tools/digest_file.hpp"
#include "cairn/tools/text.hpp"
#include "hangar/node_lines.hpp"
#include "payload_types.hpp"

namespace {

namespace fs = std::filesystem;
using namespace cairn;
using namespace cairn::persistence;

constexpr std::int64_t t0 = 1'700'000'000'000'000'000;

fs::path root;

void write(const std::string& target, const std::string& name, const std::string& bytes) {
  auto dir = root / target;
  fs::create_directories(dir);
  std::ofstream out{dir / name, std::ios::binary | std::ios::trunc};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  format::put_le(reinterpret_cast<unsigned char*>(out.data()), v);
  return out;
}

template <class T> std::string bytes_of(const T& value) {
  std::string out;
  encode_payload(value, out);
  return out;
}

// -- payload -------------------------------------------------------------------

/// Seeds of the payload target: its selector byte, then the payload.
class payload_seeds {
public:
  payload_seeds() {
    int i = 0;
    fuzz::for_each_payload_type([&](auto t) {
      using pt = decltype(t);
      index_[{typeid(typename pt::type), typeid(typename pt::as)}] = i;
      // The default value of every type, so each has a seed.
      add<typename pt::type, typename pt::as>(typename pt::type{});
      ++i;
    });
  }

  template <class T, class As> void add(const T& value) {
    int i = index_.at({typeid(T), typeid(As)});
    auto& n = count_[i];
    if (n >= 3) // a few of each type keep the corpus small
      return;
    write("payload", std::to_string(i) + "-" + std::to_string(n++),
          std::string(1, static_cast<char>(i)) + bytes_of(value));
  }

  /// Runs `commands` through A's decide and evolve, adding every command,
  /// event and the states reached.
  template <class A> void run(const std::vector<typename A::command>& commands) {
    auto s = A::initial();
    for (const auto& c : commands) {
      add<typename A::command, typename A::command>(c);
      auto d = decide_with<A>(s, c);
      if (!d)
        continue;
      for (const auto& e : *d) {
        std::visit([&](
                     const auto& alt) { add<std::decay_t<decltype(alt)>, typename A::event>(alt); },
                   e);
        s = evolve_with<A>(std::move(s), e);
      }
      add<typename A::state, typename A::state>(s);
    }
  }

private:
  std::map<std::pair<std::type_index, std::type_index>, int> index_;
  std::map<int, int> count_;
};

void payload() {
  payload_seeds seeds;
  seeds.run<bank::account>(
    {bank::open_account{"ann"}, bank::deposit{100}, bank::withdraw{30}, bank::withdraw{1000}});

  using namespace hangar;
  provider_config sub;
  sub.command = {"mcp-math", "--stdio"};
  sub.params["latency_ms"] = "5";
  seeds.run<provider>({
    register_provider{"math", "config", provider_mode::subprocess, sub, {600, 30, 4}},
    start_provider{t0, 10},
    record_start_result{true, 7, 120, {"fast", "local"}, "", t0 + 1},
    invoke_tool{"add", "{\"a\":1,\"b\":2}", "c1", 30000, t0 + 2},
    record_invocation_result{"c1", true, 5, 42, "", error_type::application, t0 + 3},
    invoke_tool{"add", "{}", "c2", 1000, t0 + 4},
    record_invocation_result{"c2", false, 5, 0, "boom", error_type::transport, t0 + 5},
    record_health_probe{true, 3, "", t0 + 6},
    record_health_probe{false, 3, "no pong", t0 + 7},
    record_transport_died{"exit status 1", t0 + 8},
    start_provider{t0 + 60'000'000'000, -20},
    record_start_result{false, 0, 50, {}, "spawn failed", t0 + 60'000'000'001},
    stop_provider{"manual", t0 + 70'000'000'000},
    update_provider{sub, {300, 60, 3}},
    detect_idle{t0 + 80'000'000'000},
    deregister_provider{},
  });
  provider_started_v1 v1;
  v1.mode = provider_mode::remote;
  v1.tools_count = 7;
  v1.startup_ms = 1234;
  seeds.add<provider_started_v1, provider::event>(v1);

  group_options opts;
  opts.strategy = selection_strategy::weighted_round_robin;
  opts.circuit_failure_threshold = 2;
  seeds.run<provider_group>({
    create_group{"g1", opts},
    add_member{"p1", 2, 1},
    add_member{"p2", 1, 2},
    select_member{"r1", t0, 7},
    record_member_result{"p1", false, member_result_kind::request, t0 + 1},
    record_member_result{"p1", false, member_result_kind::health_check, t0 + 2},
    record_member_result{"p2", false, member_result_kind::request, t0 + 3},
    tick{t0 + 120'000'000'000},
    record_member_result{"p1", true, member_result_kind::request, t0 + 121'000'000'000},
    reset_circuit{t0 + 122'000'000'000},
    remove_member{"p2"},
    update_group{group_options{}},
    delete_group{},
  });
}

// -- store formats -------------------------------------------------------------

std::string record_of(std::uint64_t position, std::string_view stream, const event_data& ev,
                      const metadata& m, std::uint64_t version) {
  std::string rec(format::record_size(stream, ev, m), '\0');
  event_id id;
  for (std::size_t i = 0; i < id.bytes.size(); ++i)
    id.bytes[i] = static_cast<std::uint8_t>(i * 17 + position);
  format::encode_record(reinterpret_cast<unsigned char*>(rec.data()), position, stream, ev, m,
                        format::record_fields{version, version > 1 ? position - 1 : 0, t0, id});
  return le64(position) + rec;
}

void record() {
  event_data opened{"account_opened", 1, bytes_of(bank::account_opened{"ann"}), {}, {}};
  write("record", "account-opened", record_of(1, "account-1", opened, {}, 1));
  metadata m;
  m.correlation_id = "corr-7";
  m.causation_id = "cause-7";
  m.command_id = "cmd-42";
  m.tenant = "acme";
  m.user = "ops";
  event_data deposited{"money_deposited", 1, bytes_of(bank::money_deposited{100}), {}, {}};
  write("record", "with-metadata", record_of(2, "account-1", deposited, m, 2));
  event_data stopped{
    "provider_stopped", 1, bytes_of(hangar::provider_stopped{"manual", t0}), {}, {}};
  write("record", "hangar", record_of(129, "provider-math", stopped, {}, 128));
}

std::string value_seed(unsigned selector, std::string_view key, std::string_view body) {
  return std::string(1, static_cast<char>(selector)) + std::string(1, static_cast<char>(key.size()))
         + std::string{key} + std::string{body};
}

void value() {
  write("value", "unseal", value_seed(0, std::string_view{"account\0k1", 10}, "read-model value"));
  write("value", "stream-name", value_seed(1, "account-1", format::u64_body(1)));
  write("value", "checkpoint", value_seed(1, "projection.balances", format::u64_body(4096)));
  write("value", "heads-at", value_seed(1, "heads_at", format::u64_body(70000)));
  write("value", "command-record",
        value_seed(2, "cmd-42", format::encode_outcome(append_result{3, 5, 17, 19, false})));
  bank::account::state st{true, "ann", 70};
  snapshot snap{"account-1", 3, "account", 1, bytes_of(st)};
  write("value", "snapshot", value_seed(3, format::pair_key(1, 3), format::encode_snapshot(snap)));
  write("value", "format-version",
        value_seed(4, format::format_version_key, format::encode_format_version(2)));
  std::string bucket(format::head_bucket_size, '\0');
  format::put_le<std::uint64_t>(reinterpret_cast<unsigned char*>(bucket.data()) + 8, 17);
  write("value", "heads-bucket", value_seed(5, format::be64_key(0), bucket));
  write("value", "type-key", value_seed(6, format::type_key("deposited", 1), {}));
  // As stored, seal included (bit 7: the target keeps the bytes as given).
  write("value", "sealed-stream-name",
        value_seed(0x81, "account-1", format::seal("account-1", format::u64_body(1))));
}

void command_log() {
  // Selector 0: the target seals the body under the key.
  auto seed = [](std::uint64_t sequence, const format::command_view& c) {
    auto key = format::be64_key(sequence);
    auto sealed = format::seal_command(key, c);
    return std::string(1, '\0') + key + sealed.substr(format::seal_size);
  };
  format::command_view deposit;
  deposit.stream = "account-1";
  deposit.version_before = 1;
  deposit.first_position = 2;
  deposit.event_count = 1;
  deposit.timestamp_ns = 1764000000000000000;
  deposit.command_id = "c-42";
  deposit.correlation_id = "corr-7";
  deposit.tenant = "acme";
  deposit.user = "ops";
  auto cmd = bytes_of(bank::account::command{bank::deposit{100}});
  deposit.payload = cmd;
  write("command_log", "deposit", seed(1, deposit));
  format::command_view nothing;
  nothing.stream = "provider_group-search";
  nothing.version_before = 300;
  write("command_log", "no-events", seed(7, nothing));
}

void head_log() {
  std::string body;
  for (std::uint64_t i = 0; i < 3; ++i)
    body += le64(i + 1) + le64(100 + i);
  write("head_log", "three-streams", le64(102) + body);
  write("head_log", "one-stream", le64(4096) + le64(7) + le64(4096));
}

void chain_entry() {
  format::digest head{};
  for (std::size_t i = 0; i < head.size(); ++i)
    head[i] = static_cast<unsigned char>(i * 7);
  std::string prefixes;
  for (std::uint64_t p = 0; p < 3; ++p)
    prefixes += le64(0x1111111111111111ULL * (p + 1));
  auto entry = [&](std::uint64_t position, std::string_view pre) {
    std::string value(format::seal_size + format::chain_entry_header_size + pre.size(), '\0');
    format::encode_chain_entry(reinterpret_cast<unsigned char*>(value.data()),
                               format::be64_key(position), head, pre);
    return value.substr(format::seal_size); // the target seals it again
  };
  write("chain_entry", "three-records", le64(12) + entry(12, prefixes));
  write("chain_entry", "anchor", le64(4096) + entry(4096, {}));
}

void epoch_record() {
  auto payload = [](std::uint64_t epoch, std::uint64_t previous, std::string_view node) {
    return format::encode_epoch_payload(format::epoch_payload{epoch, previous, node});
  };
  write("epoch_record", "first", std::string(1, '\0') + payload(1, 0, "node-a"));
  write("epoch_record", "later", std::string(1, '\0') + payload(7, 4096, "node-b.example:4242"));
  write("epoch_record", "header", std::string(1, '\1') + format::encode_epoch_header(7, 4097));
}

void signed_digest() {
  tools::signed_digest s;
  s.position = 40;
  for (std::size_t i = 0; i < s.digest.size(); ++i)
    s.digest[i] = static_cast<unsigned char>(i);
  s.signature.fill(0xab);
  write("signed_digest", "signed", std::string(1, '\0') + tools::format_signed_digest(s));
  write("signed_digest", "published",
        std::string(1, '\1') + tools::format_published_digest({s.position, s.digest}));
  write("signed_digest", "public-key", std::string(1, '\2') + tools::format_public_key(s.digest));
  write("signed_digest", "secret-key",
        std::string(1, '\3') + tools::format_secret_key(s.signature));
}

void dead_letter_seeds() {
  persistence::dead_letter dl;
  dl.subscriber = "projection.balances";
  dl.position = 17;
  dl.stream = "account-1";
  dl.version = 3;
  dl.type = "money_withdrawn";
  dl.error = "internal: handler threw: division by zero";
  dl.attempts = 5;
  dl.first_failure_ns = t0;
  dl.last_failure_ns = t0 + 5'000'000'000;
  auto key = dl.subscriber + std::string(1, '\0') + format::be64_key(dl.position);
  write("dead_letter", "stored",
        std::string(1, static_cast<char>(key.size())) + key + format::encode_dead_letter(dl));
  dl.replay_requested = true;
  auto body = format::encode_dead_letter(dl);
  write("dead_letter", "replay-requested",
        std::string(1, static_cast<char>(key.size())) + key + body);
  // Written before the flags byte existed: the body ends after the error.
  body.pop_back();
  write("dead_letter", "no-flags", std::string(1, static_cast<char>(key.size())) + key + body);
}

void hex() {
  write("hex", "payload", tools::to_hex(bytes_of(bank::account_opened{"ann"})));
  write("hex", "upper-case", "DEADbeef00FF");
  write("hex", "empty", "");
}

void retention_cut() {
  auto key = format::be64_key(7);
  write("retention_cut", "cut", std::string(1, '\0') + key + format::encode_stream_cut(8, 29));
  write("retention_cut", "short", std::string(1, '\0') + key + "\x01\x02");
  write("retention_cut", "unsealed", std::string(1, '\x80') + key + std::string(24, '\0'));
}

void retention_policy() {
  write("retention_policy", "age", "provider=30d");
  write("retention_policy", "count", "account=last:1000");
  write("retention_policy", "seconds", "x=90s");
  write("retention_policy", "too-long", "x=999999999w");
  write("retention_policy", "no-unit", "x=30");
}

void time() {
  write("time", "utc", "2026-11-24T10:00:00Z");
  write("time", "fraction-offset", "2026-11-24T10:00:00.123456789+02:00");
  write("time", "printed", tools::iso_time(t0 + 123));
  write("time", "ns", "1700000000000000000");
  write("time", "negative-ns", "-86400000000000");
  write("time", "i64", le64(static_cast<std::uint64_t>(t0)));
}

void import_line() {
  // An export as `cairn export` writes it (tools/src/transfer.cpp).
  const auto& types = fuzz::sample_registry();
  auto event = [&](std::uint64_t position, std::uint64_t version, const metadata& m,
                   const std::string& type, const std::string& payload) {
    recorded_event ev;
    ev.stream = "account-1";
    ev.version = version;
    ev.position = position;
    for (std::size_t i = 0; i < ev.id.bytes.size(); ++i)
      ev.id.bytes[i] = static_cast<std::uint8_t>(i * 31 + position);
    ev.timestamp_ns = t0 + static_cast<std::int64_t>(position);
    ev.type = type;
    ev.schema_version = 1;
    ev.meta = m;
    ev.payload = payload;
    return tools::event_json(ev, types, true) + '\n';
  };
  metadata m;
  m.correlation_id = "corr-7";
  m.command_id = "cmd-42";
  m.user = "ops";
  std::string file = tools::json_object{}
                       .add("cairn_export", std::uint64_t{1})
                       .add("events", std::uint64_t{2})
                       .add("checkpoints", std::uint64_t{1})
                       .str()
                     + '\n';
  file += event(1, 1, {}, "account_opened", bytes_of(bank::account_opened{"ann"}));
  file += event(2, 2, m, "money_deposited", bytes_of(bank::money_deposited{100}));
  file += tools::json_object{}
            .add("checkpoint", "projection.balances")
            .add("position", std::uint64_t{2})
            .str()
          + '\n';
  file += tools::json_object{}
            .add("kv", "balances")
            .add("key_hex", tools::to_hex("account-1"))
            .add("value_hex", tools::to_hex(bytes_of(std::int64_t{100})))
            .str()
          + '\n';
  persistence::dead_letter dl;
  dl.subscriber = "projection.balances";
  dl.position = 2;
  dl.stream = "account-1";
  dl.version = 2;
  dl.type = "money_deposited";
  dl.error = "internal: handler threw";
  dl.attempts = 3;
  dl.first_failure_ns = t0;
  dl.last_failure_ns = t0 + 1;
  dl.replay_requested = true;
  file += tools::dead_letter_json(dl, "dead_letter") + '\n';
  write("import_line", "export", file);
  write("import_line", "unregistered-type",
        "{\"cairn_export\":1,\"events\":1}\n" + event(1, 1, m, "legacy_note", "old LEGACY bytes"));
}

void serve_line() {
  write("serve_line", "session",
        "register p1 subprocess /bin/sh -c \"exit\"\n"
        "register r1 remote https://example.org/mcp\n"
        "status p1\nstart p1\ninvoke p1 search {}\nhistory p1\nstate-at p1 3\n"
        "stop p1 maintenance\nstatus\nquit\n");
  write("serve_line", "bad", "register p2 teleport\nstate-at p1 one\nfrobnicate\n");
}

void node_line() {
  replication_status owner;
  owner.role = "owner";
  owner.peer = "B2";
  owner.connected = true;
  owner.epoch = 2;
  owner.committed = 1030;
  owner.acknowledged = 1030;
  owner.frames = 40;
  replication_status standby = owner;
  standby.role = "standby";
  standby.peer = "B";
  standby.connected = false;
  standby.truncated = 14;
  standby.problem = "the owner's connection was lost";
  write("node_line", "replication",
        hangar::replication_line(&owner) + "\n" + hangar::replication_line(&standby) + "\n"
          + hangar::replication_line(nullptr) + "\n");
  write("node_line", "cut-file",
        "{\"cairn_export\":1,\"events\":1,\"checkpoints\":0,\"truncated_after\":56}\n"
        "{\"position\":57,\"stream\":\"provider-math-2\",\"version\":30,\"type\":"
        "\"tool_invocation_requested\",\"schema_version\":1,\"correlation_id\":\"c1-20\"}\n");
}

shard_map three_map; ///< The map of the three-nodes seed, which the status seeds report.

void cluster_config_seeds() {
  auto three =
    make_cluster({{"A", "127.0.0.1", 7101}, {"B", "127.0.0.1", 7102}, {"C", "::1", 7103}}, "A", 16);
  three.map.version = 3;
  three.map.owners[7] = "C";
  three.heartbeat_timeout = std::chrono::milliseconds{3000};
  three_map = three.map;
  write("cluster_config", "three-nodes", to_config_text(three));
  write("cluster_config", "hand-written",
        "# cairn cluster\r\nmap-version 2\r\nshards 4\r\n"
        "node A localhost 7101 # this one\r\n\tnode B 10.0.0.2 7101\r\n"
        "owner 0 A\r\nowner 1-3 B\r\nremote-timeout-ms 250\r\nmiddleman-workers 2\r\n");
  write("cluster_config", "bad",
        "shards 8\nnode A h 1\nnode A h 2\nowner 0-4 A\nowner 4-9 B\nowner x A\nbogus 1\n");
}

void cluster_status_seeds() {
  cluster_status st;
  st.node_id = "A";
  st.map_version = 3;
  st.map_digest = three_map.digest();
  st.shards = 16;
  st.owned_shards = 6;
  st.dropped_messages = 1;
  peer_status b;
  b.id = "B";
  b.host = "127.0.0.1";
  b.port = 7102;
  b.state = "up";
  b.since_ns = t0;
  b.in_flight = 2;
  b.forwarded = 40;
  b.received = 38;
  b.rtt_us_bounds = {100, 1000, 10000};
  b.rtt_us_buckets = {3, 30, 7, 0};
  b.rtt_p50_us = 400;
  b.rtt_p99_us = 8000;
  peer_status c;
  c.id = "C";
  c.host = "::1";
  c.port = 7103;
  c.state = "refused";
  c.since_ns = t0 + 5;
  c.reason = "map version 3 here, 4 there";
  c.failures = 4;
  c.dropped = 1;
  st.peers = {b, c};
  write("cluster_status", "two-peers", to_json(st));
  st.peers.clear();
  write("cluster_status", "alone", to_json(st));
  write("cluster_status", "bad-digest",
        "{\"node_id\":\"A\",\"map_version\":1,\"map_digest\":\"xyz\",\"shards\":1,"
        "\"owned_shards\":1,\"dropped_messages\":0,\"peers\":[]}");
}

/// A gateway batch as CAF writes it into a BASP payload, after the target's
/// selector byte (0: forward_batch, 1: reply_batch).
template <class T> std::string batch_bytes(char selector, T value) {
  std::vector<char> bytes;
  caf::binary_serializer sink{nullptr, bytes};
  if (sink(value)) {
    std::fprintf(stderr, "cannot serialize a cluster batch\n");
    std::exit(1);
  }
  return std::string(1, selector) + std::string{bytes.begin(), bytes.end()};
}

void cluster_batch_seeds() {
  actors::command_msg cmd;
  cmd.category = "account";
  cmd.id = "alice";
  cmd.payload = bytes_of(bank::account::command{bank::deposit{100}});
  cmd.command_id = "c-1";
  cmd.correlation_id = "corr";
  cmd.tenant = "t";
  cmd.user = "u";
  cmd.subject = "alice";
  actors::command_msg query;
  query.category = "account";
  query.id = "bob";
  query.replay = true;
  query.to_version = 7;
  query.as_of_ns = t0;
  write("cluster_batch", "forward-two",
        batch_bytes('\0', actors::forward_batch{{{1, 5000, cmd}, {2, 0, query}}}));
  write("cluster_batch", "forward-empty", batch_bytes('\0', actors::forward_batch{}));
  actors::reply_msg ok;
  ok.first_version = ok.last_version = 3;
  ok.first_position = ok.last_position = 41;
  ok.events = {{"money_deposited", 1, bytes_of(bank::money_deposited{100})}};
  actors::reply_msg failed;
  failed.code = static_cast<std::uint8_t>(errc::unavailable);
  failed.message = "owner node B unreachable";
  failed.context = "account-bob";
  write("cluster_batch", "reply-two",
        batch_bytes('\1', actors::reply_batch{{{1, ok}, {2, failed}}}));
}

void feed_page_seeds() {
  actors::feed_page page;
  page.generation = 3;
  page.after = 4;
  page.next_position = 9;
  page.committed = 12;
  actors::feed_event e;
  e.stream = "account-alice";
  e.version = 2;
  e.position = 5;
  e.id.assign(16, '\x7f');
  e.timestamp_ns = t0;
  e.type = "money_deposited";
  e.schema_version = 1;
  e.payload = bytes_of(bank::money_deposited{100});
  page.events.push_back(e);
  e.position = 7;
  e.version = 3;
  page.events.push_back(e);
  std::uint64_t at = 4;
  std::string prefix(reinterpret_cast<const char*>(&at), 8);
  write("feed_page", "two-events", prefix + batch_bytes('\0', page).substr(1));
  page.events.clear();
  write("feed_page", "empty", prefix + batch_bytes('\0', page).substr(1));
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cairn-fuzz-make-corpus DIR (tests/fuzz/corpus)\n");
    return 2;
  }
  root = argv[1];
  payload();
  record();
  value();
  command_log();
  head_log();
  chain_entry();
  epoch_record();
  signed_digest();
  dead_letter_seeds();
  hex();
  time();
  retention_policy();
  retention_cut();
  serve_line();
  node_line();
  import_line();
  cluster_config_seeds();
  cluster_status_seeds();
  cluster_batch_seeds();
  feed_page_seeds();
  return 0;
}
