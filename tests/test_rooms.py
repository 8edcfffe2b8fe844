"""The package's rooms and their one-way arrows (docs/ARCHITECTURE.md): the framework never imports
the shapes lab; the lab reaches the framework's registries as a plugin, by name."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fastvideo"
LAB = PACKAGE / "shapes"


def imported_modules(path: pathlib.Path) -> list[str]:
    """Every module named by an import statement of ``path`` (module level or inside functions)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_framework_module_imports_the_shapes_lab():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if LAB in path.parents:
            continue
        offenders += [f"{path.relative_to(PACKAGE)} imports {name}" for name in imported_modules(path)
                      if name == "fastvideo.shapes" or name.startswith("fastvideo.shapes.")]
    assert offenders == []


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fastvideo.shapes.verifier import verify\n    import fastvideo.shapes\n")
    assert {"fastvideo.shapes.verifier", "fastvideo.shapes"} <= set(imported_modules(probe))


PROBE = """
import sys
import fastvideo.training.trainer, fastvideo.rewards, fastvideo.models, fastvideo.inference, fastvideo.config
import fastvideo.data, fastvideo.export, fastvideo.distributed, fastvideo.training.checkpoint
print(",".join(sorted(m for m in sys.modules if m.startswith("fastvideo.shapes"))))
"""


def test_importing_the_framework_loads_no_lab_module():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_lab_rewards_resolve_by_name_through_the_plugin_entry_point():
    from fastvideo.rewards import build_reward

    reward = build_reward("shapes_verifier", mode="binary")
    assert type(reward).__module__ == "fastvideo.shapes.rewards"
    assert build_reward("shapes_motion_verifier").input_kind == "video"
