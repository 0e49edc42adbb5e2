// `cairn digest`, `cairn keygen`, `cairn upgrade`, and the published-digest
// check of `cairn verify --digest/--signed` (docs/audit.md). Signing and
// checking signatures is libsodium's Ed25519 (crypto_sign_detached).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include "cairn/tools/cli.hpp"
#include "cairn/tools/digest_file.hpp"
#include "output.hpp"

namespace cairn::tools::detail {

namespace {

result<void> init_sodium() {
  if (sodium_init() < 0)
    return fail(errc::internal, "libsodium failed to initialise");
  return {};
}

/// A digest or key file, at most max_digest_file_size bytes.
result<std::string> read_small_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::invalid_argument, std::string{"cannot read the "} + what, path);
  std::string text(max_digest_file_size + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_digest_file_size)
    return fail(errc::invalid_argument,
                std::string{"the "} + what + " is larger than "
                  + std::to_string(max_digest_file_size) + " bytes",
                path);
  return text;
}

/// Writes `text` to a new file `path` with `mode`; refuses to replace one.
result<void> write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return fail(errno == EEXIST ? errc::invalid_argument : errc::unavailable,
                std::string{"cannot create the file: "} + std::strerror(errno), path);
  // The umask may have taken bits off `mode`, never added any: set it exactly.
  bool ok = ::fchmod(fd, mode) == 0;
  for (std::size_t at = 0; ok && at < text.size();) {
    auto n = ::write(fd, text.data() + at, text.size() - at);
    if (n < 0 && errno == EINTR)
      continue;
    ok = n > 0;
    at += ok ? static_cast<std::size_t>(n) : 0;
  }
  ok = ok && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return fail(errc::unavailable, std::string{"cannot write the file: "} + std::strerror(err),
                path);
  }
  return {};
}

/// `s` padded with spaces to `width` (as the tables of inspect.cpp).
std::string pad(std::string s, std::size_t width) {
  if (s.size() < width)
    s.append(width - s.size(), ' ');
  return s;
}

} // namespace

int digest(const context& ctx, const std::string& dir, std::uint64_t at,
           const std::string& key_file) {
  auto opened = open_read(dir);
  if (!opened)
    return report(opened.error());
  auto d = (*opened)->digest_at(at);
  if (!d)
    return report(d.error());
  published_digest pub{d->position, d->digest};
  if (key_file.empty()) {
    if (ctx.json)
      std::cout << json_object{}
                     .add("position", d->position)
                     .add("digest", hex_of(d->digest.data(), d->digest.size()))
                     .str()
                << '\n';
    else
      std::cout << format_published_digest(pub) << '\n';
    return exit_ok;
  }
  if (auto ok = init_sodium(); !ok)
    return report(ok.error());
  auto text = read_small_file(key_file, "secret key file");
  if (!text)
    return report(text.error());
  auto key = parse_secret_key(*text);
  if (!key)
    return report(error{key.error().code, key.error().message, key_file});
  signed_digest s{d->position, d->digest, {}};
  auto message = signed_digest_message(s.position, s.digest);
  crypto_sign_detached(s.signature.data(), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       key->data());
  sodium_memzero(key->data(), key->size());
  sodium_memzero(text->data(), text->size());
  std::cout << format_signed_digest(s);
  return exit_ok;
}

int epochs(const context& ctx, const std::string& dir) {
  auto opened = open_read(dir);
  if (!opened)
    return report(opened.error());
  auto list = (*opened)->epochs();
  if (!list)
    return report(list.error());
  auto current = (*opened)->current_epoch();
  if (!current)
    return report(current.error());
  std::size_t width = 4;
  for (const auto& e : *list)
    width = std::max(width, e.node.size());
  if (!ctx.json)
    std::cout << pad("EPOCH", 8) << "  " << pad("POSITION", 10) << "  " << pad("NODE", width)
              << "  BEGAN\n";
  for (const auto& e : *list) {
    if (ctx.json)
      std::cout << json_object{}
                     .add("epoch", e.epoch)
                     .add("position", e.position)
                     .add("node", e.node)
                     .add("timestamp", iso_time(e.timestamp_ns))
                     .add("timestamp_ns", e.timestamp_ns)
                     .str()
                << '\n';
    else
      std::cout << pad(std::to_string(e.epoch), 8) << "  " << pad(std::to_string(e.position), 10)
                << "  " << pad(e.node, width) << "  " << iso_time(e.timestamp_ns) << '\n';
  }
  if (!ctx.json)
    std::cout << count_of(list->size(), "epoch") << ", current epoch " << *current << '\n';
  return exit_ok;
}

