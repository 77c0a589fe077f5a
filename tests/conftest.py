import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = Path(os.environ.get("MENTOR_SHARED_BENCHMARKS", REPO.parent / "shared" / "benchmarks"))


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """``../shared/benchmarks`` (tests skip cleanly when it is absent)."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The bundled default model, converted and cached once."""
    from mentor.models import ensure_default_model

    return str(ensure_default_model(progress=False))
