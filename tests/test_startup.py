"""Start-up cost: ``import iteration_heads`` and ``iteration-heads --help`` load neither torch nor
TransformerLens (each costs seconds); names are imported from their subpackage on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import iteration_heads

HEAVY = ("torch", "transformer_lens", "iteration_heads.training", "iteration_heads.experiments")


def imported_by(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    modules = json.loads(proc.stdout.splitlines()[-1])
    return [name for name in HEAVY if name in modules]


def test_importing_the_package_loads_nothing_heavy() -> None:
    assert imported_by("import iteration_heads") == []


def test_help_and_a_misspelt_command_load_nothing_heavy() -> None:
    code = (
        "import contextlib, io\n"
        "from iteration_heads.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0 and 'COMMAND' in out.getvalue()\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert main(['detec']) == 2 and main(['detect', '--n-probes', 'x']) == 2\n"
    )
    assert imported_by(code) == []


def test_exported_names_resolve_on_first_use() -> None:
    from iteration_heads import detect
    from iteration_heads.detection import detect as defined

    assert detect is defined
    assert set(iteration_heads.__all__) <= set(dir(iteration_heads))
    for name in iteration_heads.__all__:
        assert getattr(iteration_heads, name) is not None
    assert iteration_heads.viz.__name__ == "iteration_heads.viz"
    try:
        iteration_heads.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("an unknown name resolved")
