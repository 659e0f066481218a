"""mypy plugin: actor classes and handles with the types of the user's class.

Enable it in the project that uses vactor_cloud::

    # pyproject.toml
    [tool.mypy]
    plugins = ["vactor_cloud.mypy_plugin"]

What it adds, because Python's type system cannot say it:

* mypy ignores what a class decorator returns, so after ``@virtual_actor``
  it still sees the plain class. The plugin gives the class
  ``get_or_create(actor_id, <__init__'s parameters>) -> ActorHandle[Cls]``
  and ``get_or_create_async`` (the same, awaited), as the runtime does. A generic
  class's type variables are inferred from the arguments, as for ``Cls(...)``:
  ``Box.get_or_create("b", 3)`` is ``ActorHandle[Box[int]]``. A dataclass's or an attrs
  class's ``__init__`` (``@dataclass`` or ``@attrs.define`` under ``@virtual_actor``) is made by
  mypy's own plugin for it after this hook ran: its parameters are read when
  ``get_or_create`` is called or read on the class (``make = Tally.get_or_create``).
* ``ActorHandle[Cls].name`` becomes ``ActorMethod[<parameters of Cls.name
  without self>, <its return type>]``; an ``async def`` method's return type
  is its result (the runtime awaits it). A callable class attribute is a method
  too, as at runtime: a callable object (``add = Adder()``: its ``__call__``), a
  function assigned in the class body, a ``functools.partialmethod``. A name that is
  not a public method of ``Cls`` is an error naming the class.
* An overloaded method (``@typing.overload``) becomes
  ``_OverloadedActorMethod[<run's overloads>, <run_async's overloads>]``
  (``vactor_cloud.handle``, for type checkers only): one ``run`` item per
  overload item, as above, and one ``run_async`` item returning an
  ``ActorFuture`` of its result.
* The decorated name is an ``ActorClass`` at runtime, not the class: ``Account.cls`` is the
  class (``type[Account]``) and ``Account.make()`` (a classmethod, a staticmethod, a class
  variable or a method of the class reached through its decorated name) is an error, as it is
  an ``AttributeError`` at runtime; ``get_or_create``, ``cls`` and ActorClass's other
  attributes are not. (``cls.make()`` in a classmethod is the class's own: not checked.)
* A read-only method's ``run`` and ``run_async`` also take ``at_step: int`` (keyword), as the
  runtime does (``h.peek.run(at_step=3)``), unless the method has a parameter of that name.
  It is a ``_ReadOnlyActorMethod`` (``vactor_cloud.handle``, for type checkers only): its
  ``options`` have no writers' options (``idempotency_key``, timers), a ``ValueError`` at
  runtime. (An overloaded read-only method's ``options`` still have them.)
  Which methods are read-only is read from their decorators (or, for an assignment, a
  ``virtual_actor.readonly(...)`` call in its value) when the class is analysed and kept in
  the class's metadata (so in mypy's cache).

``ActorHandle[Any]`` (``get_actor``) keeps ``ActorMethod[..., Any]``: usable,
unchecked. Nothing here runs at runtime; the module imports only mypy.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ATTR_DEFINED
from mypy.expandtype import expand_type_by_instance
from mypy.maptype import map_instance_to_supertype
from mypy.nodes import (
    ARG_NAMED_OPT,
    ARG_POS,
    ARG_STAR,
    ARG_STAR2,
    Argument,
    AssignmentStmt,
    CallExpr,
    Decorator,
    Expression,
    FuncDef,
    MemberExpr,
    NameExpr,
    OverloadedFuncDef,
    RefExpr,
    Statement,
    TypeInfo,
    Var,
)
from mypy.plugin import AttributeContext, ClassDefContext, MethodSigContext, Plugin
from mypy.plugins.common import add_attribute_to_class, add_method_to_class
from mypy.subtypes import find_member
from mypy.types import (
    AnyType,
    CallableType,
    FunctionLike,
    Instance,
    Overloaded,
    Parameters,
    ProperType,
    Type,
    TypeOfAny,
    TypeType,
    get_proper_type,
)
from mypy.typevars import fill_typevars, fill_typevars_with_any

__all__ = ["VactorPlugin", "plugin"]

#: ``vc.virtual_actor`` and ``workflow.virtual_actor`` (Ray's spelling, with ``.step`` on methods)
_DECORATORS = frozenset({"vactor_cloud.actor.virtual_actor", "vactor_cloud.workflow.virtual_actor"})
_HANDLE = "vactor_cloud.handle.ActorHandle"
_METHOD = "vactor_cloud.handle.ActorMethod"
_OVERLOADED_METHOD = "vactor_cloud.handle._OverloadedActorMethod"
_READONLY_METHOD = "vactor_cloud.handle._ReadOnlyActorMethod"
_FUTURE = "vactor_cloud.future.ActorFuture"
_CONSTRUCTORS = ("get_or_create", "get_or_create_async")
#: the key of an actor class's ``TypeInfo.metadata`` this plugin writes: ``{"readonly": [names]}``
_METADATA = "vactor_cloud"
#: set in that metadata when ``__init__`` is made by another plugin's hook after this one's
#: (``@dataclass`` or ``@attrs.define`` under ``@virtual_actor``): the constructors' parameters
#: are then read at each call
_LATE_INIT = "late_init"
#: what ``ActorClass`` has at runtime besides dunders (the decorated name is one)
_ACTOR_CLASS_ATTRIBUTES = frozenset({*_CONSTRUCTORS, "cls", "definition", "methods", "name", "serializer"})


class VactorPlugin(Plugin):
    """The hooks; see the module docstring."""

    def get_class_decorator_hook_2(self, fullname: str) -> Callable[[ClassDefContext], bool] | None:
        return _add_constructors if fullname in _DECORATORS else None

    def get_class_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        owner, _, name = fullname.rpartition(".")
        info = self._type_info(owner)
        if info is not None and name in _CONSTRUCTORS:
            # ``Cls.get_or_create`` read (called or not: ``make = Cls.get_or_create``, a callback):
            # a late ``__init__``'s parameters, as ``get_method_signature_hook`` gives a call
            # made otherwise (on an instance). Else only direct calls had them.
            late = _late_init_definer(info, name)
            if late is not None:
                return lambda ctx: _constructor_attribute_with_late_init(ctx, late)
        if info is None or _METADATA not in info.metadata or name in _ACTOR_CLASS_ATTRIBUTES:
            return None  # (other plugins' hooks for the attribute, if any, then apply)
        return lambda ctx: _actor_class_attribute(ctx, info, name)

    def get_method_signature_hook(self, fullname: str) -> Callable[[MethodSigContext], FunctionLike] | None:
        owner, _, name = fullname.rpartition(".")
        if name not in _CONSTRUCTORS:
            return None
        info = self._type_info(owner)
        if info is None or not info.metadata.get(_METADATA, {}).get(_LATE_INIT):
            return None
        return lambda ctx: _constructor_with_late_init(ctx, info)

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        prefix, _, name = fullname.rpartition(".")
        if prefix == _HANDLE:
            return lambda ctx: _handle_attribute(ctx, name, self._type_info)
        return None

    def _type_info(self, fullname: str) -> TypeInfo | None:
        symbol = self.lookup_fully_qualified(fullname)
        return symbol.node if symbol is not None and isinstance(symbol.node, TypeInfo) else None


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls (any mypy version with these hooks)."""
    return VactorPlugin


