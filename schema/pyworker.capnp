@0xe357f3dc91ada545;
# The whole contract between the nbdkit plugin (plugin/) and the worker process (worker/).
#
# The worker serves `Worker` as its bootstrap capability on every connection it is given; the
# plugin serves `Host` as its own bootstrap, for what only nbdkit can do. Every callback that
# nbdkit makes on the plugin becomes one call here. Expected failures of a script callback are
# data (`Status` with an errno), never an RPC exception: an RPC exception means the worker broke.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pyworker::rpc");

struct Status {
  # Outcome of one script callback.
  errno @0 :Int32;
  # 0 on success. On failure: the errno the script set with nbdkit.set_error(), else EIO.
  message @1 :Text;
  # On failure: the complete nbdkit_error() text, "<script>: <callback>: error: <traceback>".
  disconnect @2 :Disconnect;
  # nbdkit.disconnect() was called during this callback: the plugin calls nbdkit_disconnect()
  # on the connection's own thread, which is the only place nbdkit accepts it.
  errors @3 :List(Text);
  # What nbdkit itself would have logged with nbdkit_error() during the callback, from inside
  # the `nbdkit` module (export_name() with no export chosen yet: "no connection in this
  # thread"), whether the callback failed or not. The plugin logs them first, on the calling
  # thread, so that they carry the connection's prefix as in-process.
}

enum Disconnect {
  none @0;
  soft @1;
  force @2;
}

struct ConnectionContext {
  # What only nbdkit's connection thread knows, captured by the plugin and shipped with each
  # connection-scoped call, so that the script's nbdkit.export_name(), is_tls() and peer_*()
  # answer as in-process.
  exportName @0 :Data;
  # Raw bytes as the client sent them (nbdkit guarantees UTF-8; the worker re-checks).
  hasExportName @1 :Bool;
  # False before the client has chosen an export (preconnect, list_exports).
  isTls @2 :Bool;
  peerAddress @3 :Data;
  # struct sockaddr as nbdkit_peer_name() filled it; empty if unknown.
  peerPid @4 :Int64 = -1;
  peerUid @5 :Int64 = -1;
  peerGid @6 :Int64 = -1;
  # -1 when nbdkit cannot tell (TCP peers, for example).
}

struct ScriptInfo {
  apiVersion @0 :Int32;
  pythonVersion @1 :Text;
  # e.g. "3.11.2", for --dump-plugin's python_version=.
  pep384AbiVersion @2 :Int32;
}

struct Export {
  name @0 :Text;
  description @1 :Text;
  hasDescription @2 :Bool;
}

struct SharedRange {
  # A range of the data memory that the plugin shares with this worker (a memfd the worker
  # gets at spawn, see the worker's --data-fd). Each request in flight has its own range.
  offset @0 :UInt64;
  length @1 :UInt32;
}

struct Extent {
  offset @0 :UInt64;
  length @1 :UInt64;
  type @2 :UInt32;
}

enum Query {
  # The per-connection questions nbdkit asks once after open. The worker applies nbdkit's
  # python plugin defaults when the script does not define the callback.
  canWrite @0;
  canFlush @1;
  isRotational @2;
  canTrim @3;
  canZero @4;
  canFastZero @5;
  canFua @6;        # answers NBDKIT_FUA_NONE/EMULATE/NATIVE
  canCache @7;      # answers NBDKIT_CACHE_NONE/EMULATE/NATIVE
  canExtents @8;
  canMultiConn @9;
}

interface Host {
  # Served by the plugin. Calls are fire-and-forget from the worker's point of view, but they
  # arrive before the reply of the callback that made them (E-order on one connection).
  debug @0 (message :Text);
  # nbdkit.debug(): nbdkit_debug(), printed only with -v.
  error @1 (message :Text);
  # An error with no request to fail (close raising, for example): nbdkit_error().
  shutdown @2 ();
  # nbdkit.shutdown(): nbdkit_shutdown().
  breakpointWaits @3 (where :Text, file :Text, line :UInt32);
  # pdb=on: a thread of the worker stopped at breakpoint() (`where`: "in pread", ...; file and
  # line of the call) and waits for `tools/pyworker-debug pdb`. The plugin logs it, and
  # timeout= does not count for this worker until as many breakpointResumed have come.
  breakpointResumed @4 ();
  # That breakpoint's pdb session has ended (or it never got one): the request runs on.
}

interface Worker {
  # Process-wide callbacks, in nbdkit's order. The plugin calls `load` once, first.

  load @0 (script :Text, host :Host, debugWait :Bool, pdb :Bool)
      -> (status :Status, info :ScriptInfo, printed :Text, exitStatus :Int32 = -1);
  # Runs the script as __main__ and checks that open, get_size and pread exist. With
  # debugWait, first waits (without the GIL) until a debugger has attached to the worker.
  # pdb: breakpoint() and pdb.set_trace() wait for `tools/pyworker-debug pdb` (worker/
  # pdb-session.h); with debugWait too, the worker waits for pdb instead of gdb, at the
  # script's first line.
  # printed: what Python prints on stderr before nbdkit's "error running this script" line
  # (the traceback, or sys.exit("message")'s message), which the plugin shows first.
  # exitStatus: the script called sys.exit() while loading; nbdkit python's process exits
  # with this status at once (PyErr_Print() does), and so does nbdkit with pyworker. -1: no.
  config @1 (key :Text, value :Text) -> (status :Status);
  configComplete @2 () -> (status :Status);
  threadModel @3 () -> (status :Status, model :Int32);
  getReady @4 () -> (status :Status);
  afterFork @5 (directory :Text, host :Host, uid :Int64 = -1, gid :Int64 = -1,
                nbdkitPid :Int64 = -1)
      -> (status :Status, defines :BeforeOpenCallbacks, fixedAnswers :List(Int32));
  # The worker changes to nbdkit's current directory first (the daemon chdir()s to "/"),
  # takes nbdkit's user and group when they are given (nbdkit -u/-g switched after the worker
  # was started: setgroups + setgid + setuid, as nbdkit does), and
  # names itself after the serving nbdkit's pid (the daemon is not the process that started
  # it), and from now on sends Host calls to `host` (the serving connection's; the one given to `load`
  # may have belonged to the config-phase connection, which is closed by then).
  # `defines`: which of the callbacks a new connection may make before open the script has
  # once after_fork has run; the plugin answers for those it has not (as nbdkit python does)
  # without asking. `fixedAnswers`, indexed by Query: the answer the worker gives to every
  # connection without running script code (the script has no such callback), or -1: ask.
  cleanup @6 () -> ();
  dumpPlugin @7 () -> (status :Status, text :Text);
  # The script's dump_plugin() output, captured, for the plugin to print on nbdkit's stdout.

