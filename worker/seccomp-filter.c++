#include "seccomp-filter.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace pyworker {

namespace {

#ifndef __x86_64__
#error "the seccomp filter knows only x86_64's system call numbers"
#endif

constexpr uint32_t X32_SYSCALL_BIT = 0x40000000;

// Newer than glibc 2.36's <sys/syscall.h> (x86_64 numbers).
constexpr int SYS_FCHMODAT2 = 452;      // Linux 6.6
constexpr int SYS_SETXATTRAT = 463;     // Linux 6.13
constexpr int SYS_REMOVEXATTRAT = 466;  // Linux 6.13

constexpr uint32_t NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                     CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
// Not CLONE_NEWTIME (0x80): for clone() the low byte is the exit signal.

constexpr int REFUSED[] = {
    // Other processes' memory and execution.
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_pidfd_getfd,
    SYS_process_madvise,
    // The kernel itself: modules, kexec, eBPF, perf, reboot, swap, the kernel log, the clock.
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_kexec_load, SYS_kexec_file_load,
    SYS_bpf, SYS_perf_event_open, SYS_reboot, SYS_swapon, SYS_swapoff, SYS_syslog, SYS_acct,
    SYS_settimeofday, SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex, SYS_sethostname,
    SYS_setdomainname, SYS_iopl, SYS_ioperm, SYS_quotactl,
    // The kernel's keyrings.
    SYS_keyctl, SYS_add_key, SYS_request_key,
    // Mounts and namespaces: a new view of the file system or of the network.
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_move_mount, SYS_open_tree,
    SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr, SYS_unshare,
    SYS_setns,
    // Around the other layers: files by handle (not by path, so past Landlock), io_uring
    // (its operations are not system calls this filter sees), userfaultfd (an exploit's tool).
    SYS_open_by_handle_at, SYS_name_to_handle_at, SYS_io_uring_setup, SYS_io_uring_enter,
    SYS_io_uring_register, SYS_userfaultfd,
    // What Landlock does not govern, by path: a file's mode, owner and extended attributes (a
    // root script could make /etc/shadow readable to all, or give a program file
    // capabilities). fchmod/fchown/fsetxattr on a file the script could open stay allowed.
    SYS_chmod, SYS_fchmodat, SYS_FCHMODAT2, SYS_chown, SYS_lchown, SYS_fchownat, SYS_setxattr,
    SYS_lsetxattr, SYS_removexattr, SYS_lremovexattr, SYS_SETXATTRAT, SYS_REMOVEXATTRAT,
};

class Assembler {
  // Classic BPF with forward jumps to labels, resolved at the end (jt/jf are relative).
public:
  enum Label { NATIVE, CLONE_FLAGS, REFUSE, NO_SUCH_CALL, LABELS };

  void load(uint32_t offset) { code.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offset)); }
  void jumpIf(uint16_t op, uint32_t value, Label target) {
    fixups.push_back({code.size(), target});
    code.push_back(BPF_JUMP(BPF_JMP | op | BPF_K, value, 0, 0));
  }
  void ret(uint32_t value) { code.push_back(BPF_STMT(BPF_RET | BPF_K, value)); }
  void place(Label label) { labels[label] = code.size(); }

  std::vector<sock_filter> finish() {
    for (auto& fixup : fixups) {
      size_t distance = labels[fixup.target] - fixup.at - 1;
      if (distance > 255) throw std::logic_error("seccomp filter: jump too far");
      code[fixup.at].jt = static_cast<uint8_t>(distance);
    }
    return code;
  }

private:
  struct Fixup {
    size_t at;
    Label target;
  };
  std::vector<sock_filter> code;
  std::vector<Fixup> fixups;
  size_t labels[LABELS] = {};
};

}  // namespace

std::vector<sock_filter> buildSeccompFilter(const SeccompOptions& options) {
  Assembler a;
  a.load(offsetof(seccomp_data, arch));
  a.jumpIf(BPF_JEQ, AUDIT_ARCH_X86_64, Assembler::NATIVE);
  a.ret(SECCOMP_RET_ERRNO | EPERM);  // i386 (int 0x80) and every other ABI
  a.place(Assembler::NATIVE);
  a.load(offsetof(seccomp_data, nr));
  a.jumpIf(BPF_JGE, X32_SYSCALL_BIT, Assembler::REFUSE);
  for (int nr : REFUSED) a.jumpIf(BPF_JEQ, static_cast<uint32_t>(nr), Assembler::REFUSE);
  if (!options.network) a.jumpIf(BPF_JEQ, SYS_socket, Assembler::REFUSE);
  a.jumpIf(BPF_JEQ, SYS_clone3, Assembler::NO_SUCH_CALL);
  a.jumpIf(BPF_JEQ, SYS_clone, Assembler::CLONE_FLAGS);
  a.ret(SECCOMP_RET_ALLOW);  // everything else
  // clone: its flags are the first argument (the low 32 bits of args[0], little-endian).
  a.place(Assembler::CLONE_FLAGS);
  a.load(offsetof(seccomp_data, args[0]));
  a.jumpIf(BPF_JSET, NAMESPACE_FLAGS, Assembler::REFUSE);
  a.ret(SECCOMP_RET_ALLOW);
  a.place(Assembler::REFUSE);
  a.ret(SECCOMP_RET_ERRNO | EPERM);
  a.place(Assembler::NO_SUCH_CALL);
  a.ret(SECCOMP_RET_ERRNO | ENOSYS);
  return a.finish();
}

void installSeccompFilter(const std::vector<sock_filter>& program) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    throw std::runtime_error(std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + strerror(errno));
  }
  sock_fprog fprog = {static_cast<unsigned short>(program.size()),
                      const_cast<sock_filter*>(program.data())};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog) != 0) {
    throw std::runtime_error(std::string("seccomp(SECCOMP_SET_MODE_FILTER): ") +
                             strerror(errno));
  }
}

}  // namespace pyworker
