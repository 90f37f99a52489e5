"""Seccomp: Docker's default profile rendered into an OCI `linux.seccomp` for a container's capabilities (engine
side), and an OCI `linux.seccomp` compiled and loaded with libseccomp (container side, just before execve)."""

from __future__ import annotations

import _thread
import os

from engine.errors import InvalidArgument

# No typing, json, pathlib or platform at run time (annotations only; the engine side imports json where it
# parses a profile): the container's init uses this module, so the zygote imports it (see lean.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "data",
                               "seccomp-default.json")  # fmt: skip

# Go's GOARCH names, which the profile's `arches` use, for uname's machine
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x", "ppc64le": "ppc64le",
           "riscv64": "riscv64", "i686": "386", "loongarch64": "loong64"}  # fmt: skip
# the SCMP_ARCH_* name of each GOARCH, for matching `archMap`
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "s390x": "SCMP_ARCH_S390X", "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64",
              "386": "SCMP_ARCH_X86", "loong64": "SCMP_ARCH_LOONGARCH64"}  # fmt: skip


def native_goarch() -> str:
    machine = os.uname().machine
    return _GOARCH.get(machine, machine)


def _kernel_at_least(want: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit()) or "0"
            out.append(int(digits))
        return tuple(out)

    return parse(os.uname().release) >= parse(want)


def load_profile(text: str | None = None) -> dict[str, Any]:
    """A Docker seccomp profile from its JSON text (None: the default profile). Bad text is moby's LoadProfile
    error, with Go's JSON wording for the usual mistakes (a path where JSON belongs, an empty value)."""
    if text is None:
        with open(DEFAULT_PROFILE, encoding="utf-8") as f:
            text = f.read()
    head = text.lstrip(" \t\r\n")
    if not head:
        raise InvalidArgument("Decoding seccomp profile failed: unexpected end of JSON input")
    if head[0] not in '{["-0123456789tfn':
        raise InvalidArgument(f"Decoding seccomp profile failed: invalid character '{head[0]}' looking for "
                              "beginning of value")  # fmt: skip
    import json

    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else "string" if isinstance(data, str) else (
            "bool" if isinstance(data, bool) else "number" if isinstance(data, (int, float)) else "null")
        if kind != "null":  # Go decodes null into the zero profile
            raise InvalidArgument(f"Decoding seccomp profile failed: json: cannot unmarshal {kind} into Go value "
                                  "of type seccomp.Seccomp")  # fmt: skip
        data = {}
    return data


def render(profile: dict[str, Any], capabilities: list[str]) -> dict[str, Any]:
    """Turns a Docker seccomp profile (with archMap and includes/excludes) into an OCI `linux.seccomp`."""
    arch = native_goarch()
    caps = set(capabilities)
    architectures: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == _SCMP_ARCH.get(arch):
            architectures = [entry["architecture"], *(entry.get("subArchitectures") or [])]
    if not architectures and profile.get("architectures"):
        architectures = list(profile["architectures"])
    syscalls: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or []:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(c in caps for c in inc["caps"]):
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if exc.get("caps") and any(c in caps for c in exc["caps"]):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        out: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            out["args"] = [
                {"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                for a in rule["args"]
            ]
        syscalls.append(out)
    spec: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": architectures,
                            "syscalls": syscalls}  # fmt: skip
    if profile.get("defaultErrnoRet") is not None:
        spec["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return spec


# --- loading (container side) ---

_ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
            "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}  # fmt: skip
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
        "SCMP_CMP_MASKED_EQ": 7}  # fmt: skip
_EPERM = 1


def _action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return 0x00050000 | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return 0x7FF00000 | ((_EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name not in _ACTIONS:
        raise ValueError(f"seccomp: unknown action {name}")
    return _ACTIONS[name]


_lib: Any = None


def preload() -> Any:
    """Opens libseccomp: before pivot_root or setns into the container's mounts, where the host's lib is gone."""
    global _lib
    if _lib is None:
        import ctypes

        _lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    return _lib


# _thread's lock rather than threading's: importing threading into the supervisor's zygote costs every forked
# supervisor ~0.4 MiB of private pages (its at-fork hook in the child writes to shared objects)
_compile_lock = _thread.allocate_lock()


def compile_bpf(spec: dict[str, Any]) -> bytes:
    """Compiles the OCI seccomp spec with libseccomp into the classic BPF program the kernel loads."""
    # One at a time: the ctypes signatures below are set on the one shared library handle, with a struct type
    # made per call, so two threads compiling at once (parallel first starts) pass one's array to the other's type.
    with _compile_lock:
        return _compile_bpf(spec)


def _compile_bpf(spec: dict[str, Any]) -> bytes:
    import ctypes

    lib = preload()
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]

    class ArgCmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]  # fmt: skip

    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCmp)]  # fmt: skip

    default = _action(spec["defaultAction"], spec.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        lib.seccomp_attr_set(ctx, 3, 0)  # SCMP_FLTATR_CTL_NNP: no_new_privs is the spec's to decide, not ours
        for arch in spec.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token:
                lib.seccomp_arch_add(ctx, token)  # -EEXIST for the native one: fine
        for rule in spec.get("syscalls") or []:
            action = _action(rule["action"], rule.get("errnoRet"))
            if action == default:
                continue
            args = rule.get("args") or []
            arr = (ArgCmp * max(1, len(args)))()
            for i, a in enumerate(args):
                arr[i].arg = a["index"]
                arr[i].op = _OPS[a["op"]]
                arr[i].datum_a = a["value"]
                arr[i].datum_b = a.get("valueTwo", 0)
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # not a syscall of this architecture
                    continue
                lib.seccomp_rule_add_array(ctx, action, nr, len(args), arr)
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            ret = lib.seccomp_export_bpf(ctx, fd)
            if ret < 0:
                raise OSError(-ret, "seccomp_export_bpf failed")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def prepare(spec: dict[str, Any], cache_dir: str | None) -> bytes:
    """The BPF program for `spec`, from `cache_dir` when an earlier container compiled the same one: compiling
    Docker's profile takes tens of milliseconds, loading it one."""
    import hashlib
    import marshal

    key = hashlib.sha256(marshal.dumps(spec) + os.uname().machine.encode()).hexdigest()
    path = f"{cache_dir}/{key}.bpf" if cache_dir else None
    if path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass
    prog = compile_bpf(spec)
    if path and cache_dir:
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(prog)
            os.rename(tmp, path)
        except OSError:
            pass
    return prog


def load_bpf(prog: bytes) -> None:
    """Installs a classic BPF seccomp program in this process (and its future children)."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) < 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


def load(spec: dict[str, Any]) -> None:
    """Compiles and loads the OCI seccomp spec."""
    load_bpf(compile_bpf(spec))
