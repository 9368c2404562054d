#pragma once
// The input format of plugin-replies-fuzz, shared with the seed generator:
//   byte 0       which reply (Kind, modulo KIND_COUNT)
//   bytes 1..4   the request's parameter, little-endian: what pread asked for (PREAD: 1 + it
//                modulo 32 KiB - 1; PREAD_SHARED: 32 KiB + it modulo the rest up to 64 MiB),
//                a query's maximum answer (1 + it modulo 2: booleans, FUA/cache modes)
//   the rest     for the RPC replies (LOAD ... DEFAULT_EXPORT): one Cap'n Proto message in the standard
//                framing whose root is that reply's results struct, as the plugin finds it in
//                a Return's payload; for the lane replies (LANE_STATUS ... EXTENTS): the bytes
//                a worker writes on a lane, read through the plugin's LaneStream (framing and
//                size checks included) and then as a LaneReply.

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace pyworker::fuzz {

enum class Kind : uint8_t {
  LOAD,
  STATUS_ONLY,  // config, config_complete, get_ready, after_fork, preconnect: the Status is
                // all the plugin reads
  THREAD_MODEL,
  DUMP_PLUGIN,
  LIST_EXPORTS,
  DEFAULT_EXPORT,
  LANE_STATUS,  // pwrite, flush, trim, zero, cache, close: a LaneReply's Status (and Host
                // calls)
  OPEN,         // a LaneReply's Status and handle id
  GET_SIZE,
  BLOCK_SIZE,
  EXPORT_DESCRIPTION,
  QUERY,
  PREAD,
  PREAD_SHARED,  // pread of at least 32 KiB: the data went through the shared memory
  EXTENTS,
  KIND_COUNT
};

constexpr size_t HEADER_BYTES = 5;

constexpr bool isLaneReply(Kind kind) { return kind >= Kind::LANE_STATUS; }

inline std::string inputHeader(Kind kind, uint32_t parameter) {
  std::string header(HEADER_BYTES, '\0');
  header[0] = static_cast<char>(kind);
  for (int i = 0; i < 4; ++i) header[1 + i] = static_cast<char>(parameter >> (8 * i));
  return header;
}

}  // namespace pyworker::fuzz
