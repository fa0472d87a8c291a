"""The one place that decides how hot paths are compiled.

Every rule of the model is a plain Python function over tables decorated with
:func:`njit`: compiled on its own the first time it is needed, cached on disk by exactly the
code compiled into it (:mod:`epcsim.jitcache`). A few helpers of a line or two are
:func:`njit_inline`, spliced into their callers. Under ``NUMBA_DISABLE_JIT=1`` numba hands
the functions back uncompiled, so the same source runs as ordinary Python; the tests use
that to check both paths agree.

The numba extensions epcsim needs live here, each named in ``tests/test_jit.py``: tables
that compiled code sees without reference counts (:class:`Table`, :class:`UnmanagedArray`),
state tuples passed as one pointer (:class:`StateRef`), rules compiled once for every
caller (:class:`RuleDispatcher`), their inliner (:func:`_inline_rules_pass`), calls of a
rule its callers do not compile (:func:`deferred`), and the prefetch intrinsics. They are
written against the numba release series that ``pyproject.toml`` pins.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numba.core import config
from numba.core import types as nbtypes

from epcsim.jitcache import (
    ContentCache,
    cell_symbol,
    define_cell,
    register_extension,
    release_held_locks,
)

if config.DISABLE_JIT:
    # Interpreted, numpy's unsigned scalars warn when they wrap; compiled code wraps silently.
    # The wrap is the intended arithmetic (hashes), so the warning is noise.
    warnings.filterwarnings("ignore", message="overflow encountered in scalar",
                            category=RuntimeWarning)

F = TypeVar("F", bound=Callable[..., Any])


class RuleType(nbtypes.Dispatcher):  # type: ignore[misc]
    """numba's type of a dispatcher, but a call from compiled code is typed with its
    arguments' plain types: ``f(st, 0)`` compiles ``f`` for an int64, not for the literal
    0 (numba otherwise compiles a version of ``f`` for every constant a caller passes: ten of
    the manager's event log, one per event number)."""

    def get_call_type(self, context, args, kws):  # type: ignore[no-untyped-def]
        from numba.core.types.misc import unliteral

        return super().get_call_type(context, tuple(unliteral(a) for a in args),
                                     {k: unliteral(v) for k, v in kws.items()})


def _inline_rules_pass() -> Callable[[Any], Any]:
    """The function that puts into a numba pass manager, in place of numba's inliner, a
    pass that splices ``inline="always"`` callees into a caller with less of the same
    work: numba turns the callee's bytecode into IR again at every call site (with
    the callees spliced into it, recursively) and deep-copies that IR twice, block by block,
    each block copying the whole scope of variables. Here a callee's IR is built once per
    process and copied once per site, all its blocks in one copy. Both took about a quarter
    of a cold compile of the replay engine (BENCHMARKS.md, "the inliner"). The spliced IR
    is the same; only the work to reach it differs.

    Written against numba 0.68's ``InlineInlinables`` and ``InlineWorker.inline_ir``
    (``numba/core/untyped_passes.py``, ``numba/core/inline_closurecall.py``): the body of
    :meth:`RuleInliner.inline_ir` is numba's with the copies changed, and
    ``tests/test_jit.py`` names both.
    """
    import copy
    import weakref

    from numba.core import ir, ir_utils
    from numba.core.compiler_machinery import register_pass
    from numba.core.inline_closurecall import (
        InlineWorker,
        _add_definitions,
        _created_inlined_var_name,
        _get_all_scopes,
        _get_callee_args,
        _replace_args_with,
        _replace_returns,
        callee_ir_validator,
    )
    from numba.core.ir_utils import (
        add_offset_to_labels,
        find_topo_order,
        next_label,
        replace_vars,
        simplify_CFG,
    )
    from numba.core.untyped_passes import InlineInlinables

    untyped: weakref.WeakKeyDictionary[Any, dict[bool, Any]] = weakref.WeakKeyDictionary()

    def with_rules_inliner(pm: Any) -> Any:
        """``pm``, a pass manager of numba's, with this pass in place of numba's inliner."""
        pm.passes = [(InlineRules if p is InlineInlinables else p, d) for p, d in pm.passes]
        return pm

    def untyped_pipeline(state: Any, name: str = "untyped") -> Any:
        """numba's untyped pipeline, as a callee is built for splicing, with this pass:
        the callee's own helpers are built once too."""
        from numba.core.compiler import DefaultPassBuilder

        return with_rules_inliner(DefaultPassBuilder.define_untyped_pipeline(state, name))

    class RuleInliner(InlineWorker):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._compiler_pipeline = untyped_pipeline

        def run_untyped_passes(self, func, enable_ssa=False):  # type: ignore[no-untyped-def]
            # The callee's IR depends on its bytecode and on SSA alone (rules are never
            # parallel and have no locals); numba also leaves enable_ssa set on the flags.
            self.flags.enable_ssa = enable_ssa
            by_ssa = untyped.setdefault(func, {})
            if enable_ssa not in by_ssa:
                by_ssa[enable_ssa] = super().run_untyped_passes(func, enable_ssa)
            return by_ssa[enable_ssa]

        def inline_ir(self, caller_ir, block, i, callee_ir, callee_freevars,  # type: ignore[no-untyped-def]
                      arg_typs=None):
            assert arg_typs is None and not self._permit_update_type_and_call_maps
            kept = callee_ir
            callee_ir = kept.copy()
            # One copy of all the blocks: the scope and the variables they share are
            # copied once, not once per block.
            callee_ir.blocks = copy.deepcopy(kept.blocks)
            if self.validator is not None:
                self.validator(callee_ir)
            scope = block.scope
            instr = block.body[i]
            call_expr = instr.value
            callee_blocks = callee_ir.blocks

            max_label = max(ir_utils._the_max_label.next(), max(caller_ir.blocks.keys()))
            callee_blocks = add_offset_to_labels(callee_blocks, max_label + 1)
            callee_blocks = simplify_CFG(callee_blocks)
            callee_ir.blocks = callee_blocks
            min_label = min(callee_blocks.keys())
            max_label = max(callee_blocks.keys())
            ir_utils._the_max_label.update(max_label)

            callee_scopes = _get_all_scopes(callee_blocks)
            assert len(callee_scopes) == 1
            callee_scope = callee_scopes[0]
            var_dict = {}
            for var in tuple(callee_scope.localvars._con.values()):
                if var.name not in callee_freevars:
                    inlined_name = _created_inlined_var_name(
                        callee_ir.func_id.unique_name, var.name)
                    new_var = scope.redefine(inlined_name, loc=var.loc)
                    callee_scope.redefine(inlined_name, loc=var.loc)
                    var_dict[var.name] = new_var
            replace_vars(callee_blocks, var_dict)

            args = _get_callee_args(call_expr, callee_ir.func_id.func, block.body[i].loc,
                                    caller_ir)
            _replace_args_with(callee_blocks, args)
            new_blocks = []
            new_block = ir.Block(scope, block.loc)
            new_block.body = block.body[i + 1:]
            new_label = next_label()
            caller_ir.blocks[new_label] = new_block
            new_blocks.append((new_label, new_block))
            block.body = block.body[:i]
            block.body.append(ir.Jump(min_label, instr.loc))

            topo_order = find_topo_order(callee_blocks)
            _replace_returns(callee_blocks, instr.target, new_label)
            if (instr.target.name in caller_ir._definitions
                    and call_expr in caller_ir._definitions[instr.target.name]):
                caller_ir._definitions[instr.target.name].remove(call_expr)
            for label in topo_order:
                blk = callee_blocks[label]
                blk.scope = scope
                _add_definitions(caller_ir, blk)
                caller_ir.blocks[label] = blk
                new_blocks.append((label, blk))
            # numba returns an untouched copy of the callee first; its pass never reads it.
            return None, callee_blocks, var_dict, new_blocks

    @register_pass(mutates_CFG=True, analysis_only=False)
    class InlineRules(InlineInlinables):  # type: ignore[misc]
        _name = "epcsim_inline_rules"

        def run_pass(self, state):  # type: ignore[no-untyped-def]
            from numba.core import postproc
            from numba.core.analysis import compute_cfg_from_blocks
            from numba.core.ir_utils import guard

            worker = RuleInliner(state.typingctx, state.targetctx, state.locals,
                                 state.pipeline, state.flags,
                                 validator=callee_ir_validator)
            modified = False
            work_list = list(state.func_ir.blocks.items())
            while work_list:
                _, block = work_list.pop()
                for i, instr in enumerate(block.body):
                    if isinstance(instr, ir.Assign):
                        expr = instr.value
                        if isinstance(expr, ir.Expr) and expr.op == "call":
                            if guard(self._do_work, state, work_list, block, i, expr,
                                     worker):
                                modified = True
                                break
            if modified:
                cfg = compute_cfg_from_blocks(state.func_ir.blocks)
                for dead in cfg.dead_nodes():
                    del state.func_ir.blocks[dead]
                postproc.PostProcessor(state.func_ir).run()
                state.func_ir.blocks = simplify_CFG(state.func_ir.blocks)
            return True

    return with_rules_inliner


def _make_rule_dispatcher() -> type:
    from numba.core.datamodel.models import OpaqueModel
    from numba.core.registry import CPUDispatcher
    from numba.extending import register_model

    register_model(RuleType)(OpaqueModel)

    from numba.core.compiler import Compiler

    with_rules_inliner = _inline_rules_pass()

    class RuleCompiler(Compiler):  # type: ignore[misc]
        """numba's pipeline, with the function's symbols named by its content and
        ``njit_inline`` helpers spliced by :func:`_inline_rules_pass`.

        numba names a compiled function ``qualname$N`` with N counted per process, so two
        closures of one ``qualname`` compiled in two processes (a driver's rules over
        another reclaimer, say) can share a name, and a process that loads both from the
        cache binds a call to one of them to the other's code. Named by their digest
        instead, two functions share a symbol only when they are the same code.
        """

        def _compile_bytecode(self):  # type: ignore[no-untyped-def]
            from epcsim.jitcache import digest

            fid = self.state.func_id     # numba's identity, before anything is named by it
            fid.unique_id = int(digest(fid.func)[:15], 16)
            fid.unique_name = f"{fid.func_qualname}${fid.unique_id}"
            return super()._compile_bytecode()

        def define_pipelines(self):  # type: ignore[no-untyped-def]
            return [with_rules_inliner(pm) for pm in super().define_pipelines()]

    class RuleDispatcher(CPUDispatcher):  # type: ignore[misc]
        """The dispatcher of epcsim's rules: compiled for plain argument types only."""

        def __init__(self, py_func, locals=None, targetoptions=None):  # type: ignore[no-untyped-def]  # noqa: A002
            super().__init__(py_func, locals=locals or {}, targetoptions=targetoptions or {},
                             pipeline_class=RuleCompiler)

        @property
        def _numba_type_(self):  # type: ignore[no-untyped-def]
            return RuleType(self)

        def add_overload(self, cres):  # type: ignore[no-untyped-def]
            if self.targetoptions.get("no_cpython_wrapper"):
                # No entry point for Python: a Python call compiles one (_compile_for_args).
                self.overloads[tuple(cres.signature.args)] = cres
            else:
                super().add_overload(cres)
            _call_through_cell(self.targetctx, self, cres)
            _fill_deferred(self, cres)

        def compile(self, sig):  # type: ignore[no-untyped-def]
            try:
                return super().compile(sig)
            except BaseException:
                # A compile that raised saves nothing: let others waiting on it go on.
                release_held_locks()
                raise

        def _compile_for_args(self, *args, **kws):  # type: ignore[no-untyped-def]
            """A Python call: the rule for these types, entered through a wrapper compiled
            apart (most rules are only ever called from compiled code, and the wrapper that
            unboxes every table of each state tuple took most of a small rule's compile)."""
            if not self.targetoptions.get("no_cpython_wrapper"):
                return super()._compile_for_args(*args, **kws)
            assert not kws
            argtypes = tuple(self.typeof_pyval(a) for a in args)
            self.compile(argtypes)
            entry = _python_entry(self).compile(argtypes)
            self._insert([a._code for a in argtypes], entry, False)
            return entry

    RuleDispatcher.__qualname__ = "RuleDispatcher"
    return RuleDispatcher


RuleDispatcher: Any = None if config.DISABLE_JIT else _make_rule_dispatcher()


# A rule whose code, with what it links, is at most this many LLVM instructions is linked
# into its callers as numba does, where LLVM inlines it: calling a rule of a few lines
# through a cell cost the replay more than its body (the fault path makes a few dozen such
# calls), and re-optimising it in each caller costs little. Larger rules go through cells.
LINK_MAX_INSTRUCTIONS = 1000


def _instructions(library: Any) -> int:
    """The size of what linking ``library`` brings into a caller (the same whether the
    library was compiled in this process or loaded from the cache)."""
    text = str(library._get_module_for_linking())   # one call into LLVM, not one per value
    return sum(1 for line in text.splitlines() if (line.startswith("  ") and "=" in line)
               or line.startswith(("  store ", "  call ", "  br ", "  ret ", "  switch ")))


def _call_through_cell(ctx: Any, disp: Any, cres: Any) -> None:
    """Compiled callers call this overload through a cell holding its address
    (:mod:`epcsim.jitcache`, "cells"), instead of linking its code, and its callees' code
    transitively, into their own; unless it is small (``LINK_MAX_INSTRUCTIONS``) or a rule
    of the fault path compiled with ``link`` (:func:`njit_closure`)."""
    from llvmlite import ir
    from numba.core import cgutils, imputils
    from numba.core.base import OverloadSelector

    if getattr(disp, "linked", False) or _instructions(cres.library) <= LINK_MAX_INSTRUCTIONS:
        return              # numba's own call: the callee's library linked, inlinable
    fndesc = cres.fndesc
    sym = cell_symbol(disp, cres.signature.args)
    define_cell(sym, cres.library.get_pointer_to_function(fndesc.mangled_name), cres)

    def imp(context, builder, sig, args):  # type: ignore[no-untyped-def]
        fnty = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
        mod = builder.module
        gv = mod.globals.get(sym)
        if gv is None:
            gv = ir.GlobalVariable(mod, fnty.as_pointer(), name=sym)
            gv.linkage = "external"
        fn = builder.load(gv)
        status, retval = context.call_conv.call_function(
            builder, fn, fndesc.restype, fndesc.argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        retval = imputils.fix_returning_optional(context, builder, sig, status, retval)
        return imputils.impl_ret_new_ref(context, builder, fndesc.restype, retval)

    imp.signature = fndesc.argtypes   # type: ignore[attr-defined]
    imp.libs = ()                     # type: ignore[attr-defined]
    sel = OverloadSelector()
    sel.append(imp, imp.signature)    # type: ignore[attr-defined]
    ctx._defns[cres.entry_point] = sel


def deferred(rule: F, restype: Any, argtypes: tuple[Any, ...]) -> F:
    """``rule`` as compiled code calls it on a path most machines never take: the caller
    compiles without compiling ``rule`` (no typing of it, no link), and calls it through
    a cell that holds its address once something compiled it (:func:`compile_for`), which
    the machine that takes the path does before it runs. A call through an empty cell
    raises ``RuntimeError``.

    ``restype`` is the rule's return type and ``argtypes`` its parameters' (None: the
    caller's type, for a state): a caller's arguments are cast to them, so that every
    caller goes through the one cell of the rule compiled for those types. Exceptions
    propagate as from any compiled call.
    """
    if config.DISABLE_JIT:
        return rule
    from numba.extending import intrinsic

    params = ", ".join(inspect.signature(rule.py_func).parameters)
    # The intrinsic's digest (a caller's cache key) names the rule, its types and the code
    # generator: nothing that changes within a process.
    ns: dict[str, Any] = {"_deferred_call": _deferred_call, "rule": rule, "restype": restype,
                          "argtypes": argtypes, "__name__": rule.py_func.__module__}
    exec(f"def call(typingctx, {params}):\n"
         f"    return _deferred_call(rule, restype, argtypes, ({params},))\n", ns)
    call = ns["call"]
    call.__qualname__ = f"{rule.py_func.__qualname__}.<deferred>"
    rule._epcsim_deferred = True   # type: ignore[attr-defined]
    return intrinsic(call)  # type: ignore[no-any-return]


def _deferred_call(rule: Any, restype: Any, argtypes: tuple[Any, ...],
                   args: tuple[Any, ...]) -> Any:
    """The typing and code of a call :func:`deferred` made."""
    from llvmlite import ir
    from numba.core import cgutils, imputils
    from numba.core.types.misc import unliteral

    from epcsim.jitcache import deferred_symbol

    types = tuple(unliteral(a) if t is None else t for a, t in zip(args, argtypes))
    sym = deferred_symbol(rule, types)
    define_cell(sym, 0)

    def codegen(context, builder, sig, vals):  # type: ignore[no-untyped-def]
        vals = [context.cast(builder, v, a, t) for v, a, t in zip(vals, sig.args, types)]
        fnty = context.call_conv.get_function_type(restype, types)
        gv = builder.module.globals.get(sym)
        if gv is None:
            gv = ir.GlobalVariable(builder.module, fnty.as_pointer(), name=sym)
            gv.linkage = "external"
        fn = builder.load(gv)
        with cgutils.if_unlikely(builder, cgutils.is_null(builder, fn)):
            context.call_conv.return_user_exc(
                builder, RuntimeError,
                (f"{rule.py_func.__qualname__} was not compiled for {types}",))
        status, res = context.call_conv.call_function(builder, fn, restype, types, vals)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return imputils.impl_ret_untracked(context, builder, restype, res)
    return restype(*args), codegen


def _fill_deferred(disp: Any, cres: Any) -> None:
    """A deferred rule was compiled (or loaded): its callers' cell gets its address."""
    from epcsim.jitcache import deferred_symbol, fill_cell

    if getattr(disp, "_epcsim_deferred", False):
        sym = deferred_symbol(disp, tuple(cres.signature.args))
        fill_cell(sym, cres.library.get_pointer_to_function(cres.fndesc.mangled_name), cres)


def _python_entry(disp: Any) -> Any:
    """The function Python calls enter ``disp``'s rule by: one call, with the wrapper that
    unboxes Python's arguments (memoised on the dispatcher)."""
    entry = getattr(disp, "_epcsim_python_entry", None)
    if entry is None:
        fn = disp.py_func
        params = ", ".join(inspect.signature(fn).parameters)
        ns: dict[str, Any] = {}
        exec(f"def python_entry({params}):\n    return rule({params})\n",
             {"rule": disp}, ns)
        entry_fn = ns["python_entry"]
        entry_fn.__module__ = fn.__module__
        entry_fn.__qualname__ = f"{fn.__qualname__}.<python>"
        opts = {"nopython": True, "nogil": True, "no_cfunc_wrapper": True}
        entry = RuleDispatcher(py_func=entry_fn, locals={}, targetoptions=opts)
        if isinstance(disp._cache, ContentCache):
            entry._cache = ContentCache(entry_fn)
        disp._epcsim_python_entry = entry
    return entry


def compile_for(disp: Any, args: tuple[Any, ...], python: bool = False) -> None:
    """Compile ``disp``'s rule for the types of ``args`` without running it (and the entry
    a Python call of those types enters by, when ``python``): what a call would compile,
    so that a process compiling ahead (:mod:`epcsim.compiling`, the side) leaves in the
    cache exactly what the command will look for."""
    if config.DISABLE_JIT:
        return
    argtypes = tuple(disp.typeof_pyval(a) for a in args)
    disp.compile(argtypes)
    if python and disp.targetoptions.get("no_cpython_wrapper"):
        _python_entry(disp).compile(argtypes)


def _plain_parameters(fn: Callable[..., Any]) -> bool:
    return all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
               for p in inspect.signature(fn).parameters.values())


def _rule(fn: F, *, inline: bool = False, cache: bool = True, link: bool = False) -> F:
    if config.DISABLE_JIT:
        return fn
    # No cfunc wrapper: no rule is used as a first-class function object, and the wrapper
    # is compiled and optimised with every function. No CPython wrapper either where the
    # parameters are plain: a Python call compiles a small entry apart (_python_entry).
    opts: dict[str, Any] = {"nopython": True, "nogil": True, "no_cfunc_wrapper": True}
    if _plain_parameters(fn):
        opts["no_cpython_wrapper"] = True
    if inline:
        opts["inline"] = "always"
    # A rule small enough to be linked into its callers (LINK_MAX_INSTRUCTIONS) is
    # inlined there: LLVM's own threshold left most of the fault path's small rules as
    # calls, each reloading the tables its caller had loaded (BENCHMARKS.md, "small rules
    # inlined where they are linked"). Rules called through cells are never inlined.
    opts["forceinline"] = True
    disp = RuleDispatcher(py_func=fn, locals={}, targetoptions=opts)
    disp.linked = link
    if cache:
        disp._cache = ContentCache(fn)
    return disp  # type: ignore[no-any-return]


def njit(fn: F) -> F:
    """A rule: compiled on its own, once, and cached on disk."""
    return _rule(fn)


def njit_inline(fn: F) -> F:
    """A helper of a few lines, spliced into every compiled caller (numba's
    ``inline="always"``): a call would cost more than the helper's work. Keep it for
    helpers: numba types an inlined body again at every call site."""
    return _rule(fn, inline=True)


def njit_closure(fn: F, cache: bool = False, inline: bool = False, link: bool = False) -> F:
    """A closure over other compiled functions; on disk only when ``cache``.

    numba's cache pickles a compiled function's argument types with it; a closure over an
    owner whose module cannot be imported under the same name in another process (a test's,
    a notebook's) would fail to load rather than miss. So closures over epcsim's own owners
    are cached and closures over anybody else's are compiled per process (:func:`cacheable`).
    ``inline`` splices the closure into its compiled callers, for the few small closures on
    a per-request path. ``link`` links the rule's code into every compiled caller, whatever
    its size, instead of calling it through a cell: for the rules a replayed fault runs
    once each (the fault handler, the allocation, ksgxd's reclaim, EWB), where a call
    through a cell, which loads again each table its caller had loaded, cost a sixth of a
    high-miss replay's time (BENCHMARKS.md, "the fault path linked").
    """
    return _rule(fn, inline=inline, cache=cache, link=link)


def njit_linked(fn: F) -> F:
    """A rule of the fault path, cached on disk and linked into every compiled caller
    (:func:`njit_closure`'s ``link``)."""
    return _rule(fn, link=True)


class UnmanagedArray(nbtypes.Array):  # type: ignore[misc]
    """An array whose memory the Python side keeps alive: no reference counting.

    numba increments and decrements the reference count of every array a compiled
    function receives, reads from a tuple or hands on, through a call to the runtime per
    array even when there is no count to change (a view without a meminfo). With the
    model's state tuples that was over five hundred calls per replayed fault, a quarter
    of the ``sgx`` engine's time. An array of this type has the same layout and
    operations, and its data model reports no meminfo, so none of those calls is
    emitted. Slices and copies of it are ordinary arrays.

    Defined at module level: a cached function's signature is pickled with its code, and a
    type pickles by reference only when it can be imported by name (a class made inside a
    function would come back as another class, and the cached code would match no caller).
    """

    def __init__(self, dtype, ndim, layout, readonly=False, name=None,  # type: ignore[no-untyped-def]
                 aligned=True):
        if name is None:
            name = f"unmanaged array({dtype}, {ndim}d, {layout})"
        super().__init__(dtype, ndim, layout, readonly=readonly, name=name,
                         aligned=aligned)


@register_extension
def _make_unmanaged_array_model() -> None:
    from numba.core.datamodel.models import ArrayModel
    from numba.extending import register_model

    @register_model(UnmanagedArray)
    class UnmanagedArrayModel(ArrayModel):  # type: ignore[misc]
        def has_nrt_meminfo(self) -> bool:
            return False

        def traverse(self, builder):  # type: ignore[no-untyped-def]
            return []

    _lower_element_access(UnmanagedArray)

    from numba.core import cgutils
    from numba.core.imputils import lower_cast

    # numba lets an unmanaged array stand for an ordinary one and back (it is a subclass),
    # so a rule compiled for one is called with the other. The struct is the same; only the
    # meminfo differs, and the caller keeps the memory alive either way.
    @lower_cast(UnmanagedArray, nbtypes.Array)
    @lower_cast(nbtypes.Array, UnmanagedArray)
    def array_to_unmanaged(context, builder, fromty, toty, val):  # type: ignore[no-untyped-def]
        a = context.make_array(fromty)(context, builder, val)
        out = context.make_array(toty)(context, builder)
        for f in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, f, getattr(a, f))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()