# -- @virtual_actor on a class: get_or_create / get_or_create_async ----------------------------------


def _add_constructors(ctx: ClassDefContext) -> bool:
    info = ctx.cls.info
    handle = ctx.api.lookup_fully_qualified_or_none(_HANDLE)
    if handle is None or not isinstance(handle.node, TypeInfo):
        return False  # vactor_cloud.handle not analysed yet: ask to be called again
    handle_type = Instance(handle.node, [fill_typevars(info)])
    args = [Argument(Var("__actor_id"), ctx.api.named_type("builtins.str"), None, ARG_POS, pos_only=True)]
    args += _init_arguments(info)
    awaitable = ctx.api.named_type("typing.Coroutine", [AnyType(TypeOfAny.implementation_artifact)] * 2)
    for name in _CONSTRUCTORS:
        returns: Type = handle_type
        if name.endswith("_async"):
            returns = awaitable.copy_modified(args=[*awaitable.args[:2], handle_type])
        func = add_method_to_class(ctx.api, ctx.cls, name, args, returns, is_classmethod=True)
        # Kept in the symbol table but out of the class body, which the checker walks: else an
        # actor subclass's ``get_or_create`` (returning ``ActorHandle[Sub]``, taking ``Sub``'s
        # ``__init__`` parameters) is reported as an incompatible override of its base's.
        ctx.cls.defs.body.remove(func)
    existing = info.names.get("cls")
    if existing is None or existing.plugin_generated:  # (a class attribute of its own stays)
        add_attribute_to_class(
            ctx.api,
            ctx.cls,
            "cls",
            TypeType(fill_typevars_with_any(info)),
            is_classvar=True,
            overwrite_existing=True,
        )
    readonly = _readonly_methods(info) | _readonly_assignments(ctx.cls.defs.body)
    info.metadata[_METADATA] = {"readonly": sorted(readonly)}
    if _init_made_later(info):
        info.metadata[_METADATA][_LATE_INIT] = True
    return True