  preconnect @8 (readonly :Bool, context :ConnectionContext) -> (status :Status);
  listExports @9 (readonly :Bool, context :ConnectionContext)
      -> (status :Status, useDefault :Bool, exports :List(Export));
  # useDefault: the script has no list_exports; the plugin calls nbdkit_use_default_export().
  defaultExport @10 (readonly :Bool, context :ConnectionContext) -> (status :Status, name :Text);
  # open is a LaneCall (below): a connection's every callback from open to close travels on
  # lanes.
}

# --- Lanes: the per-connection callbacks ---
#
# A connection's callbacks do not go through the RPC connection above: each one is a LaneCall
# message answered by one LaneReply message on a "lane", a stream socket of its own between
# one nbdkit thread (for the duration of one call) and one worker thread that runs the
# script's callback itself. Both messages use Cap'n Proto's standard stream framing (segment
# table, then segments). Why not RPC calls: a two-party RPC call is three messages (Call,
# Return, Finish) and, on each side, a hop between the caller's thread and the event-loop
# thread; on this kind of machine each hop and each wake-up of an idle CPU costs tens of
# microseconds, more than the script's own work for a 4 KiB request. A lane is one write and
# one read per side.
#
# How lanes are made: the worker is given, at spawn, a SOCK_SEQPACKET socket (its --lane-fd).
# To add a lane the plugin makes a socketpair and sends one end over it (SCM_RIGHTS, with the
# single byte 'L'); the worker serves every socket it receives on a thread of its own until
# that socket ends. A lane carries one call at a time. Its lifetime is the plugin's business:
# lanes are pooled per worker and closed when that worker's last user is gone.

struct BeforeOpenCallbacks {
  # A worker that does not say (the defaults) has them all: the plugin then asks it.
  preconnect @0 :Bool = true;
  listExports @1 :Bool = true;
  defaultExport @2 :Bool = true;
  blockSize @3 :Bool = true;
  exportDescription @4 :Bool = true;
  # And two a connection makes after open: without them the answers are fixed (no sizes, no
  # description).
}

struct LaneCall {
  handle @0 :UInt64;
  # The handleId that the open call's reply named (0 in open itself).
  count @1 :UInt32;
  offset @2 :UInt64;
  flags @3 :UInt32;
  # nbdkit's NBDKIT_FLAG_* bits.
  shared @4 :SharedRange;
  # pread/pwrite: the payload's range in the shared data memory, or absent: then pwrite's
  # bytes are in `data`, and pread's come back in LaneReply.data.
  data @5 :Data;
  union {
    pread @6 :Void;
    pwrite @7 :Void;
    # `count` is the payload's length.
    flush @8 :Void;
    trim @9 :Void;
    zero @10 :Void;
    cache @11 :Void;
    extents @12 :Void;
    getSize @13 :Void;
    blockSize @14 :Void;
    exportDescription @15 :Void;
    query @16 :Query;
    close @17 :Void;
    # The script's close(h), on the connection's own nbdkit thread (so that what it logs has
    # the connection's prefix). The worker forgets the handle: a handle never gets a call
    # after it.
    open @18 :Void;
    # The script's open(readonly), with `readonly` and `context` below. On success the reply's
    # handleId names the new handle in every later call, on any lane. The worker keeps the
    # handle until its close call, or until the plugin is gone (it then runs close() itself,
    # before cleanup()).
  }
  readonly @19 :Bool;
  context @20 :ConnectionContext;
  # open only.
}

struct LaneReply {
  status @0 :Status;
  data @1 :Data;
  # pread without `shared`, on success: exactly `count` bytes (the plugin checks it).
  extents @2 :List(Extent);
  # extents, on success.
  size @3 :Int64;
  # getSize.
  minimum @4 :UInt32;
  preferred @5 :UInt32;
  maximum @6 :UInt32;
  # blockSize: all zero when the script has no block_size.
  description @7 :Text;
  hasDescription @8 :Bool;
  # exportDescription.
  value @9 :Int32;
  # query: the answer.
  hostCalls @10 :List(HostCall);
  # What the script asked of nbdkit during this call (nbdkit.debug(), shutdown(), ...), in
  # order: the plugin does it on the calling thread before the call returns, as in-process.
  handleId @11 :UInt64;
  # open, on success: the new handle's id (never reused within a worker).
}

struct HostCall {
  # One of Host's methods, made during a lane call.
  union {
    debug @0 :Text;
    error @1 :Text;
    shutdown @2 :Void;
  }
}
