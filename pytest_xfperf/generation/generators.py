"""Greedy generation on each backend, the way its library runs it fast.

A generator never times anything (generation/timing.py does, the same way for all): ``load``
binds a prompt and sets up the cache outside the timed region, ``prefill`` runs the prompt and
picks the first token, ``decode`` runs one step (the last token in, the next one picked).
Tokens stay on the device between steps; nothing is copied to the host until ``tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pytest_xfperf.backends.base import BackendUnavailable
from pytest_xfperf.backends.quantized_linear import (
    BASE_DTYPE,
    Quantized,
    quantize_model,
    require_fp8_tensor_cores,
)
from pytest_xfperf.backends.torch_cuda import compile_for_capture

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch


def generation_clock(backend: str) -> str:
    """How a backend's generation is timed: CUDA events ("device") for PyTorch on a GPU and
    for ort-cuda-graph, whose steps queue on torch's stream; the wall clock elsewhere, ort-cuda
    included (each of its steps ends with its token on the host)."""
    from pytest_xfperf.backends.catalog import BACKENDS

    on_gpu = BACKENDS[backend].device == "cuda"
    queued = backend.startswith("torch-") or backend == "ort-cuda-graph"
    return "device" if on_gpu and queued else "wall"


class Generator(Protocol):
    name: str
    device: str  # "cpu" or "cuda"
    clock: str  # "device": CUDA events time its steps (generation/timing.py); else "wall"

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None: ...

    def prefill(self) -> None: ...

    def decode(self) -> None: ...

    def synchronize(self) -> None: ...

    def tokens(self) -> np.ndarray:
        """The tokens generated since ``load``, (batch, count), on the host."""
        ...

    def prompt_logits(self) -> np.ndarray:
        """The last prefill's logits for every prompt position, float32 on the host."""
        ...

    def settings(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def cache_keyword(model: torch.nn.Module) -> str:
    """The forward's name for the KV cache: ``cache`` in recent transformers, which
    deprecate ``past_key_values``; ``past_key_values`` before that and in other models."""
    import inspect

    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The KV cache a forward returned (under either name), or None."""
    for name in ("cache", "past_key_values"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    return None


def _logits(output: Any) -> torch.Tensor:
    import torch

    logits = getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__} without logits: a "
                        "generative model's forward must return logits (a *ForCausalLM)")
    if returned_cache(output) is None:
        raise TypeError("the model returned no KV cache: a generative model must take and "
                        "return one (past_key_values or cache, with use_cache=True)")
    return logits


class TorchGenerator:
    """transformers' dynamic cache, SDPA attention, on the CPU or a GPU."""

    def __init__(self, name: str, model: torch.nn.Module, device: str, precision: str,
                 threads: int = 0, quantizer: str = "builtin") -> None:
        import torch

        if not hasattr(model, "config"):
            raise TypeError(f"{type(model).__name__} is not a causal LM: a generative model's "
                            "build() must return a transformers *ForCausalLM (or a module with "
                            "its config, forward and KV cache)")
        self.name, self.device, self._precision = name, device, precision
        self.clock = generation_clock(name)
        from pytest_xfperf.backends.torch_cuda import DTYPES

        self._dtype = getattr(torch, DTYPES[precision])
        self._previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        self._model = model.to(device=device, dtype=self._dtype).eval()
        # INT8 and FP8: the model runs at their base dtype (FP16, BF16) with its linear layers
        # replaced, as on the encoder backends; the KV cache stays at the base dtype.
        self._quantized: Quantized | None = None
        if precision in BASE_DTYPE:
            if precision == "fp8" and device == "cuda":
                require_fp8_tensor_cores()
            self._quantized = quantize_model(self._model, precision, quantizer)
        self._cache_keyword = cache_keyword(self._model)
        self._cache: Any = None
        self._ids: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._generated: list[torch.Tensor] = []
        self._logits: torch.Tensor | None = None
        self._length = 0

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None:
        import torch

        self._ids = torch.from_numpy(input_ids).to(self.device)
        batch, prompt = input_ids.shape
        self._mask = torch.ones(batch, prompt + new_tokens, dtype=torch.int64,
                                device=self.device)
        self._generated, self._cache, self._length = [], None, prompt

    def _step(self, ids: torch.Tensor) -> None:
        import torch

        assert self._mask is not None
        with torch.inference_mode():
            try:
                output = self._model(input_ids=ids, attention_mask=self._mask[:, :self._length],
                                     use_cache=True, **{self._cache_keyword: self._cache})
            except TypeError as exc:
                raise TypeError(f"{exc}; a generative model's forward must take input_ids, "
                                "attention_mask and a KV cache (past_key_values or cache, "
                                "use_cache=True)") from exc
            logits = _logits(output)
            self._cache = returned_cache(output)
            self._generated.append(logits[:, -1].argmax(-1, keepdim=True))
        self._logits = logits

    def prefill(self) -> None:
        assert self._ids is not None
        self._step(self._ids)

    def decode(self) -> None:
        self._length += 1
        self._step(self._generated[-1])

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def tokens(self) -> np.ndarray:
        import torch

        return torch.cat(self._generated, dim=1).cpu().numpy()

    def prompt_logits(self) -> np.ndarray:
        assert self._logits is not None and self._ids is not None
        if self._logits.shape[1] != self._ids.shape[1]:
            raise RuntimeError("prompt_logits() must follow prefill()")
        return self._logits.float().cpu().numpy()

    def settings(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {"cache": "dynamic", "mode": "eager",
                               "attention": getattr(self._model.config, "_attn_implementation",
                                                    "")}
        if self.device == "cpu":
            out["threads"] = torch.get_num_threads()
        if self._quantized is not None:
            out.update(self._quantized.settings())
        return out

    def close(self) -> None:
        import torch

        self._cache = self._logits = None
        torch.set_num_threads(self._previous_threads)


class TorchGraphGenerator(TorchGenerator):
    """A static cache sized for prompt plus new tokens; the prefill and the decode step (with
    picking the next token and advancing the position) each captured in a CUDA graph and
    replayed: the launch overhead of eager generation goes away."""

    def __init__(self, name: str, model: torch.nn.Module, precision: str,
                 quantizer: str = "builtin") -> None:
        super().__init__(name, model, "cuda", precision, quantizer=quantizer)
        self._prefill_graph: Any = None
        self._decode_graph: Any = None
        self._shape: tuple[int, int, int] = (0, 0, 0)

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None:
        import torch
        from transformers import StaticCache

        batch, prompt = input_ids.shape
        shape = (batch, prompt, new_tokens)
        if shape != self._shape:
            self._prefill_graph = self._decode_graph = None
            config: Any = self._model.config
            self._cache = StaticCache(config=config, max_cache_len=prompt + new_tokens)
            self._shape, self._prompt = shape, prompt
            self._mask = torch.ones(batch, prompt + new_tokens, dtype=torch.int64,
                                    device="cuda")
            self._ids = torch.from_numpy(input_ids).to("cuda")
            self._prompt_positions = torch.arange(prompt, device="cuda")
            self._position = torch.zeros(1, dtype=torch.int64, device="cuda")
            self._next = torch.zeros(batch, 1, dtype=torch.int64, device="cuda")
            self._out = torch.zeros(batch, new_tokens, dtype=torch.int64, device="cuda")
            return
        assert self._ids is not None
        # In place: the captured graphs hold these buffers. The static cache keeps its own
        # write position, which must start again at 0; its tensors were made under inference
        # mode, so only there can they be changed.
        self._ids.copy_(torch.from_numpy(input_ids))
        with torch.inference_mode():
            self._cache.reset()

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        assert self._mask is not None
        output = self._model(input_ids=ids, attention_mask=self._mask,
                             position_ids=positions[None].expand(ids.shape[0], -1),
                             cache_position=positions, use_cache=True,
                             **{self._cache_keyword: self._cache})
        return _logits(output)

    def _prefill_body(self) -> None:
        """The prompt through the model from an empty cache; the first token into ``_out``
        and ``_next``; ``_position`` to the prompt's length."""
        assert self._ids is not None
        logits = self._forward(self._ids, self._prompt_positions)
        picked = logits[:, -1].argmax(-1, keepdim=True)
        self._out[:, :1].copy_(picked)
        self._next.copy_(picked)
        self._position.fill_(self._prompt)
        self._logits = logits

    def _decode_body(self) -> None:
        """One decode step on the static buffers: read ``_next`` at ``_position``, write the
        picked token into ``_out`` and ``_next``, advance ``_position``."""
        logits = self._forward(self._next, self._position)
        picked = logits[:, -1].argmax(-1, keepdim=True)
        self._out.index_copy_(1, self._position - self._prompt + 1, picked)
        self._next.copy_(picked)
        self._position.add_(1)

    @staticmethod
    def _warm_and_capture(body: Any, undo: Any = None) -> Any:
        """Run ``body`` for real on a side stream (the warm-up torch's CUDA graph guide asks
        for), call ``undo`` if given, then capture ``body``. Capturing records kernels without
        running them: the buffers stay as the real run (or ``undo``) left them."""
        import torch

        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            body()
        torch.cuda.current_stream().wait_stream(stream)
        if undo is not None:
            undo()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        return graph

    def prefill(self) -> None:
        import torch

        with torch.inference_mode():
            if self._prefill_graph is None:
                # Undone after the warm-up, so that the replay below is this prefill.
                self._prefill_graph = self._warm_and_capture(self._prefill_body,
                                                             self._cache.reset)
            self._prefill_graph.replay()
        self._steps = 1

    def decode(self) -> None:
        import torch

        if self._decode_graph is None:
            # The warm-up is this step, for real; the capture is replayed from the next one.
            with torch.inference_mode():
                self._decode_graph = self._warm_and_capture(self._decode_body)
        else:
            self._decode_graph.replay()
        self._steps += 1

    def tokens(self) -> np.ndarray:
        return self._out[:, :self._steps].cpu().numpy()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "cache": "static",
                "mode": "cuda-graph prefill and decode"}


class TorchCompiledGenerator(TorchGraphGenerator):
    """torch-cuda-graph's static cache, prefill and decode step, with the model's forward
    compiled by torch.compile, and replayed from the same hand-captured CUDA graphs: the
    compiled kernels, launched once a step. Modes that capture graphs of their own
    ("reduce-overhead", "max-autotune") compile without them here, as the encoder's
    torch-compile does (``torch_cuda.compile_for_capture``). The prefill's shape and the decode
    step's compile once each (``dynamic=False``)."""

    def __init__(self, name: str, model: torch.nn.Module, precision: str,
                 compile_mode: str = "default", quantizer: str = "builtin") -> None:
        import functools

        super().__init__(name, model, precision, quantizer)
        self._compiled, self._compile_mode = compile_for_capture(
            functools.partial(TorchGraphGenerator._forward, self), compile_mode)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self._compiled(ids, positions)
        return logits

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None:
        import torch

        fresh = (*input_ids.shape, new_tokens) != self._shape
        super().load(input_ids, new_tokens)
        if fresh:
            # The static cache makes its layers at its first update. Made here, eagerly, so
            # that compiled code finds them made; else the call after the first compiles
            # again, inside the capture, where compiling is an error.
            assert self._ids is not None
            with torch.inference_mode():
                TorchGraphGenerator._forward(self, self._ids, self._prompt_positions)
                self._cache.reset()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "mode": f"torch.compile ({self._compile_mode}), prefill "
                "and decode captured in CUDA graphs", "compile_mode": self._compile_mode}


