#pragma once

/// fifo<T>: a first-in first-out queue in one vector that keeps its capacity.
///
/// An aggregate's in-flight commands pass through one of these. std::deque
/// allocates a block per element once an element is larger than 256 bytes;
/// this one allocates only while it grows past its largest size so far (see
/// docs/decisions/in-flight-fifo.md).

#include <cstddef>
#include <utility>
#include <vector>

namespace cairn::actors {

template <class T> class fifo {
public:
  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;

  [[nodiscard]] bool empty() const { return head_ == items_.size(); }
  [[nodiscard]] std::size_t size() const { return items_.size() - head_; }

  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }

  /// Takes an rvalue only: an in-flight entry is large, and a by-value
  /// parameter costs one more move per command.
  void push_back(T&& x) {
    // Reclaim the popped slots instead of growing when they are at least half
    // the vector: each element is then moved O(1) times on average.
    if (head_ > 0 && head_ >= items_.size() / 2 && items_.size() == items_.capacity()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    items_.push_back(std::move(x));
  }

  /// Releases the front element's resources now; its slot is reused later.
  void pop_front() {
    items_[head_] = T{};
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    }
  }

  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }

private:
  std::vector<T> items_;
  std::size_t head_ = 0; ///< items_[0, head_) are popped.
};

} // namespace cairn::actors
