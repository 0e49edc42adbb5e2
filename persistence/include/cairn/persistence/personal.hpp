#pragma once

/// Personal data that can be forgotten (crypto-shredding, GDPR erasure).
///
///   struct registered {
///     static constexpr const char* type_name = "registered";
///     std::string customer_no;                 // kept for ever
///     cairn::personal<std::string> name;       // encrypted under the subject's key
///     template <class A> void serialize(A& a) { a(customer_no, name); }
///   };
///   rt.send<customer>("c-7", register_cmd{...}, {.subject = "c-7"});
///   ...
///   rt.forget("c-7");  // every later read sees name.has_value() == false
///
/// A `personal<T>` field of an event is stored encrypted (XChaCha20-Poly1305)
/// under the data key of the event's subject (metadata::subject). The store
/// keeps each subject's data key wrapped by the operator's master key
/// (store_options::master_key_file / master_key_env), in its `keys` table.
/// Forgetting a subject deletes its data key: the ciphertext stays in the
/// log (its checksums still verify) but reads as absent. docs/audit.md
/// describes the design and what stays on disk.
///
/// Encoding and decoding find the key through a personal_scope that the
/// runtime, the actors and the tools open around each event they encode or
/// decode. Outside an event scope a value is written as plain bytes only in
/// a state scope (snapshots); anywhere else encoding a present value fails.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <cereal/details/traits.hpp>
#include <cereal/types/string.hpp>

#include "cairn/model/error.hpp"
#include "cairn/persistence/codec.hpp"

namespace cairn::persistence {

/// A subject's data key: 32 key bytes and an 8-byte id that tells a key from
/// the one a subject had before it was forgotten.
struct data_key {
  std::array<unsigned char, 32> key{};
  std::array<unsigned char, 8> id{};
};

/// Where the data keys of subjects come from. Thread-safe.
class key_ring {
public:
  virtual ~key_ring() = default;

  /// The subject's key for encrypting, made when it has none. The store
  /// writes a new key in the transaction of the first append about the
  /// subject, so no event is ever durable without its key.
  [[nodiscard]] virtual result<data_key> key_for_write(std::string_view subject) const = 0;

  /// The subject's key for decrypting; nullopt when it has none (never had
  /// one, or was forgotten). An error when the key cannot be unwrapped.
  [[nodiscard]] virtual result<std::optional<data_key>>
  key_for_read(std::string_view subject) const = 0;
};

/// A key ring in memory, with real keys: tests and the test kit, which
/// simulates a forgotten subject with `forget`.
class memory_key_ring final : public key_ring {
public:
  memory_key_ring() = default;
  /// Copies hold the same keys, then go their own ways (a test kit's copy).
  memory_key_ring(const memory_key_ring& other);
  memory_key_ring& operator=(const memory_key_ring& other);
  ~memory_key_ring() override = default;

  result<data_key> key_for_write(std::string_view subject) const override;
  result<std::optional<data_key>> key_for_read(std::string_view subject) const override;
  /// Deletes the subject's key.
  void forget(std::string_view subject);

private:
  mutable std::mutex mu_;
  mutable std::map<std::string, data_key, std::less<>> keys_;
};

/// A random data key (libsodium's generator).
[[nodiscard]] data_key random_data_key();

/// Thrown by encoding a `personal<T>` that cannot be encrypted (no master
/// key, no subject, outside an event): the aggregate actor answers the
/// command with `invalid_argument` and this message.
class personal_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// What a personal<T> encodes to or decodes from on this thread.
struct personal_context {
  enum class kind : std::uint8_t {
    none,  ///< Encoding a present value fails; ciphertext decodes as absent.
    event, ///< Encrypt/decrypt under the key of `subject` from `keys`.
    state, ///< A snapshot or a state: present values as plain bytes.
  };
  kind mode = kind::none;
  const key_ring* keys = nullptr; ///< null: no master key.
  std::string_view subject;
};

/// Sets this thread's personal_context for its lifetime (nests).
///
///   personal_scope scope{store.personal_keys(), ev.meta.subject};
///   auto e = registry.decode<event>(ev);
class personal_scope {
public:
  /// An event scope: the events of `subject`, keys from `keys` (may be null).
  personal_scope(const key_ring* keys, std::string_view subject);
  /// A scope of another kind (state or none).
  explicit personal_scope(personal_context::kind mode);
  ~personal_scope();
  personal_scope(const personal_scope&) = delete;
  personal_scope& operator=(const personal_scope&) = delete;