class OrtGenerator:
    """An ONNX export with the past keys and values as inputs and presents as outputs (one
    graph for prefill and decode: prefill starts from an empty past). On CUDA, IO binding
    keeps the cache on the device between steps."""

    def __init__(self, name: str, path: Path, device: str,
                 options: Mapping[str, Any]) -> None:
        from pytest_xfperf.backends.onnxruntime_cuda import cuda_tuning, load_ort_gpu

        ort = load_ort_gpu()  # on a GPU, finds the CUDA libraries that came with torch
        self.name, self.device = name, device
        self.clock = generation_clock(name)
        # The backend's [tool.xfperf.<backend>] settings apply as they do to its encoder
        # runner, and are recorded the same way.
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(f"{name}: onnxruntime has no CUDA provider here "
                                         "(pip install onnxruntime-gpu)")
            cuda = {"device_id": "0", **cuda_tuning(bool(options.get("tunable_op")),
                                                    options.get("provider_options"))}
            chosen_options = ort.SessionOptions()
            providers: list[Any] = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
            self._chosen: dict[str, Any] = {"provider_options": cuda}
        else:
            from pytest_xfperf.backends.onnxruntime_cpu import session_options

            chosen_options, self._chosen = session_options(options)
            providers = ["CPUExecutionProvider"]
        chosen_options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), chosen_options, providers=providers)
        inputs = {i.name: i for i in self._session.get_inputs()}
        self._past_names = [n for n in inputs if n.startswith("past.")]
        self._present_names = [o.name for o in self._session.get_outputs()
                               if o.name.startswith("present.")]
        past = inputs[self._past_names[0]]
        self._kv_type = "float16" if "float16" in past.type else "float32"
        self._kv_heads, self._head_dim = int(past.shape[1]), int(past.shape[3])

    @property
    def session(self) -> Any:
        """The ONNX Runtime session it runs (for a hand-written loop over the same one)."""
        return self._session

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None:
        import numpy as np

        self._ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        self._generated: list[Any] = []
        self._batch, self._length = input_ids.shape
        self._past: list[Any] = []
        self._logits: Any = None

    def _feeds(self, ids: Any, start: int) -> dict[str, Any]:
        import numpy as np

        batch, count = ids.shape
        return {"input_ids": ids,
                "attention_mask": np.ones((batch, start + count), dtype=np.int64),
                "position_ids": np.broadcast_to(np.arange(start, start + count,
                                                          dtype=np.int64), (batch, count)
                                                ).copy()}

    def _run(self, ids: Any, start: int) -> None:
        """One pass: prefill from an empty past, or a decode step on the last presents. The
        graph picks the next token itself (``next_token``), so only it crosses to the host;
        on CUDA the presents stay on the device, bound as the next step's past."""
        import numpy as np

        feeds = self._feeds(ids, start)
        if not self._past:
            empty = np.zeros((self._batch, self._kv_heads, 0, self._head_dim),
                             dtype=self._kv_type)
            self._past = [empty] * len(self._past_names)
        if self.device == "cpu":
            feeds.update(zip(self._past_names, self._past, strict=True))
            outputs = self._session.run(None, feeds)
            self._logits, picked, self._past = outputs[0], outputs[1], outputs[2:]
        else:
            binding = self._session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name, value in zip(self._past_names, self._past, strict=True):
                if isinstance(value, np.ndarray):
                    binding.bind_cpu_input(name, value)
                else:
                    binding.bind_ortvalue_input(name, value)
            binding.bind_output("logits", "cuda")
            binding.bind_output("next_token", "cpu")
            for name in self._present_names:
                binding.bind_output(name, "cuda")
            self._session.run_with_iobinding(binding)
            outputs = binding.get_outputs()
            self._logits, self._past = outputs[0], outputs[2:]
            picked = outputs[1].numpy()
        self._generated.append(np.asarray(picked, dtype=np.int64).reshape(self._batch, 1))

    def prefill(self) -> None:
        self._past = []
        self._run(self._ids, 0)

    def decode(self) -> None:
        self._run(self._generated[-1], self._length)
        self._length += 1

    def synchronize(self) -> None:
        pass  # every step ends with its token on the host

    def tokens(self) -> np.ndarray:
        import numpy as np

        return np.concatenate(self._generated, axis=1)

    def prompt_logits(self) -> np.ndarray:
        import numpy as np

        logits = self._logits.numpy() if hasattr(self._logits, "numpy") else self._logits
        if logits.shape[1] != self._ids.shape[1]:
            raise RuntimeError("prompt_logits() must follow prefill()")
        return np.asarray(logits, dtype=np.float32)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cache": "past/present tensors",
                               "providers": self._session.get_providers(),
                               "kv_dtype": self._kv_type, **self._chosen}
        if self.device == "cuda":
            out["io_binding"] = True
        return out

    def close(self) -> None:
        self._past = []
        self._logits = None