def _lower_element_access(array_type):  # type: ignore[no-untyped-def]
    """Element loads and stores of ``array_type`` without negative-index wraparound.

    numba lets ``a[-1]`` mean the last element, so every load with a signed index also
    loads the array's length, tests the sign and selects: four instructions of six, on
    every table access of the engine. The model's state never indexes from the end (a
    negative page, slot or row is a sentinel that is tested before any use), so element
    access on unmanaged views computes the address alone; with ``NUMBA_BOUNDSCHECK=1`` a
    negative index raises IndexError like any index out of range. Anything other than one
    integer per dimension (slices, views, fancy indexing) keeps numba's own lowering.
    """
    import operator

    from numba.core import cgutils, types
    from numba.core.imputils import impl_ret_borrowed, lower_builtin
    from numba.np import arrayobj

    def scalar_index(aryty, idxty):  # type: ignore[no-untyped-def]
        """The index types, when ``idxty`` names one element of ``aryty``; else None."""
        tys = list(idxty.types) if isinstance(idxty, types.BaseTuple) else [idxty]
        if len(tys) == aryty.ndim and all(isinstance(t, types.Integer) for t in tys):
            return tys
        return None

    def pointer(context, builder, aryty, ary, idxty, idx, tys):  # type: ignore[no-untyped-def]
        """The element's address, from one intp per dimension and no wraparound.

        The struct's fields are reached without numba's struct helper, which makes a
        class per access (about a millisecond of lowering each, over a thousand accesses
        per engine) for the same instructions."""
        idxs = (cgutils.unpack_tuple(builder, idx, count=len(idxty))
                if isinstance(idxty, types.BaseTuple) else [idx])
        inds = [context.cast(builder, i, t, types.intp) for i, t in zip(idxs, tys)]
        # The struct goes through the stack as numba's struct helper puts it (LLVM then
        # keeps it in registers): read back from the value itself, the fields reached
        # LLVM in a form it optimised slightly worse in one rule of the fault path.
        f = _array_fields(context, aryty)
        ref = cgutils.alloca_once(builder, f["type"], zfill=True)
        builder.store(ary, ref)

        def field(name: str) -> Any:
            return builder.load(cgutils.gep_inbounds(builder, ref, 0, f[name]))

        shapes = cgutils.unpack_tuple(builder, field("shape"), aryty.ndim)
        strides = cgutils.unpack_tuple(builder, field("strides"), aryty.ndim)
        return cgutils.get_item_pointer2(context, builder, field("data"), shapes, strides,
                                         aryty.layout, inds, wraparound=False,
                                         boundscheck=context.enable_boundscheck)

    @lower_builtin(operator.getitem, array_type, types.Integer)
    @lower_builtin(operator.getitem, array_type, types.BaseTuple)
    def getitem(context, builder, sig, args):  # type: ignore[no-untyped-def]
        aryty, idxty = sig.args
        tys = scalar_index(aryty, idxty)
        if tys is None:
            if isinstance(idxty, types.BaseTuple):
                return arrayobj.getitem_array_tuple(context, builder, sig, args)
            return arrayobj.getitem_arraynd_intp(context, builder, sig, args)
        ptr = pointer(context, builder, aryty, args[0], idxty, args[1], tys)
        res = arrayobj.load_item(context, builder, aryty, ptr)
        return impl_ret_borrowed(context, builder, sig.return_type, res)

    @lower_builtin(operator.setitem, array_type, types.Integer, types.Any)
    @lower_builtin(operator.setitem, array_type, types.BaseTuple, types.Any)
    def setitem(context, builder, sig, args):  # type: ignore[no-untyped-def]
        aryty, idxty, valty = sig.args
        tys = scalar_index(aryty, idxty)
        if tys is None or isinstance(valty, types.Array):
            return arrayobj.setitem_array(context, builder, sig, args)
        ptr = pointer(context, builder, aryty, args[0], idxty, args[1], tys)
        val = context.cast(builder, args[2], valty, aryty.dtype)
        arrayobj.store_item(context, builder, aryty, val, ptr)
        return context.get_dummy_value()


