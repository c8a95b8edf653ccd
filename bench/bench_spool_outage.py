"""1,000,000 events while the backend is down, with and without the durable spool: memory and disk stay bounded.

    python bench/bench_spool_outage.py

Without the spool the exporter's buffer fills (``max_queue_size``) and the rest is dropped and counted, so the
traced memory peak is the buffers' worth. With it, what does not fit stays on disk, up to ``spool_max_bytes``;
past it the oldest events go (counted as ``spool_full``): the file stays within the limit, and memory stays
what it is without the spool. Each case runs in a fresh process; memory is the process's peak RSS (tracing
allocations would slow the router enough to change what is measured).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import evlog
from evlog import Batch, Exporter, ExportResult

EVENTS = 1_000_000
MAX_BYTES = 32 * 1024 * 1024


class Down(Exporter):
    """A backend that is down: every batch is to be retried."""

    name = "down"

    def export(self, batch: Batch) -> ExportResult:
        return ExportResult.retry("503 down")


def run(spool_dir: str | None) -> dict[str, object]:
    evlog.configure(
        exporters=[Down()],
        spool_dir=spool_dir,
        spool_max_bytes=MAX_BYTES,
        retry_deadline=3600,
        flush_interval=0.1,
    )
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(EVENTS):
        evlog.log_event("signup", data={"plan": "pro", "i": i})
    evlog.flush(2.0)
    time.sleep(1.2)  # a benchmark, not a test: let the once-a-second limit check run
    stats = evlog.stats()
    files = sum(p.stat().st_size for p in Path(spool_dir).iterdir()) if spool_dir else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    evlog.shutdown(timeout=0.5)
    return {
        "rss_growth_mb": (peak - baseline) / 1024,
        "files": files,
        "dropped": dict(stats["down"].dropped),
        "spool": dict(stats.spool),
    }


def _case(spool: bool) -> dict[str, object]:
    code = "import json, sys; sys.path.insert(0, 'bench'); import bench_spool_outage as b; "
    code += f"print(json.dumps(b.run({'sys.argv[1]' if spool else 'None'})))"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    print(f"evlog {evlog.__version__}, Python {sys.version.split()[0]}, {EVENTS:,} events, backend down\n")
    plain, spooled = _case(False), _case(True)
    print(f"without the spool: peak RSS growth {plain['rss_growth_mb']:6.1f} MB; dropped {plain['dropped']}")
    growth = float(spooled["rss_growth_mb"])  # type: ignore[arg-type]
    ratio = growth / float(plain["rss_growth_mb"])  # type: ignore[arg-type]
    print(f"with the spool:    peak RSS growth {growth:6.1f} MB ({ratio:.2f}x); dropped {spooled['dropped']}")
    size = int(spooled["files"])  # type: ignore[call-overload]
    held = int(spooled["spool"]["bytes"])  # type: ignore[index]
    print(
        f"                   spool files {size / 1e6:.1f} MB for spool_max_bytes={MAX_BYTES / 1e6:.1f} MB "
        f"({size / MAX_BYTES:.2f}x); events counted in it {held / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
