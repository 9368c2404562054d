// The bootstrap `Worker` capability: the process-wide callbacks and the connection-scoped ones
// that come before open (open and the rest travel on lanes: lane-server.h). One instance
// serves every connection.
#pragma once

#include "script.h"
#include "services.h"

#include "pyworker.capnp.h"

namespace pyworker {

class WorkerServer final: public rpc::Worker::Server {
public:
  explicit WorkerServer(Services services): services(services) {}

protected:
  kj::Promise<void> load(LoadContext context) override;
  kj::Promise<void> config(ConfigContext context) override;
  kj::Promise<void> configComplete(ConfigCompleteContext context) override;
  kj::Promise<void> threadModel(ThreadModelContext context) override;
  kj::Promise<void> getReady(GetReadyContext context) override;
  kj::Promise<void> afterFork(AfterForkContext context) override;
  kj::Promise<void> cleanup(CleanupContext context) override;
  kj::Promise<void> dumpPlugin(DumpPluginContext context) override;
  kj::Promise<void> preconnect(PreconnectContext context) override;
  kj::Promise<void> listExports(ListExportsContext context) override;
  kj::Promise<void> defaultExport(DefaultExportContext context) override;

private:
  template <typename T>
  kj::Promise<T> onMainThread(kj::Function<T()> job);
  // The process-wide callbacks (load ... after_fork, cleanup, dump_plugin) run here, the
  // connections' ones on the pool.

  Outcome runOptional(const char* callback);
  // On the main thread: runs a no-argument, no-result callback if the script defines it.
  kj::Promise<Outcome> callOptional(const char* callback);
  // Runs a no-argument, no-result callback if the script defines it.

  Services services;
};

}  // namespace pyworker