#: (the metadata key mypy's plugin sets on a class it will transform, the one it sets once done):
#: the dataclasses plugin's and the attrs plugin's (``@attrs.define``), which make ``__init__``
_INIT_MAKERS = (("dataclass_tag", "dataclass"), ("attrs_tag", "attrs"))


def _init_made_later(info: TypeInfo) -> bool:
    """Whether the class's ``__init__`` is yet to be made by the dataclasses or attrs plugin: its
    hook runs after this one (decorators are hooked top down, ``@virtual_actor`` first), so the
    class has none of its own yet and its base's (``object``'s: no parameters) was taken for it."""
    pending = any(tag in info.metadata and made not in info.metadata for tag, made in _INIT_MAKERS)
    return pending and "__init__" not in info.names


_ANY = AnyType(TypeOfAny.special_form)


def _late_init_definer(info: TypeInfo, name: str) -> TypeInfo | None:
    """The class of ``info``'s MRO that defines the constructor ``name``, if its ``__init__`` was
    made late (``_LATE_INIT``); else None."""
    definer = next((base for base in info.mro if name in base.names), None)
    if definer is None or not definer.metadata.get(_METADATA, {}).get(_LATE_INIT):
        return None
    return definer


def _constructor_attribute_with_late_init(ctx: AttributeContext, info: TypeInfo) -> Type:
    """``Cls.get_or_create`` read on the class, with a late ``__init__``'s parameters."""
    attribute = get_proper_type(ctx.default_attr_type)
    if not isinstance(attribute, CallableType):
        return ctx.default_attr_type
    return _with_late_init(attribute, info)


def _constructor_with_late_init(ctx: MethodSigContext, info: TypeInfo) -> FunctionLike:
    return _with_late_init(ctx.default_signature, info)


def _with_late_init(signature: FunctionLike, info: TypeInfo) -> FunctionLike:
    """``Cls.get_or_create``'s signature with the parameters of ``__init__`` as it is now (made
    since the decorator's hook ran): the actor id, then those."""
    if not isinstance(signature, CallableType) or not signature.arg_types:
        return signature
    arguments = _init_arguments(info)
    return signature.copy_modified(
        arg_types=[signature.arg_types[0], *(a.type_annotation or _ANY for a in arguments)],
        arg_kinds=[signature.arg_kinds[0], *(a.kind for a in arguments)],
        arg_names=[signature.arg_names[0], *(a.variable.name for a in arguments)],
    )


