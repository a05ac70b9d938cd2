"""`driftrec adapters list` says which version the registry calls current."""

from __future__ import annotations

from pathlib import Path


def test_adapters_list_says_what_the_registry_calls_current(tmp_path: Path, capsys) -> None:
    """A version the registry points at is named even when it has no record (a forged
    announcement swapped in by a scorer set it), and with no version at all."""
    from driftrec.cli import main
    from driftrec.state import MemoryStateStore

    path = tmp_path / "state.json"
    st = MemoryStateStore(str(path))
    st.set_current("forged-bias")
    st.close()
    assert main(["adapters", "list", "--state", f"file://{path}"]) == 0
    out = capsys.readouterr().out
    assert "forged-bias" in out and "not a registered version" in out
    st = MemoryStateStore(str(path))
    st.register({"version": "v1", "created_ts": 0, "window": {"n_events": 3}, "metrics": {}})
    st.set_current("v1")
    st.close()
    assert main(["adapters", "list", "--state", f"file://{path}"]) == 0
    out = capsys.readouterr().out
    assert "current: v1" in out and "* v1" in out
    empty = tmp_path / "empty.json"
    assert main(["adapters", "list", "--state", f"file://{empty}"]) == 0
    assert "current: base" in capsys.readouterr().out
