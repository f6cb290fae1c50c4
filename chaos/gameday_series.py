"""A series of game-day scenarios, played one after another on as few worlds as they allow.

A world takes some 25 CPU-seconds and a quarter of a minute to start, while a scenario is
mostly waiting on alarm periods: a team's game day runs fault after fault on one
environment, and so does this. Scenarios that ask for the same world (the same functions
and settings) share one; each starts once its functions run cleanly (`wait_quiet`), is
judged on what happened since its own faults, and tidies what it wrote that no restore
would undo. A scenario that did not end RESOLVED and passed leaves its world behind: an
escalated incident holds its function's alerts for the rest of its window (a person has
it), and a failed one may have left anything, so the next scenario starts on a fresh world.
Those expected to end otherwise than RESOLVED are played last in their world for that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chaos.gameday import GameDay, GameDayResult, Scenario, fresh_world
from incidents.lifecycle import IncidentStatus


def world_overrides(scenario: Scenario, watch_window_s: float | None) -> dict[str, Any]:
    """The settings of the world a scenario asks for. `watch_window_s` watches each
    recovered fix that long (the settings' default otherwise); a scenario's own settings
    win, so one whose point is the watch (a relapse) keeps its window."""
    return {
        "target_count": scenario.targets,
        **({} if watch_window_s is None else {"watch_window_s": watch_window_s}),
        **scenario.settings,
    }


def by_world(
    scenarios: list[Scenario], watch_window_s: float | None
) -> list[tuple[dict[str, Any], list[Scenario]]]:
    """The scenarios grouped by the world they ask for, in the order first asked; within a
    world, in the order given, with those expected to end otherwise than RESOLVED last."""
    groups: dict[str, tuple[dict[str, Any], list[Scenario]]] = {}
    for scenario in scenarios:
        overrides = world_overrides(scenario, watch_window_s)
        key = json.dumps(overrides, sort_keys=True, default=str)
        groups.setdefault(key, (overrides, []))[1].append(scenario)
    for _, group in groups.values():
        group.sort(key=lambda s: s.expect.final_status != IncidentStatus.RESOLVED)
    return list(groups.values())


def play_scenarios(
    paths: list[Path], log: Callable[[str], None], watch_window_s: float | None = None
) -> Iterator[GameDayResult]:
    """Each scenario's result, as it is judged (grouped by world, so not always in the
    order given). Every file is read before the first world starts."""
    scenarios = [Scenario.load(path) for path in paths]
    for overrides, group in by_world(scenarios, watch_window_s):
        waiting = list(group)
        while waiting:
            with fresh_world(overrides, log) as settings:
                while waiting:
                    scenario = waiting.pop(0)
                    log(f"scenario {scenario.name}")
                    game = GameDay(scenario, settings, log)
                    result = game.run()
                    yield result
                    if not (result.passed and result.final_status == "RESOLVED"):
                        if waiting:
                            log(f"{result.scenario} left its world behind: the next starts anew")
                        break
                    game.tidy()
                    if waiting:
                        log("the next scenario on this world, once its functions run cleanly")
