"""The sandbox worker ("zygote") of ``mentor serve tools --enable-execute``.

Started by the server as ``python -I -c <this file's text> <config JSON>`` with an empty
environment and ``/`` as its working directory, so it imports nothing from the server and sees
none of its state. One worker serves one *slot* of the pool and runs one job at a time.

At start, when it runs as root and the kernel allows it, the worker moves into its own mount,
PID, network, IPC and UTS namespaces (``unshare(2)``; the process that called it stays behind
only to wait, so the server can still signal and reap it): inside, every mount is made
read-only, ``/proc`` is a fresh instance that shows only the worker and its job, and the only
network device is a down loopback.

For each job (length-prefixed JSON frames on stdin) the worker mounts a fresh ``tmpfs`` on
``/tmp`` (the job's scratch directory and its total-bytes quota), forks a *job process* that
changes to ``/tmp``, drops to the slot's own uid (so no two concurrent jobs share a uid),
sets ``no_new_privs``, resource limits (address space, CPU seconds, no new processes, file
size, open files) and a seccomp filter (no ``execve``, no sockets, no ptrace, no mounts or new
namespaces), then runs the job's ``env`` code and ``call`` with stdout/stderr captured up to a
cap, and writes one JSON result back through a pipe. The worker kills the job at the wall-clock
timeout, or at once when the server sends ``{"cancel": true}`` (its client went away), checks
the job's report (the job owns that pipe, so the report may be forged), unmounts the scratch
``tmpfs`` and answers the server with one JSON frame.

Only the standard library (and, if installed, the ``pyseccomp`` binding of libseccomp) is used,
on purpose. Do not import ``mentor`` here.
"""

import builtins
import ctypes
import errno
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

# Modules that jobs may import are loaded before the fork: after dropping privileges the job
# process may not be able to read the interpreter's library directory.
PRELOAD = (
    "math cmath decimal fractions statistics numbers random itertools functools operator "
    "collections heapq bisect re string json datetime time copy typing dataclasses enum"
).split()
for _name in PRELOAD:
    try:
        __import__(_name)
    except Exception:  # noqa: BLE001 - a missing optional module is not fatal
        pass

try:  # the maintained ctypes binding of libseccomp (API of libseccomp's own Python bindings)
    import pyseccomp as _seccomp
except Exception as _e:  # noqa: BLE001 - reported in the worker's status, jobs still run
    _seccomp = None
    _SECCOMP_ERROR = f"{type(_e).__name__}: {_e}"
else:
    _SECCOMP_ERROR = None

_HDR = struct.Struct(">I")
_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 1, 38, 4
SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 alike (the generic table)
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1

#: System calls a job may not make (they fail with EPERM). Everything else is allowed: the
#: rest of the containment is the uid, the namespaces and the resource limits.
DENIED_SYSCALLS = (
    "execve execveat socket socketpair ptrace process_vm_readv process_vm_writev "
    "mount umount2 pivot_root chroot unshare setns mount_setattr move_mount open_tree fsopen fsmount fspick "
    "bpf perf_event_open userfaultfd keyctl add_key request_key io_uring_setup io_uring_enter "
    "io_uring_register init_module finit_module delete_module kexec_load kexec_file_load reboot swapon "
    "swapoff acct quotactl open_by_handle_at name_to_handle_at personality setdomainname sethostname "
    "syslog vhangup iopl ioperm"
).split()


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def _umount(target):
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _read_only_everything():
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    rc = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(AT_RECURSIVE),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(rc, "mount_setattr / (recursive read-only)")


# ------------------------------------------------------------------------ worker set-up