def _actor_class_attribute(ctx: AttributeContext, info: TypeInfo, name: str) -> Type:
    """``Account.name``: an error when ``Account`` is the decorated name (an ``ActorClass``)."""
    expr = ctx.context.expr if isinstance(ctx.context, MemberExpr) else None
    if isinstance(expr, RefExpr) and expr.node is info and not name.startswith("__"):
        ctx.api.fail(
            f'Actor class "{info.name}" has no attribute "{name}" (the decorated name is an '
            f"ActorClass: use {info.name}.cls.{name}, the class itself)",
            ctx.context,
            code=ATTR_DEFINED,
        )
    return ctx.default_attr_type


def _readonly_methods(info: TypeInfo) -> set[str]:
    """The names of the class's read-only methods, its bases' included, as the runtime finds
    them: a method marked ``@virtual_actor.readonly`` where it is defined last in the MRO."""
    readonly: set[str] = set()
    for base in reversed(info.mro):
        # A base loaded from mypy's cache has no decorator expressions: its metadata tells.
        cached = set(base.metadata.get(_METADATA, {}).get("readonly", ()))
        for name, symbol in base.names.items():
            node = symbol.node
            if isinstance(node, OverloadedFuncDef):
                node = node.impl
            if name in cached or (isinstance(node, Decorator) and _marks_readonly(node.original_decorators)):
                readonly.add(name)
            elif isinstance(node, FuncDef | Decorator | Var):
                readonly.discard(name)
    return readonly


def _readonly_assignments(body: list[Statement]) -> set[str]:
    """The names of the class body's assignments whose value is marked read-only on the way:
    ``peek = functools.partialmethod(vc.virtual_actor.readonly(_peek), 10)`` (a mark counts on
    the function a partial or partialmethod wraps, as at runtime) or ``peek = readonly(f)``."""
    names: set[str] = set()
    for statement in body:
        if not isinstance(statement, AssignmentStmt) or not _calls_readonly(statement.rvalue):
            continue
        names.update(lvalue.name for lvalue in statement.lvalues if isinstance(lvalue, NameExpr))
    return names


def _calls_readonly(expr: Expression) -> bool:
    """Whether ``expr`` is a call of ``virtual_actor.readonly``, or of anything given one."""
    if not isinstance(expr, CallExpr):
        return False
    return _marks_readonly([expr.callee]) or any(_calls_readonly(arg) for arg in expr.args)


def _marks_readonly(decorators: list[Expression]) -> bool:
    """Whether one of ``decorators`` is ``virtual_actor.readonly`` (either spelling)."""
    return any(
        isinstance(d, MemberExpr)
        and d.name == "readonly"
        and isinstance(d.expr, RefExpr)
        and d.expr.fullname in _DECORATORS
        for d in decorators
    )


def _init_arguments(info: TypeInfo) -> list[Argument]:
    """``__init__``'s parameters without ``self``; ``*args: Any, **kwargs: Any`` when unknown."""
    init = info.get_method("__init__")
    signature = init.type if isinstance(init, FuncDef) else None
    if isinstance(init, FuncDef) and init.info.fullname == "builtins.object":
        return []
    own = fill_typevars(info)  # (a TupleType for a NamedTuple: not mapped)
    if isinstance(init, FuncDef) and init.info is not info and isinstance(own, Instance) and signature:
        # Inherited: the base's type variables as the class binds them (``class IntBox(Box[int])``).
        signature = expand_type_by_instance(signature, map_instance_to_supertype(own, init.info))
    if not isinstance(signature, CallableType) or not signature.arg_kinds:
        anything = AnyType(TypeOfAny.special_form)
        if isinstance(init, FuncDef) and init.arguments:
            # An unannotated __init__: its parameters, each Any.
            return [Argument(Var(a.variable.name), anything, None, a.kind) for a in init.arguments[1:]]
        return [
            Argument(Var("args"), anything, None, ARG_STAR),
            Argument(Var("kwargs"), anything, None, ARG_STAR2),
        ]
    arguments = []
    for name, kind, typ in zip(
        signature.arg_names[1:], signature.arg_kinds[1:], signature.arg_types[1:], strict=True
    ):
        arguments.append(Argument(Var(name or "_"), typ, None, kind))
    return arguments


