"""Redrives started from the console run in the background; their pages follow them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from queues.dlq import RedriveResult


class JobView(BaseModel):
    job_id: str  # the redrive's id, as in the audit trail
    queue: str
    destination: str
    moved: int
    total: int | None
    done: bool
    cancelling: bool
    result: RedriveResult | None
    error: str | None


@dataclass
class Job:
    job_id: str
    queue: str
    destination: str
    moved: int = 0
    total: int | None = None
    result: RedriveResult | None = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    # Set by a person's cancel: the mover stops between two messages.
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            queue=self.queue,
            destination=self.destination,
            moved=self.moved,
            total=self.total,
            done=self.finished.is_set(),
            cancelling=self.cancel.is_set() and not self.finished.is_set(),
            result=self.result,
            error=self.error,
        )


Progress = Callable[[int, int | None], None]
Work = Callable[[Progress, threading.Event], RedriveResult]


class Jobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def start(self, job_id: str, queue: str, destination: str, work: Work) -> Job:
        job = Job(job_id, queue, destination)

        def progress(moved: int, total: int | None) -> None:
            job.moved, job.total = moved, total

        def run() -> None:
            try:
                job.result = work(progress, job.cancel)
            except Exception as exc:  # shown on the job's page; nothing is half-deleted
                job.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:
                job.finished.set()

        with self.lock:
            self.jobs[job.job_id] = job
        threading.Thread(target=run, name=f"redrive-{job.job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)
