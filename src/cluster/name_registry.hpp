// The cluster's names and nodes in NATS JetStream key-value buckets. Blocking calls: only the
// cluster's worker thread (worker.hpp) makes them.
//   psx_names  "<cluster>.<name>" -> owner node; empty value: free. Create-if-absent claims a
//              new name; an update with the last revision moves or frees one, so a stale owner
//              (whose revision is old) can neither move nor free it.
//   psx_nodes  "<cluster>.<node>" -> the node's incarnation; the bucket's TTL is the lease, and a
//              node alive refreshes its key well within it.
// Both have one replica: Debian's nats-server 2.9.10 has known bugs with compare-and-set on
// replicated streams (fixed upstream in 2.9.21 and 2.10.19).
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pubsubx::cluster {

struct NameEntry {
    std::string owner;           // empty: free (or never claimed)
    std::uint64_t revision = 0;  // 0: no entry at all
};

class NameRegistry {
  public:
    NameRegistry(std::string cluster, std::string node, std::chrono::milliseconds lease);
    ~NameRegistry();
    NameRegistry(const NameRegistry&) = delete;
    NameRegistry& operator=(const NameRegistry&) = delete;

    // Opens (or creates) the buckets; false with `error` while JetStream cannot be reached.
    bool open(natsConnection* connection, std::string& error);
    bool is_open() const { return names_ != nullptr; }
    void close();

    // Null when the registry could not be asked.
    std::optional<NameEntry> lookup(std::string_view name);
    // This node takes the name: created if absent, else updated from `revision` (the last one
    // read). The new revision, 0 if someone else changed it first, null if it could not ask.
    std::optional<std::uint64_t> take(std::string_view name, std::uint64_t revision);
    // Moves the name from this node to `node`, if it is still at `revision`.
    std::optional<std::uint64_t> move(std::string_view name, std::string_view node,
                                      std::uint64_t revision);
    // Frees the name if it is still at `revision` (this node's claim).
    bool release(std::string_view name, std::uint64_t revision);

    // Refreshes this node's lease. With `first`, refuses (false, `error`) while another
    // incarnation of this node name holds one.
    bool heartbeat(std::uint64_t incarnation, bool first, std::string& error);
    bool node_alive(std::string_view node);
    // Gives up this node's lease at a clean stop.
    void leave();

  private:
    std::string name_key(std::string_view name) const;
    std::string node_key(std::string_view node) const;
    std::optional<std::uint64_t> write(std::string_view key, std::string_view value,
                                       std::uint64_t revision);

    std::string cluster_;
    std::string node_;
    std::chrono::milliseconds lease_;
    jsCtx* jetstream_ = nullptr;
    kvStore* names_ = nullptr;
    kvStore* nodes_ = nullptr;
};

}  // namespace pubsubx::cluster
