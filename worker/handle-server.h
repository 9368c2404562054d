// One open connection: the Handle capability returned by open(). It has no methods (the
// connection's callbacks come on lanes, lane-server.h); it registers the handle for lanes to
// find, and dropping the last reference runs close(h) on the Python pool.
#pragma once

#include "open-handle.h"
#include "script.h"
#include "services.h"

#include "pyworker.capnp.h"

namespace pyworker {

class HandleServer final: public rpc::Handle::Server {
public:
  HandleServer(Services services, std::shared_ptr<OpenHandle> open);
  // Registers `open` in services.handles, for lanes to find.
  ~HandleServer() noexcept(false);
  // The plugin releases the capability only after the connection's last call on a lane has
  // been answered, so close() runs after the connection's last request, on the pool.

  uint64_t handleId() const { return id; }

private:
  Services services;
  std::shared_ptr<OpenHandle> open;  // the destructor moves it to the pool, for close()
  uint64_t id;
};

}  // namespace pyworker
