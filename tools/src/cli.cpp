#include "cairn/tools/cli.hpp"

#include <exception>
#include <functional>
#include <iostream>
#include <limits>

#include <CLI/CLI.hpp>

#include "output.hpp"

namespace cairn::tools {

namespace {

/// Adds the DIR positional every subcommand takes.
void add_dir(CLI::App* cmd, std::string& dir, const char* what = "the store directory") {
  cmd->add_option("DIR", dir, what)->required();
}

/// Digits only and in range: CLI11 would wrap "-1" and saturate an overflow.
const CLI::Validator unsigned_number{
  [](std::string& s) -> std::string {
    static const std::string max = std::to_string(std::numeric_limits<std::uint64_t>::max());
    bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    if (digits && (s.size() < max.size() || (s.size() == max.size() && s <= max)))
      return {};
    return "'" + s + "' is not an integer from 0 to " + max;
  },
  ""};

void add_json(CLI::App* cmd, bool& json) {
  cmd->add_flag("--json", json, "print JSON (one object per line for lists)");
}

/// A tenant as the store keeps it: 1-255 bytes.
std::string check_tenant_name(std::string& s) {
  return !s.empty() && s.size() <= 255 ? std::string{} : "a tenant is 1 to 255 bytes";
}
const CLI::Validator tenant_name{check_tenant_name, ""};

void add_tenant(CLI::App* cmd, std::string& tenant, const char* what) {
  cmd->add_option("--tenant", tenant, what)->check(tenant_name);
}

/// --master-key and --master-key-env: the key that opens personal data.
void add_master_key(CLI::App* cmd, detail::context& ctx) {
  auto* file = cmd->add_option("--master-key", ctx.master_key_file,
                               "file with the master key (64 hex digits) that opens personal "
                               "data; without it personal data shows as absent");
  cmd
    ->add_option("--master-key-env", ctx.master_key_env,
                 "environment variable holding the master key, instead of --master-key")
    ->excludes(file);
}

} // namespace

int run_cli(int argc, char** argv, const persistence::event_registry& types) {
  detail::context ctx{types, false, {}, {}};
  CLI::App app{
    "Looks into, checks, copies and moves a cairn event store. Every subcommand "
    "opens the store read-only except import, upgrade, forget and retention --apply, so it can "
    "run next to a writing runtime.\nExit codes: 0 ok, 1 failure (or problems found), 2 bad input.",
    "cairn"};
  app.require_subcommand(1);
  std::string dir, target, stream, prefix, as_of, tenant;
  std::uint64_t from = 1, to = persistence::no_limit, last = 0;
  detail::tail_options tail;
  std::function<int()> run;

  auto* streams = app.add_subcommand("streams", "List streams: name, version, last timestamp");
  add_dir(streams, dir);
  streams->add_option("--prefix", prefix, "only streams whose names start with this");
  add_tenant(streams, tenant, "only the streams of this tenant");
  add_json(streams, ctx.json);
  streams->callback([&] { run = [&] { return detail::streams(ctx, dir, prefix, tenant); }; });

  auto* events = app.add_subcommand("events", "Show the events of one stream with metadata");
  add_dir(events, dir);
  events->add_option("STREAM", stream, "the stream, <category>-<id>")->required();
  events->add_option("--from", from, "first version (default 1)")->check(unsigned_number);
  events->add_option("--to", to, "last version (default: the newest)")->check(unsigned_number);
  events->add_option("--as-of", as_of,
                     "only the events recorded at or before TIME: ISO-8601 "
                     "(2026-11-24T10:00:00Z) or ns since the epoch");
  events->add_option("--last", last, "only the newest N events (up to --to), newest first")
    ->check(unsigned_number)
    ->excludes("--from")
    ->excludes("--as-of");
  add_tenant(events, tenant, "only the events of this tenant");
  add_json(events, ctx.json);
  add_master_key(events, ctx);
  events->callback([&, events] {
    std::optional<std::uint64_t> newest;
    if (events->count("--last") > 0)
      newest = last;
    run = [&, newest] { return detail::events(ctx, dir, stream, from, to, as_of, newest, tenant); };
  });

  auto* tail_cmd = app.add_subcommand("tail", "Show the global log, optionally following it");
  add_dir(tail_cmd, dir);
  tail_cmd->add_flag("-f,--follow", tail.follow,
                     "keep polling for new commits (every 100 ms) until SIGINT or SIGTERM");
  tail_cmd->add_option("--category", tail.categories, "only this stream category (repeatable)")
    ->allow_extra_args(false);
  tail_cmd->add_option("--type", tail.types, "only this event type (repeatable)")
    ->allow_extra_args(false);
  add_tenant(tail_cmd, tail.tenant, "only the events of this tenant");
  tail_cmd->add_option("--from", tail.from, "first position (default 1)")->check(unsigned_number);
  add_json(tail_cmd, ctx.json);
  add_master_key(tail_cmd, ctx);
  tail_cmd->callback([&] { run = [&] { return detail::tail(ctx, dir, tail); }; });

  auto* stats = app.add_subcommand("stats", "Counts, sizes, map usage, types, oldest and newest");
  add_dir(stats, dir);
  bool per_tenant = false;
  stats->add_flag("--tenants", per_tenant,
                  "also events and streams per tenant (reads the whole log once)");
  add_json(stats, ctx.json);
  stats->callback([&] { run = [&] { return detail::stats(ctx, dir, per_tenant); }; });

  auto* verify = app.add_subcommand(
    "verify", "Check every record, gap-free versions and positions, that payloads decode, and "
              "the digest chain; with --digest or --signed, that the log up to its position is "
              "the one the digest was taken from");
  add_dir(verify, dir);
  detail::published_options published;
  auto* digest_opt = verify->add_option("--digest", published.digest,
                                        "a published digest, POSITION:HEX (cairn digest)");
  auto* signed_opt =
    verify->add_option("--signed", published.signed_file, "a signed digest (cairn digest --sign)")
      ->excludes(digest_opt);
  verify->add_option("--public-key", published.public_key, "the public key file (cairn keygen)")
    ->needs(signed_opt);
  signed_opt->needs("--public-key");
  add_json(verify, ctx.json);
  verify->callback([&] { run = [&] { return detail::verify(ctx, dir, published); }; });

  std::string key_file;
  std::uint64_t at = persistence::no_limit;
  auto* digest = app.add_subcommand(
    "digest", "Print POSITION:HEX, the chained digest of the log up to POSITION (default: its "
              "last record), to publish; --sign prints it signed");
  add_dir(digest, dir);
  digest->add_option("--at,--to", at, "the position (default: the last record)")
    ->check(unsigned_number);
  digest->add_option("--sign", key_file, "sign it with this secret key file (cairn keygen)");
  add_json(digest, ctx.json);
  digest->callback([&] { run = [&] { return detail::digest(ctx, dir, at, key_file); }; });

  auto* epochs_cmd =
    app.add_subcommand("epochs", "List the store's epochs (replication): epoch, position of its "
                                 "epoch record, the node that began it, when");
  add_dir(epochs_cmd, dir);
  add_json(epochs_cmd, ctx.json);
  epochs_cmd->callback([&] { run = [&] { return detail::epochs(ctx, dir); }; });

  std::string key_prefix;
  auto* keygen =
    app.add_subcommand("keygen",
                       "Write an Ed25519 key pair for signing digests: PREFIX.key (mode 0600) and "
                       "PREFIX.pub");
  keygen->add_option("--out", key_prefix, "the path prefix of the two files")->required();
  add_json(keygen, ctx.json);
  keygen->callback([&] { run = [&] { return detail::keygen(ctx, key_prefix); }; });

  auto* upgrade =
    app.add_subcommand("upgrade",
                       "Open the store for writing once: upgrades an older format (adds the digest "
                       "chain). Not while a service has it open");
  add_dir(upgrade, dir);
  add_json(upgrade, ctx.json);
  upgrade->callback([&] { run = [&] { return detail::upgrade(ctx, dir); }; });

  std::string subject;
  auto* exp = app.add_subcommand(
    "export", "Write every event to FILE as JSON lines (with --subject: every event about one "
              "data subject, decrypted, for an access request)");
  add_dir(exp, dir);
  exp->add_option("FILE", target, "the file to write; must not exist")->required();
  detail::export_options export_opts;
  add_tenant(exp, export_opts.tenant,
             "only the events of this tenant, renumbered from position 1 (importable into a "
             "store of its own); without checkpoints, read models and dead letters");
  exp->add_option("--subject", subject, "only the events about this data subject")
    ->excludes("--tenant");
  add_master_key(exp, ctx);
  exp->callback([&, exp] {
    if (exp->count("--subject") > 0)
      run = [&] { return detail::export_subject(ctx, dir, subject, target); };
    else
      run = [&] { return detail::export_log(ctx, dir, target, export_opts); };
  });

  auto* forget_cmd =
    app.add_subcommand("forget",
                       "Forget a data subject: delete its data key (its personal data becomes "
                       "unreadable) and the snapshots of its streams. Needs the service stopped; a "
                       "running service forgets through its runtime");
  add_dir(forget_cmd, dir);
  forget_cmd->add_option("SUBJECT", subject, "the data subject")->required();
  add_master_key(forget_cmd, ctx);
  forget_cmd->callback([&] { run = [&] { return detail::forget(ctx, dir, subject); }; });

  detail::retention_options retention_opts;
  auto* retention_cmd =
    app.add_subcommand("retention",
                       "Remove old events by a policy per category: --plan shows what would go and "
                       "what holds it back (runs next to a service); --apply removes it (service "
                       "stopped)");
  add_dir(retention_cmd, dir);
  retention_cmd
    ->add_option("--keep", retention_opts.rules,
                 "CATEGORY=AGE (30d, 12h; units s m h d w) or CATEGORY=last:N; repeat per category")
    ->required();
  auto* plan_flag = retention_cmd->add_flag("--plan", "show what would go (the default)");
  retention_cmd->add_flag("--apply", retention_opts.apply, "remove it")->excludes(plan_flag);
  add_json(retention_cmd, ctx.json);
  retention_cmd->callback(
    [&] { run = [&] { return detail::retention(ctx, dir, retention_opts); }; });

  auto* imp = app.add_subcommand("import", "Append an export into an empty or new store");
  add_dir(imp, dir, "the store directory: new, empty, or a store without events");
  imp->add_option("FILE", target, "a file written by cairn export")->required();
  detail::import_options import_opts;
  imp->add_flag("--allow-unknown-types", import_opts.allow_unknown_types,
                "import events of types this cairn does not register, without checking that "
                "their payloads decode (default: refused)");
  imp->callback([&] { run = [&] { return detail::import_log(ctx, dir, target, import_opts); }; });

  auto* backup = app.add_subcommand("backup", "Hot copy of the store (compacted) into DEST");
  add_dir(backup, dir);
  backup->add_option("DEST", target, "the backup directory; must not exist or be empty")
    ->required();
  backup->callback([&] { run = [&] { return detail::backup(ctx, dir, target); }; });

  auto* cps = app.add_subcommand("checkpoints", "List checkpoints: name, position, lag");
  add_dir(cps, dir);
  add_json(cps, ctx.json);
  cps->callback([&] { run = [&] { return detail::checkpoints(ctx, dir); }; });

  detail::dlq_options dlq;
  auto* dlq_cmd = app.add_subcommand(
    "dlq", "Dead letters: list (alongside a running service); replay (marks them: the "
           "subscriber replays them when the service starts) and discard (service stopped)");
  add_dir(dlq_cmd, dir);
  dlq_cmd->add_option("ACTION", dlq.action, "list, replay or discard")
    ->required()
    ->check(CLI::IsMember({"list", "replay", "discard"}));
  dlq_cmd->add_option("--subscriber", dlq.subscriber,
                      "the subscriber (required for replay and discard)");
  dlq_cmd->add_option("--position", dlq.position, "only the dead letter at this position")
    ->check(unsigned_number);
  add_json(dlq_cmd, ctx.json);
  dlq_cmd->callback([&] { run = [&] { return detail::dlq(ctx, dir, dlq); }; });

  auto* cluster =
    app.add_subcommand("cluster",
                       "A cluster: a node's status over HTTP, the shard map of a config file");
  cluster->require_subcommand(1);
  std::string address, config;
  auto* cl_status =
    cluster->add_subcommand("status",
                            "Peers, connectivity, map version and owned shards of a running node");
  cl_status->add_option("HOST:PORT", address, "the node's metrics address (GET /cluster)")
    ->required();
  add_json(cl_status, ctx.json);
  cl_status->callback([&] { run = [&] { return detail::cluster_status_cmd(ctx, address); }; });
  auto* cl_map = cluster->add_subcommand("map", "The shard map: version, digest, shards per node");
  cl_map->add_option("CONFIG", config, "a cluster config file")->required();
  add_json(cl_map, ctx.json);
  cl_map->callback([&] { run = [&] { return detail::cluster_map_cmd(ctx, config); }; });
  auto* cl_locate = cluster->add_subcommand("locate", "The shard and owner node of a stream");
  cl_locate->add_option("CONFIG", config, "a cluster config file")->required();
  cl_locate->add_option("STREAM", stream, "the stream, <category>-<id>")->required();
  add_json(cl_locate, ctx.json);
  cl_locate->callback(
    [&] { run = [&] { return detail::cluster_locate_cmd(ctx, config, stream); }; });
  auto* cl_promote = cluster->add_subcommand(
    "promote", "Promote a standby to serve its owner's shards (docs/cluster.md#promotion)");
  cl_promote->add_option("HOST:PORT", address, "the standby's metrics address")->required();
  add_json(cl_promote, ctx.json);
  cl_promote->callback([&] { run = [&] { return detail::cluster_promote_cmd(ctx, address); }; });
  std::string mode;
  auto* cl_repl = cluster->add_subcommand(
    "replication", "Switch a serving node's replication to async or sync (an operator's step)");
  cl_repl->add_option("HOST:PORT", address, "the node's metrics address")->required();
  cl_repl->add_option("MODE", mode, "async or sync")->required();
  add_json(cl_repl, ctx.json);
  cl_repl->callback(
    [&] { run = [&] { return detail::cluster_replication_cmd(ctx, address, mode); }; });

  // CLI11 would only say that a subcommand is required.
  if (argc > 1 && argv[1][0] != '-') {
    auto subs = app.get_subcommands([&](const CLI::App* s) { return s->get_name() == argv[1]; });
    if (subs.empty()) {
      std::cerr << "cairn: unknown subcommand '" << argv[1] << "' (see cairn --help)" << std::endl;
      return exit_usage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e); // --help
    std::cerr << "cairn: " << e.what() << " (see cairn --help)" << std::endl;
    return exit_usage;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    return detail::report(error{errc::internal, e.what()});
  }
}

} // namespace cairn::tools
