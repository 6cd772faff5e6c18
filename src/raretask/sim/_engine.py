"""The fast exact engine (SPEC A2), in JAX.

Why it is fast, and why it is still exact:
- All widths (the "members") train on one shared sampled batch per step, so the batch is
  drawn once per step, not once per width.
- Gradients are restructured: with P = Dec E (D x D) and A_k = P_k - W_k, the loss gradient
  w.r.t. P_k is G_k = (2/B) A_k X_k^T X_k, computed as (A_k X_k^T) X_k per task; then
  dE = Dec^T G and dDec = G E^T: three D x D x N products per width instead of B x D x N.
- Each task's samples sit in a fixed-capacity window, so the task part is a few batched
  products over groups of equal-capacity windows, with no per-sample gathers. Capacities are set from the sampler's counts; when a step
  needs more, the capacity grows (and the program recompiles) before the step runs, so no
  sample is ever dropped or reweighted. Padding rows are exact zeros.
- Steps run inside one compiled ``lax.scan`` per chunk of steps.
The optimiser is AdamW with PyTorch's update order; clipping matches
``torch.nn.utils.clip_grad_norm_``.
"""

from __future__ import annotations

import functools

import math
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ConfigError
from ..mixture import MixtureSpec
from ._config import TrainConfig
from ._init import init_params
from ._rng import derive_key, normal, seed_key
from ._sampling import TaskSampler, default_sampler

_PROBE_STEPS = 4096  # steps of counts inspected to size the task windows
_ALIGN = 8


def _jax():
    import jax

    return jax


def _ceil_to(x, m: int = _ALIGN):
    return (np.ceil(np.asarray(x, np.float64) / m) * m).astype(np.int64)


def initial_capacities(counts: np.ndarray) -> np.ndarray:
    """Window capacity per task from a probe of per-step counts (T, K): the larger of the
    probe maximum and mean + 4 sd + 1, rounded up to a multiple of 8 (at least 8)."""
    counts = np.asarray(counts, np.float64)
    cap = np.maximum(counts.max(0), counts.mean(0) + 4.0 * counts.std(0) + 1.0)
    return np.maximum(_ceil_to(cap), _ALIGN)


