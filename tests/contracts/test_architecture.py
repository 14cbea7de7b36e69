"""The package keeps the shape docs/architecture.md gives it.

Every module's imports (module level and inside functions, read with ``ast``) are held to the
layer table in that document: imports point down or within a layer, never up, except where
the table names the exception and its reason; no import cycle between modules; ``io`` never
imports ``simulate``; ``kernels/`` imports nothing from dpcstem. And no module outside
``dpcstem/io/`` opens a file for writing: files are written only in ``dpcstem.io``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _sources():
    """{dotted module name: (path, package parts)} of dpcstem and the kernels installed as dpcstem.kernels."""
    out = {}
    for base, prefix in ((ROOT / "dpcstem", ["dpcstem"]), (ROOT / "kernels", ["dpcstem", "kernels"])):
        for path in sorted(base.rglob("*.py")):
            parts = prefix + list(path.relative_to(base).with_suffix("").parts)
            package = parts[:-1]
            if parts[-1] == "__init__":
                parts = package = parts[:-1]
            out[".".join(parts)] = (path, package)
    return out


SOURCES = _sources()


def _imports(path: Path, package: list[str]):
    """(imported dotted module, line) for each dpcstem import in the file, function-level ones included.

    ``from pkg import name`` counts as importing the submodule ``pkg.name`` where one exists,
    else the package ``pkg`` itself.
    """
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in SOURCES else module for a in node.names]
        else:
            continue
        for target in targets:
            if target == "dpcstem" or target.startswith("dpcstem."):
                while target not in SOURCES:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                yield target, node.lineno


def _unit(module: str) -> str:
    """The top-level part of dpcstem a module belongs to ('dpcstem' for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dpcstem"


def _table():
    """(layer of each unit, the allowed exceptions {(from, to): reason}) from the document's fenced tables."""
    text = DOC.read_text()
    layers_block = re.search(r"```text layers\n(.*?)```", text, re.S)
    exceptions_block = re.search(r"```text exceptions\n(.*?)```", text, re.S)
    assert layers_block and exceptions_block, f"{DOC} lost its 'layers' or 'exceptions' table"
    layers = {}
    for line in layers_block.group(1).splitlines():
        number, _, names = line.partition(":")
        for name in names.split():
            assert name not in layers, f"{name} is in two layers of {DOC}"
            layers[name] = int(number)
    exceptions = {}
    for line in exceptions_block.group(1).splitlines():
        match = re.fullmatch(r"(\S+) -> (\S+): (.+)", line.strip())
        assert match, f"unreadable exception line in {DOC}: {line!r} (write 'a -> b: reason')"
        exceptions[match.group(1), match.group(2)] = match.group(3)
    writers = {}
    for line in re.search(r"```text writers\n(.*?)```", text, re.S).group(1).splitlines():
        module, _, reason = line.partition(": ")
        assert module in SOURCES and reason, f"unreadable writer line in {DOC}: {line!r} (write 'module: reason')"
        writers[module] = reason
    return layers, exceptions, writers


LAYERS, EXCEPTIONS, WRITERS = _table()
EDGES = sorted({(module, target, line) for module, (path, package) in SOURCES.items()
                for target, line in _imports(path, package) if target != module})


def _where(module, line):
    return f"{SOURCES[module][0].relative_to(ROOT)}:{line}"


def test_every_part_of_the_package_has_a_layer():
    missing = sorted({_unit(m) for m in SOURCES} - set(LAYERS))
    assert not missing, f"give these a layer in the table of {DOC.name}: {missing}"


def test_imports_point_down_or_within_a_layer():
    upward, used = [], set()
    for module, target, line in EDGES:
        a, b = _unit(module), _unit(target)
        if a == b or LAYERS[b] <= LAYERS[a]:
            continue
        if (a, b) in EXCEPTIONS:
            used.add((a, b))
        else:
            upward.append(f"{_where(module, line)}: {a} (layer {LAYERS[a]}) imports {target} (layer {LAYERS[b]})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)
    stale = sorted(set(EXCEPTIONS) - used)
    assert not stale, f"exceptions in {DOC.name} that no import needs any more (remove them): {stale}"


def test_io_never_imports_simulate_and_the_kernels_import_nothing_of_dpcstem():
    wrong = [f"{_where(m, line)}: {m} imports {t}" for m, t, line in EDGES
             if (_unit(m) == "io" and _unit(t) == "simulate") or (_unit(m) == "kernels" and _unit(t) != "kernels")]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {}
    for module, target, _ in EDGES:
        # a package's __init__ re-exports its modules: a module importing from its own package's
        # __init__ is a cycle; the __init__ importing its own modules is not.
        graph.setdefault(module, set()).add(target)
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# -- writing files ---------------------------------------------------------------------------

WRITE_CALLS = {"save", "savez", "savez_compressed", "savetxt", "savefig", "tofile", "write_text", "write_bytes",
               "imwrite", "imsave", "to_zarr", "to_hdf5", "mkdir", "touch", "unlink", "rename", "replace"}


def _mode(call: ast.Call, position: int):
    for keyword in call.keywords:
        if keyword.arg == "mode":
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def _writes(tree):
    """(line, what) for each call in the tree that creates, writes or removes a file."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if node.args and ast.unparse(node.args[0]) == "os.devnull":
            continue  # output sent nowhere is no file
        if name == "open" and ast.unparse(func) == "os.open" and len(node.args) >= 2:
            flags = {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if flags & {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"} or not flags:
                yield node.lineno, "os.open(..., flags that may write)"
        elif name in {"open", "File", "memmap", "NamedTemporaryFile", "mkstemp"}:
            mode = _mode(node, {"open": 1, "File": 1, "memmap": 2}.get(name, 99))
            if name in {"NamedTemporaryFile", "mkstemp"}:
                yield node.lineno, name
            elif isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+"):
                yield node.lineno, f"{name}(..., {mode.value!r})"
            elif mode is not None and not isinstance(mode, ast.Constant):
                yield node.lineno, f"{name}(..., mode chosen at run time)"
        elif name in WRITE_CALLS and name != "replace" or (name == "replace" and isinstance(func, ast.Attribute)
                                                            and isinstance(func.value, ast.Name)
                                                            and func.value.id == "os"):
            yield node.lineno, name


def test_only_io_writes_files():
    found = []
    for module, (path, _) in SOURCES.items():
        if _unit(module) == "io" or module in WRITERS:
            continue
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _writes(ast.parse(path.read_text()))]
    assert not found, "files are written only in dpcstem.io; these write elsewhere:\n" + "\n".join(found)
    quiet = sorted(m for m in WRITERS if not list(_writes(ast.parse(SOURCES[m][0].read_text()))))
    assert not quiet, f"modules listed as writers in {DOC.name} that write nothing any more (remove them): {quiet}"


@pytest.mark.parametrize("source, expected", [
    ("open(p, 'w')", 1), ("open(p)", 0), ("h5py.File(p, mode='a')", 1), ("np.save(p, a)", 1),
    ("fig.savefig(p)", 1), ("a.tofile(p)", 1), ("s.replace('a', 'b')", 0), ("os.replace(a, b)", 1),
    ("np.memmap(p, np.uint8, 'r')", 0), ("np.memmap(p, np.uint8, 'w+')", 1), ("open(p, mode)", 1),
    ("os.open(os.devnull, os.O_WRONLY)", 0), ("p.write_text(s)", 1), ("tempfile.mkstemp()", 1),
    ("os.open(p, os.O_RDONLY | os.O_DIRECT)", 0), ("os.open(p, os.O_WRONLY | os.O_CREAT)", 1), ("os.open(p, flags)", 1),
])
def test_the_scan_sees_writes(source, expected):
    assert len(list(_writes(ast.parse(source)))) == expected