  /// This thread's context.
  [[nodiscard]] static const personal_context& current() noexcept;

private:
  personal_context saved_;
};

namespace format {

// -- personal envelopes ----------------------------------------------------------
// What a personal<T> field holds in a cereal payload (a cereal string):
//   empty                       absent
//   01 ‖ key id (8) ‖ nonce (24) ‖ ciphertext ‖ tag (16)   encrypted (events)
//   02 ‖ plain bytes            not encrypted (snapshots and states)
// The ciphertext is XChaCha20-Poly1305 (IETF) of the value's cereal bytes,
// with the subject as associated data.

inline constexpr unsigned char personal_encrypted = 1;
inline constexpr unsigned char personal_plain = 2;
inline constexpr std::size_t personal_nonce_size = 24;
inline constexpr std::size_t personal_tag_size = 16;
inline constexpr std::size_t personal_header_size = 1 + 8 + personal_nonce_size;

/// A parsed envelope, its views pointing into the bytes given.
struct personal_envelope {
  enum class kind : std::uint8_t { absent, encrypted, plain };
  kind type = kind::absent;
  std::string_view key_id;     ///< 8 bytes (encrypted)
  std::string_view nonce;      ///< 24 bytes (encrypted)
  std::string_view ciphertext; ///< with its 16-byte tag (encrypted)
  std::string_view plain;      ///< (plain)
};

/// Parses an envelope; `corrupted` for an unknown kind or one too short.
[[nodiscard]] inline result<personal_envelope> decode_personal_envelope(std::string_view bytes) {
  personal_envelope e;
  if (bytes.empty())
    return e;
  auto tag = static_cast<unsigned char>(bytes[0]);
  if (tag == personal_plain) {
    e.type = personal_envelope::kind::plain;
    e.plain = bytes.substr(1);
    return e;
  }
  if (tag != personal_encrypted)
    return fail(errc::corrupted,
                "personal data has an unknown envelope kind " + std::to_string(tag));
  if (bytes.size() < personal_header_size + personal_tag_size)
    return fail(errc::corrupted, "personal data is shorter than its envelope ("
                                   + std::to_string(bytes.size()) + " bytes)");
  e.type = personal_envelope::kind::encrypted;
  e.key_id = bytes.substr(1, 8);
  e.nonce = bytes.substr(9, personal_nonce_size);
  e.ciphertext = bytes.substr(personal_header_size);
  return e;
}

// -- wrapped data keys (the keys table) -------------------------------------------
// key: the subject (1-255 bytes). value (sealed, see format.hpp):
//   01 ‖ key id (8) ‖ nonce (24) ‖ XChaCha20-Poly1305 of the 32 key bytes ‖ tag (16)
// under the master key, with the subject ‖ key id as associated data.

inline constexpr std::size_t wrapped_key_size = 1 + 8 + personal_nonce_size + 32
                                                + personal_tag_size;

/// A parsed wrapped key, its views pointing into the value given.
struct wrapped_key {
  std::string_view key_id;     ///< 8 bytes
  std::string_view nonce;      ///< 24 bytes
  std::string_view ciphertext; ///< 48 bytes: the key and its tag
};

/// Unseals and parses the `keys` value of `subject`; `corrupted` when the
/// seal fails or the layout is wrong.
[[nodiscard]] result<wrapped_key> decode_wrapped_key(std::string_view subject,
                                                     std::string_view value);

/// The subject-index key: subject ‖ 0x00 ‖ stream name (at most 511 bytes,
/// LMDB's largest key). Its value is sealed and empty.
[[nodiscard]] std::string subject_stream_key(std::string_view subject, std::string_view stream);

} // namespace format

namespace detail {

/// The envelope of a value's cereal bytes (`plain`; nullopt: absent) in the
/// current personal_context. Throws personal_error when it cannot encrypt.
[[nodiscard]] std::string seal_personal(const std::optional<std::string>& plain);

/// The value's cereal bytes from an envelope, in the current context: nullopt
/// when absent or its key is gone or unavailable; `corrupted` when the
/// envelope is malformed or fails its authentication (tampered).
[[nodiscard]] result<std::optional<std::string>> open_personal(std::string_view envelope);

} // namespace detail

} // namespace cairn::persistence

namespace cairn {

/// A field of personal data: stored encrypted under the event's subject key,
/// absent once the subject is forgotten. `evolve` must handle absence.
template <class T> class personal {
public:
  personal() = default;
  personal(T value) : value_(std::move(value)) {} // NOLINT: implicit by design

  [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  /// The value; throws std::bad_optional_access when absent.
  [[nodiscard]] const T& value() const { return value_.value(); }
  [[nodiscard]] const T& operator*() const { return *value_; }
  [[nodiscard]] const T* operator->() const { return &*value_; }
  template <class U> [[nodiscard]] T value_or(U&& fallback) const {
    return value_.value_or(std::forward<U>(fallback));
  }
  void reset() noexcept { value_.reset(); }

  friend bool operator==(const personal& a, const personal& b) { return a.value_ == b.value_; }
  friend bool operator!=(const personal& a, const personal& b) { return !(a == b); }

  template <class Archive> void save(Archive& ar) const {
    if constexpr (cereal::traits::is_text_archive<Archive>::value) {
      if (value_)
        ar(cereal::make_nvp("personal", *value_));
      else
        ar(cereal::make_nvp("absent", true));
    } else {
      std::optional<std::string> plain;
      if (value_) {
        plain.emplace();
        persistence::encode_payload(*value_, *plain);
      }
      ar(persistence::detail::seal_personal(plain));
    }
  }

  template <class Archive> void load(Archive& ar) {
    static_assert(!cereal::traits::is_text_archive<Archive>::value,
                  "personal<T> is read from binary payloads only");
    std::string envelope;
    ar(envelope);
    auto plain = persistence::detail::open_personal(envelope);
    if (!plain)
      throw cereal::Exception(plain.error().message);
    value_.reset();
    if (!*plain)
      return;
    auto v = persistence::decode_payload<T>(**plain);
    if (!v)
      throw cereal::Exception("personal data decrypts but does not decode: " + v.error().message);
    value_ = std::move(*v);
  }

private:
  std::optional<T> value_;
};

} // namespace cairn