int keygen(const context& ctx, const std::string& prefix) {
  if (auto ok = init_sodium(); !ok)
    return report(ok.error());
  public_key_bytes pk{};
  secret_key_bytes sk{};
  crypto_sign_keypair(pk.data(), sk.data());
  auto secret = format_secret_key(sk);
  sodium_memzero(sk.data(), sk.size());
  auto ok = write_new_file(prefix + ".key", secret, 0600);
  sodium_memzero(secret.data(), secret.size());
  if (!ok)
    return report(ok.error());
  if (auto pub = write_new_file(prefix + ".pub", format_public_key(pk), 0644); !pub) {
    ::unlink((prefix + ".key").c_str());
    return report(pub.error());
  }
  if (ctx.json)
    std::cout
      << json_object{}.add("secret_key", prefix + ".key").add("public_key", prefix + ".pub").str()
      << '\n';
  else
    std::cout << "secret key: " << prefix << ".key (mode 0600; keep it off the store's machine)\n"
              << "public key: " << prefix << ".pub\n";
  return exit_ok;
}

int upgrade(const context& ctx, const std::string& dir) {
  std::uint32_t before = 0;
  {
    auto opened = open_read(dir);
    if (!opened)
      return report(opened.error());
    auto st = (*opened)->stats();
    if (!st)
      return report(st.error());
    before = st->format_version;
  }
  auto store = persistence::open_store(dir, {}); // a writable open upgrades
  if (!store)
    return report(store.error());
  auto st = (*store)->stats();
  if (!st)
    return report(st.error());
  auto d = (*store)->digest_at(persistence::no_limit);
  if (!d)
    return report(d.error());
  if (ctx.json)
    std::cout << json_object{}
                   .add("from_format", std::uint64_t{before})
                   .add("format", std::uint64_t{st->format_version})
                   .add("position", d->position)
                   .add("digest", hex_of(d->digest.data(), d->digest.size()))
                   .str()
              << '\n';
  else
    std::cout << (before == st->format_version ? "already format " : "upgraded from format ")
              << (before == st->format_version
                    ? std::to_string(before)
                    : std::to_string(before) + " to format " + std::to_string(st->format_version))
              << "; digest " << format_published_digest({d->position, d->digest}) << '\n';
  return exit_ok;
}

result<published_digest> published_from(const published_options& opts) {
  if (!opts.digest.empty())
    return parse_published_digest(opts.digest);
  if (auto ok = init_sodium(); !ok)
    return tl::unexpected(ok.error());
  auto text = read_small_file(opts.signed_file, "signed digest");
  if (!text)
    return tl::unexpected(text.error());
  auto s = parse_signed_digest(*text);
  if (!s)
    return fail(errc::invalid_argument, s.error().message, opts.signed_file);
  auto key_text = read_small_file(opts.public_key, "public key file");
  if (!key_text)
    return tl::unexpected(key_text.error());
  auto key = parse_public_key(*key_text);
  if (!key)
    return fail(errc::invalid_argument, key.error().message, opts.public_key);
  auto message = signed_digest_message(s->position, s->digest);
  if (crypto_sign_verify_detached(s->signature.data(),
                                  reinterpret_cast<const unsigned char*>(message.data()),
                                  message.size(), key->data())
      != 0)
    return fail(errc::rejected,
                "the signature does not match: the signed digest was altered, or signed with "
                "another key than this public key's",
                opts.signed_file);
  return published_digest{s->position, s->digest};
}

std::optional<std::pair<std::uint64_t, std::string>>
compare_published(const persistence::event_store& store, const published_digest& pub) {
  auto check = store.check_chain(pub.position);
  if (!check)
    return std::pair{std::uint64_t{0}, check.error().to_string()};
  auto name = format_published_digest(pub);
  if (!check->at)
    return std::pair{check->log_end + 1, "the published digest is at position "
                                           + std::to_string(pub.position) + ", but the log ends at "
                                           + std::to_string(check->log_end)
                                           + ": the records after it were removed"};
  if (check->at->digest == pub.digest)
    return std::nullopt;
  if (check->first_broken != 0)
    return std::pair{check->first_broken,
                     "the log up to position " + std::to_string(pub.position)
                       + " is not the one the published digest was taken from; it first "
                         "differs here: "
                       + check->problem};
  return std::pair{std::uint64_t{0},
                   "the log up to position " + std::to_string(pub.position)
                     + " is not the one the published digest was taken from, yet every record "
                       "matches the chain the store keeps: that chain was rewritten after the "
                       "change (or the digest is from another store). The first difference is "
                       "at or before position "
                     + std::to_string(pub.position)
                     + "; an earlier published digest narrows it down"};
}

} // namespace cairn::tools::detail
