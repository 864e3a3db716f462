"""libmamba through ctypes: Model and Session classes over the C API (mamba.h).

The library is found through the MAMBA_LIBRARY environment variable (a path to
libmamba.so) or else the system's library search (ctypes.util.find_library).
Failures raise MambaError with the status code and mamba_last_error().
"""

import ctypes
import ctypes.util
import os

MAMBA_OK = 0
MAMBA_ERR_ABORTED = -7
MAMBA_BACKEND_CPU = 0
MAMBA_BACKEND_CUDA = 1


class ModelParams(ctypes.Structure):
    """mamba_model_params (start from Library.default_model_params())."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", ctypes.c_int32),
        ("n_threads", ctypes.c_int32),
        ("gpu_device", ctypes.c_int32),
    ]


class SamplingParams(ctypes.Structure):
    """mamba_sampling_params (start from sampling_params())."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ]


TOKEN_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32)


class MambaError(RuntimeError):
    def __init__(self, status, message):
        super().__init__(f"{message} (status {status})")
        self.status = status


def _load_library():
    path = os.environ.get("MAMBA_LIBRARY") or ctypes.util.find_library("mamba")
    if not path:
        raise OSError("libmamba not found: set MAMBA_LIBRARY to the path of libmamba.so")
    lib = ctypes.CDLL(path)
    P = ctypes.c_void_p
    sz = ctypes.c_size_t
    i32 = ctypes.c_int32
    st = ctypes.c_int32
    fp = ctypes.POINTER(ctypes.c_float)
    ip = ctypes.POINTER(ctypes.c_int32)
    sigs = {
        "mamba_version": (ctypes.c_char_p, []),
        "mamba_last_error": (ctypes.c_char_p, []),
        "mamba_status_str": (ctypes.c_char_p, [st]),
        "mamba_model_default_params": (ModelParams, []),
        "mamba_sampling_default_params": (SamplingParams, []),
        "mamba_model_load_file": (st, [ctypes.c_char_p, ctypes.POINTER(ModelParams), ctypes.POINTER(P)]),
        "mamba_model_load_memory": (st, [P, sz, ctypes.POINTER(ModelParams), ctypes.POINTER(P)]),
        "mamba_model_free": (None, [P]),
        "mamba_model_vocab_size": (i32, [P]),
        "mamba_model_d_model": (i32, [P]),
        "mamba_model_is_byte_level": (i32, [P]),
        "mamba_session_init": (st, [P, ctypes.POINTER(P)]),
        "mamba_session_free": (None, [P]),
        "mamba_session_reset": (st, [P]),
        "mamba_session_step_token": (st, [P, i32, fp, sz]),
        "mamba_session_step_embedding": (st, [P, fp, sz, fp, sz]),
        "mamba_session_prefill": (st, [P, ip, sz, fp, sz]),
        "mamba_session_state_size": (sz, [P]),
        "mamba_session_state_save": (st, [P, P, sz, ctypes.POINTER(sz)]),
        "mamba_session_state_load": (st, [P, P, sz]),
        "mamba_session_generate": (
            st,
            [P, ip, sz, ctypes.POINTER(SamplingParams), sz, TOKEN_CALLBACK, P],
        ),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


lib = _load_library()


def _check(status, what):
    if status != MAMBA_OK:
        msg = lib.mamba_last_error().decode("utf-8", "replace")
        raise MambaError(status, f"{what}: {msg}")


def version():
    return lib.mamba_version().decode()


def sampling_params(**overrides):
    """Default sampling parameters with `overrides` applied (temperature=..., seed=...)."""
    p = lib.mamba_sampling_default_params()
    for k, v in overrides.items():
        setattr(p, k, v)
    return p


class Model:
    """An immutable loaded model; share it between threads, one Session per stream."""

    def __init__(self, path, n_threads=0):
        params = lib.mamba_model_default_params()
        params.n_threads = n_threads
        handle = ctypes.c_void_p()
        _check(lib.mamba_model_load_file(os.fsencode(path), ctypes.byref(params), ctypes.byref(handle)), "load")
        self._h = handle
        self.vocab_size = lib.mamba_model_vocab_size(handle)
        self.d_model = lib.mamba_model_d_model(handle)
        self.is_byte_level = bool(lib.mamba_model_is_byte_level(handle))

    def close(self):
        if self._h:
            lib.mamba_model_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def session(self):
        return Session(self)


class Session:
    """One stream's state; use from one thread at a time."""

    def __init__(self, model):
        handle = ctypes.c_void_p()
        _check(lib.mamba_session_init(model._h, ctypes.byref(handle)), "session_init")
        self._h = handle
        self._v = model.vocab_size
        self._d = model.d_model

    def close(self):
        if self._h:
            lib.mamba_session_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def reset(self):
        _check(lib.mamba_session_reset(self._h), "reset")

    def step_token(self, token):
        out = (ctypes.c_float * self._v)()
        _check(lib.mamba_session_step_token(self._h, token, out, self._v), "step_token")
        return list(out)

    def prefill(self, tokens):
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        out = (ctypes.c_float * self._v)()
        _check(lib.mamba_session_prefill(self._h, arr, len(tokens), out, self._v), "prefill")
        return list(out)

    def step_embedding(self, x):
        xa = (ctypes.c_float * len(x))(*x)
        out = (ctypes.c_float * self._d)()
        _check(lib.mamba_session_step_embedding(self._h, xa, len(x), out, self._d), "step_embedding")
        return list(out)

    def save_state(self):
        n = lib.mamba_session_state_size(self._h)
        buf = ctypes.create_string_buffer(n)
        written = ctypes.c_size_t()
        _check(lib.mamba_session_state_save(self._h, buf, n, ctypes.byref(written)), "state_save")
        return buf.raw[: written.value]

    def load_state(self, blob):
        _check(lib.mamba_session_state_load(self._h, blob, len(blob)), "state_load")

    def generate(self, prompt, max_tokens, params=None, on_token=None):
        """Generate after `prompt` (token ids); on_token(token) -> False stops early."""
        params = params or sampling_params()
        tokens = []
        error = []

        def cb(_user, token):
            try:
                tokens.append(token)
                if on_token is not None and on_token(token) is False:
                    return 1
                return 0
            except BaseException as e:  # never let it unwind into the library
                error.append(e)
                return 1

        c_cb = TOKEN_CALLBACK(cb)
        arr = (ctypes.c_int32 * len(prompt))(*prompt)
        st = lib.mamba_session_generate(self._h, arr, len(prompt), ctypes.byref(params), max_tokens, c_cb, None)
        if error:
            raise error[0]
        if st != MAMBA_ERR_ABORTED:
            _check(st, "generate")
        return tokens
