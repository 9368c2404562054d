// One open connection: the Handle capability returned by open(), for the questions nbdkit asks
// once per connection (the data callbacks come on lanes, lane-server.h). Each method runs the
// script's callback on the Python pool; dropping the last reference runs close(h).
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
  // Capnp destroys the server only after every call on it has returned, and the plugin
  // releases it only after the connection's last data call, so close() runs after the
  // connection's last request, on the pool.

  uint64_t handleId() const { return id; }

protected:
  kj::Promise<void> getSize(GetSizeContext context) override;
  kj::Promise<void> blockSize(BlockSizeContext context) override;
  kj::Promise<void> exportDescription(ExportDescriptionContext context) override;
  kj::Promise<void> query(QueryContext context) override;

private:
  template <typename T>
  kj::Promise<T> onPool(kj::Function<T()> job);

  Outcome call(const char* callback, kj::FunctionParam<void()> body);
  // Script::call with this connection's state. Pool thread.

  Services services;
  std::shared_ptr<OpenHandle> open;  // the destructor moves it to the pool, for close()
  uint64_t id;
};

}  // namespace pyworker
