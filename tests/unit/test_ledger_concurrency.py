"""Several processes writing the ledger at once lose nothing, and readers never see
half a file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from stagecraft.ledger import Ledger, PhaseHostRecord, Release

WRITERS = 4
WRITES_EACH = 12
SHARED = "20261121T100000Z-3f9c2ab"


def _writer(path: str, worker: int) -> None:
    ledger = Ledger(Path(path))
    for n in range(WRITES_EACH):
        # One new release per write, and one read-modify-write of a shared release:
        # without the lock, two writers that read the same version lose one update.
        ledger.record(Release(id=f"20261121T1{worker:01d}{n:02d}00Z-aaaaaaa",
                              environment="production"))

        def add_host(release: Release, key: str = f"w{worker}-{n}") -> None:
            release.phase("rollout").hosts[key] = PhaseHostRecord(status="ok")

        ledger.update(SHARED, add_host)


def _reader(path: str, stop, errors) -> None:
    ledger = Ledger(Path(path))
    reads = 0
    while not stop.is_set() or reads == 0:
        try:
            ledger.load()
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            errors.put(repr(error))
            return
        reads += 1


def test_concurrent_writers_lose_no_update_and_readers_see_whole_files(tmp_path: Path) -> None:
    ledger = Ledger.for_project(tmp_path)
    ledger.record(Release(id=SHARED, environment="production"))
    context = multiprocessing.get_context("fork")
    stop, errors = context.Event(), context.Queue()
    reader = context.Process(target=_reader, args=(str(ledger.path), stop, errors))
    reader.start()
    writers = [context.Process(target=_writer, args=(str(ledger.path), worker))
               for worker in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    stop.set()
    reader.join(timeout=60)

    assert [p.exitcode for p in writers] == [0] * WRITERS
    assert reader.exitcode == 0
    assert errors.empty(), errors.get()
    releases = ledger.releases("production")
    assert len(releases) == 1 + WRITERS * WRITES_EACH
    shared = ledger.get(SHARED)
    assert sorted(shared.phase("rollout").hosts) == sorted(
        f"w{w}-{n}" for w in range(WRITERS) for n in range(WRITES_EACH))