_make_unmanaged_array_model()
# How unmanaged views are lowered decides the code of every function that uses them.
register_extension(_lower_element_access)


class Table(np.ndarray):
    """A table of the model's state: an ndarray that compiled code sees as unmanaged.

    numba counts references on every array a compiled function receives, reads from a tuple
    or passes on: an atomic increment and decrement each, about 50 ns for a call that hands
    over three tables (measured: docs/design.md). The Python object that owns the state
    keeps its tables alive, so compiled code needs no count: a ``Table`` is typed as
    :class:`UnmanagedArray` when it crosses into compiled code, and every rule is compiled
    once, for that type, whether Python or another rule calls it. Make one with
    :func:`table`; numpy operations on it give plain arrays again, so a table that is
    replaced (it grew) is made a table again.
    """


class RecordTable(np.recarray):
    """A :class:`Table` of records: ``tbl[i].field`` reads and writes the same compiled and
    interpreted (a plain structured array's element has no field attributes)."""


def table(a: np.ndarray) -> np.ndarray:
    """``a`` as a :class:`Table` (:class:`RecordTable` for a structured dtype), no copy."""
    if a.dtype.names is not None:
        return a.view(RecordTable)
    return a.view(Table)


def field(tbl: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of every record of ``tbl`` (a view), for Python code: a
    :class:`RecordTable` indexed by a field name goes through ``np.recarray``'s indexing,
    written in Python (1.7 us a view, a tenth of the demo's VM path); a plain ndarray's is
    not (0.25 us)."""
    return np.ndarray.view(tbl, np.ndarray)[name]


def tables(state: Any) -> Any:
    """A state tuple with every array made a :func:`table` (nested tuples too)."""
    if isinstance(state, np.ndarray):
        return table(state)
    if isinstance(state, tuple):
        return type(state)(*[tables(x) for x in state]) if hasattr(state, "_fields") \
            else tuple(tables(x) for x in state)
    return state


@register_extension
def _register_tables() -> None:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import NativeValue, typeof_impl, unbox
    from numba.np import numpy_support

    def typeof_table(val, c):  # type: ignore[no-untyped-def]
        dtype = numpy_support.from_dtype(val.dtype)
        return UnmanagedArray(dtype, val.ndim, numpy_support.map_layout(val),
                              readonly=not val.flags.writeable)

    typeof_impl.register(Table)(typeof_table)
    typeof_impl.register(RecordTable)(typeof_table)

    @unbox(UnmanagedArray)
    def unbox_table(typ, obj, c):  # type: ignore[no-untyped-def]
        """The array's data, shapes and strides, with no meminfo (numba's adaptor for a
        runtime without reference counts)."""
        ary = c.context.make_array(typ)(c.context, c.builder)
        ptr = c.builder.bitcast(ary._getpointer(), c.pyapi.voidptr)
        fnty = ir.FunctionType(ir.IntType(32), [c.pyapi.pyobj, c.pyapi.voidptr])
        fn = cgutils.get_or_insert_function(c.builder.module, fnty, "numba_adapt_ndarray")
        err = c.builder.call(fn, (obj, ptr))
        ary.parent = cgutils.get_null_value(ary.parent.type)
        failed = cgutils.is_not_null(c.builder, err)
        with c.builder.if_then(failed, likely=False):
            c.pyapi.err_set_string("PyExc_TypeError", "a model table is not an ndarray")
        return NativeValue(c.builder.load(ary._getpointer()), is_error=failed)


if not config.DISABLE_JIT:
    _register_tables()


def _make_prefetch():  # type: ignore[no-untyped-def]
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    def prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
        """Start loading ``arr[idx]`` into the cache; no effect on any value.

        A replay knows its future requests: fetching the table entries of a request some
        way ahead hides their latency behind the requests in between. A prefetch never
        faults, so ``idx`` need not be in range (a wrong one only wastes the fetch).
        """
        if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer) or \
                (arr.layout != "C" and arr.ndim != 1):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            if aryty.layout == "C":
                item = builder.gep(ary.data, [idx])   # a flat index, any number of dims
            else:
                # By the array's stride (a strided view, such as one field of records).
                item = cgutils.get_item_pointer2(
                    context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape, 1),
                    cgutils.unpack_tuple(builder, ary.strides, 1), aryty.layout, [idx],
                    wraparound=False, boundscheck=False)
            ptr = builder.bitcast(item, i8p)
            # read, keep in all cache levels, data cache
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()
        return types.void(arr, idx), codegen
    prefetch.__name__ = prefetch.__qualname__ = "prefetch"
    return intrinsic(prefetch)


if config.DISABLE_JIT:
    def prefetch(arr: Any, idx: int) -> None:
        return None
else:
    prefetch = _make_prefetch()


_fields_of: dict[Any, dict[str, Any]] = {}


def _array_fields(context: Any, aty: Any) -> dict[str, Any]:
    """Where each field of an array of type ``aty`` sits in its LLVM struct, that struct
    (``"type"``) and its element size (``"size"``), memoised per type: numba's
    helpers look them up again, through LLVM's target data, at every access they lower."""
    f = _fields_of.get(aty)
    if f is None:
        dm = context.data_model_manager[aty]
        f = {name: dm.get_field_position(name) for name in
             ("meminfo", "parent", "nitems", "itemsize", "data", "shape", "strides")}
        f["type"] = context.get_value_type(aty)
        f["size"] = context.get_abi_sizeof(context.get_data_type(aty.dtype))
        _fields_of[aty] = f
    return f


@register_extension
def _array_from_words(context, builder, aty, word, strided):  # type: ignore[no-untyped-def]
    """An array of type ``aty`` from its words: data address, shape, then its strides when
    ``strided``; otherwise the strides of a C-contiguous array of that shape.

    The struct is built as a value, field by field, as numba's ``populate_array`` fills
    it (no meminfo, no parent, nitems the product of the shape)."""
    from llvmlite import ir

    i64 = ir.IntType(64)
    f = _array_fields(context, aty)
    ty = f["type"]
    itemsize = f["size"]
    data = builder.inttoptr(word(), ty.elements[f["data"]])
    shape = [word() for _ in range(aty.ndim)]
    if strided:
        strides = [word() for _ in range(aty.ndim)]
    else:
        strides = []
        step: ir.Value = ir.Constant(i64, itemsize)
        for d in range(aty.ndim - 1, -1, -1):
            strides.insert(0, step)
            step = builder.mul(step, shape[d])
    nitems: ir.Value = ir.Constant(i64, 1)
    for n in shape:
        nitems = builder.mul(nitems, n, flags=["nsw"])
    val = ir.Constant(ty, ir.Undefined)
    for name, v in (("meminfo", ir.Constant(ty.elements[f["meminfo"]], None)),
                    ("parent", ir.Constant(ty.elements[f["parent"]], None)),
                    ("nitems", nitems), ("itemsize", ir.Constant(i64, itemsize)),
                    ("data", data)):
        val = builder.insert_value(val, v, f[name])
    for name, vs in (("shape", shape), ("strides", strides)):
        for d, v in enumerate(vs):
            val = builder.insert_value(val, v, [f[name], d])
    return val


class StateRef(nbtypes.Type):  # type: ignore[misc]
    """A state tuple (a NamedTuple of tables) as compiled code holds it: one pointer.

    numba passes a tuple argument array by array, seven words each, so a call with the
    processor's, the manager's and an owner's states moved some 250 words and cost more
    than most rules it called (docs/design.md, "State and calls"). A state class
    registered with :func:`state_class` is typed as a ``StateRef`` instead: its tables'
    addresses and shapes are written once, into a buffer in the frame that crosses from
    Python, and every compiled call passes a pointer to that buffer. ``st.field`` loads
    that table's address and shape from it; a callee loads only what it uses. The buffer
    lives as long as the call from Python, which is as long as any compiled code runs.
    """

    def __init__(self, tuple_type: Any) -> None:
        self.tuple_type = tuple_type
        super().__init__(name=f"StateRef({tuple_type})")

    @property
    def key(self) -> Any:
        return self.tuple_type

    def field_offset(self, index: int) -> int:
        """Where field ``index``'s words start in the buffer."""
        return sum(_table_words(t) for t in self.tuple_type.types[:index])


def _table_words(aty: Any) -> int:
    """Words of one table in a state buffer: its address, its shape, and its strides
    unless it is C-contiguous."""
    return 1 + aty.ndim * (1 if aty.layout == "C" else 2)


_STATE_CLASSES: set[type] = set()


def state_class(cls: type) -> type:
    """Have compiled code take instances of the NamedTuple class ``cls`` (whose fields
    are tables) as :class:`StateRef`: one pointer a call."""
    _STATE_CLASSES.add(cls)
    if not config.DISABLE_JIT:
        from numba.extending import typeof_impl

        typeof_impl.register(cls)(_typeof_state)
    return cls


def _typeof_state(val: Any, c: Any) -> StateRef:
    from numba import typeof

    fields = [typeof(a, c.purpose) for a in val]
    for name, t in zip(type(val)._fields, fields):
        if not isinstance(t, nbtypes.Array):
            raise TypeError(f"{type(val).__name__}.{name} is not an array: {t}")
    return StateRef(nbtypes.NamedTuple(fields, type(val)))


@register_extension
def _register_state_ref() -> None:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.core.datamodel import models
    from numba.core.imputils import impl_ret_borrowed, lower_getattr_generic
    from numba.core.typing.templates import AttributeTemplate, infer_getattr
    from numba.extending import NativeValue, register_model, unbox

    i64 = ir.IntType(64)

    @register_model(StateRef)
    class StateRefModel(models.PrimitiveModel):  # type: ignore[misc]
        def __init__(self, dmm, fe_type):  # type: ignore[no-untyped-def]
            super().__init__(dmm, fe_type, i64.as_pointer())

    @infer_getattr
    class StateRefAttributes(AttributeTemplate):  # type: ignore[misc]
        key = StateRef

        def generic_resolve(self, typ, attr):  # type: ignore[no-untyped-def]
            tt = typ.tuple_type
            if attr in tt.fields:
                return tt.types[tt.fields.index(attr)]
            return None

    @lower_getattr_generic(StateRef)
    def state_ref_getattr(context, builder, typ, value, attr):  # type: ignore[no-untyped-def]
        tt = typ.tuple_type
        index = tt.fields.index(attr)
        aty = tt.types[index]
        k = typ.field_offset(index)

        def word() -> ir.Value:
            nonlocal k
            k += 1
            ld = builder.load(builder.gep(value, [ir.Constant(i64, k - 1)]), align=8)
            # The unbox writes the buffer before any compiled code runs, and nothing
            # writes it after: invariant, so a store to one table does not make LLVM
            # load another table's address and shape again.
            ld.set_metadata("invariant.load", builder.module.add_metadata([]))
            return ld
        res = _array_from_words(context, builder, aty, word, aty.layout != "C")
        return impl_ret_borrowed(context, builder, aty, res)

    @unbox(StateRef)
    def unbox_state_ref(typ, obj, c):  # type: ignore[no-untyped-def]
        """The tables' words, into a buffer in the frame of the call from Python."""
        tt = typ.tuple_type
        n = sum(_table_words(t) for t in tt.types)
        words = cgutils.alloca_once(c.builder, i64, size=max(n, 1))
        failed = cgutils.alloca_once_value(c.builder, cgutils.false_bit)
        fnty = ir.FunctionType(ir.IntType(32), [c.pyapi.pyobj, c.pyapi.voidptr])
        adapt = cgutils.get_or_insert_function(c.builder.module, fnty, "numba_adapt_ndarray")
        k = 0
        for i, aty in enumerate(tt.types):
            item = c.pyapi.tuple_getitem(obj, i)
            ary = c.context.make_array(aty)(c.context, c.builder)
            err = c.builder.call(adapt, (item, c.builder.bitcast(ary._getpointer(),
                                                                  c.pyapi.voidptr)))
            with c.builder.if_then(cgutils.is_not_null(c.builder, err), likely=False):
                c.builder.store(cgutils.true_bit, failed)
            vals = [c.builder.ptrtoint(ary.data, i64)]
            vals += cgutils.unpack_tuple(c.builder, ary.shape, aty.ndim)
            if aty.layout != "C":
                vals += cgutils.unpack_tuple(c.builder, ary.strides, aty.ndim)
            for v in vals:
                c.builder.store(v, c.builder.gep(words, [ir.Constant(i64, k)]))
                k += 1
        is_error = c.builder.load(failed)
        with c.builder.if_then(is_error, likely=False):
            c.pyapi.err_set_string("PyExc_TypeError", "a state table is not an ndarray")
        return NativeValue(words, is_error=is_error)


if not config.DISABLE_JIT:
    _register_state_ref()


def cacheable(*fns: object) -> bool:
    """Whether closures over ``fns`` may be cached: all of them are epcsim's own."""
    return all(getattr(f, "__module__", "").startswith("epcsim.") or
               getattr(getattr(f, "py_func", None), "__module__", "").startswith("epcsim.")
               for f in fns)


if config.DISABLE_JIT:
    def trailing_zeros(x: Any) -> int:
        """The number of zero bits below the lowest set bit of ``x`` (``x`` != 0)."""
        v = int(x)
        return (v & -v).bit_length() - 1
else:
    # One instruction (TZCNT); a loop over the bits of a VA page's bitmap word branches once
    # per bit, at a position no predictor can learn.
    from numba.cpython.unsafe.numbers import trailing_zeros as trailing_zeros
