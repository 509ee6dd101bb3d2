#include "name_registry.hpp"

#include "nats_link.hpp"
#include "subjects.hpp"

namespace pubsubx::cluster {

namespace {

constexpr const char* kNamesBucket = "psx_names";
constexpr const char* kNodesBucket = "psx_nodes";

// Opens a bucket, creating it when it does not exist yet.
natsStatus open_bucket(kvStore** bucket, jsCtx* jetstream, const char* name,
                       std::chrono::nanoseconds ttl) {
    natsStatus status = js_KeyValue(bucket, jetstream, name);
    if (status == NATS_OK) {
        return status;
    }
    kvConfig config;
    kvConfig_Init(&config);
    config.Bucket = name;
    config.History = 1;
    config.Replicas = 1;
    config.TTL = ttl.count();  // cnats 3.4 takes it in nanoseconds
    return js_CreateKeyValue(bucket, jetstream, &config);
}

// The entry of `key`, or an empty one (revision 0 if none ever existed); null on failure.
std::optional<NameEntry> read_entry(kvStore* bucket, const std::string& key) {
    kvEntry* entry = nullptr;
    const natsStatus status = kvStore_Get(&entry, bucket, key.c_str());
    if (status == NATS_NOT_FOUND) {
        return NameEntry{};
    }
    if (status != NATS_OK) {
        return std::nullopt;
    }
    NameEntry result;
    result.revision = kvEntry_Revision(entry);
    if (kvEntry_Operation(entry) == kvOp_Put) {
        result.owner.assign(static_cast<const char*>(kvEntry_Value(entry)),
                            static_cast<std::size_t>(kvEntry_ValueLen(entry)));
    }
    kvEntry_Destroy(entry);
    return result;
}

}  // namespace

NameRegistry::NameRegistry(std::string cluster, std::string node, std::chrono::milliseconds lease)
    : cluster_(std::move(cluster)), node_(std::move(node)), lease_(lease) {}

NameRegistry::~NameRegistry() {
    close();
}

std::string NameRegistry::name_key(std::string_view name) const {
    return escaped(cluster_) + "." + escaped(name);
}

std::string NameRegistry::node_key(std::string_view node) const {
    return escaped(cluster_) + "." + escaped(node);
}

bool NameRegistry::open(natsConnection* connection, std::string& error) {
    close();
    // Every registry call waits at most 2 s: a frozen NATS delays a claim or a stop no longer.
    jsOptions options;
    jsOptions_Init(&options);
    options.Wait = 2000;
    natsStatus status = natsConnection_JetStream(&jetstream_, connection, &options);
    if (status == NATS_OK) {
        status = open_bucket(&names_, jetstream_, kNamesBucket, std::chrono::nanoseconds{0});
    }
    if (status == NATS_OK) {
        status = open_bucket(&nodes_, jetstream_, kNodesBucket, lease_);
    }
    if (status != NATS_OK) {
        error = nats_error_text(status) + " (is nats-server running with JetStream, -js?)";
        close();
        return false;
    }
    return true;
}

void NameRegistry::close() {
    kvStore_Destroy(names_);
    kvStore_Destroy(nodes_);
    jsCtx_Destroy(jetstream_);
    names_ = nullptr;
    nodes_ = nullptr;
    jetstream_ = nullptr;
}

std::optional<NameEntry> NameRegistry::lookup(std::string_view name) {
    if (names_ == nullptr) {
        return std::nullopt;
    }
    return read_entry(names_, name_key(name));
}

std::optional<std::uint64_t> NameRegistry::write(std::string_view key_view, std::string_view value,
                                                 std::uint64_t revision) {
    if (names_ == nullptr) {
        return std::nullopt;
    }
    const std::string key{key_view};
    std::uint64_t written = 0;
    const natsStatus status = revision == 0
                                  ? kvStore_Create(&written, names_, key.c_str(), value.data(),
                                                   static_cast<int>(value.size()))
                                  : kvStore_Update(&written, names_, key.c_str(), value.data(),
                                                   static_cast<int>(value.size()), revision);
    if (status == NATS_OK) {
        return written;
    }
    // JetStream refuses a wrong last revision (or an existing key) with NATS_ERR: a lost race,
    // which is an answer. A timeout or a closed connection is not.
    if (status == NATS_ERR) {
        return 0;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> NameRegistry::take(std::string_view name, std::uint64_t revision) {
    return write(name_key(name), node_, revision);
}

std::optional<std::uint64_t> NameRegistry::move(std::string_view name, std::string_view node,
                                                std::uint64_t revision) {
    return write(name_key(name), node, revision);
}

bool NameRegistry::release(std::string_view name, std::uint64_t revision) {
    const auto written = write(name_key(name), "", revision);
    return written && *written != 0;
}

bool NameRegistry::heartbeat(std::uint64_t incarnation, bool first, std::string& error) {
    if (nodes_ == nullptr) {
        error = "the registry is not open";
        return false;
    }
    const std::string key = node_key(node_);
    const std::string value = std::to_string(incarnation);
    if (first) {
        const std::optional<NameEntry> held = read_entry(nodes_, key);
        if (!held) {
            error = "cannot read the node leases";
            return false;
        }
        if (!held->owner.empty() && held->owner != value) {
            error = "node name '" + node_ + "' is in use by a running node (or one that stopped " +
                    "less than a lease ago: " + std::to_string(lease_.count()) + " ms)";
            return false;
        }
    }
    const natsStatus status =
        kvStore_Put(nullptr, nodes_, key.c_str(), value.data(), static_cast<int>(value.size()));
    if (status != NATS_OK) {
        error = nats_error_text(status);
        return false;
    }
    return true;
}

bool NameRegistry::node_alive(std::string_view node) {
    if (nodes_ == nullptr) {
        return true;  // unknown: assume alive, never take a name from a node that may hold it
    }
    const std::optional<NameEntry> held = read_entry(nodes_, node_key(node));
    return !held || !held->owner.empty();
}

void NameRegistry::leave() {
    if (nodes_ != nullptr) {
        kvStore_Delete(nodes_, node_key(node_).c_str());
    }
}

}  // namespace pubsubx::cluster
