"""kombu's filesystem transport in a folder: a Celery broker with no server (shared by the worker and the test)."""

from __future__ import annotations

from pathlib import Path


def broker_options(folder: Path) -> dict[str, object]:
    (folder / "queue").mkdir(parents=True, exist_ok=True)
    (folder / "processed").mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
