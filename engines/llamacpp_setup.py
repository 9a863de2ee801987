"""Process-wide llama.cpp set-up, done once before the first model loads.

Two things, both about llama.cpp as pip builds it from source:

* **No AMX.** pip builds llama-cpp-python with GGML_NATIVE=ON, so on a CPU with AMX (Intel
  Sapphire Rapids and later) ggml's AMX matmul is compiled in and every weight of a Q4_0, Q4_1,
  Q8_0, Q4_K, Q5_K, Q6_K or IQ4_XS model is put in an "AMX" buffer. That path segfaults at the
  first decode here (gcc 12; llama.cpp #20824, open; the tile config is optimised away by gcc < 13,
  ollama #17244, llama.cpp #26954) and gives wrong results for Q4_0/Q4_1 where it runs (llama.cpp
  #16315). We take AMX out of the CPU device's list of extra buffer types, so llama.cpp picks
  weights' buffers as on a CPU without AMX: CPU_REPACK where it applies (Q4_0, Q4_K, IQ4_NL,
  Q8_0 → interleaved AVX-512 kernels), plain CPU otherwise. Measured side by side
  (benchmarks/bench_quant.py, SmolLM2-135M, 2 threads, AMD EPYC with AVX-512) against the other
  fix on the table, `use_extra_bufts=False` (no REPACK either; load_options' fallback):
  Q4_0 1.27x prompt processing and 1.25x decode; Q4_1, Q8_0, Q4_K_M and F16 at parity
  (0.96-1.03x; SmolLM2's 576-wide tensors are mostly not repackable). AMX itself cannot be timed:
  where it is compiled in it crashes.
  A CPU without AMX, or a build without it, has no AMX entry and nothing changes.

* **llama.cpp's log goes to our logger**, not raw to the terminal (its own callback prints to
  stderr even with verbose=False for some messages): errors at ERROR, the rest at DEBUG.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("cosplay.llama_cpp")

# Called with the fraction of a model loaded (0 to 1); return False to stop the load.
LoadProgress = Callable[[float], bool]

_done = False
_lock = threading.Lock()
_load_lock = threading.Lock()  # load_options patches llama-cpp-python for one load
_log_callback = None  # kept alive: llama.cpp holds a pointer to it
amx_removed = False  # whether this process took AMX out of llama.cpp's buffer types
amx_built = False  # whether this llama.cpp was compiled with AMX kernels


def prepare() -> None:
    """Run once per process before loading a GGUF; cheap after the first call."""
    global _done
    with _lock:
        if _done:
            return
        import llama_cpp

        _route_log(llama_cpp)
        global amx_removed, amx_built
        amx_built = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
        amx_removed = "AMX" in remove_extra_buffer_type("AMX")
        _done = True


@contextlib.contextmanager
def load_options(
    progress: LoadProgress | None = None, *, extra_buffers: bool = True
) -> Iterator[None]:
    """Wrap a model load (Llama() takes neither as an argument):
    - `use_extra_bufts=False` (no REPACK either) when `extra_buffers` is False, and as the
      fallback for an AMX build whose AMX could not be taken out (its array not found);
    - with `progress`, llama.cpp's progress callback: `progress(fraction)` as the weights are
      read (0 to 1, once per tensor); a False from it stops the load. On the main thread
      Ctrl+C stops it too: it only raises a flag while llama.cpp runs (a KeyboardInterrupt
      raised inside a C callback would be printed and lost), and KeyboardInterrupt is raised
      here once llama.cpp has given up or finished. Without `progress` llama.cpp's default
      callback prints a dot per tensor to the log.
    One load at a time: the patched defaults are process-wide."""
    import llama_cpp.llama_cpp as low

    extra_buffers_off = not extra_buffers or (amx_built and not amx_removed)
    if not extra_buffers_off and progress is None:
        yield
        return
    interrupted = False
    target = [progress]  # emptied after the load: llama-cpp-python keeps the callback alive

    def report(fraction: float, _user_data) -> bool:
        if interrupted:
            return False
        try:
            return not target or bool(target[0](fraction))
        except Exception:  # never raise into C; a broken progress display must not stop a load
            log.exception("load progress callback failed")
            return True

    def on_ctrl_c(_signum, _frame) -> None:
        nonlocal interrupted
        interrupted = True

    callback = low.llama_progress_callback(report) if progress is not None else None
    original = low.llama_model_default_params

    def defaults():
        params = original()
        if extra_buffers_off:
            params.use_extra_bufts = False
        if callback is not None:
            params.progress_callback = callback
        return params

    with _load_lock:
        watch_ctrl_c = (
            callback is not None
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if watch_ctrl_c:
            signal.signal(signal.SIGINT, on_ctrl_c)
        low.llama_model_default_params = defaults
        try:
            yield
        except Exception:
            if interrupted:  # llama.cpp's "failed to load": the user's Ctrl+C
                raise KeyboardInterrupt from None
            raise
        finally:
            low.llama_model_default_params = original
            target.clear()
            if watch_ctrl_c:
                signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:  # pressed after llama.cpp's last progress call: the load is not wanted
        raise KeyboardInterrupt


def _route_log(llama_cpp) -> None:
    global _log_callback

    # ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (llama-cpp-python's _logger.py
    # comment has an older order). Errors at ERROR, everything else at DEBUG. The NullHandler
    # keeps Python's last-resort handler from printing errors raw on the terminal; they reach a
    # log file when one is configured (COSPLAY_LOG), and our own message names the problem.
    levels = {4: logging.ERROR}
    log.addHandler(logging.NullHandler())

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, _user_data) -> None:
        try:
            level = levels.get(level, logging.DEBUG)
            if not log.isEnabledFor(level):  # a load logs ~2,000 lines, nearly all unread
                return
            message = text.decode("utf-8", errors="replace").rstrip()
            if message:
                log.log(level, "%s", message)
        except Exception:  # never raise into C
            pass

    _log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def remove_extra_buffer_type(unwanted: str) -> list[str]:
    """Drop a buffer type ("AMX") from the NULL-terminated array ggml's CPU device hands to
    llama.cpp; return the names the array held before.

    ggml returns a pointer to a static array that every model load reads again
    (llama-model.cpp, make_cpu_buft_list), so editing it in place before a load is all it
    takes. The CPU backend keeps its own copy for compute and never sees such a tensor.
    """
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    ggml = _open(lib_dir, "ggml")
    base = _open(lib_dir, "ggml-base")
    if ggml is None or base is None:
        log.debug("ggml libraries not found under %s; buffer types left as built", lib_dir)
        return []
    ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    ggml.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    base.ggml_backend_buft_name.restype = ctypes.c_char_p
    base.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]

    device = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    if not device:
        return []
    registry = ggml.ggml_backend_dev_backend_reg(device)
    address = ggml.ggml_backend_reg_get_proc_address(registry, b"ggml_backend_dev_get_extra_bufts")
    if not address:
        return []
    get_extra = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)
    array = get_extra(device)
    names, kept = [], []
    index = 0
    while array and array[index]:
        name = (base.ggml_backend_buft_name(array[index]) or b"").decode()
        names.append(name)
        if name != unwanted:
            kept.append(array[index])
        index += 1
    if len(kept) < len(names):
        for position, buft in enumerate(kept):
            array[position] = buft
        array[len(kept)] = None
    log.debug("llama.cpp extra buffer types: %s; %s removed if present", names, unwanted)
    return names


def _open(lib_dir: Path, name: str) -> ctypes.CDLL | None:
    for candidate in (
        lib_dir / f"lib{name}.so",
        lib_dir / f"lib{name}.dylib",
        lib_dir / f"{name}.dll",
    ):
        if candidate.exists():
            return ctypes.CDLL(str(candidate))
    return None