class OrtGraphGenerator:
    """ONNX Runtime's CUDA graph (ort-cuda-graph): the fixed-buffer decoder
    (generation/export.py, FIXED_BUFFERS), in buffers that never move. Two sessions of one
    file, each with its case's shapes fixed: the prefill's, and the decode step's. A decode
    step reads one set of buffers (cache, token, position) and writes the other, so the two
    sets take turns; each direction is its own captured graph (``gpu_graph_id`` 1 and 2) and
    the prefill another. The buffers are torch tensors bound by address, and the provider runs
    on torch's current stream, so the picked token is copied into the output in stream order
    and CUDA events time the steps as they do PyTorch's. On the CPU (``device="cpu"``) the
    same sessions and bindings run without a graph: that is how the path is tested without a
    GPU."""

    def __init__(self, name: str, path: Path, options: Mapping[str, Any],
                 device: str = "cuda") -> None:
        from pytest_xfperf.backends.onnxruntime_cuda import load_ort_gpu, provider_options

        self._ort = ort = load_ort_gpu()
        self.name, self.device, self._path = name, device, path
        self.clock = generation_clock(name) if device == "cuda" else "wall"
        self._provider: list[Any] = ["CPUExecutionProvider"]
        self._chosen: dict[str, Any] = {}
        if device == "cuda":
            import torch

            from pytest_xfperf.backends.torch_cuda import require_cuda

            require_cuda()
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(f"{name}: onnxruntime has no CUDA provider here "
                                         "(pip install onnxruntime-gpu)")
            # The encoder runner's options: the CUDA graph on torch's current stream.
            # (``precision`` is read by TensorRT's options only.)
            provider, cuda = provider_options(
                "CUDAExecutionProvider", True, torch.cuda.current_stream().cuda_stream,
                precision="", tunable_op=bool(options.get("tunable_op")),
                extra=options.get("provider_options"))
            self._provider = [(provider, cuda), "CPUExecutionProvider"]
            self._chosen = {"provider_options": {k: v for k, v in cuda.items()
                                                 if k != "user_compute_stream"}}
        self._shape: tuple[int, int, int] = (0, 0, 0)
        self._sessions: list[Any] = []
        self._providers: list[str] = []
        self._kv_type = ""

    def _session(self, batch: int, new: int, positions: int) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Fixed, these dimensions let ORT fold every shape computation into constants: no
        # node is left on the CPU, which a CUDA graph needs.
        for dimension, size in (("batch", batch), ("new", new), ("positions", positions)):
            options.add_free_dimension_override_by_name(dimension, size)
        what = "with a CUDA graph" if self.device == "cuda" else "on the CPU provider"
        try:
            session = ort.InferenceSession(str(self._path), options, providers=self._provider)
        except Exception as exc:  # ORT raises its own Fail type, not importable by name
            raise BackendUnavailable(f"{self.name}: ONNX Runtime could not open the "
                                     f"fixed-buffer decoder {what}: {exc}"[:500]) from None
        # The buffers are bound as device memory: a session that fell back to the CPU
        # provider would read them as host memory.
        if self.device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendUnavailable(f"{self.name}: the CUDA provider could not be enabled "
                                     f"for {self._path}")
        return session

    def _allocate(self, batch: int, prompt: int, new_tokens: int) -> None:
        """Sessions, buffers and bindings for a (batch, prompt, new tokens) case."""
        import torch

        device = self.device
        positions = prompt + new_tokens
        self._sessions = [self._session(batch, prompt, positions),
                          self._session(batch, 1, positions)]
        # Kept past close(): the result's settings are read after the generator is released.
        self._providers = list(self._sessions[1].get_providers())
        inputs = {i.name: i for i in self._sessions[1].get_inputs()}
        past_names = [n for n in inputs if n.startswith("past.")]
        self._kv_type = "float16" if "float16" in inputs[past_names[0]].type else "float32"
        kv_dtype = getattr(torch, self._kv_type)
        shape = [int(d) for d in inputs[past_names[0]].shape]
        logits = next(o for o in self._sessions[1].get_outputs() if o.name == "logits")
        logits_dtype = torch.float16 if "float16" in logits.type else torch.float32
        vocab = int(logits.shape[2])

        def zeros(size: Any, dtype: Any) -> torch.Tensor:
            return torch.zeros(size, dtype=dtype, device=device)

        # Two sets that take turns; zeros at first (a masked position must still be finite).
        self._kv = [[zeros(shape, kv_dtype) for _ in past_names] for _ in range(2)]
        self._next = [zeros((batch, 1), torch.int64) for _ in range(2)]
        self._start = [zeros((1,), torch.int64) for _ in range(2)]
        self._prompt_ids = zeros((batch, prompt), torch.int64)
        self._zero = zeros((1,), torch.int64)
        self._prefill_logits = zeros((batch, prompt, vocab), logits_dtype)
        self._step_logits = zeros((batch, 1, vocab), logits_dtype)
        self._out = zeros((batch, new_tokens), torch.int64)
        presents = [n.replace("past.", "present.", 1) for n in past_names]
        # The prefill reads set 1 (all masked: it starts at position 0) and writes set 0;
        # decode direction d reads set d and writes set 1 - d.
        self._bindings = [
            self._bind(self._sessions[0], self._prompt_ids, self._zero, self._kv[1],
                       self._prefill_logits, self._next[0], self._start[0], self._kv[0],
                       past_names, presents),
            *(self._bind(self._sessions[1], self._next[d], self._start[d], self._kv[d],
                         self._step_logits, self._next[1 - d], self._start[1 - d],
                         self._kv[1 - d], past_names, presents) for d in (0, 1))]
        self._run_options = []
        for graph in ("1", "1", "2"):  # the prefill session's graph; the decode session's two
            run_options = self._ort.RunOptions()
            run_options.add_run_config_entry("gpu_graph_id", graph)
            self._run_options.append(run_options)

    def _bind(self, session: Any, ids: torch.Tensor, start: torch.Tensor,
              past: list[torch.Tensor], logits: torch.Tensor, next_token: torch.Tensor,
              next_start: torch.Tensor, present: list[torch.Tensor], past_names: list[str],
              present_names: list[str]) -> Any:
        import numpy as np

        binding = session.io_binding()

        def tie(bind: Any, name: str, tensor: torch.Tensor) -> None:
            element = str(tensor.dtype).removeprefix("torch.")  # int64, float16, float32
            bind(name, self.device, 0, np.dtype(element), tuple(tensor.shape),
                 tensor.data_ptr())

        for name, tensor in (("input_ids", ids), ("start", start),
                             *zip(past_names, past, strict=True)):
            tie(binding.bind_input, name, tensor)
        for name, tensor in (("logits", logits), ("next_token", next_token),
                             ("next_start", next_start), *zip(present_names, present,
                                                              strict=True)):
            tie(binding.bind_output, name, tensor)
        return binding

    def load(self, input_ids: np.ndarray, new_tokens: int) -> None:
        import torch

        batch, prompt = input_ids.shape
        if (batch, prompt, new_tokens) != self._shape:
            self._allocate(batch, prompt, new_tokens)
            self._shape = (batch, prompt, new_tokens)
        # In place: the bindings (and captured graphs) hold these addresses.
        self._prompt_ids.copy_(torch.from_numpy(input_ids.astype("int64")))
        self._steps = 0

    def _run(self, which: int) -> None:
        session = self._sessions[0 if which == 0 else 1]
        session.run_with_iobinding(self._bindings[which], self._run_options[which])

    def prefill(self) -> None:
        self._run(0)
        self._out[:, :1].copy_(self._next[0])
        self._steps = 1

    def decode(self) -> None:
        direction = (self._steps - 1) % 2
        self._run(1 + direction)
        self._out[:, self._steps:self._steps + 1].copy_(self._next[1 - direction])
        self._steps += 1

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def tokens(self) -> np.ndarray:
        return self._out[:, :self._steps].cpu().numpy()

    def prompt_logits(self) -> np.ndarray:
        return self._prefill_logits.float().cpu().numpy()

    def settings(self) -> dict[str, Any]:
        return {"cache": "fixed buffers, two sets taking turns",
                "mode": ("cuda-graph prefill and decode" if self.device == "cuda"
                         else "no graph (CPU provider)"),
                "providers": self._providers, "kv_dtype": self._kv_type,
                "io_binding": True, **self._chosen}

    def close(self) -> None:
        self._sessions, self._bindings = [], []
        self._kv, self._shape = [], (0, 0, 0)