# -- ActorHandle[Cls].name -> ActorMethod[P, R] ----------------------------------------------------


def _handle_attribute(ctx: AttributeContext, name: str, type_info: Callable[[str], TypeInfo | None]) -> Type:
    handle = get_proper_type(ctx.type)
    if not isinstance(handle, Instance) or not handle.args or handle.type.get(name) is not None:
        return ctx.default_attr_type  # the handle's own attributes (actor_id, history, ...)
    actor = get_proper_type(handle.args[0])
    if not isinstance(actor, Instance):
        return ctx.default_attr_type  # ActorHandle[Any] from get_actor: untyped on purpose
    method = None if name.startswith("_") else _method_node(actor.type, name)
    member = find_member(name, actor, actor) if method is not None else None
    signature = get_proper_type(member) if member is not None else None
    if isinstance(method, Var):
        # A callable class attribute: what calling it on an instance calls, or no method.
        signature = _callable_attribute(signature)
        if signature is None:
            method = None
    if method is None:
        ctx.api.fail(
            f'Actor class "{actor.type.name}" has no method "{name}"', ctx.context, code=ATTR_DEFINED
        )
        return AnyType(TypeOfAny.from_error)
    readonly = name in actor.type.metadata.get(_METADATA, {}).get("readonly", ())
    if readonly:
        signature = _with_at_step(ctx, signature)
    if isinstance(signature, Overloaded):
        return _overloaded_method(ctx, method, signature, type_info)
    if not isinstance(signature, CallableType):
        return ctx.default_attr_type  # otherwise unusual: unchecked
    returns = signature.ret_type
    if _is_async(method):
        returns = _coroutine_result(returns)
    # A generic method's type variables go with its parameters: ``run`` binds them per call.
    parameters = Parameters(
        signature.arg_types, signature.arg_kinds, signature.arg_names, variables=signature.variables
    )
    default = get_proper_type(ctx.default_attr_type)
    if not isinstance(default, Instance) or default.type.fullname != _METHOD:
        return ctx.default_attr_type
    read_only_method = type_info(_READONLY_METHOD) if readonly else None
    if read_only_method is not None:
        return Instance(read_only_method, [parameters, returns])
    return default.copy_modified(args=[parameters, returns])


def _with_at_step(ctx: AttributeContext, signature: ProperType | None) -> ProperType | None:
    """A read-only method's signature (each overload item's) with ``at_step: int = ...``, the
    runtime's option (``run(at_step=N)``), unless it has a parameter of that name itself."""
    if isinstance(signature, Overloaded):
        return Overloaded([_item_with_at_step(ctx, item) for item in signature.items])
    if isinstance(signature, CallableType):
        return _item_with_at_step(ctx, signature)
    return signature


def _item_with_at_step(ctx: AttributeContext, item: CallableType) -> CallableType:
    if "at_step" in item.arg_names:
        return item
    at = len(item.arg_kinds) - (item.arg_kinds[-1:] == [ARG_STAR2])  # before a **kwargs
    step = ctx.api.named_generic_type("builtins.int", [])
    return item.copy_modified(
        arg_types=[*item.arg_types[:at], step, *item.arg_types[at:]],
        arg_kinds=[*item.arg_kinds[:at], ARG_NAMED_OPT, *item.arg_kinds[at:]],
        arg_names=[*item.arg_names[:at], "at_step", *item.arg_names[at:]],
    )


