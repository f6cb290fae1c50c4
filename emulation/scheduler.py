"""Stands in for EventBridge Scheduler in the embedded world: a `watchdog.tick` message on
the watchdog's queue every `watchdog_tick_s`, sent as the scheduler's own principal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import structlog

from core.aws import Clients
from core.principals import Principal
from core.service_process import run_service
from core.settings import Settings, get_settings
from queues.ticks import tick_event
from queues.topology import Stage, build_topology

log = structlog.get_logger()


class Scheduler:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stop_event = threading.Event()
        self.sqs = Clients(Principal.SCHEDULER, settings)("sqs")
        self.queue = build_topology(settings).queue(Stage.WATCHDOG).name
        self.url: str | None = None

    def tick(self) -> None:
        if self.url is None:
            self.url = self.sqs.get_queue_url(QueueName=self.queue)["QueueUrl"]
        event = tick_event(datetime.now(UTC), self.settings.watchdog_tick_s)
        self.sqs.send_message(QueueUrl=self.url, MessageBody=event.model_dump_json())

    def run(self) -> None:
        log.info("scheduler started", every_s=self.settings.watchdog_tick_s, queue=self.queue)
        while not self.stop_event.wait(self.settings.watchdog_tick_s):
            try:
                self.tick()
            except Exception as exc:  # the emulator may be away; the next tick tries again
                log.warning("tick not sent", error=str(exc)[:300])


def main() -> None:
    settings = get_settings()
    run_service("scheduler", Scheduler(settings), settings.launcher_pid)


if __name__ == "__main__":
    main()
