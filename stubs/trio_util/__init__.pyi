# Types for the part of trio-util that dhcp4c uses: trio-util 0.8 ships no py.typed marker, and
# `mypy --strict` would otherwise see its names as Any. Signatures follow trio_util 0.8.0's
# _async_value.py, _async_bool.py and _compose_values.py.
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar, overload

_T = TypeVar("_T")
_T_OUT = TypeVar("_T_OUT")

class AsyncValue(Generic[_T]):
    def __init__(self, value: _T) -> None: ...
    @property
    def value(self) -> _T: ...
    @value.setter
    def value(self, x: _T) -> None: ...
    @overload
    async def wait_value(self, value: Callable[[_T], bool], *, held_for: float = 0.0) -> _T: ...
    @overload
    async def wait_value(self, value: _T, *, held_for: float = 0.0) -> _T: ...
    @overload
    async def wait_transition(self, value: Callable[[_T, _T], bool] = ...) -> tuple[_T, _T]: ...
    @overload
    async def wait_transition(self, value: _T) -> tuple[_T, _T]: ...
    def open_transform(
        self, function: Callable[[_T], _T_OUT]
    ) -> AbstractContextManager[AsyncValue[_T_OUT]]: ...

class AsyncBool(AsyncValue[bool]):
    def __init__(self, value: bool = False) -> None: ...

@overload
def compose_values(
    *, _transform_: Callable[[Any], _T_OUT], **value_map: AsyncValue[Any]
) -> AbstractContextManager[AsyncValue[_T_OUT]]: ...
@overload
def compose_values(**value_map: AsyncValue[Any]) -> AbstractContextManager[AsyncValue[Any]]: ...