class Worker:
    """The state of one sandbox worker (one slot)."""

    def __init__(self, config):
        self.uid = int(config.get("uid", 65534))
        self.scratch_bytes = int(config.get("scratch_bytes", 8 << 20))
        self.scratch_inodes = int(config.get("scratch_inodes", 256))
        self.isolation = {"namespaces": False, "read_only_root": False, "seccomp": False, "uid": self.uid,
                          "scratch": "none", "notes": []}
        self.root = os.geteuid() == 0
        if self.root and config.get("namespaces", True):
            self._enter_namespaces()
        self.filter = self._build_filter()

    def _enter_namespaces(self):
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        except OSError as e:
            self.isolation["notes"].append(str(e))
            return
        # The new PID namespace applies to children: fork, and let the parent only wait (the
        # server's handle on this worker is the parent's pid; killing it kills the child too).
        pid = os.fork()
        if pid:
            os.closerange(0, 3)
            signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except ChildProcessError:
                    status = 0
                    break
                except InterruptedError:
                    continue
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before the line above
            os._exit(1)
        try:
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            _read_only_everything()
            self.isolation["read_only_root"] = True
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
            self.isolation["namespaces"] = True
        except OSError as e:
            self.isolation["notes"].append(str(e))
            os._exit(3)  # half-isolated is not a state to run jobs in; the server falls back

    def _build_filter(self):
        if _seccomp is None:
            self.isolation["notes"].append(f"seccomp unavailable ({_SECCOMP_ERROR})")
            return None
        try:
            f = _seccomp.SyscallFilter(_seccomp.ALLOW)
            for name in DENIED_SYSCALLS:
                try:
                    f.add_rule(_seccomp.ERRNO(errno.EPERM), name)
                except Exception:  # noqa: BLE001 - a call this kernel/arch does not have
                    pass
            # clone3 cannot be filtered by its flags: make glibc fall back to clone.
            f.add_rule(_seccomp.ERRNO(errno.ENOSYS), "clone3")
            # clone that asks for new namespaces (CLONE_NEWUSER and friends) is refused.
            ns_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | 0x10000000
            f.add_rule(_seccomp.ERRNO(errno.EPERM), "clone", _seccomp.Arg(0, _seccomp.MASKED_EQ, ns_flags, 0x10000000))
            # Compile the filter once (libseccomp builds the BPF program); each job then installs
            # the program with one prctl() instead of rebuilding it (~1 ms per job saved).
            with os.fdopen(os.memfd_create("mentor-seccomp-bpf"), "w+b") as tmp:  # the root is read-only
                f.export_bpf(tmp)
                tmp.seek(0)
                code = tmp.read()
            if not code or len(code) % 8:
                raise ValueError("libseccomp exported no BPF program")
            self._bpf = ctypes.create_string_buffer(code, len(code))
            self._prog = _SockFprog(len(code) // 8, ctypes.cast(self._bpf, ctypes.c_void_p))
            self.isolation["seccomp"] = True
            return f
        except Exception as e:  # noqa: BLE001
            self.isolation["notes"].append(f"seccomp filter not built: {type(e).__name__}: {e}")
            return None

    # -------------------------------------------------------------------- scratch space

    def scratch_up(self):
        """A fresh scratch directory for one job: its own tmpfs on /tmp (namespaced), else a
        private directory under /tmp. Returns its path."""
        if self.isolation["namespaces"]:
            _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={self.scratch_bytes},nr_inodes={self.scratch_inodes},mode=0700,uid={self.uid},gid={self.uid}")
            self.isolation["scratch"] = f"tmpfs on /tmp per job, {self.scratch_bytes} bytes"
            return "/tmp"
        import tempfile

        path = tempfile.mkdtemp(prefix=f"mentor-job-{self.uid}-")
        if self.root:
            os.chown(path, self.uid, self.uid)
        self.isolation["scratch"] = "a private directory under /tmp per job (no byte quota beyond RLIMIT_FSIZE)"
        return path

    def scratch_down(self, path):
        if self.isolation["namespaces"]:
            _umount("/tmp")
            return
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------ framing


class FrameReader:
    """Length-prefixed JSON frames from a raw file descriptor (select()-friendly: no buffering
    hidden from select)."""

    def __init__(self, fd):
        self.fd, self.buf = fd, bytearray()

    def _fill(self):
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def pending(self):
        return len(self.buf) >= _HDR.size and len(self.buf) >= _HDR.size + _HDR.unpack_from(self.buf)[0]

    def take(self):
        """The next frame, or None if a whole one is not buffered."""
        if not self.pending():
            return None
        (n,) = _HDR.unpack_from(self.buf)
        data = bytes(self.buf[_HDR.size:_HDR.size + n])
        del self.buf[:_HDR.size + n]
        return json.loads(data.decode("utf-8"))

    def poll(self):
        """Read what is available now (after select said so); the next frame or None."""
        self._fill()
        return self.take()

    def read(self):
        while not self.pending():
            self._fill()
        return self.take()


def write_frame(fd, obj):
    data = json.dumps(obj).encode("ascii")  # ASCII: lone surrogates travel as \\u escapes
    view = memoryview(_HDR.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ------------------------------------------------------------------------ the job process


class CappedOutput(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and drops the rest."""

    def __init__(self, cap):
        self.cap, self.parts, self.size, self.truncated = cap, [], 0, False

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        if len(s) > room:
            self.truncated = True
        return len(s)

    def getvalue(self):
        return "".join(self.parts)


def _jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError, OverflowError, RecursionError):
        try:
            return repr(value)
        except Exception as e:  # noqa: BLE001
            return f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"


def _error_text(exc, limit=2000):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<env>", "<call>")]
    where = f" (line {frames[-1].lineno} of {frames[-1].filename[1:-1]})" if frames else ""
    text = f"{type(exc).__name__}: {exc}{where}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _encode(obj):
    # Not ASCII: an emoji is 4 bytes, not a 12-byte surrogate-pair escape; lone surrogates pass.
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def run_job(worker, job, wfd, scratch):
    """In the job process: lock down, run, report. Never returns."""
    result = {"ok": False, "output": "", "result": None, "error": None, "truncated": False}
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, 1 << 16)
        os.chdir(scratch)
        if worker.root:
            os.setgroups([])
            os.setgid(worker.uid)
            os.setuid(worker.uid)
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        mem = int(job["memory_mb"]) * 1024 * 1024
        cpu = max(1, int(job["cpu_seconds"]))
        fsize = int(job.get("file_bytes", 64 * 1024))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wfd + 1, 16), max(wfd + 1, 16)))
        if worker.filter is not None:
            _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(worker._prog), 0, 0),
                   "prctl(PR_SET_SECCOMP)")
        elif job.get("require_seccomp"):
            raise RuntimeError("seccomp is required but unavailable")
    except Exception as e:  # noqa: BLE001 - refuse to run unconfined
        result["error"] = f"sandbox set-up failed: {type(e).__name__}: {e}"
        _report(result, wfd, 1 << 20)
        os._exit(0)

    out = CappedOutput(int(job["output_cap"]))
    sys.stdout = sys.stderr = out
    ns = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(compile(job.get("env") or "", "<env>", "exec"), ns)
        call = (job.get("call") or "").strip()
        value = ns.get("result")  # with no call, the env code may set `result` itself
        if call:
            try:
                code = compile(call, "<call>", "eval")
            except SyntaxError:
                exec(compile(call, "<call>", "exec"), ns)
                value = ns.get("result")
            else:
                value = eval(code, ns)
        result.update(ok=True, result=_jsonable(value))
    except BaseException as e:  # noqa: BLE001 - SystemExit, MemoryError, RecursionError, ...
        ns.clear()
        result["error"] = _error_text(e)
    ns.clear()
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    result["output"], result["truncated"] = out.getvalue(), out.truncated
    _report(result, wfd, int(job["result_cap"]))
    os._exit(0)


def _report(result, wfd, result_cap):
    """Write the report. The output (already capped) is always kept; a result whose JSON
    exceeds ``result_cap`` bytes is replaced by an error saying so."""
    try:
        value = _encode(result.get("result"))
    except Exception as e:  # noqa: BLE001
        result.update(ok=False, result=None, error=f"result not serialisable: {type(e).__name__}")
    else:
        if len(value) > result_cap:
            result.update(ok=False, result=None,
                          error=f"result too large ({len(value)} bytes of JSON; the limit is {result_cap})")
    try:
        data = _encode(result)
    except Exception as e:  # noqa: BLE001
        data = _encode({"ok": False, "error": f"report not serialisable: {type(e).__name__}"})
    view = memoryview(data)
    while view:
        n = os.write(wfd, view)
        view = view[n:]


# ------------------------------------------------------------------------ supervising a job


def _clean_report(raw, output_cap):
    """The job's report, checked: the job owns its pipe, so anything may arrive."""
    if not isinstance(raw, dict):
        return None
    out = {"ok": raw.get("ok") is True, "output": "", "result": None, "error": None,
           "truncated": raw.get("truncated") is True}
    output = raw.get("output")
    if isinstance(output, str):
        out["output"] = output[:output_cap]
        out["truncated"] = out["truncated"] or len(output) > output_cap
    error = raw.get("error")
    if isinstance(error, str):
        out["error"] = error[:4000]
    elif error is not None:
        out["error"] = "the job's report had a malformed error field"
        out["ok"] = False
    out["result"] = raw.get("result")
    if not out["ok"] and out["error"] is None:
        out["error"] = "the job reported failure without an error message"
    return out


def _reap(pid, deadline, kill_now, timed_out):
    """Wait for the job process until the deadline (not at all when ``kill_now``), then kill it;
    return its wait status and whether the deadline passed."""
    status = None
    while not kill_now:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(0.0005)
    if status is None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
    return status, timed_out


def _failure(data, status, timeout, cancelled, timed_out, too_big):
    """Why a job gave no usable report, in words."""
    if cancelled:
        return "cancelled: the client went away (job process killed)"
    if timed_out:
        return f"timed out after {timeout:g} s (job process killed)"
    if too_big:
        return "job produced more output than the cap (job process killed)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)", "SIGSEGV": " (crash)"}.get(name, "")
        return f"job process killed by {name}{hint}"
    if data:
        return "the job's report was not valid JSON"
    return f"job process exited with code {os.WEXITSTATUS(status)} without a result"


def supervise(worker, job, frames):
    """In the worker: fork a job process, wait for its report, the deadline or a cancel."""
    timeout = float(job["timeout"])
    output_cap = int(job["output_cap"])
    read_cap = output_cap * 4 + int(job["result_cap"]) + 16384
    scratch = worker.scratch_up()
    r, w = os.pipe()
    start = time.monotonic()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        worker.scratch_down(scratch)
        raise
    if pid == 0:
        os.close(r)
        try:
            run_job(worker, job, w, scratch)
        finally:
            os._exit(0)
    os.close(w)
    deadline = start + timeout
    data, timed_out, too_big, cancelled, server_gone = bytearray(), False, False, False, False
    msg = frames.take()  # a cancel may have arrived in the same read as the job
    if isinstance(msg, dict) and msg.get("cancel"):
        cancelled = True
    while not cancelled:
        remain = deadline - time.monotonic()
        if remain <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r, frames.fd], [], [], remain)
        if not ready:
            timed_out = True
            break
        if frames.fd in ready:
            try:
                msg = frames.poll()
            except (EOFError, OSError):
                server_gone = cancelled = True
                break
            if isinstance(msg, dict) and msg.get("cancel"):
                cancelled = True
                break
        if r in ready:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
            if len(data) > read_cap:
                too_big = True
                break
    os.close(r)
    status, timed_out = _reap(pid, deadline, timed_out or cancelled, timed_out)
    duration = time.monotonic() - start
    worker.scratch_down(scratch)
    if server_gone:
        raise EOFError

    report = None
    if data and not too_big and not timed_out and not cancelled:
        try:
            report = _clean_report(json.loads(data.decode("utf-8", "surrogatepass")), output_cap)
        except (ValueError, RecursionError):
            report = None
    if report is None:
        report = {"ok": False, "output": "", "result": None, "truncated": too_big,
                  "error": _failure(data, status, timeout, cancelled, timed_out, too_big)}
    report["timed_out"] = timed_out
    report["cancelled"] = cancelled
    report["duration"] = round(duration, 6)
    return report


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    worker = Worker(config)
    frames = FrameReader(0)
    import gc

    gc.collect()
    gc.freeze()  # the worker's objects stay out of the jobs' collections: fewer copy-on-write faults
    write_frame(1, {"ready": True, "isolation": worker.isolation})
    while True:
        try:
            job = frames.read()
        except (EOFError, OSError):
            return
        if not isinstance(job, dict) or "env" not in job:
            continue  # a stray cancel for a job that already finished
        try:
            report = supervise(worker, job, frames)
        except EOFError:
            return
        except Exception as e:  # noqa: BLE001 - the worker reports, never dies on a job
            report = {"ok": False, "output": "", "result": None, "error": f"sandbox error: {type(e).__name__}: {e}",
                      "timed_out": False, "cancelled": False, "duration": 0.0}
        write_frame(1, report)


if __name__ == "__main__":
    main()
