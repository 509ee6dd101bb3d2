// What the server asks of a durable store (--data-dir, src/store/): its figures, and whether
// a change is committed yet. A restored client's messages go out only once the store has
// committed that they were handed over, so that a crash right after a restore cannot
// deliver them twice (docs/durability.md).
#pragma once

#include <cstdint>
#include <optional>

#include "pubsubx/store_figures.hpp"

namespace pubsubx {

class DurabilityGate {
  public:
    // The number of the last change the store was told of, for a write to wait for; none if
    // the store cannot commit for now (it fell behind, or the disk is full): then nothing
    // waits.
    virtual std::optional<std::uint64_t> hold_point() const = 0;
    virtual bool durable(std::uint64_t change) const = 0;
    virtual StoreFigures figures() const = 0;

  protected:
    ~DurabilityGate() = default;
};

}  // namespace pubsubx