def _overloaded_method(
    ctx: AttributeContext,
    method: FuncDef | Decorator | OverloadedFuncDef | Var,
    signature: Overloaded,
    type_info: Callable[[str], TypeInfo | None],
) -> Type:
    """``_OverloadedActorMethod[<run's overloads>, <run_async's overloads>]``: per overload item
    of the method, one of ``run`` (its parameters without self, its return type; an ``async def``
    item's result, as the runtime awaits it) and one of ``run_async`` (an ``ActorFuture`` of it)."""
    overloaded, future = type_info(_OVERLOADED_METHOD), type_info(_FUTURE)
    if overloaded is None or future is None:
        return ctx.default_attr_type  # not expected: vactor_cloud.handle defines and imports both
    run: list[CallableType] = []
    run_async: list[CallableType] = []
    for item, is_async in zip(signature.items, _async_items(method, len(signature.items)), strict=True):
        returns = _coroutine_result(item.ret_type) if is_async else item.ret_type
        # No link to the actor's method: messages print no ``self``, fresh or from mypy's cache.
        run.append(item.copy_modified(ret_type=returns, name="run", definition=None))
        run_async.append(
            item.copy_modified(ret_type=Instance(future, [returns]), name="run_async", definition=None)
        )
    return Instance(overloaded, [Overloaded(run), Overloaded(run_async)])


def _async_items(node: FuncDef | Decorator | OverloadedFuncDef | Var, count: int) -> list[bool]:
    """Which of the ``count`` overload items of ``node`` are ``async def``."""
    if isinstance(node, OverloadedFuncDef) and len(node.items) == count:
        return [(item.func if isinstance(item, Decorator) else item).is_coroutine for item in node.items]
    return [_is_async(node)] * count


def _method_node(info: TypeInfo, name: str) -> FuncDef | Decorator | OverloadedFuncDef | Var | None:
    """The public method ``name`` of the actor class, as the runtime would find it (a class
    attribute ``Var`` is one if its type is callable: see ``_callable_attribute``)."""
    symbol = info.get(name)
    node = symbol.node if symbol is not None else None
    if isinstance(node, Var):
        # Assigned in the class body (``add = Adder()``, ``peek = functools.partialmethod(...)``,
        # ``scale = some_function``): the runtime takes any callable class attribute; one set
        # on ``self`` only (``self.owner = ...``) is no method.
        declared = get_proper_type(node.type)
        static = isinstance(declared, Instance) and declared.type.fullname in _NOT_METHODS
        static = static or node.is_staticmethod or node.is_classmethod or node.is_property
        return node if node.is_initialized_in_class and not static else None
    if isinstance(node, FuncDef) and not (node.is_static or node.is_class):
        return node
    # A property is no method at runtime (not callable on the class): ``h.prop`` is an AttributeError.
    if isinstance(node, Decorator):
        func = node.func
        return None if func.is_static or func.is_class or func.is_property else node
    if isinstance(node, OverloadedFuncDef) and not (node.is_static or node.is_class or node.is_property):
        return node
    return None


#: callable class attributes the runtime does not take for methods
_NOT_METHODS = frozenset({"builtins.staticmethod", "builtins.classmethod"})


def _callable_attribute(member: ProperType | None) -> ProperType | None:
    """The signature a handle calls for a class attribute of type ``member`` (as read on an
    instance): a function's (``self`` bound), a callable object's ``__call__`` (no ``self``),
    a ``functools.partialmethod``'s bound result (``__get__``); ``Any`` stays ``Any``
    (unchecked); None for what the runtime takes for no method: a value not callable
    (``limit = 3``), a class, a ``staticmethod(f)`` or ``classmethod(f)``."""
    if isinstance(member, CallableType | Overloaded):
        return None if member.is_type_obj() else member
    if isinstance(member, AnyType):
        return member
    if not isinstance(member, Instance) or member.type.fullname in _NOT_METHODS:
        return None
    call = find_member("__call__", member, member)
    if call is not None:
        return get_proper_type(call)
    if member.type.fullname == "functools.partialmethod":
        get = get_proper_type(find_member("__get__", member, member))
        if isinstance(get, CallableType):
            return get_proper_type(get.ret_type)
    return None


def _is_async(node: FuncDef | Decorator | OverloadedFuncDef | Var) -> bool:
    func = node.func if isinstance(node, Decorator) else node
    return isinstance(func, FuncDef) and func.is_coroutine


def _coroutine_result(typ: Type) -> Type:
    proper: ProperType = get_proper_type(typ)
    if isinstance(proper, Instance) and proper.type.fullname == "typing.Coroutine" and len(proper.args) == 3:
        return proper.args[2]
    return typ
