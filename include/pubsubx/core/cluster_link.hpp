// What the core tells a cluster link (src/cluster/) and asks of it, when several nodes act as
// one broker. The core calls it at the few places where another node's view must change: a
// topic or filter gains its first local subscriber or loses its last, a local client publishes,
// a name is freed; and before admitting a name this node does not hold. With no link attached
// each call site is one null-pointer test.
#pragma once

#include <string_view>

namespace pubsubx {

class Client;
class Connection;

enum class NameAdmission {
    local,         // this node decides, as a single broker would
    ask_registry,  // the cluster's name registry decides first (FrameResult::Next::await_name)
    moving,        // the name is being handed over to another node right now
};

class ClusterLink {
  public:
    // The first local subscriber (connected or lost) of a topic or filter, and the last gone.
    virtual void interest_added(std::string_view topic_or_filter) = 0;
    virtual void interest_removed(std::string_view topic_or_filter) = 0;
    // A local client's publish, accepted and delivered locally: other nodes may want it.
    virtual void published(std::string_view topic, std::string_view data) = 0;
    // The client is gone from this node (DISCONNECT, expiry, eviction, handed over).
    virtual void client_removed(const Client& client) = 0;
    // A CONNECT of `name` on `connection`; `held_here` says whether a client of that name is
    // on this node (connected or lost).
    virtual NameAdmission admit_name(const Connection& connection, std::string_view name,
                                     bool held_here) = 0;

  protected:
    ~ClusterLink() = default;
};

}  // namespace pubsubx
