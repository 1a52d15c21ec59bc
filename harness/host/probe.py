"""What this machine is (`inspect-host`): OS, libc, CPU features, and every GPU runtime found.

Probing reads what the OS already knows (files, `ldconfig -p`, `sysctl`, the registry,
`IsProcessorFeaturePresent`) and never initialises a GPU: the one library it loads is the CUDA
driver, for `cuDriverGetVersion`, which needs no device. Every probe is guarded, so a strange
machine gives `None`s and empty lists, never an exception; subprocesses have a 3 s limit.

Which build variant this host runs is decided from what is found here, in `host.choose`.

One module past 400 lines on purpose: it is one job (describe this machine) done per OS, and the
probes share one library finder (`_Libs`) and one guard (`_safe`); split by runtime, each part
would be a few dozen lines importing the same helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.sources.assets import host_platform
from harness.static.names import X86_VARIANT_NEEDS

_TIMEOUT = 3.0
T = TypeVar("T")


@dataclass
class Icd:
    name: str  # the manifest's stem: nvidia_icd, lvp_icd, radeon_icd.x86_64
    manifest: str
    library: str | None
    api_version: str | None
    software: bool


@dataclass
class Cuda:
    driver: str | None = None  # libcuda.so.1 / nvcuda.dll, where found
    driver_cuda: str | None = None  # the CUDA version the driver supports (cuDriverGetVersion)
    driver_version: str | None = None  # the kernel driver's own version, e.g. 550.54.15
    nvidia_smi: str | None = None
    cudart: dict[str, str] = field(default_factory=dict)  # major -> library path
    cublas: dict[str, str] = field(default_factory=dict)


@dataclass
class Vulkan:
    loader: str | None = None
    icds: list[Icd] = field(default_factory=list)

    @property
    def hardware(self) -> list[Icd]:
        return [i for i in self.icds if not i.software]


@dataclass
class HostInfo:
    os: str
    arch: str
    os_version: str
    libc: str | None  # glibc, musl, libSystem, ucrt
    libc_version: str | None
    cpu_model: str | None
    cpu_features: list[str]  # lower case, Linux /proc/cpuinfo spelling where one exists
    cores: int | None  # logical CPUs
    usable_cores: int | None  # those this process may run on
    cuda: Cuda = field(default_factory=Cuda)
    vulkan: Vulkan = field(default_factory=Vulkan)
    hip: str | None = None  # the HIP runtime library
    rocm: str | None = None  # a ROCm install folder and its version
    metal: str | None = None  # the Metal framework
    sycl: str | None = None  # libsycl or the Level Zero loader
    openvino: str | None = None
    opencl: str | None = None  # the OpenCL ICD loader
    gpu_nodes: list[str] = field(default_factory=list)  # /dev/nvidia0, /dev/dri/renderD128, ...
    notes: list[str] = field(default_factory=list)  # probes that failed, and why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- probing helpers


def _safe(notes: list[str], what: str, fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except Exception as err:  # a probe must never take inspect-host down
        notes.append(f"{what}: {type(err).__name__}: {err}")
        return default


def _run(*cmd: str) -> str:
    exe = shutil.which(cmd[0]) or next(
        (p for p in (f"/sbin/{cmd[0]}", f"/usr/sbin/{cmd[0]}") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        return ""
    proc = subprocess.run(
        [exe, *cmd[1:]], capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    return proc.stdout + proc.stderr


class _Libs:
    """Finds shared libraries by name pattern without loading them.

    Linux: `ldconfig -p`, then LD_LIBRARY_PATH and the usual vendor folders (ctypes.util's
    fallback runs gcc, too slow for a probe). macOS and Windows: ctypes.util.find_library,
    then the folders the loader searches (PATH on Windows).
    """

    def __init__(self, os_: str) -> None:
        self.os = os_
        self.cache: dict[str, str] = {}
        if os_ == "linux":
            entries = re.findall(r"^\s*(\S+) \(([^)]*)\) => (\S+)", _run("ldconfig", "-p"), re.M)
            wide = sys.maxsize > 2**32  # a 64-bit host lists 32-bit libraries too: later
            for name, _abi, path in sorted(entries, key=lambda e: wide and "64" not in e[1]):
                self.cache.setdefault(name, path)
            dirs = [
                *os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep),
                "/usr/lib/wsl/lib",
                "/usr/local/cuda/lib64",
                *sorted(glob.glob("/usr/local/cuda-*/lib64")),
                "/opt/rocm/lib",
                "/opt/intel/oneapi/redist/lib",
            ]
        elif os_ == "windows":
            dirs = os.environ.get("PATH", "").split(os.pathsep)
            sysroot = os.environ.get("SYSTEMROOT", r"C:\Windows")
            dirs.insert(0, str(Path(sysroot) / "System32"))
        elif os_ == "macos":
            dirs = ["/usr/local/lib", "/opt/homebrew/lib"]
        else:
            dirs = []
        for d in dirs:
            if d and os.path.isdir(d):
                with contextlib.suppress(OSError):
                    for entry in os.scandir(d):
                        self.cache.setdefault(entry.name, entry.path)

    def find(self, pattern: str, plain: str | None = None) -> dict[str, str]:
        """{file name: path} of the libraries whose name matches `pattern` (a regex)."""
        rx = re.compile(pattern, re.IGNORECASE)
        hits = {n: p for n, p in self.cache.items() if rx.fullmatch(n)}
        if not hits and plain and self.os != "linux":
            import ctypes.util

            found = ctypes.util.find_library(plain)
            if found:
                hits[Path(found).name] = found
        return dict(sorted(hits.items()))

    def first(self, pattern: str, plain: str | None = None) -> str | None:
        hits = self.find(pattern, plain)
        return next(iter(hits.values()), None)


# ---------------------------------------------------------------- CPU

_MAC_FEATURES = {"avx1.0": "avx", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "sse3": "pni"}
_WIN_FEATURES = {  # IsProcessorFeaturePresent constants (winnt.h)
    10: "sse2",
    13: "pni",
    19: "asimd",
    30: "aes",
    31: "crc32",
    34: "atomics",
    36: "ssse3",
    37: "sse4_1",
    38: "sse4_2",
    39: "avx",
    40: "avx2",
    41: "avx512f",
    43: "asimddp",
    44: "jscvt",
    45: "lrcpc",
    46: "sve",
    47: "sve2",
}


def _cpu_linux() -> tuple[str | None, list[str]]:
    model: str | None = None
    feats: set[str] = set()
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not feats:
            feats = set(value.split())
        elif key in ("model name", "hardware", "cpu model", "uarch") and model is None:
            model = value.strip() or None
    return model, sorted(feats)


def _cpu_macos() -> tuple[str | None, list[str]]:
    out = _run("sysctl", "machdep.cpu", "hw.optional")
    model: str | None = None
    feats: set[str] = set()
    for line in out.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "machdep.cpu.brand_string":
            model = value
        elif key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            for f in value.lower().split():
                f = _MAC_FEATURES.get(f, f.replace(".", "_"))
                feats.add(re.sub(r"^avx512(vnni|bf16)$", r"avx512_\1", f))
        elif key.startswith("hw.optional.") and value == "1":
            feats.add(key.rsplit(".", 1)[-1].lower())
    return model, sorted(feats)


def _cpu_windows() -> tuple[str | None, list[str]]:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return None, []
    import winreg

    feats = sorted(
        name
        for pf, name in _WIN_FEATURES.items()
        if ctypes.windll.kernel32.IsProcessorFeaturePresent(pf)
    )
    model = None
    with contextlib.suppress(OSError):
        key = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as k:
            model = str(winreg.QueryValueEx(k, "ProcessorNameString")[0]).strip()
    return model, feats


def cpu_features() -> tuple[str | None, list[str]]:
    """(CPU model, features) as the OS reports them; (None, []) when it cannot be read."""
    fn = {"linux": _cpu_linux, "macos": _cpu_macos, "windows": _cpu_windows}.get(host_platform()[0])
    if fn is None:
        return platform.processor() or None, []
    try:
        model, feats = fn()
    except Exception:
        return platform.processor() or None, []
    return model or platform.processor() or None, feats


# ---------------------------------------------------------------- libc


def _libc(os_: str) -> tuple[str | None, str | None]:
    if os_ == "macos":
        return "libSystem", platform.mac_ver()[0] or None
    if os_ == "windows":
        return "ucrt", None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        conf = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
        if conf:
            name, _, ver = conf.partition(" ")
            return name, ver or None
    name, ver = platform.libc_ver()
    if name:
        return name, ver or None
    for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
        m = re.search(r"Version\s+(\S+)", _run(loader))
        return "musl", m[1] if m else None
    return None, None


# ---------------------------------------------------------------- GPU runtimes

_SOFTWARE_ICD = re.compile(r"lvp|lavapipe|llvmpipe|swiftshader|softpipe", re.IGNORECASE)


def _icd_dirs() -> list[Path]:
    """Where the Vulkan loader looks for driver manifests (VK_DRIVER_FILES overrides them)."""
    home = Path.home()
    data = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    conf = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    roots = [
        *conf.split(":"),
        "/usr/local/etc",
        "/etc",
        *data.split(":"),
        str(home / ".local/share"),
        "/opt/homebrew/share",
    ]
    out: list[Path] = []
    for r in roots:
        p = Path(r) / "vulkan" / "icd.d"
        if r and p not in out:
            out.append(p)
    return out


def _read_icd(manifest: Path) -> Icd:
    lib, api = None, None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        icd = json.loads(manifest.read_text(encoding="utf-8")).get("ICD", {})
        lib, api = icd.get("library_path"), icd.get("api_version")
    stem = re.sub(
        r"\.(x86_64|aarch64|i686|armv7l|riscv64)$", "", manifest.name.removesuffix(".json")
    )
    software = bool(_SOFTWARE_ICD.search(stem) or (lib and _SOFTWARE_ICD.search(lib)))
    return Icd(stem, str(manifest), lib, api, software)


def _windows_icds() -> list[Path]:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        return []
    import winreg

    found = []
    for sub in (r"SOFTWARE\Khronos\Vulkan\Drivers", r"SOFTWARE\WOW6432Node\Khronos\Vulkan\Drivers"):
        with contextlib.suppress(OSError), winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, sub) as k:
            for i in range(winreg.QueryInfoKey(k)[1]):
                name, value, _ = winreg.EnumValue(k, i)
                if value == 0:  # 0 = enabled
                    found.append(Path(name))
    return found


def _vulkan(os_: str, libs: _Libs) -> Vulkan:
    loader = {
        "linux": libs.first(r"libvulkan\.so\.1"),
        "windows": libs.first(r"vulkan-1\.dll", "vulkan-1"),
        "macos": libs.first(r"libvulkan(\.1)?\.dylib", "vulkan"),
    }.get(os_)
    override = os.environ.get("VK_DRIVER_FILES") or os.environ.get("VK_ICD_FILENAMES")
    if override:
        manifests = [Path(p) for p in override.split(os.pathsep) if p]
    elif os_ == "windows":
        manifests = _windows_icds()
    else:
        manifests = [m for d in _icd_dirs() if d.is_dir() for m in sorted(d.glob("*.json"))]
    return Vulkan(loader, [_read_icd(m) for m in manifests if m.is_file()])


def _cuda_driver_version(lib: str) -> str | None:
    """The CUDA version the driver supports; cuDriverGetVersion initialises no device."""
    if sys.platform == "win32":  # pragma: no cover
        cuda: ctypes.CDLL = ctypes.WinDLL(lib)
    else:
        cuda = ctypes.CDLL(lib)
    ver = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(ver)) != 0 or ver.value <= 0:
        return None
    return f"{ver.value // 1000}.{ver.value % 1000 // 10}"


def _cuda(os_: str, libs: _Libs, notes: list[str]) -> Cuda:
    c = Cuda()
    if os_ == "windows":
        c.driver = libs.first(r"nvcuda\.dll", "nvcuda")
        rt = {"cudart": r"cudart64_(\d+)\.dll", "cublas": r"cublas64_(\d+)\.dll"}
    elif os_ == "linux":
        c.driver = libs.first(r"libcuda\.so\.1")
        rt = {"cudart": r"libcudart\.so\.(\d+)", "cublas": r"libcublas\.so\.(\d+)"}
    else:
        return c
    c.nvidia_smi = shutil.which("nvidia-smi")
    if c.driver:
        c.driver_cuda = _safe(
            notes, "cuDriverGetVersion", lambda: _cuda_driver_version(c.driver or ""), None
        )
    with contextlib.suppress(OSError):
        m = re.search(
            r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)",
            Path("/proc/driver/nvidia/version").read_text(),
        )
        c.driver_version = m[1] if m else None
    for kind, pattern in rt.items():
        for name, path in libs.find(pattern).items():
            major = re.fullmatch(pattern, name, re.IGNORECASE)
            if major:
                getattr(c, kind).setdefault(major[1], path)
    return c


def _rocm() -> str | None:
    for root in [os.environ.get("ROCM_PATH", ""), "/opt/rocm", *sorted(glob.glob("/opt/rocm-*"))]:
        if root and os.path.isdir(root):
            ver = ""
            with contextlib.suppress(OSError):
                ver = Path(root, ".info", "version").read_text().strip()
            return f"{root} {ver}".strip()
    return None


def inspect_host() -> HostInfo:
    """This machine: OS, libc, CPU and the GPU drivers and runtimes its libraries show."""
    os_, arch = host_platform()
    notes: list[str] = []
    libs = _safe(notes, "library search", lambda: _Libs(os_), _Libs("none"))
    os_version = platform.release()
    if os_ == "linux":
        with contextlib.suppress(OSError, AttributeError):
            os_version = (
                f"{platform.freedesktop_os_release().get('PRETTY_NAME', '')}, kernel {os_version}"
            )
    elif os_ == "macos":
        os_version = platform.mac_ver()[0] or os_version
    elif os_ == "windows":
        os_version = platform.version() or os_version
    no_libc: tuple[str | None, str | None] = (None, None)
    libc, libc_ver = _safe(notes, "libc", lambda: _libc(os_), no_libc)
    model, feats = cpu_features()
    usable = None
    with contextlib.suppress(AttributeError, OSError):
        usable = len(os.sched_getaffinity(0))
    info = HostInfo(
        os_,
        arch,
        os_version,
        libc,
        libc_ver,
        model,
        feats,
        os.cpu_count(),
        usable or os.cpu_count(),
    )
    info.cuda = _safe(notes, "CUDA", lambda: _cuda(os_, libs, notes), Cuda())
    info.vulkan = _safe(notes, "Vulkan", lambda: _vulkan(os_, libs), Vulkan())
    hip = {"linux": r"libamdhip64\.so(\.\d+)*", "windows": r"amdhip64(_\d+)?\.dll"}.get(os_)
    info.hip = libs.first(hip) if hip else None
    info.rocm = _safe(notes, "ROCm", _rocm, None) if os_ == "linux" else None
    if os_ == "macos":
        fw = Path("/System/Library/Frameworks/Metal.framework")
        info.metal = str(fw) if fw.is_dir() else None
    ext = {"linux": r"\.so(\.\d+)*", "windows": r"\.dll", "macos": r"(\.\d+)*\.dylib"}.get(os_)
    pre = "" if os_ == "windows" else "lib"
    if ext:
        info.sycl = libs.first(rf"{pre}sycl\d*{ext}") or libs.first(rf"{pre}ze_loader{ext}")
        info.openvino = libs.first(rf"{pre}openvino{ext}")
        info.opencl = libs.first(rf"{pre}OpenCL{ext}", "OpenCL")
    if os_ == "linux":
        nodes = ["/dev/nvidia[0-9]*", "/dev/dri/renderD*", "/dev/kfd", "/dev/dxg"]
        info.gpu_nodes = sorted(p for g in nodes for p in glob.glob(g))
    info.notes = notes
    return info


# ---------------------------------------------------------------- text


def render(host: HostInfo) -> str:
    """The host part of `llama-harness inspect-host`."""
    interesting = sorted({f for need in X86_VARIANT_NEEDS.values() for f in need})
    shown = [f for f in interesting if f in host.cpu_features]
    feats = " ".join(shown) if host.os != "macos" or host.arch == "x64" else ""
    feats = feats or " ".join(host.cpu_features[:24])
    c, vk = host.cuda, host.vulkan
    libc = " ".join(x for x in (host.libc, host.libc_version) if x) or "unknown"

    def where(p: str | None) -> str:
        return p if p else "not found"

    cudart = ", ".join(f"cudart {k}" for k in sorted(c.cudart)) or "no cudart"
    cublas = ", ".join(f"cublas {k}" for k in sorted(c.cublas)) or "no cublas"
    driver = where(c.driver)
    if c.driver:
        driver += f" (CUDA {c.driver_cuda or '?'}, driver {c.driver_version or '?'})"
    icds = ", ".join(i.name + (" (software)" if i.software else "") for i in vk.icds) or "none"
    lines = [
        f"OS        {host.os} {host.arch} · {host.os_version} · {libc}",
        f"CPU       {host.cpu_model or 'unknown'} · {host.cores} logical cores"
        + (f" ({host.usable_cores} usable)" if host.usable_cores != host.cores else ""),
        f"          features: {feats or 'unknown'} ({len(host.cpu_features)} in all)",
        f"CUDA      driver {driver} · nvidia-smi {where(c.nvidia_smi)}",
        f"          runtime: {cudart}; {cublas}",
        f"Vulkan    loader {where(vk.loader)} · ICDs: {icds}",
        f"ROCm/HIP  {where(host.hip)}" + (f" · {host.rocm}" if host.rocm else ""),
    ]
    if host.os == "macos":
        lines.append(f"Metal     {where(host.metal)}")
    lines += [
        f"SYCL      {where(host.sycl)}",
        f"OpenVINO  {where(host.openvino)}",
        f"OpenCL    {where(host.opencl)}",
    ]
    if host.gpu_nodes:
        lines.append(f"devices   {' '.join(host.gpu_nodes)}")
    for n in host.notes:
        lines.append(f"note      {n}")
    return "\n".join(lines)