def grown_capacities(cap: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Capacities that fit every step of ``counts`` (T, K); unchanged when they already do."""
    need = np.asarray(counts).max(0)
    over = need > cap
    out = cap.copy()
    out[over] = _ceil_to(need[over] * 1.25)
    return out


class MemberState(NamedTuple):
    """Parameters and AdamW moments of one student, read by name (``st.Dec @ st.E``).

    Host numpy float32 between chunks, JAX arrays inside the compiled step (a NamedTuple is
    a pytree; ``mem=None`` contributes no leaves)."""

    E: np.ndarray
    """Encoder (N, D)."""
    Dec: np.ndarray
    """Stacked decoders (D, N): rows k*d..(k+1)*d-1 are Dec_k."""
    mE: np.ndarray
    """AdamW first moment of E (N, D)."""
    vE: np.ndarray
    """AdamW second moment of E (N, D)."""
    mDec: np.ndarray
    """AdamW first moment of Dec (D, N)."""
    vDec: np.ndarray
    """AdamW second moment of Dec (D, N)."""
    mem: np.ndarray | None = None
    """Conflict removal only: the protected task's latest encoder gradient (N, D)."""

    @classmethod
    def fresh(cls, E: np.ndarray, Dec3: np.ndarray, memory: bool = False) -> "MemberState":
        Dec = np.asarray(Dec3, np.float32).reshape(-1, Dec3.shape[-1])
        E = np.asarray(E, np.float32)
        z = np.zeros_like
        return cls(E, Dec, z(E), z(E), z(Dec), z(Dec), z(E) if memory else None)

    def decoders(self, spec: MixtureSpec) -> np.ndarray:
        """Dec as (K, d, N)."""
        return self.Dec.reshape(spec.K, spec.d, -1)

    def map(self, fn) -> "MemberState":
        """The same state with ``fn`` applied to every array (None stays None)."""
        return MemberState(*[None if a is None else fn(a) for a in self])


class Window(NamedTuple):
    """A group of tasks whose samples sit in windows of equal capacity in the step's rows."""

    tasks: tuple
    """0-based tasks of the group, in layout order."""
    cap: int
    """Rows per task window."""
    off: int
    """First row of the group."""
    sparse: bool
    """Mostly-empty tasks (an injected rare task): the group is skipped when it has no sample."""


def _task_gradients(states, Xw, Ew, counts, inv_b, wdiag, layout, K, d, sigma, population):
    """dL/dP for every member: list of (D, D) matrices.

    Xw (sum C, D): samples in per-task windows (zero rows as padding), Ew (sum C, d) noise
    or None. ``layout``: static list of ``Window`` groups of equal capacity, laid out in
    that order in Xw; a sparse group is mostly empty and is skipped
    at steps where it has no sample. Each width is handled on its own: stacking the widths
    into one product was measured slower (it moves every A through memory twice more).
    """
    jax = _jax()
    jnp = jax.numpy
    Dn = states[0].E.shape[1]
    out = []
    for st in states:
        A = st.Dec @ st.E - jnp.diag(wdiag)  # (D, D): row block k is A_k = Dec_k E - W_k
        if population:
            rep = jnp.repeat(counts.astype(jnp.float32), d)[:, None] * (2.0 * inv_b)
            out.append(rep * A)
            continue
        A3 = A.reshape(K, d, Dn)
        parts, order = [], []
        for tasks, cap, off, sparse in layout:
            n = len(tasks)
            contiguous = tasks[-1] - tasks[0] == n - 1
            Ag = A3[tasks[0]:tasks[-1] + 1] if contiguous else A3[np.asarray(tasks)]
            Xg = Xw[off:off + n * cap].reshape(n, cap, Dn)
            Eg = None if Ew is None else Ew[off:off + n * cap].reshape(n, cap, d)

            def product(Ag=Ag, Xg=Xg, Eg=Eg):
                R = jnp.einsum("kdD,kcD->kdc", Ag, Xg)
                if Eg is not None:
                    R = R - sigma * jnp.swapaxes(Eg, 1, 2)
                return jnp.einsum("kdc,kcD->kdD", R, Xg)

            if sparse:  # an injected task: skip its window between injections (a cond costs fusion)
                present = jnp.sum(counts[np.asarray(tasks)]) > 0
                parts.append(jax.lax.cond(present, product, lambda: jnp.zeros((n, d, Dn), Xw.dtype)))
            else:
                parts.append(product())
            order.extend(tasks)
        G = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
        if order != sorted(order):
            G = G[np.argsort(order)]
        out.append(G.reshape(Dn, Dn) * (2.0 * inv_b))
    return out


def _adamw(p, g, m, v, lr, bc1, bc2s, cfg):
    jnp = _jax().numpy
    b1, b2 = cfg.betas
    p = p * (1.0 - lr * cfg.weight_decay)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * (g * g)
    p = p - (lr / bc1) * (m / (jnp.sqrt(v) / bc2s + cfg.eps))
    return p, m, v


def _project_conflict(st, g, counts, task: int, d: int):
    """Encoder gradient with the common tasks' part projected off the protected task's
    direction when they conflict (PCGrad, Yu et al. 2020, one-sided: only the common part
    moves). The protected task is absent from most batches, so its direction is its latest
    encoder gradient, kept in the member's memory.

    Returns (gE (N, D), new memory (N, D))."""
    jnp = _jax().numpy
    Dec, mem = st.Dec, st.mem
    gE = Dec.T @ g
    g_r = Dec[task * d:(task + 1) * d].T @ g[task * d:(task + 1) * d]
    mem = jnp.where(counts[task] > 0, g_r, mem)
    g_c = gE - g_r
    dot, nn = jnp.sum(g_c * mem), jnp.sum(mem * mem)
    coef = jnp.where((dot < 0) & (nn > 0), dot / jnp.where(nn > 0, nn, 1.0), 0.0)
    return g_c - coef * mem + g_r, mem


def _member_update(st, grads, lr, t1, cfg):
    """Clip (as torch.nn.utils.clip_grad_norm_) then AdamW (as torch.optim.AdamW)."""
    jnp = _jax().numpy
    gE, gDec = grads
    if math.isfinite(cfg.clip):
        norm = jnp.sqrt(jnp.sum(gE * gE) + jnp.sum(gDec * gDec))
        coef = jnp.minimum(cfg.clip / (norm + 1e-6), 1.0)
        gE, gDec = gE * coef, gDec * coef
    b1, b2 = cfg.betas
    bc1 = 1.0 - b1**t1
    bc2s = jnp.sqrt(1.0 - b2**t1)
    E, mE, vE = _adamw(st.E, gE, st.mE, st.vE, lr, bc1, bc2s, cfg)
    Dec, mDec, vDec = _adamw(st.Dec, gDec, st.mDec, st.vDec, lr, bc1, bc2s, cfg)
    return st._replace(E=E, Dec=Dec, mE=mE, vE=vE, mDec=mDec, vDec=vDec)


def _draw_rows(key, stepno, stream: int, base_rows: int, extra_rows: int, cols: int, batch_rows):
    """The standard normal rows of one step: ``base_rows`` always, ``extra_rows`` more
    (injections) only when the batch needs them. Shared by the compiled scan and
    ``Engine.batch_at``, so both see the same samples. Returns (base_rows + extra_rows, cols)."""
    jax = _jax()
    jnp = jax.numpy
    rows = normal(derive_key(key, stepno, stream), (base_rows, cols))
    if not extra_rows:
        return rows
    extra = jax.lax.cond(
        batch_rows > base_rows,
        lambda: normal(derive_key(key, stepno, stream + 1), (extra_rows, cols)),
        lambda: jnp.zeros((extra_rows, cols), jnp.float32),
    )
    return jnp.concatenate([rows, extra])


def _step_rows(key, stepno, stream: int, base_rows: int, extra_rows: int, cols: int, batch_rows, src,
               replay_rows: int):
    """All rows a step's windows gather from: its own rows, one zero row (padding), then the
    replayed task's rows, drawn from the key of their source step ``src`` (zeros if src < 0).
    Returns (base_rows + extra_rows + 1 + replay_rows, cols)."""
    jax = _jax()
    jnp = jax.numpy
    parts = [_draw_rows(key, stepno, stream, base_rows, extra_rows, cols, batch_rows),
             jnp.zeros((1, cols), jnp.float32)]
    if replay_rows:
        parts.append(jax.lax.cond(
            src >= 0,
            lambda: normal(derive_key(key, jnp.maximum(src, 0), stream + 4), (replay_rows, cols)),
            lambda: jnp.zeros((replay_rows, cols), jnp.float32)))
    return jnp.concatenate(parts)


@functools.lru_cache(maxsize=1)
def _step_rows_jit():
    """``_step_rows`` compiled once per shape (its ints static), for ``Engine.batch_at``: called
    op by op, each ``lax.cond`` inside would be compiled again at every call (96 compilations,
    about 50 s, for 9 steps)."""
    return _jax().jit(_step_rows, static_argnums=(2, 3, 4, 5, 8))


def _traced_signal(E, idx, lam, N, D):
    """Corrected signal s~ of tracked tasks from ||P_E e_i||^2 via a Cholesky solve.

    idx (T, d) coordinates of the tracked tasks, lam (T, d) their spectra. Returns (T,)."""
    jax = _jax()
    jnp = jax.numpy
    gram = E @ E.T
    L = jnp.linalg.cholesky(gram)
    Z = jax.scipy.linalg.solve_triangular(L, E[:, idx.reshape(-1)], lower=True)
    a = jnp.sum(Z * Z, axis=0).reshape(idx.shape)
    s = jnp.sum(a * lam, 1) / jnp.sum(lam, 1)
    base = N / D
    return (s - base) / (1.0 - base)


class Engine:
    """Train several widths of the SPEC A2 student on shared batches.

    Args:
        spec: the mixture. cfg: optimiser/run settings (``cfg.seed`` seeds data and init).
        widths: member widths (each 1..D; repeats allowed).
        sampler: per-step task counts; default i.i.d. from the prior with ``cfg.batch_size``.
        trace_tasks: tasks (1-based) whose corrected signal is recorded at every step
            (returned by ``advance``), e.g. the rare task of a retention study.
        chunk: steps per compiled scan (segments of any length reuse it).
        init: optional list of (E (N, D), Dec (K, d, N)) per member; default ``init_params``.
        conflict_removal: optional task (1-based) to protect: the other tasks' encoder
            gradient is projected off its latest gradient when they conflict (PCGrad-style
            remedy, SPEC Part C). None: plain training.

    A sampler with a ``replay_task`` (the replay remedy) has that task's samples drawn by
    source step (``replay_source``), so a replayed batch holds the very same samples.
    """

    def __init__(self, spec: MixtureSpec, cfg: TrainConfig, widths: Sequence[int],
                 sampler: TaskSampler | None = None, trace_tasks: Sequence[int] = (),
                 chunk: int = 256, init=None, conflict_removal: int | None = None):
        self.spec, self.cfg = spec, cfg
        self.widths = [spec.check_width(w) for w in widths]
        if not self.widths:
            raise ConfigError("widths", "empty", "at least one width")
        self.sampler = sampler or default_sampler(spec, cfg.batch_size, cfg.seed)
        tasks = np.asarray(list(trace_tasks), dtype=np.int64)
        if np.any((tasks < 1) | (tasks > spec.K)):
            raise ConfigError("trace_tasks", f"{tasks.tolist()}", f"tasks 1..{spec.K}")
        self.trace_tasks = tasks - 1  # 0-based rows, internal
        if chunk < 1:
            raise ConfigError("chunk", f"{chunk}", "integer >= 1")
        self.chunk = int(chunk)
        if conflict_removal is not None and not 1 <= int(conflict_removal) <= spec.K:
            raise ConfigError("conflict_removal", f"{conflict_removal!r}", f"a task number 1..{spec.K}")
        self.protect = None if conflict_removal is None else int(conflict_removal) - 1  # 0-based row
        replay = getattr(self.sampler, "replay_task", None)
        self._replay = None if replay is None else int(replay)
        self._replay_rows = int(getattr(self.sampler, "replay_rows", 0)) if self._replay is not None else 0
        inits = init if init is not None else [init_params(spec, w, cfg.seed) for w in self.widths]
        self.members = [MemberState.fresh(E, Dec, self.protect is not None) for E, Dec in inits]
        self.step = 0
        self._key = seed_key(int(cfg.seed))
        self._rows = int(self.sampler.max_batch)
        self._base_rows = min(int(getattr(self.sampler, "batch_size", self._rows)), self._rows)
        probe = self.sampler.counts(np.arange(_PROBE_STEPS))
        self.capacity = initial_capacities(probe)
        # tasks absent from most batches (an injected rare task) get a window that is skipped when empty
        self._sparse = (probe == 0).mean(0) > 0.5
        self.recompilations = 0
        self._compiled: dict = {}
        self._wdiag = spec.teacher_diag.astype(np.float32)

    # ---------------------------------------------------------------- layout
    def _layout(self, cap: np.ndarray):
        """Static window layout: groups of tasks with equal capacity (and sparsity), largest first.

        Returns (groups, offsets): groups is a tuple of ``Window``;
        offsets (K,) is the first window row of each task."""
        key = lambda k: (-int(cap[k]), bool(self._sparse[k]))  # noqa: E731
        order = sorted(range(self.spec.K), key=lambda k: (*key(k), k))
        groups, offsets, off, i = [], np.zeros(self.spec.K, np.int64), 0, 0
        while i < len(order):
            c, sparse = int(cap[order[i]]), bool(self._sparse[order[i]])
            tasks = []
            while i < len(order) and key(order[i]) == (-c, sparse):
                tasks.append(order[i])
                offsets[order[i]] = off + c * (len(tasks) - 1)
                i += 1
            groups.append(Window(tuple(tasks), c, off, sparse))
            off += c * len(tasks)
        return tuple(groups), offsets

    def _main_counts(self, counts: np.ndarray) -> np.ndarray:
        """Counts of the samples drawn from the step's own rows (all but a replayed task)."""
        if self._replay is None:
            return counts
        c = np.array(counts, copy=True)
        c[..., self._replay] = 0
        return c

    def _gather(self, counts: np.ndarray, cap: np.ndarray, zero_row: int, replay: bool = True) -> np.ndarray:
        """Row index for every window position of every step, (T, sum C) int32.

        Samples are numbered task by task (task 0's first); positions past a task's count
        point at ``zero_row``. A replayed task's samples are the rows after ``zero_row``
        (unless ``replay`` is False: an explicit batch holds every sample in task order)."""
        T = counts.shape[0]
        _, offsets = self._layout(cap)
        out = np.full((T, int(cap.sum())), zero_row, np.int32)
        main = self._main_counts(counts) if replay else counts
        start = np.concatenate([np.zeros((T, 1), np.int64), np.cumsum(main, 1)[:, :-1]], 1)
        if replay and self._replay is not None:
            start[:, self._replay] = zero_row + 1
        for k in range(self.spec.K):
            lane = np.arange(cap[k])
            rows = start[:, k:k + 1] + lane[None, :]
            out[:, offsets[k]:offsets[k] + cap[k]] = np.where(lane[None, :] < counts[:, k:k + 1], rows, zero_row)
        return out

    # ---------------------------------------------------------------- compiled kernels
    def _step_fn(self, groups):
        """The pure one-step function shared by the scan and the explicit-batch path."""
        jnp = _jax().numpy
        spec, cfg = self.spec, self.cfg
        sigma = float(spec.noise)
        population = cfg.mode == "population"
        wdiag = jnp.asarray(self._wdiag)

        protect = self.protect

        def step(states, Xw, Ew, counts, lr, t1):
            inv_b = 1.0 / jnp.sum(counts).astype(jnp.float32)
            G = _task_gradients(states, Xw, Ew, counts, inv_b, wdiag, groups, spec.K, spec.d,
                                sigma, population)
            out = []
            for st, g in zip(states, G):
                if protect is None:
                    out.append(_member_update(st, (st.Dec.T @ g, g @ st.E.T), lr, t1, cfg))
                else:
                    gE, mem = _project_conflict(st, g, counts, protect, spec.d)
                    out.append(_member_update(st._replace(mem=mem), (gE, g @ st.E.T), lr, t1, cfg))
            return tuple(out)

        return step

    def _scan_fn(self, cap: np.ndarray):
        key = (tuple(int(c) for c in cap), tuple(bool(x) for x in self._sparse), self._rows, self._base_rows,
               self._replay_rows)
        if key in self._compiled:
            return self._compiled[key]
        if self._compiled:
            self.recompilations += 1
        jax = _jax()
        jnp = jax.numpy
        spec, cfg = self.spec, self.cfg
        D, d = spec.D, spec.d
        groups, _ = self._layout(cap)
        step = self._step_fn(groups)
        need_x = cfg.mode == "exact"
        noisy = spec.noise > 0 and need_x
        trace = len(self.trace_tasks) > 0
        idx = jnp.asarray(self.trace_tasks[:, None] * d + np.arange(d)[None, :])
        lam = jnp.asarray(spec.spectra[self.trace_tasks].astype(np.float32))
        widths = self.widths
        base_rows, extra_rows = self._base_rows, self._rows - self._base_rows
        replay, replay_rows = self._replay, self._replay_rows

        def draw(stepno, stream, cols, batch_rows, src):
            return _step_rows(self._key, stepno, stream, base_rows, extra_rows, cols, batch_rows, src, replay_rows)

        def body(states, xs):
            active, stepno, gather, counts, lr, src = xs

            def do(states):
                b = jnp.sum(counts) - (counts[replay] if replay is not None else 0)
                Xw = draw(stepno, 0, D, b, src)[gather] if need_x else None
                Ew = draw(stepno, 2, d, b, src)[gather] if noisy else None
                t1 = (stepno + 1).astype(jnp.float32)
                return step(states, Xw, Ew, counts, lr, t1)

            states = jax.lax.cond(active, do, lambda s: s, states)
            if trace:
                sig = jnp.stack([_traced_signal(st.E, idx, lam, w, D) for st, w in zip(states, widths)])
            else:
                sig = jnp.zeros((len(widths), 0), jnp.float32)
            return states, sig

        @jax.jit
        def run(states, xs):
            return jax.lax.scan(body, states, xs)

        self._compiled[key] = run
        return run

    # ---------------------------------------------------------------- host side
    def _device_states(self):
        jnp = _jax().numpy
        return tuple(m.map(jnp.asarray) for m in self.members)

    def _store_states(self, states) -> None:
        host = _jax().device_get(states)
        self.members = [st.map(np.array) for st in host]

    def advance(self, n_steps: int) -> np.ndarray:
        """Train every member for ``n_steps`` more steps.

        Returns: the traced corrected signals, float32 (n_steps, members, len(trace_tasks)),
        each taken after that step's update.
        """
        traces = []
        states = self._device_states()
        done = 0
        while done < n_steps:
            n = min(self.chunk, n_steps - done)
            steps = np.arange(self.step, self.step + self.chunk)
            counts = np.zeros((self.chunk, self.spec.K), np.int64)
            counts[:n] = self.sampler.counts(steps[:n])
            batch = counts[:n].sum(1)
            if np.any(batch == 0):
                raise ConfigError("sampler", f"step {int(steps[np.argmin(batch)])} has an empty batch",
                                  "at least one sample per step")
            main = self._main_counts(counts[:n]).sum(1)
            if main.max() > self._rows:  # a custom sampler exceeded its bound: grow, never drop
                self._rows = int(main.max())
            self.capacity = grown_capacities(self.capacity, counts[:n])
            gather = self._gather(counts, self.capacity, self._rows)
            lr = self.cfg.lr_at(steps).astype(np.float32)
            active = np.arange(self.chunk) < n
            src = np.full(self.chunk, -1, np.int32)
            if self._replay is not None:
                src[:n] = self.sampler.replay_source(steps[:n])
            run = self._scan_fn(self.capacity)
            states, sig = run(states, (active, steps.astype(np.int32), gather, counts.astype(np.int32), lr, src))
            traces.append(np.asarray(sig)[:n])
            self.step += n
            done += n
        self._store_states(states)
        if not traces:
            return np.zeros((0, len(self.widths), len(self.trace_tasks)), np.float32)
        return np.concatenate(traces)

    # ---------------------------------------------------------------- explicit batches (tests)
    def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The batch that ``advance`` draws at 0-based ``step``, rebuilt on the host.

        Returns: x (B_t, D) float32, t (B_t,) 0-based tasks (sorted), noise (B_t, d) or None.
        Used to check the compiled path against the reference on the very same samples.
        """
        jnp = _jax().numpy
        counts = self.sampler.counts(np.asarray([step]))
        b = int(self._main_counts(counts).sum())
        src = int(self.sampler.replay_source(np.asarray([step]))[0]) if self._replay is not None else -1
        base, extra = self._base_rows, self._rows - self._base_rows
        cap = grown_capacities(self.capacity, counts)
        gather = self._gather(counts, cap, self._rows)[0]
        _, offsets = self._layout(cap)
        take = np.concatenate([gather[offsets[k]:offsets[k] + counts[0, k]] for k in range(self.spec.K)])

        def rows(stream: int, cols: int) -> np.ndarray:
            r = _step_rows_jit()(self._key, jnp.int32(step), stream, base, extra, cols, jnp.int32(b), jnp.int32(src),
                                 self._replay_rows)
            return np.array(r)[take]

        t = np.repeat(np.arange(self.spec.K), counts[0])
        noise = rows(2, self.spec.d) if self.spec.noise > 0 else None
        return rows(0, self.spec.D), t, noise

    def _window_batch(self, x: np.ndarray, t: np.ndarray, noise: np.ndarray | None):
        t = np.asarray(t, np.int64)
        if t.ndim != 1 or len(t) != len(x) or np.any((t < 0) | (t >= self.spec.K)):
            raise ConfigError("batch", "tasks must be a 1-D array of 0-based task ids, one per row of x")
        order = np.argsort(t, kind="stable")
        x, t = np.asarray(x, np.float32)[order], t[order]
        counts = np.bincount(t, minlength=self.spec.K)[None, :]
        self.capacity = grown_capacities(self.capacity, counts)
        gather = self._gather(counts, self.capacity, len(t), replay=False)[0]
        Xw = np.concatenate([x, np.zeros((1, x.shape[1]), np.float32)])[gather]
        Ew = None
        if noise is not None:
            nz = np.asarray(noise, np.float32)[order]
            Ew = np.concatenate([nz, np.zeros((1, self.spec.d), np.float32)])[gather]
        return Xw, Ew, counts[0].astype(np.int32)

    def gradients_on_batch(self, x: np.ndarray, t: np.ndarray, noise: np.ndarray | None = None):
        """Unclipped gradients of each member on an explicit batch.

        Args: x (B, D), t (B,) 0-based tasks, noise (B, d) standard normals or None.
        Returns: list of (dE (N, D), dDec (K, d, N)).
        """
        jnp = _jax().numpy
        Xw, Ew, counts = self._window_batch(x, t, noise)
        groups, _ = self._layout(self.capacity)
        states = self._device_states()
        G = _task_gradients(states, jnp.asarray(Xw), None if Ew is None else jnp.asarray(Ew),
                            jnp.asarray(counts), 1.0 / float(counts.sum()), jnp.asarray(self._wdiag),
                            groups, self.spec.K, self.spec.d, float(self.spec.noise),
                            self.cfg.mode == "population")
        return [(np.asarray(st.Dec.T @ g), np.asarray(g @ st.E.T).reshape(self.spec.K, self.spec.d, -1))
                for st, g in zip(states, G)]

    def step_on_batch(self, x: np.ndarray, t: np.ndarray, noise: np.ndarray | None = None) -> None:
        """One optimiser step of every member on an explicit batch (same maths as ``advance``)."""
        jnp = _jax().numpy
        Xw, Ew, counts = self._window_batch(x, t, noise)
        groups, _ = self._layout(self.capacity)
        step = self._step_fn(groups)
        states = step(self._device_states(), jnp.asarray(Xw), None if Ew is None else jnp.asarray(Ew),
                      jnp.asarray(counts), np.float32(self.cfg.lr_at(self.step)), np.float32(self.step + 1))
        self._store_states(states)
        self.step += 1

    # ---------------------------------------------------------------- state I/O
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume bit-identically (parameters, moments, step, capacities)."""
        out = {"step": np.asarray(self.step), "widths": np.asarray(self.widths),
               "capacity": self.capacity.copy(), "rows": np.asarray(self._rows)}
        for i, m in enumerate(self.members):
            for name, a in m._asdict().items():
                if a is not None:
                    out[f"m{i}_{name}"] = a
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if list(np.asarray(state["widths"]).tolist()) != self.widths:
            raise ConfigError("checkpoint", f"widths {np.asarray(state['widths']).tolist()} != {self.widths}",
                              "a checkpoint of the same run")
        self.step = int(state["step"])
        self.capacity = np.asarray(state["capacity"], np.int64).copy()
        self._rows = int(state["rows"])
        names = MemberState._fields if self.protect is not None else MemberState._fields[:-1]
        for i in range(len(self.widths)):
            if any(f"m{i}_{n}" not in state for n in names):
                raise ConfigError("checkpoint", "made with different conflict-removal settings",
                                  "a checkpoint of the same run")
        self.members = [MemberState(*[np.array(state[f"m{i}_{n}"]) for n in names])
                        for i in range(len(self.widths))]

    def flops_per_step(self, batch: int | None = None) -> float:
        """Useful floating-point operations of one exact step (padding not counted):
        three D x D x N products per width plus the task products 4 d D B per width."""
        B = batch or self.cfg.batch_size
        D, d = self.spec.D, self.spec.d
        return float(sum(6.0 * D * D * N + 4.0 * d * D * B for N in self.widths))
