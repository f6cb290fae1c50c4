"""Each request costs what AWS's does, not what moto's server spends around it.

Two kinds of per-request work in moto 5.2.5 that AWS has no counterpart of. A profile of
the runtime bench put a third of the emulator's time in them, with the third below.

1. Dispatch. To find a request's service, moto lists its own package directory, a
   directory check per service (about 150), on every request. The services are fixed for
   the process's life: the patch lists them once.
2. Condition expressions. Each one is parsed from its text twice per item (once to check
   the names it uses, once to evaluate it), and a transaction of ten claims parses the
   same expression twenty times. The patch keeps a parse by its expression, names and
   values, and answers with it, the names it found included. The tree is only read when
   evaluated, so sharing it changes no answer; a text that fails to parse is not kept and
   fails again.

The third, moto's development server (a connection and a thread per request, an access line
per request), is not patched but replaced: emulation/emulator.py serves moto with waitress.

The patch checks the moto version, so an upgrade fails loudly instead of silently.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from typing import Any

from moto import backends
from moto.dynamodb.comparisons import ConditionExpressionParser

from emulation.moto_version import require_patched_moto

_applied = False
PARSES_KEPT = 1024
# (expression, names, values) -> (tree, names found, values found), oldest first.
_parses: OrderedDict[tuple[str, str, str], tuple[Any, list[str], list[str]]] = OrderedDict()


def _kept_parse(parse: Any) -> Any:
    @functools.wraps(parse)
    def parse_once(self: ConditionExpressionParser) -> Any:
        if not self.condition_expression:
            return parse(self)
        key = (
            self.condition_expression,
            json.dumps(self.expression_attribute_names, sort_keys=True),
            json.dumps(self.expression_attribute_values, sort_keys=True),
        )
        kept = _parses.get(key)
        if kept is None:
            tree = parse(self)  # a text that does not parse raises here and is not kept
            kept = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            _parses[key] = kept
            if len(_parses) > PARSES_KEPT:
                _parses.popitem(last=False)
        else:
            self.expr_attr_names_found.extend(kept[1])
            self.expr_attr_values_found.extend(kept[2])
        return kept[0]

    return parse_once


def apply() -> None:
    global _applied
    if _applied:
        return
    require_patched_moto(__name__, "re-check moto's service dispatch and its condition parser")
    services = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: services
    ConditionExpressionParser.parse = _kept_parse(ConditionExpressionParser.parse)  # type: ignore[method-assign]
    _applied = True
