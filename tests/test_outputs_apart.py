"""No output of a run may be, lie inside, or hold anything the run reads: files.refuse_overwrite against a plain
reference (the real paths compared component by component), over random paths with `..`, `.` and symlinks."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.errors import SegmenterError
from segmenter.files import refuse_overwrite

PARTS = st.sampled_from(["a", "b", "c", "a.png", "..", ".", "link"])
RELATIVE = st.lists(PARTS, min_size=1, max_size=4).map(lambda parts: os.path.join(*parts))


def tree(root: Path) -> Path:
    """root/a/b/c folders, files a.png in each, and root/link -> root/a/b (a symlink to a folder)."""
    (root / "a" / "b" / "c").mkdir(parents=True, exist_ok=True)
    for folder in (root, root / "a", root / "a" / "b"):
        (folder / "a.png").write_bytes(b"x")
    if not (root / "link").exists():
        (root / "link").symlink_to(root / "a" / "b", target_is_directory=True)
    return root


def components(path: str) -> tuple[str, ...]:
    return Path(os.path.realpath(path)).parts


def clashes(output: str, inputs: list[str]) -> bool:
    """The reference: equal, or one's real path a prefix of the other's, compared as path components."""
    out = components(output)
    for item in inputs:
        read = components(item)
        shortest = min(len(out), len(read))
        if out[:shortest] == read[:shortest]:
            return True
    return False


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tree(tmp_path_factory.mktemp("apart") / "r")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=RELATIVE, inputs=st.lists(RELATIVE, min_size=1, max_size=3))
def test_an_output_equal_to_inside_or_holding_an_input_is_refused(root, output, inputs):
    out, read = str(root / output), [str(root / i) for i in inputs]
    if clashes(out, read):
        with pytest.raises(SegmenterError) as caught:
            refuse_overwrite({"metrics file": out}, {"inputs": read})
        assert str(caught.value).startswith(f"{out}: the metrics file ") and "\n" not in str(caught.value)
    else:
        refuse_overwrite({"metrics file": out}, {"inputs": read})


def test_a_name_that_only_starts_like_an_input_is_not_inside_it(root):
    refuse_overwrite({"report": root / "a" / "bb"}, {"images": root / "a" / "b"})  # a sibling, not a child
    with pytest.raises(SegmenterError, match="lies inside the images"):
        refuse_overwrite({"report": root / "link" / "c"}, {"images": root / "a" / "b"})  # through the symlink
