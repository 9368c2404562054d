// One open connection: the Handle capability returned by open(). Each method runs the script's
// callback on the Python pool; dropping the last reference runs close(h).
#pragma once

#include "call-context.h"
#include "python-ref.h"
#include "script.h"
#include "services.h"

#include "pyworker.capnp.h"

namespace pyworker {

class HandleServer final: public rpc::Handle::Server {
public:
  HandleServer(Services services, PyRef handle, ConnectionInfo connection);
  ~HandleServer() noexcept(false);
  // Capnp destroys the server only after every call on it has returned, so close() runs
  // after the connection's last request, on the pool.

protected:
  kj::Promise<void> getSize(GetSizeContext context) override;
  kj::Promise<void> blockSize(BlockSizeContext context) override;
  kj::Promise<void> exportDescription(ExportDescriptionContext context) override;
  kj::Promise<void> query(QueryContext context) override;
  kj::Promise<void> pread(PreadContext context) override;
  kj::Promise<void> pwrite(PwriteContext context) override;
  kj::Promise<void> flush(FlushContext context) override;
  kj::Promise<void> trim(TrimContext context) override;
  kj::Promise<void> zero(ZeroContext context) override;
  kj::Promise<void> cache(CacheContext context) override;
  kj::Promise<void> extents(ExtentsContext context) override;

private:
  uint8_t* sharedRange(rpc::SharedRange::Reader range, uint32_t count);
  // Where a request's payload lies in the data memory shared with the plugin.

  template <typename T>
  kj::Promise<T> onPool(kj::Function<T()> job);

  Outcome call(const char* callback, kj::FunctionParam<void()> body);
  // Script::call with this connection's state. Pool thread.

  Services services;
  PyRef handle;  // WARNING: only touched under the GIL; the destructor moves it to the pool
  ConnectionInfo connection;
};

}  // namespace pyworker
