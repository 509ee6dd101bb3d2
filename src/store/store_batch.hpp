// The changes the event loop hands to the store's writer thread, in the order they happened.
// Plain data: the frames and names live in one byte arena per batch, so a message kept for a
// lost client costs an append, not an allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pubsubx::store {

struct StoreOp {
    enum class Kind : std::uint8_t {
        wipe,                // forget everything stored: a snapshot of memory follows
        save_client,         // text: name, then the secret digest's bytes if `count` is 1
        remove_client,       // with its subscriptions and messages
        subscribe,           // text: the topic
        unsubscribe,         // text: the topic
        keep_messages,       // text: encoded frames, delimiters included
        drop_oldest,         // count: messages
        hand_over_messages,  // all of them: the client was restored
    };
    Kind kind;
    std::uint64_t client = 0;
    std::uint64_t count = 0;
    std::size_t offset = 0;  // of the text in the batch's arena
    std::size_t length = 0;
};

struct StoreBatch {
    // A merged op stays small enough for one short transaction (StoreWriter::kCommitBytes).
    static constexpr std::size_t kMaxMergedBytes = 64 * 1024;

    std::vector<StoreOp> ops;
    std::string arena;
    // The whole store is replaced by this batch (it starts with a wipe): whatever the writer
    // still holds unwritten is superseded.
    bool replaces_all = false;

    void add(StoreOp::Kind kind, std::uint64_t client, std::uint64_t count = 0,
             std::string_view text = {}) {
        // A flooded lost client's messages join one op: its text is the arena's tail.
        if (kind == StoreOp::Kind::keep_messages && !ops.empty() &&
            ops.back().kind == StoreOp::Kind::keep_messages && ops.back().client == client &&
            ops.back().offset + ops.back().length == arena.size() &&
            ops.back().length < kMaxMergedBytes) {
            ops.back().length += text.size();
        } else {
            ops.push_back({kind, client, count, arena.size(), text.size()});
        }
        arena.append(text);
    }
    std::string_view text(const StoreOp& op) const {
        return std::string_view{arena}.substr(op.offset, op.length);
    }
    bool empty() const { return ops.empty(); }
    std::size_t bytes() const { return arena.size() + ops.size() * sizeof(StoreOp); }
    void swap(StoreBatch& other) noexcept {
        ops.swap(other.ops);
        arena.swap(other.arena);
        std::swap(replaces_all, other.replaces_all);
    }
    void clear() {
        ops.clear();
        arena.clear();
        replaces_all = false;
    }
    // Forgets the first `count` ops (committed already) and their text.
    void drop_front(std::size_t count) {
        StoreBatch rest;
        rest.replaces_all = replaces_all && count == 0;
        for (std::size_t i = count; i < ops.size(); ++i) {
            rest.ops.push_back(
                {ops[i].kind, ops[i].client, ops[i].count, rest.arena.size(), ops[i].length});
            rest.arena.append(text(ops[i]));
        }
        swap(rest);
    }
    // Appends `later` after this batch's ops.
    void append(const StoreBatch& later) {
        const std::size_t base = arena.size();
        arena.append(later.arena);
        for (StoreOp op : later.ops) {
            op.offset += base;
            ops.push_back(op);
        }
    }
};

}  // namespace pubsubx::store
